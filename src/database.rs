//! Opens the database the configuration names, or starts the embedded one.

use crate::config::Config;
use anyhow::Context;
use pg_embedded::EmbeddedPostgres;
use secrecy::ExposeSecret;
use store::Store;

/// Name of the application database inside the embedded cluster.
pub const EMBEDDED_DATABASE: &str = "factory_monitor";

/// The store plus, when we started it, the embedded PostgreSQL behind it.
pub struct Database {
    pub store: Store,
    /// Where it is (with its password): for processes this one starts, such as the
    /// servers of a multi-instance benchmark.
    pub url: secrecy::SecretString,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects (starting the embedded cluster when `DATABASE_URL` is unset) and
    /// applies pending migrations.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let keys = config.key_ring()?;
        let (url, embedded) = match &config.database_url {
            Some(url) => (url.expose_secret().to_owned(), None),
            None => {
                let pg = EmbeddedPostgres::start(&config.data_dir.join("db"))
                    .await
                    .context("starting the embedded PostgreSQL (set DATABASE_URL to use your own)")?;
                (pg.url(EMBEDDED_DATABASE), Some(pg))
            }
        };
        let pool = store::connect(&url, config.database_pool_size)
            .await
            .context("connecting to PostgreSQL")?;
        let store = Store::new(pool, keys);
        store.migrate().await.context("applying migrations")?;
        Ok(Self {
            store,
            url: secrecy::SecretString::from(url),
            embedded,
        })
    }

    /// Tells other processes of this one's writes, closes the pool, then stops the
    /// embedded cluster if we started it.
    pub async fn close(self) {
        if !self.store.announce_changes(std::time::Duration::from_secs(2)).await {
            tracing::warn!("other servers may not hear of this command's changes until their caches age out");
        }
        self.store.pool().close().await;
        if let Some(pg) = self.embedded {
            match pg.stop().await {
                Ok(true) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(false) => tracing::debug!("embedded PostgreSQL left running for the process that started it"),
                Err(err) => tracing::warn!(%err, "stopping the embedded PostgreSQL"),
            }
        }
    }
}
