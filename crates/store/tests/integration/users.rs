//! Users and sessions against a real PostgreSQL (`#[sqlx::test]`, needs DATABASE_URL).

use crate::new_store;
use domain::error::ErrorCode;
use domain::{Role, User, UserPassword};
use sqlx::PgPool;
use std::time::Duration;
use store::{PgSessionStore, Store, StoreError, SESSION_USER_KEY};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::SessionStore;
use uuid::Uuid;

fn password(text: &str) -> UserPassword {
    UserPassword::new(text)
}

fn field_error(err: StoreError, field: &str) -> String {
    match err {
        StoreError::Client(app) => {
            assert_eq!(app.code, ErrorCode::ValidationError);
            app.field_message(field).expect("a message for the field").to_owned()
        }
        other => panic!("expected a client error, got {other:?}"),
    }
}

fn signed_in_record(user: Uuid, expires_in: time::Duration) -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert(SESSION_USER_KEY.to_owned(), serde_json::json!(user));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + expires_in,
    }
}

/// A session store over `store` and a signed-in session of `user`, saved in it.
async fn session_of(store: &Store, user: Uuid) -> (PgSessionStore, Record) {
    let sessions = PgSessionStore::new(store.clone(), Duration::from_secs(3600));
    let mut record = signed_in_record(user, time::Duration::hours(1));
    sessions.create(&mut record).await.unwrap();
    (sessions, record)
}

