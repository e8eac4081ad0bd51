//! The read caches: served from memory while nothing changed, and dropped when
//! anything changes, here or in another process (a NOTIFY after the commit).

use crate::new_store;
use domain::{FactoryInput, GatewayInput, GatewayPatch, PageRequest};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use store::{GatewayFilter, Store};

async fn listening(store: &Store) {
    store.start_change_listener();
    for _ in 0..100 {
        if store.changes().is_listening() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the change listener did not connect");
}

async fn seed(store: &Store) -> domain::Gateway {
    let factory = store
        .create_factory(
            serde_json::from_value::<FactoryInput>(json!({"name": "Plant"}))
                .unwrap()
                .validate()
                .unwrap(),
        )
        .await
        .unwrap();
    let input: GatewayInput = serde_json::from_value(json!({
        "factory_id": factory.id.to_string(), "gateway_id": "GW-1", "name": "Before",
        "url": "ws://127.0.0.1:9", "email": "a@b.example", "password": "pw",
    }))
    .unwrap();
    store.create_gateway(input.validate().unwrap()).await.unwrap()
}

async fn first_name(store: &Store) -> String {
    let page = store
        .list_gateways(&GatewayFilter::default(), PageRequest::default())
        .await
        .unwrap();
    page.data[0].name.clone()
}

/// A write with plain SQL, announced (as such writes must be) or not.
async fn rename_behind_the_stores_back(pool: &PgPool, name: &str, notify: bool) {
    sqlx::query("UPDATE gateways SET name = $1")
        .bind(name)
        .execute(pool)
        .await
        .unwrap();
    if notify {
        sqlx::query("NOTIFY inventory_changed, 'plain SQL'")
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn eventually_named(store: &Store, name: &str) {
    let mut seen = String::new();
    for _ in 0..100 {
        seen = first_name(store).await;
        if seen == name {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, name);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn lists_are_served_from_memory_until_the_inventory_changes(pool: PgPool) {
    let store = new_store(pool.clone());
    let gateway = seed(&store).await;
    listening(&store).await;
    assert_eq!(first_name(&store).await, "Before");

    // A change that tells no one is not seen: the page came from the cache.
    rename_behind_the_stores_back(&pool, "Unannounced", false).await;
    assert_eq!(first_name(&store).await, "Before");

    // A write through the store is read back at once (no waiting for NOTIFY).
    let patch: GatewayPatch = serde_json::from_value(json!({"name": "After"})).unwrap();
    store
        .update_gateway(gateway.id, patch.validate().unwrap())
        .await
        .unwrap();
    assert_eq!(first_name(&store).await, "After");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_change_made_by_another_process_reaches_the_cache(pool: PgPool) {
    let store = new_store(pool.clone());
    seed(&store).await;
    listening(&store).await;
    assert_eq!(first_name(&store).await, "Before");

    rename_behind_the_stores_back(&pool, "Renamed elsewhere", true).await;
    eventually_named(&store, "Renamed elsewhere").await;

    // Another process's store (its own pool) announces its writes after they commit.
    let other = new_store(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(pool.connect_options().as_ref().clone())
            .await
            .unwrap(),
    );
    let gateway = other
        .list_gateways(&GatewayFilter::default(), PageRequest::default())
        .await
        .unwrap()
        .data[0]
        .id;
    let patch: GatewayPatch = serde_json::from_value(json!({"name": "Renamed by another server"})).unwrap();
    other.update_gateway(gateway, patch.validate().unwrap()).await.unwrap();
    assert!(other.announce_changes(Duration::from_secs(5)).await, "announced");
    eventually_named(&store, "Renamed by another server").await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn writes_notify_after_they_commit_not_inside(pool: PgPool) {
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
         WHERE NOT t.tgisinternal AND p.prosrc ILIKE '%notify%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(triggers, 0, "no trigger notifies inside a writing transaction");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn without_a_listener_every_read_goes_to_the_database(pool: PgPool) {
    let store = new_store(pool.clone());
    seed(&store).await;
    assert_eq!(first_name(&store).await, "Before");
    rename_behind_the_stores_back(&pool, "Unannounced", false).await;
    assert_eq!(first_name(&store).await, "Unannounced");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn factory_pages_follow_gateway_counts(pool: PgPool) {
    let store = new_store(pool.clone());
    let gateway = seed(&store).await;
    listening(&store).await;
    let count = |store: Store| async move {
        store
            .list_factories_with_counts(PageRequest::default(), None)
            .await
            .unwrap()
            .data[0]
            .gateway_count
    };
    assert_eq!(count(store.clone()).await, 1);
    store.delete_gateway(gateway.id).await.unwrap();
    assert_eq!(count(store.clone()).await, 0);
}
