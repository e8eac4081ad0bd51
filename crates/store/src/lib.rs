//! The server's data layer: PostgreSQL repositories for the inventory and the
//! gateway credential cipher. The web app's server functions, the REST API and
//! the orchestrator all go through [`Store`], so each query and rule exists once.

mod alarms;
mod changes;
mod choices;
pub mod cipher;
mod error;
mod factories;
mod fleet;
mod gateways;
mod live;
mod machines;
mod observer;
mod organizations;
mod sessions;
mod throttle;
mod tokens;
mod users;

pub use alarms::{AttemptOutcome, ClaimedDelivery, Evaluation};
pub use changes::{ChangeFeed, Topic, API_TOKENS_CHANNEL, CACHE_MAX_AGE, INVENTORY_CHANNEL};
pub use cipher::{CipherError, EncryptionKey, KeyError, KeyRing};
pub use error::StoreError;
pub use factories::FactoryWithCount;
pub use fleet::{Lease, Round, RoundOutcome, FLEET_CHANNEL};
pub use gateways::{GatewayCredentials, GatewayFilter};
pub use live::{DiscoveredSensor, NewGatewayEvent, NewReading, ReadingResult};
pub use observer::{ConnectionChange, InventoryObserver};
pub use sessions::{PgSessionStore, SESSION_USER_KEY};
pub use sqlx::postgres::PgListener;
pub use throttle::SignInThrottle;
pub use tokens::{token_digest, ApiToken, TOKEN_PREFIX};
pub use users::{argon2_concurrency, argon2_peak_concurrency};

use changes::ReadCache;
use domain::{Gateway, Page, PageRequest};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Migrations embedded at build time from `migrations/` at the repository root.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    keys: Arc<KeyRing>,
    observer: Arc<std::sync::OnceLock<Arc<dyn InventoryObserver>>>,
    changes: Arc<ChangeFeed>,
    caches: Arc<ReadCaches>,
    _announcer: Arc<AnnouncerStop>,
    /// Factory creations waiting to be inserted together (see `Store::create_factory`).
    factory_inserts: tokio::sync::mpsc::Sender<factories::PendingFactory>,
}

/// Ends the task that announces changes once the last clone of a store is gone
/// (it holds the pool, which would otherwise stay connected).
struct AnnouncerStop(Arc<ChangeFeed>);

impl Drop for AnnouncerStop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The hot reads, kept until the inventory changes (see [`changes`]).
struct ReadCaches {
    gateway_pages: ReadCache<(GatewayFilter, PageRequest), Page<Gateway>>,
    factory_pages: ReadCache<(PageRequest, Option<String>), (Vec<FactoryWithCount>, u64)>,
    gateways: ReadCache<Uuid, Gateway>,
    factories: ReadCache<Uuid, domain::Factory>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store on `pool`. Needs a Tokio runtime: it starts the task that announces
    /// this store's changes to other processes (it ends when the pool closes).
    pub fn new(pool: PgPool, keys: KeyRing) -> Self {
        let changes: Arc<ChangeFeed> = Arc::default();
        tokio::spawn(changes::announce(pool.clone(), changes.clone()));
        let (factory_inserts, pending) = tokio::sync::mpsc::channel(factories::COMBINER_QUEUE);
        tokio::spawn(factories::combine_factory_inserts(
            pool.clone(),
            changes.clone(),
            pending,
        ));
        Self {
            factory_inserts,
            pool,
            keys: Arc::new(keys),
            observer: Arc::default(),
            _announcer: Arc::new(AnnouncerStop(changes.clone())),
            changes,
            caches: Arc::new(ReadCaches {
                gateway_pages: ReadCache::new(Topic::Inventory),
                factory_pages: ReadCache::new(Topic::Inventory),
                gateways: ReadCache::new(Topic::Inventory),
                factories: ReadCache::new(Topic::Inventory),
            }),
        }
    }

    /// Starts hearing changes made by other processes (and enables the read
    /// caches, which need that). One per process; it ends when the pool closes.
    pub fn start_change_listener(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(changes::listen(self.pool.clone(), self.changes.clone()))
    }

    /// Generation counters of the inventory and the API tokens.
    pub fn changes(&self) -> &ChangeFeed {
        &self.changes
    }

    /// Called by every write, after it committed.
    pub(crate) fn changed(&self, topic: Topic) {
        self.changes.committed(topic);
    }

    /// Waits (up to `within`) until every change made through this store has been
    /// announced to other processes: a command-line write calls it before exiting.
    pub async fn announce_changes(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.changes.all_announced() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Registers the one observer of inventory changes (the orchestrator). Every
    /// clone of this store shares it.
    pub fn set_observer(&self, observer: Arc<dyn InventoryObserver>) {
        if self.observer.set(observer).is_err() {
            tracing::warn!("an inventory observer was already registered; keeping the first");
        }
    }

    pub(crate) fn observer(&self) -> Option<&Arc<dyn InventoryObserver>> {
        self.observer.get()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// Whether the database answers (for the health check).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// Opens a pool on `url`, creating the database first when it does not exist
/// (so a fresh embedded cluster or a new test database just works).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    ensure_database(&options).await?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before every query: it was a second round trip (and a second wake-up of
        // a PostgreSQL backend) for each one. A connection that died meanwhile (a restart)
        // fails its next query instead, is dropped from the pool, and the error is
        // "unavailable": a 503 to retry, or a write the orchestrator's writer retries.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(StoreError::from)
}

async fn ensure_database(options: &PgConnectOptions) -> Result<(), StoreError> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let maintenance = options.clone().database("postgres");
    let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect_with(&maintenance).await else {
        // No access to the maintenance database: assume the target exists and let
        // the real connection report what is wrong.
        return Ok(());
    };
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        if let Err(err) = sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut conn)
            .await
        {
            // Another process may have created it in the meantime.
            tracing::debug!(%err, database = %name, "CREATE DATABASE");
        } else {
            tracing::info!(database = %name, "created database");
        }
    }
    Ok(())
}
