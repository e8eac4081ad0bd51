//! Read caches that stay correct across processes.
//!
//! Every write through a [`Store`](crate::Store) bumps a generation counter per
//! [`Topic`] once it has committed, before it returns, so a client always reads
//! its own writes. Other processes (another server, the CLI) hear of it through
//! one `NOTIFY` sent *after* the commit by a [`Notifier`] task, which coalesces
//! the changes of many writes into one notification per topic: a notification
//! sent inside the writing transaction would make PostgreSQL serialise the
//! commits of every writer (it holds a global lock from the notifying commit's
//! pre-commit to its end), which capped writes at a fifth of what PostgreSQL does.
//! One `LISTEN` connection per server bumps the counters on every notification
//! from another process.
//!
//! A cached value is served only while the generation it was read under is
//! still current and the listener is connected: while it is not (not started,
//! or reconnecting), nothing is cached and every read goes to PostgreSQL. A
//! writer that dies between its commit and its notification leaves the others'
//! caches stale; [`CACHE_MAX_AGE`] bounds that. Writes made with plain SQL,
//! outside any `Store`, must `NOTIFY inventory_changed` (or `api_tokens_changed`)
//! themselves.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use uuid::Uuid;

/// The channel changes to the inventory are announced on (organizations, factories, gateways).
pub const INVENTORY_CHANNEL: &str = "inventory_changed";
/// The channel changes to API tokens are announced on (create, revoke, role change).
pub const API_TOKENS_CHANNEL: &str = "api_tokens_changed";

/// The shortest time between two notifications of a topic: under a steady stream of
/// writes, one notification stands for all those of its interval (a NOTIFY costs
/// PostgreSQL a statement, a commit under its notify lock, and a message to every
/// listener), and other servers still hear of a change within this long.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(10);

/// The longest a cached read is served, however quiet the change feed: a bound on
/// how long a notification lost with its writer (a crash right after a commit) can
/// leave a cache stale.
pub const CACHE_MAX_AGE: Duration = Duration::from_secs(30);

impl Topic {
    fn channel(self) -> &'static str {
        match self {
            Topic::Inventory => INVENTORY_CHANNEL,
            Topic::ApiTokens => API_TOKENS_CHANNEL,
        }
    }

    const ALL: [Topic; 2] = [Topic::Inventory, Topic::ApiTokens];
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Inventory,
    ApiTokens,
}

/// Generation counters, one per topic, whether changes made elsewhere are being
/// heard, and the changes made here that other processes have not been told of.
#[derive(Debug)]
pub struct ChangeFeed {
    listening: AtomicBool,
    inventory: AtomicU64,
    api_tokens: AtomicU64,
    /// Names this process in its notifications, so its listener skips its own.
    origin: String,
    unannounced: [AtomicBool; 2],
    announce: Notify,
    /// Writes committed here, and how many of them other processes have been told of.
    committed: AtomicU64,
    announced: AtomicU64,
    /// Every `Store` sharing this feed is gone: the announcer ends.
    closed: AtomicBool,
    /// Changes heard of per topic (writes here, notifications from elsewhere), not
    /// counting the listener's connects and disconnects that `generation` also counts.
    heard: [AtomicU64; 2],
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self {
            listening: AtomicBool::new(false),
            inventory: AtomicU64::new(0),
            api_tokens: AtomicU64::new(0),
            origin: Uuid::new_v4().simple().to_string(),
            unannounced: [AtomicBool::new(false), AtomicBool::new(false)],
            announce: Notify::new(),
            committed: AtomicU64::new(0),
            announced: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            heard: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }
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

    /// A change to `topic`, made here or heard of: stale, and counted in [`Self::heard`].
    fn changed(&self, topic: Topic) {
        self.heard[topic as usize].fetch_add(1, Ordering::AcqRel);
        self.bump(topic);
    }

