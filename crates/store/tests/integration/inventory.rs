//! Every repository operation against a real PostgreSQL: a fresh database per
//! test (`#[sqlx::test]`, needs DATABASE_URL; `make test` provides one).

use crate::new_store;
use domain::error::ErrorCode;
use domain::{FactoryInput, FactoryPatch, GatewayInput, GatewayPatch, PageRequest};
use serde_json::json;
use sqlx::PgPool;
use store::{EncryptionKey, GatewayFilter, KeyRing, Store, StoreError};
use uuid::Uuid;

fn code(err: StoreError) -> ErrorCode {
    match err {
        StoreError::Client(app) => app.code,
        other => panic!("expected a client error, got {other:?}"),
    }
}

fn page(limit: u32, offset: u64) -> PageRequest {
    PageRequest { limit, offset }
}

async fn factory(store: &Store, name: &str) -> domain::Factory {
    let input: FactoryInput = serde_json::from_value(json!({"name": name, "timezone": "Europe/Berlin"})).unwrap();
    store.create_factory(input.validate().unwrap()).await.unwrap()
}

fn gateway_input(factory_id: Uuid, gateway_id: &str, name: &str) -> domain::NewGateway {
    serde_json::from_value::<GatewayInput>(json!({
        "factory_id": factory_id.to_string(),
        "gateway_id": gateway_id,
        "name": name,
        "url": "ws://127.0.0.1:9",
        "email": "admin@gateway.local",
        "password": "admin123",
    }))
    .unwrap()
    .validate()
    .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn default_organization_exists_and_is_used(pool: PgPool) {
    let store = new_store(pool);
    let orgs = store.list_organizations().await.unwrap();
    assert_eq!(orgs.len(), 1);
    let f = factory(&store, "Springfield Plant").await;
    assert_eq!(f.organization_id, orgs[0].id);
    assert_eq!(f.timezone, "Europe/Berlin");

    // With a second organization, one must be named.
    store.create_organization("Second").await.unwrap();
    let input = FactoryInput {
        name: Some("X".into()),
        ..Default::default()
    };
    let err = store.create_factory(input.validate().unwrap()).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::OrganizationRequired);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn unknown_organization_is_a_typed_error(pool: PgPool) {
    let store = new_store(pool);
    let input = FactoryInput {
        organization_id: Some(Uuid::new_v4().to_string()),
        name: Some("X".into()),
        ..Default::default()
    };
    let err = store.create_factory(input.validate().unwrap()).await.unwrap_err();
    assert_eq!(code(err), ErrorCode::UnknownOrganization);
}

/// Creations made at the same moment are inserted together (one statement, one commit:
/// one `created_at`), and each still gets its own row, or its own error.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn concurrent_creations_are_combined_and_each_gets_its_own_answer(pool: PgPool) {
    let store = new_store(pool.clone());
    let ours = store.list_organizations().await.unwrap()[0].id;
    // Every fifth names an organization that does not exist; the others name ours, its
    // predecessor's alias, or none.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            let organization = match i % 5 {
                0 => Some(Uuid::new_v4().to_string()),
                1 => Some(ours.to_string()),
                2 => Some("00000000-0000-0000-0000-000000000001".to_owned()),
                _ => None,
            };
            tokio::spawn(async move {
                let input = FactoryInput {
                    organization_id: organization,
                    name: Some(format!("Plant {i}")),
                    location: (i % 2 == 0).then(|| format!("Hall {i}")),
                    metadata: Some(json!({ "n": i })),
                    ..Default::default()
                };
                (i, store.create_factory(input.validate().unwrap()).await)
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        if i % 5 == 0 {
            assert_eq!(
                code(result.unwrap_err()),
                ErrorCode::UnknownOrganization,
                "creation {i}"
            );
            continue;
        }
        let factory = result.unwrap_or_else(|err| panic!("creation {i}: {err}"));
        assert_eq!(factory.name, format!("Plant {i}"));
        assert_eq!(factory.location, (i % 2 == 0).then(|| format!("Hall {i}")));
        assert_eq!(factory.metadata["n"], i);
        assert_eq!(factory.organization_id, ours);
        assert_eq!(store.get_factory(factory.id).await.unwrap(), factory, "read back {i}");
        created.push(factory);
    }
    assert_eq!(created.len(), 80);
    let (rows, commits): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT created_at) FROM factories WHERE name LIKE 'Plant %'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, 80, "only the creations answered with a factory are stored");
    // On this test's single-threaded runtime every creation is queued before the combiner
    // runs, so all of them go in one transaction.
    assert_eq!(commits, 1, "creations queued together are inserted together");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn factory_crud_and_soft_delete(pool: PgPool) {
    let store = new_store(pool.clone());
    let f = factory(&store, "Detroit").await;
    assert_eq!(store.get_factory(f.id).await.unwrap(), f);

    let patch: FactoryPatch = serde_json::from_value(json!({"location": "Hall 2", "metadata": {"k": 1}})).unwrap();
    let updated = store.update_factory(f.id, patch.validate().unwrap()).await.unwrap();
    assert_eq!(updated.location.as_deref(), Some("Hall 2"));
    assert_eq!(updated.name, "Detroit");
    assert!(updated.updated_at > f.updated_at);

    let clear: FactoryPatch = serde_json::from_value(json!({"location": null})).unwrap();
    let cleared = store.update_factory(f.id, clear.validate().unwrap()).await.unwrap();
    assert_eq!(cleared.location, None);
    assert_eq!(cleared.metadata["k"], 1, "untouched fields stay");

    store.delete_factory(f.id).await.unwrap();
    assert_eq!(
        code(store.get_factory(f.id).await.unwrap_err()),
        ErrorCode::FactoryNotFound
    );
    assert_eq!(
        code(store.delete_factory(f.id).await.unwrap_err()),
        ErrorCode::FactoryNotFound
    );
    let patch = FactoryPatch::default().validate().unwrap();
    assert_eq!(
        code(store.update_factory(f.id, patch).await.unwrap_err()),
        ErrorCode::FactoryNotFound
    );
    assert_eq!(
        store.list_factories(page(20, 0), None).await.unwrap().pagination.total,
        0
    );
    // The row is still there, only marked.
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM factories WHERE deleted_at IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn pagination_edges_and_stable_order(pool: PgPool) {
    let store = new_store(pool);
    for name in ["Charlie", "alpha", "Bravo", "Bravo"] {
        factory(&store, name).await;
    }
    let all = store.list_factories(page(100, 0), None).await.unwrap();
    let names: Vec<_> = all.data.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(all.pagination.total, 4);
    // Same names are ordered by id, so pages never overlap.
    let bravos: Vec<_> = all.data.iter().filter(|f| f.name == "Bravo").map(|f| f.id).collect();
    assert!(bravos[0] < bravos[1]);
    assert_eq!(names.len(), 4);

    let first = store.list_factories(page(1, 0), None).await.unwrap();
    assert_eq!(first.data.len(), 1);
    assert!(first.pagination.has_next && !first.pagination.has_prev);

    let last = store.list_factories(page(2, 2), None).await.unwrap();
    assert_eq!(last.data.len(), 2);
    assert!(!last.pagination.has_next && last.pagination.has_prev);

    let past = store.list_factories(page(20, 10), None).await.unwrap();
    assert!(past.data.is_empty());
    assert_eq!(past.pagination.total, 4, "an empty page still reports the total");

    let found = store.list_factories(page(20, 0), Some("brav")).await.unwrap();
    assert_eq!(found.pagination.total, 2);
    let literal = store.list_factories(page(20, 0), Some("%")).await.unwrap();
    assert_eq!(literal.pagination.total, 0, "LIKE wildcards in a search are literal");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn gateway_crud_never_exposes_the_password(pool: PgPool) {
    let store = new_store(pool.clone());
    let f = factory(&store, "Austin").await;
    let g = store
        .create_gateway(gateway_input(f.id, "GW-AUS-001", "Lab"))
        .await
        .unwrap();
    assert_eq!(store.get_gateway(g.id).await.unwrap(), g);
    let shown = serde_json::to_string(&g).unwrap();
    assert!(!shown.contains("password") && !shown.contains("admin123"));

    let sealed: String = sqlx::query_scalar("SELECT password_encrypted FROM gateways WHERE id = $1")
        .bind(g.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(sealed.starts_with("v1:") && !sealed.contains("admin123"));
    assert_eq!(
        store.gateway_credentials(g.id).await.unwrap().password.expose(),
        "admin123"
    );

    // Password and other fields change together; null clears model.
    let patch: GatewayPatch =
        serde_json::from_value(json!({"password": "n3w", "name": "Lab 2", "model": "CTC", "firmware_version": "1.0"}))
            .unwrap();
    store.update_gateway(g.id, patch.validate().unwrap()).await.unwrap();
    let patch: GatewayPatch = serde_json::from_value(json!({"model": null})).unwrap();
    let updated = store.update_gateway(g.id, patch.validate().unwrap()).await.unwrap();
    assert_eq!(updated.name, "Lab 2");
    assert_eq!(updated.model, None);
    assert_eq!(updated.firmware_version.as_deref(), Some("1.0"));
    assert_eq!(store.gateway_credentials(g.id).await.unwrap().password.expose(), "n3w");

    // No password in the change: the stored one is kept.
    let patch: GatewayPatch = serde_json::from_value(json!({"email": "ops@plant.example"})).unwrap();
    store.update_gateway(g.id, patch.validate().unwrap()).await.unwrap();
    assert_eq!(store.gateway_credentials(g.id).await.unwrap().password.expose(), "n3w");

    store.delete_gateway(g.id).await.unwrap();
    assert_eq!(
        code(store.get_gateway(g.id).await.unwrap_err()),
        ErrorCode::GatewayNotFound
    );
    assert_eq!(
        code(store.delete_gateway(g.id).await.unwrap_err()),
        ErrorCode::GatewayNotFound
    );
    assert_eq!(
        code(store.gateway_credentials(g.id).await.unwrap_err()),
        ErrorCode::GatewayNotFound
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn gateway_id_is_unique_among_active_rows_only(pool: PgPool) {
    let store = new_store(pool);
    let f = factory(&store, "F").await;
    let first = store.create_gateway(gateway_input(f.id, "GW-1", "A")).await.unwrap();
    let dup = store
        .create_gateway(gateway_input(f.id, "GW-1", "B"))
        .await
        .unwrap_err();
    assert_eq!(code(dup), ErrorCode::GatewayIdTaken);

    // A failed update changes nothing, password included (atomic).
    let other = store.create_gateway(gateway_input(f.id, "GW-2", "B")).await.unwrap();
    let patch: GatewayPatch = serde_json::from_value(json!({"gateway_id": "GW-1", "password": "changed"})).unwrap();
    let err = store
        .update_gateway(other.id, patch.validate().unwrap())
        .await
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::GatewayIdTaken);
    assert_eq!(
        store.gateway_credentials(other.id).await.unwrap().password.expose(),
        "admin123"
    );

    store.delete_gateway(first.id).await.unwrap();
    let reused = store.create_gateway(gateway_input(f.id, "GW-1", "C")).await.unwrap();
    assert_eq!(reused.gateway_id, "GW-1");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn unknown_or_deleted_factory_is_refused(pool: PgPool) {
    let store = new_store(pool);
    let err = store
        .create_gateway(gateway_input(Uuid::new_v4(), "GW-1", "A"))
        .await
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::UnknownFactory);
    let f = factory(&store, "Gone").await;
    store.delete_factory(f.id).await.unwrap();
    let err = store
        .create_gateway(gateway_input(f.id, "GW-1", "A"))
        .await
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::UnknownFactory);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn moving_a_gateway_between_factories(pool: PgPool) {
    let store = new_store(pool);
    let from = factory(&store, "From").await;
    let to = factory(&store, "To").await;
    let g = store.create_gateway(gateway_input(from.id, "GW-1", "A")).await.unwrap();
    let patch: GatewayPatch = serde_json::from_value(json!({"factory_id": to.id.to_string()})).unwrap();
    let moved = store.update_gateway(g.id, patch.validate().unwrap()).await.unwrap();
    assert_eq!(moved.factory_id, to.id);
    let filter = GatewayFilter {
        factory_id: Some(to.id),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_gateways(&filter, page(20, 0))
            .await
            .unwrap()
            .pagination
            .total,
        1
    );

    store.delete_factory(from.id).await.unwrap();
    let patch: GatewayPatch = serde_json::from_value(json!({"factory_id": from.id.to_string()})).unwrap();
    let err = store.update_gateway(g.id, patch.validate().unwrap()).await.unwrap_err();
    assert_eq!(
        code(err),
        ErrorCode::UnknownFactory,
        "cannot move into a deleted factory"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn deleting_a_factory_deletes_its_gateways(pool: PgPool) {
    let store = new_store(pool);
    let doomed = factory(&store, "Doomed").await;
    let kept = factory(&store, "Kept").await;
    let a = store
        .create_gateway(gateway_input(doomed.id, "GW-1", "A"))
        .await
        .unwrap();
    let b = store
        .create_gateway(gateway_input(doomed.id, "GW-2", "B"))
        .await
        .unwrap();
    let c = store.create_gateway(gateway_input(kept.id, "GW-3", "C")).await.unwrap();
    let mut gone = store.delete_factory(doomed.id).await.unwrap();
    gone.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(gone, expected);
    let all = store
        .list_gateways(&GatewayFilter::default(), page(20, 0))
        .await
        .unwrap();
    assert_eq!(all.data.iter().map(|g| g.id).collect::<Vec<_>>(), vec![c.id]);
    assert_eq!(
        code(store.get_gateway(a.id).await.unwrap_err()),
        ErrorCode::GatewayNotFound
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn gateway_list_filters_and_orders_by_name(pool: PgPool) {
    let store = new_store(pool);
    let f1 = factory(&store, "One").await;
    let f2 = factory(&store, "Two").await;
    store
        .create_gateway(gateway_input(f1.id, "GW-B", "South"))
        .await
        .unwrap();
    store
        .create_gateway(gateway_input(f2.id, "GW-A", "Assembly"))
        .await
        .unwrap();
    store
        .create_gateway(gateway_input(f1.id, "GW-C", "North"))
        .await
        .unwrap();
    let all = store
        .list_gateways(&GatewayFilter::default(), page(20, 0))
        .await
        .unwrap();
    let names: Vec<_> = all.data.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["Assembly", "North", "South"]);
    let filter = GatewayFilter {
        factory_id: Some(f1.id),
        ..Default::default()
    };
    let one = store.list_gateways(&filter, page(1, 1)).await.unwrap();
    assert_eq!(one.pagination.total, 2);
    assert_eq!(one.data[0].name, "South");
    let search = GatewayFilter {
        search: Some("gw-a".into()),
        ..Default::default()
    };
    assert_eq!(
        store.list_gateways(&search, page(20, 0)).await.unwrap().data[0].name,
        "Assembly"
    );
    let unknown = GatewayFilter {
        factory_id: Some(Uuid::new_v4()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_gateways(&unknown, page(20, 0))
            .await
            .unwrap()
            .pagination
            .total,
        0
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn key_rotation_reencrypts_every_row(pool: PgPool) {
    let (old_key, old_text) = EncryptionKey::generate();
    let old_id = old_key.id().to_owned();
    let old = Store::new(pool.clone(), KeyRing::new(old_key, vec![]));
    let f = factory(&old, "F").await;
    let a = old.create_gateway(gateway_input(f.id, "GW-1", "A")).await.unwrap();
    let b = old.create_gateway(gateway_input(f.id, "GW-2", "B")).await.unwrap();
    old.delete_gateway(b.id).await.unwrap();
    // A row in the predecessor's format too.
    sqlx::query("UPDATE gateways SET password_encrypted = $2 WHERE id = $1")
        .bind(b.id)
        .bind(legacy_blob(&old_text))
        .execute(&pool)
        .await
        .unwrap();

    let (new_key, _) = EncryptionKey::generate();
    let new_id = new_key.id().to_owned();
    let rotated = Store::new(
        pool.clone(),
        KeyRing::new(new_key, vec![EncryptionKey::from_base64(&old_text).unwrap()]),
    );
    // Old rows still decrypt before rotation.
    assert_eq!(
        rotated.gateway_credentials(a.id).await.unwrap().password.expose(),
        "admin123"
    );
    assert_eq!(rotated.rotate_keys().await.unwrap(), 2);
    let sealed: Vec<String> = sqlx::query_scalar("SELECT password_encrypted FROM gateways")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        sealed.iter().all(|s| s.starts_with(&format!("v1:{new_id}:"))),
        "{sealed:?} {old_id}"
    );
    assert_eq!(rotated.rotate_keys().await.unwrap(), 0, "nothing left to rotate");
    let b_plain = rotated.keys().decrypt(&sealed_of(&pool, b.id).await, b.id).unwrap();
    assert_eq!(b_plain.expose(), "legacy-pass");
}

async fn sealed_of(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT password_encrypted FROM gateways WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The predecessor's JSON format, sealed with `key_text` and no associated data.
fn legacy_blob(key_text: &str) -> String {
    use aes_gcm::aead::{Aead, KeyInit};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let key = STANDARD.decode(key_text).unwrap();
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
    let iv = [7u8; 12];
    let mut sealed = cipher
        .encrypt(aes_gcm::Nonce::from_slice(&iv), b"legacy-pass".as_slice())
        .unwrap();
    let tag = sealed.split_off(sealed.len() - 16);
    json!({"encrypted": STANDARD.encode(sealed), "iv": STANDARD.encode(iv), "authTag": STANDARD.encode(tag)})
        .to_string()
}

/// A NUL that reaches PostgreSQL by a path without its own check (here a search
/// from a web page's URL) is still a client error, not an internal one.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn nul_in_text_is_a_client_error_even_unchecked(pool: PgPool) {
    let store = new_store(pool);
    let err = store.list_factories(page(20, 0), Some("a\0b")).await.unwrap_err();
    let app = domain::AppError::from(err);
    assert_eq!(app.code, ErrorCode::ValidationError);
    assert_eq!(app.field_message("text"), Some("must not contain NUL characters"));
}
