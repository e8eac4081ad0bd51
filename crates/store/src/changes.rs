//! Read caches that stay correct across processes.
//!
//! Triggers (migration 0005) `NOTIFY` on every committed change to the inventory
//! or to API tokens. One `LISTEN` connection per server bumps a generation
//! counter per [`Topic`]; writes made through this [`Store`](crate::Store) bump it
//! themselves before they return, so a client always reads its own writes.
//! A cached value is served only while the generation it was read under is
//! still current and the listener is connected: while it is not (not started,
//! or reconnecting), nothing is cached and every read goes to PostgreSQL.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The channel the inventory triggers notify (organizations, factories, gateways).
pub const INVENTORY_CHANNEL: &str = "inventory_changed";
/// The channel the `api_tokens` trigger notifies (create, revoke, role change).
pub const API_TOKENS_CHANNEL: &str = "api_tokens_changed";

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Inventory,
    ApiTokens,
}

/// Generation counters, one per topic, and whether changes made elsewhere are
/// being heard.
#[derive(Debug, Default)]
pub struct ChangeFeed {
    listening: AtomicBool,
    inventory: AtomicU64,
    api_tokens: AtomicU64,
}

impl ChangeFeed {
    fn counter(&self, topic: Topic) -> &AtomicU64 {
        match topic {
            Topic::Inventory => &self.inventory,
            Topic::ApiTokens => &self.api_tokens,
        }
    }

    /// The topic's current generation; `None` while changes made by other
    /// processes could go unheard, when nothing may be cached.
    pub fn generation(&self, topic: Topic) -> Option<u64> {
        // Read the counter first: a listener that stops in between bumps it, so a
        // value cached under this generation is never served.
        let generation = self.counter(topic).load(Ordering::Acquire);
        self.listening.load(Ordering::Acquire).then_some(generation)
    }

    /// Marks everything read before now as stale.
    pub fn bump(&self, topic: Topic) {
        self.counter(topic).fetch_add(1, Ordering::AcqRel);
    }

    fn bump_all(&self) {
        self.bump(Topic::Inventory);
        self.bump(Topic::ApiTokens);
    }

    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Release);
        // Whatever was cached on either side of this edge may have missed a change.
        self.bump_all();
    }
}

/// Listens for change notifications until the pool is closed, reconnecting
/// with a short delay when the connection drops.
pub(crate) async fn listen(pool: PgPool, feed: Arc<ChangeFeed>) {
    const RETRY: Duration = Duration::from_secs(1);
    while !pool.is_closed() {
        match connect_listener(&pool).await {
            Ok(mut listener) => {
                feed.set_listening(true);
                tracing::debug!("listening for inventory and token changes");
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => match notification.channel() {
                            INVENTORY_CHANNEL => feed.bump(Topic::Inventory),
                            API_TOKENS_CHANNEL => feed.bump(Topic::ApiTokens),
                            _ => {}
                        },
                        // `None`: the connection was lost; notifications may be missed.
                        Ok(None) => break,
                        Err(err) => {
                            tracing::warn!(%err, "change listener failed; reads bypass the caches until it reconnects");
                            break;
                        }
                    }
                }
                feed.set_listening(false);
            }
            Err(err) => {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(%err, "cannot listen for changes; reads bypass the caches");
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Holds one of the pool's connections for as long as it listens.
async fn connect_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([INVENTORY_CHANNEL, API_TOKENS_CHANNEL]).await?;
    Ok(listener)
}

/// Recent results of one kind of read, each tagged with the generation it was
/// read under. Bounded: when full, it starts over (hot keys come back at once).
pub(crate) struct ReadCache<K, V> {
    topic: Topic,
    entries: Mutex<HashMap<K, (u64, V)>>,
}

// A page holds at most 100 rows (~50 KB): this bounds a cache at about 13 MB.
const READ_CACHE_MAX_ENTRIES: usize = 256;

impl<K: Hash + Eq, V: Clone> ReadCache<K, V> {
    pub(crate) fn new(topic: Topic) -> Self {
        Self {
            topic,
            entries: Mutex::default(),
        }
    }

    /// The cached value for `key` if it is current, else `read()`'s result, which
    /// is kept when no change happened while it ran.
    pub(crate) async fn get_or_read<E, F>(&self, feed: &ChangeFeed, key: K, read: F) -> Result<V, E>
    where
        F: std::future::Future<Output = Result<V, E>>,
    {
        let Some(generation) = feed.generation(self.topic) else {
            return read.await;
        };
        if let Some((at, value)) = self.entries.lock().expect("read cache lock").get(&key) {
            if *at == generation {
                return Ok(value.clone());
            }
        }
        let value = read.await?;
        // Tagged with the generation from before the read: if anything changed
        // meanwhile, the tag is already stale and the entry is never served.
        let mut entries = self.entries.lock().expect("read cache lock");
        if entries.len() >= READ_CACHE_MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (generation, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[tokio::test]
    async fn nothing_is_cached_while_not_listening() {
        let feed = ChangeFeed::default();
        let cache = ReadCache::new(Topic::Inventory);
        let first: Result<u32, Infallible> = cache.get_or_read(&feed, 1, async { Ok(10) }).await;
        let second: Result<u32, Infallible> = cache.get_or_read(&feed, 1, async { Ok(20) }).await;
        assert_eq!((first.unwrap(), second.unwrap()), (10, 20));
    }

    #[tokio::test]
    async fn a_value_is_served_until_its_topic_changes() {
        let feed = ChangeFeed::default();
        feed.set_listening(true);
        let cache = ReadCache::new(Topic::Inventory);
        let read = |v: u32| async move { Ok::<_, Infallible>(v) };
        assert_eq!(cache.get_or_read(&feed, 1, read(10)).await.unwrap(), 10);
        assert_eq!(
            cache.get_or_read(&feed, 1, read(20)).await.unwrap(),
            10,
            "served from the cache"
        );
        feed.bump(Topic::ApiTokens);
        assert_eq!(
            cache.get_or_read(&feed, 1, read(30)).await.unwrap(),
            10,
            "another topic changed"
        );
        feed.bump(Topic::Inventory);
        assert_eq!(
            cache.get_or_read(&feed, 1, read(40)).await.unwrap(),
            40,
            "read again after a change"
        );
        feed.set_listening(false);
        assert_eq!(
            cache.get_or_read(&feed, 1, read(50)).await.unwrap(),
            50,
            "bypassed while deaf"
        );
    }

    #[tokio::test]
    async fn a_change_during_a_read_keeps_its_result_from_being_served_later() {
        let feed = ChangeFeed::default();
        feed.set_listening(true);
        let cache = ReadCache::new(Topic::Inventory);
        let value = cache
            .get_or_read(&feed, 1, async {
                feed.bump(Topic::Inventory); // a write commits while the query runs
                Ok::<_, Infallible>(10)
            })
            .await
            .unwrap();
        assert_eq!(value, 10);
        let again = cache.get_or_read(&feed, 1, async { Ok::<_, Infallible>(20) }).await;
        assert_eq!(again.unwrap(), 20);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let feed = ChangeFeed::default();
        feed.set_listening(true);
        let cache: ReadCache<u32, u32> = ReadCache::new(Topic::Inventory);
        assert!(cache.get_or_read(&feed, 1, async { Err("down") }).await.is_err());
        assert_eq!(
            cache.get_or_read(&feed, 1, async { Ok::<_, &str>(7) }).await.unwrap(),
            7
        );
    }
}