    /// How many changes of `topic` this process has made or heard of. Unlike the
    /// generation it does not move when the listener reconnects, so a value read under
    /// it is known to be as current as anything this process knows of, for use while
    /// the database cannot be asked.
    pub fn heard(&self, topic: Topic) -> u64 {
        self.heard[topic as usize].load(Ordering::Acquire)
    }

    /// A write through this process committed: stale here at once, and other
    /// processes are told by the notifier (coalesced with other writes).
    pub(crate) fn committed(&self, topic: Topic) {
        self.changed(topic);
        self.unannounced[topic as usize].store(true, Ordering::Release);
        self.committed.fetch_add(1, Ordering::AcqRel);
        self.announce.notify_one();
    }

    /// Whether every write committed here has been announced to other processes.
    pub fn all_announced(&self) -> bool {
        self.announced.load(Ordering::Acquire) >= self.committed.load(Ordering::Acquire)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.announce.notify_one();
    }

    fn bump_all(&self) {
        self.bump(Topic::Inventory);
        self.bump(Topic::ApiTokens);
    }

    /// What this process's notifications carry, so its listeners can skip their own.
    pub fn origin(&self) -> &str {
        &self.origin
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

/// Tells other processes about the changes committed here, one `NOTIFY` per topic
/// for however many writes committed since the last one, until the pool closes.
pub(crate) async fn announce(pool: PgPool, feed: Arc<ChangeFeed>) {
    const RETRY_MAX: Duration = Duration::from_secs(2);
    let mut retry = ANNOUNCE_INTERVAL;
    loop {
        let last_round = feed.closed.load(Ordering::Acquire) || pool.is_closed();
        if !last_round && feed.all_announced() {
            feed.announce.notified().await;
        }
        // Read first: writes counted here committed before the flags below were taken.
        let committed = feed.committed.load(Ordering::Acquire);
        let mut failed = false;
        for topic in Topic::ALL {
            if !feed.unannounced[topic as usize].swap(false, Ordering::AcqRel) {
                continue;
            }
            // Autocommit: this statement's own commit takes PostgreSQL's notify lock,
            // once for every write that committed while the previous one was sent.
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(topic.channel())
                .bind(&feed.origin)
                .execute(&pool)
                .await;
            if let Err(err) = sent {
                // Kept for the next round; meanwhile others' caches still age out.
                feed.unannounced[topic as usize].store(true, Ordering::Release);
                tracing::warn!(%err, channel = topic.channel(), "could not announce a change; retrying");
                failed = true;
            }
        }
        if last_round {
            return;
        }
        if failed {
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
            continue;
        }
        retry = ANNOUNCE_INTERVAL;
        feed.announced.fetch_max(committed, Ordering::AcqRel);
        tokio::time::sleep(ANNOUNCE_INTERVAL).await;
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
                        // Our own announcements: already bumped when the write committed.
                        Ok(Some(notification)) if notification.payload() == feed.origin => {}
                        Ok(Some(notification)) => match notification.channel() {
                            INVENTORY_CHANNEL => feed.changed(Topic::Inventory),
                            API_TOKENS_CHANNEL => feed.changed(Topic::ApiTokens),
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
/// read under and when. Bounded: when full, it starts over (hot keys come back at once).
pub(crate) struct ReadCache<K, V> {
    topic: Topic,
    entries: Mutex<HashMap<K, (u64, Instant, V)>>,
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
        if let Some((read_under, at, value)) = self.entries.lock().expect("read cache lock").get(&key) {
            if *read_under == generation && at.elapsed() < CACHE_MAX_AGE {
                return Ok(value.clone());
            }
        }
        let read_at = Instant::now();
        let value = read.await?;
        // Tagged with the generation from before the read: if anything changed
        // meanwhile, the tag is already stale and the entry is never served.
        let mut entries = self.entries.lock().expect("read cache lock");
        if entries.len() >= READ_CACHE_MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (generation, read_at, value.clone()));
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