/// Ada, with the password "correct horse".
async fn ada(store: &Store, role: Role) -> User {
    store
        .create_user("ada@example.com", &password("correct horse"), role)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn users_sign_in_with_a_case_insensitive_email(pool: PgPool) {
    let store = new_store(pool);
    let user = store
        .create_user(" Ada@Example.com ", &password("correct horse"), Role::Viewer)
        .await
        .unwrap();
    assert_eq!(user.email, "Ada@Example.com");
    assert_eq!(user.role, Role::Viewer);
    let found = store
        .authenticate_user("ada@example.COM", &password("correct horse"))
        .await
        .unwrap();
    assert_eq!(found.map(|u| u.id), Some(user.id));
    assert!(store
        .authenticate_user("ada@example.com", &password("wrong horse"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .authenticate_user("nobody@example.com", &password("correct horse"))
        .await
        .unwrap()
        .is_none());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn emails_are_unique_regardless_of_case_and_inputs_are_checked(pool: PgPool) {
    let store = new_store(pool);
    store
        .create_user("ada@example.com", &password("correct horse"), Role::Admin)
        .await
        .unwrap();
    let duplicate = store
        .create_user("ADA@example.com", &password("correct horse"), Role::Viewer)
        .await
        .unwrap_err();
    assert_eq!(field_error(duplicate, "email"), "is already used by another user");
    let bad_email = store
        .create_user("not an email", &password("correct horse"), Role::Viewer)
        .await
        .unwrap_err();
    assert_eq!(field_error(bad_email, "email"), "must be a valid email address");
    let short = store
        .create_user("bob@example.com", &password("short"), Role::Viewer)
        .await
        .unwrap_err();
    assert_eq!(field_error(short, "password"), "must be at least 8 characters");
    assert_eq!(store.count_users().await.unwrap(), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_stored_hash_is_argon2id_not_the_password(pool: PgPool) {
    let store = new_store(pool);
    ada(&store, Role::Admin).await;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(!hash.contains("correct horse"));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn disabling_a_user_refuses_sign_in_and_ends_their_sessions(pool: PgPool) {
    let store = new_store(pool);
    let ada = ada(&store, Role::Admin).await;
    let bob = store
        .create_user("bob@example.com", &password("battery staple"), Role::Viewer)
        .await
        .unwrap();
    let (sessions, ada_session) = session_of(&store, ada.id).await;
    let (_, bob_session) = session_of(&store, bob.id).await;
    assert_eq!(store.count_user_sessions(ada.id).await.unwrap(), 1);

    let disabled = store.disable_user(None, ada.id).await.unwrap();
    assert!(disabled.disabled_at.is_some());
    assert!(sessions.load(&ada_session.id).await.unwrap().is_none());
    assert!(
        sessions.load(&bob_session.id).await.unwrap().is_some(),
        "other users keep theirs"
    );
    assert!(store
        .authenticate_user("ada@example.com", &password("correct horse"))
        .await
        .unwrap()
        .is_none());

    store.enable_user(ada.id).await.unwrap();
    assert!(store
        .authenticate_user("ada@example.com", &password("correct horse"))
        .await
        .unwrap()
        .is_some());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn resetting_a_password_replaces_it_and_ends_sessions(pool: PgPool) {
    let store = new_store(pool);
    let ada = ada(&store, Role::Admin).await;
    let (sessions, record) = session_of(&store, ada.id).await;

    store
        .reset_user_password(ada.id, &password("new and long"))
        .await
        .unwrap();
    assert!(sessions.load(&record.id).await.unwrap().is_none());
    assert!(store
        .authenticate_user("ada@example.com", &password("correct horse"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .authenticate_user("ada@example.com", &password("new and long"))
        .await
        .unwrap()
        .is_some());
    let short = store.reset_user_password(ada.id, &password("short")).await.unwrap_err();
    assert_eq!(field_error(short, "password"), "must be at least 8 characters");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn roles_change_and_unknown_users_are_not_found(pool: PgPool) {
    let store = new_store(pool);
    let ada = ada(&store, Role::Viewer).await;
    assert_eq!(
        store.set_user_role(None, ada.id, Role::Admin).await.unwrap().role,
        Role::Admin
    );
    assert_eq!(store.get_user(ada.id).await.unwrap().unwrap().role, Role::Admin);
    match store
        .set_user_role(None, Uuid::new_v4(), Role::Admin)
        .await
        .unwrap_err()
    {
        StoreError::Client(app) => assert_eq!(app.code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_administrator_cannot_demote_or_disable_their_own_account(pool: PgPool) {
    let store = new_store(pool);
    let ada = ada(&store, Role::Admin).await;
    for refused in [
        store
            .set_user_role(Some(ada.id), ada.id, Role::Viewer)
            .await
            .unwrap_err(),
        store.disable_user(Some(ada.id), ada.id).await.unwrap_err(),
    ] {
        match refused {
            StoreError::Client(app) => assert_eq!(app.code, ErrorCode::Forbidden),
            other => panic!("{other:?}"),
        }
    }
    let unchanged = store.get_user(ada.id).await.unwrap().unwrap();
    assert_eq!((unchanged.role, unchanged.disabled_at), (Role::Admin, None));
    // Another administrator (or the command line) may.
    let other = Uuid::new_v4();
    assert_eq!(
        store
            .set_user_role(Some(other), ada.id, Role::Viewer)
            .await
            .unwrap()
            .role,
        Role::Viewer
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sessions_round_trip_and_expire(pool: PgPool) {
    let store = new_store(pool);
    let ada = ada(&store, Role::Admin).await;
    let (sessions, live) = session_of(&store, ada.id).await;
    let loaded = sessions.load(&live.id).await.unwrap().expect("a live session loads");
    assert_eq!(loaded.data, live.data);

    // The id itself is never stored, only its digest.
    let stored_plain: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE encode(id_sha256, 'escape') LIKE $1")
            .bind(format!("%{}%", live.id))
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(stored_plain, 0);

    // Idle timeout: the record's expiry has passed.
    let idle = signed_in_record(ada.id, time::Duration::seconds(-1));
    sessions.save(&idle).await.unwrap();
    assert!(sessions.load(&idle.id).await.unwrap().is_none());

    // Absolute timeout: created longer ago than the lifetime, however active.
    sqlx::query("UPDATE sessions SET created_at = now() - interval '2 hours'")
        .execute(store.pool())
        .await
        .unwrap();
    assert!(sessions.load(&live.id).await.unwrap().is_none());

    sessions.delete(&live.id).await.unwrap();
    assert_eq!(store.count_user_sessions(ada.id).await.unwrap(), 0);
}

/// A request that saves its session after the session was deleted (a sign-out in
/// another tab, a password reset) must not re-create it.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_deleted_session_is_not_brought_back_by_a_late_save(pool: PgPool) {
    let store = new_store(pool);
    let user = ada(&store, Role::Viewer).await;
    let (sessions, record) = session_of(&store, user.id).await;
    assert!(sessions.load(&record.id).await.unwrap().is_some());
    sessions.delete(&record.id).await.unwrap();
    sessions.save(&record).await.unwrap();
    assert!(
        sessions.load(&record.id).await.unwrap().is_none(),
        "the session stays deleted"
    );
    assert_eq!(store.count_user_sessions(user.id).await.unwrap(), 0);
}

/// A burst of password checks waits its turn: no more argon2 computations (19 MiB each)
/// run at once than the cap, whatever the burst's size.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn password_checks_run_at_most_the_cap_at_once(pool: PgPool) {
    let store = new_store(pool);
    ada(&store, Role::Viewer).await;
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..16 {
        let store = store.clone();
        burst.spawn(async move {
            store
                .authenticate_user("ada@example.com", &password(&format!("guess {n}")))
                .await
        });
    }
    while let Some(answer) = burst.join_next().await {
        assert!(answer.unwrap().unwrap().is_none());
    }
    let peak = store::argon2_peak_concurrency();
    assert!(peak >= 1, "the checks ran");
    assert!(
        peak <= store::argon2_concurrency(),
        "{peak} ran at once, above the cap of {}",
        store::argon2_concurrency()
    );
}
