//! The store against a real PostgreSQL: a fresh database per test
//! (`#[sqlx::test]`, needs DATABASE_URL; `make test` provides one). One test
//! binary, so the store and sqlx are linked once.

mod changes;
mod fleet;
mod history;
mod inventory;
mod users;

use sqlx::PgPool;
use store::{EncryptionKey, KeyRing, Store};

/// A store on `pool` with a fresh encryption key.
fn new_store(pool: PgPool) -> Store {
    Store::new(pool, KeyRing::new(EncryptionKey::generate().0, vec![]))
}
