//! This instance's part in a fleet shared by several instances (see `store::fleet` for
//! the leases themselves).
//!
//! - A coordination round every [`HEARTBEAT_INTERVAL`] (or at once when woken: a lease
//!   change announced, an inventory change) renews the heartbeat and applies the leases
//!   it returns: connect what is newly held, close what was lost, close and then pass on
//!   what is to be handed over.
//! - A watchdog closes every connection once the heartbeat could not be renewed for
//!   [`FENCE_AFTER`] of the lease time, before anyone else may take the leases over,
//!   unless this instance was alone: then nobody can, and its gateways stay connected
//!   through a database outage.
//! - One listener hears the fleet channel (lease changes, live records of the gateways
//!   others hold, reading progress, commands for a holder) and inventory changes made
//!   by other processes.
//! - Messages go out in order through one bounded outbox.

use crate::{fresh_record, store_failure, Inner, Orchestrator};
use chrono::{DateTime, Utc};
use domain::live::{GatewayLive, LiveEvent, ReadingProgress, ReadingStage};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use store::{ConnectionChange, InventoryObserver, Lease, Round, Store, StoreError, INVENTORY_CHANNEL};
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

/// How long a heartbeat keeps an instance's leases. An instance that dies is replaced
/// after at most this long plus one [`HEARTBEAT_INTERVAL`].
pub const LEASE_TIME: Duration = Duration::from_secs(8);

/// How often an instance renews its heartbeat and coordinates.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Share of the lease time without a renewed heartbeat after which an instance closes
/// its connections (a clean close takes up to ~2 s; the rest is margin).
const FENCE_AFTER: f64 = 0.6;

/// How long a coordination round may take before it counts as failed.
const ROUND_TIMEOUT: Duration = Duration::from_secs(4);

/// Every this many rounds, one also balances (in case a wake-up was missed).
const BALANCE_EVERY: u64 = 5;

/// Gateway ids per live announcement (a NOTIFY payload holds under 8,000 bytes).
pub const IDS_PER_MESSAGE: usize = 150;

/// Messages waiting to be sent before new ones are dropped.
const OUTBOX: usize = 4096;

/// Inventory changes heard from other processes are applied at most this often.
const RESYNC_DEBOUNCE: Duration = Duration::from_millis(100);

/// A full comparison with the inventory, in case a notification was lost.
const FULL_RESYNC_EVERY: Duration = Duration::from_secs(60);

/// What instances tell each other on the fleet channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// Leases changed: coordinate now.
    Leases,
    /// The holder published these gateways' live records.
    Live { from: Uuid, ids: Vec<Uuid> },
    /// A reading's progress, from the instance taking it.
    Reading { from: Uuid, progress: ReadingProgress },
    /// For the holder: reconnect this gateway now.
    Connect { to: Uuid, gateway: Uuid },
    /// For the holder: take this reading (already stored as requested).
    TakeReading {
        to: Uuid,
        gateway: Uuid,
        serial: u64,
        reading: Uuid,
    },
}

/// This instance's view of its leases and of its link to the fleet.
pub struct FleetState {
    leases: Mutex<HashMap<Uuid, Lease>>,
    round: Mutex<RoundState>,
    wake: Arc<Notify>,
    resync: Arc<Notify>,
    /// Dropped with the orchestrator: the background tasks, which hold it only weakly
    /// while they wait, see the channel close and end.
    alive: watch::Sender<()>,
    stopped: AtomicBool,
    alone: AtomicBool,
    fenced: AtomicBool,
    outbox: Mutex<Option<mpsc::Sender<Message>>>,
}

#[derive(Default)]
struct RoundState {
    known_version: Option<i64>,
    sync_gateways: bool,
    balance: bool,
    rounds: u64,
    /// When the last successful round started, and since when rounds keep succeeding.
    last_ok: Option<Instant>,
    ok_since: Option<Instant>,
    /// The database time up to which other processes' inventory changes were applied.
    synced_until: Option<DateTime<Utc>>,
}

impl Default for FleetState {
    fn default() -> Self {
        Self {
            leases: Mutex::default(),
            round: Mutex::new(RoundState {
                sync_gateways: true,
                balance: true,
                ..Default::default()
            }),
            wake: Arc::default(),
            resync: Arc::default(),
            alive: watch::channel(()).0,
            stopped: AtomicBool::new(false),
            alone: AtomicBool::new(true),
            fenced: AtomicBool::new(false),
            outbox: Mutex::default(),
        }
    }
}

impl FleetState {
    /// The fencing number of this instance's lease on `gateway`, unless it is handing it over.
    pub fn lease_of(&self, gateway: Uuid) -> Option<i64> {
        let leases = self.leases.lock().expect("leases lock");
        leases.get(&gateway).filter(|l| !l.handing_over).map(|l| l.fence)
    }

    /// Whether the last round found no other live instance.
    pub fn is_alone(&self) -> bool {
        self.alone.load(Ordering::Acquire)
    }

    /// The inventory changed: leases must follow (new gateways, deleted ones).
    pub fn inventory_changed(&self) {
        self.round.lock().expect("round lock").sync_gateways = true;
        self.wake.notify_one();
    }

    fn wake_to_balance(&self) {
        self.round.lock().expect("round lock").balance = true;
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn round_state(&self) -> std::sync::MutexGuard<'_, RoundState> {
        self.round.lock().expect("round lock")
    }
}

/// Sends `message` to every instance, after what was sent before it.
pub fn tell(inner: &Inner, message: Message) {
    let outbox = inner.fleet.outbox.lock().expect("outbox lock").clone();
    let sent = outbox.is_some_and(|outbox| outbox.try_send(message).is_ok());
    if !sent {
        inner.metrics.fleet_messages_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Creates the outbox: messages put in it are sent in order by a task of their own.
pub fn outbox(store: &Store) -> mpsc::Sender<Message> {
    let (sender, mut messages) = mpsc::channel::<Message>(OUTBOX);
    let store = store.clone();
    tokio::spawn(async move {
        while let Some(message) = messages.recv().await {
            let Ok(payload) = serde_json::to_string(&message) else {
                continue;
            };
            if let Err(err) = store.tell_fleet(&payload).await {
                tracing::debug!(%err, "telling the fleet");
            }
        }
    });
    sender
}

/// Loads the inventory and the others' live records, coordinates once (so a lone instance
/// connects its gateways at once), then keeps coordinating and listening. Returns the
/// number of gateways.
pub async fn start(orchestrator: &Orchestrator, outbox: mpsc::Sender<Message>) -> Result<usize, StoreError> {
    let inner = &orchestrator.inner;
    *inner.fleet.outbox.lock().expect("outbox lock") = Some(outbox);
    let count = resync_inventory(inner, true).await?;
    let records = inner.store.live_records(None).await?;
    apply_mirror(inner, records);
    round(inner, true).await;
    let weak = Arc::downgrade(inner);
    tokio::spawn(coordinate(weak.clone()));
    tokio::spawn(watchdog(weak.clone()));
    tokio::spawn(listen(weak.clone()));
    tokio::spawn(resynchronise(weak));
    Ok(count)
}

/// A clean stop: after every connection here is closed, the leases are freed at once.
pub async fn leave(inner: &Inner) {
    match inner.store.leave_fleet(inner.instance).await {
        Ok(()) => {
            if let Ok(payload) = serde_json::to_string(&Message::Leases) {
                let _ = inner.store.tell_fleet(&payload).await;
            }
        }
        Err(err) => tracing::warn!(%err, "leaving the fleet; the others take over once the lease expires"),
    }
}

async fn coordinate(inner: Weak<Inner>) {
    let Some((every, wake, mut alive)) = inner.upgrade().map(|i| {
        (
            i.config.heartbeat_interval,
            i.fleet.wake.clone(),
            i.fleet.alive.subscribe(),
        )
    }) else {
        return;
    };
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
            _ = alive.changed() => return,
        }
        let Some(strong) = inner.upgrade() else { return };
        if strong.fleet.is_stopped() {
            return;
        }
        round(&strong, false).await;
    }
}

/// One coordination round; see the module documentation.
async fn round(inner: &Arc<Inner>, at_start_up: bool) {
    let started = Instant::now();
    let (sync_gateways, balance, known_version, may_expire) = {
        let mut state = inner.fleet.round_state();
        state.rounds += 1;
        let balance = std::mem::take(&mut state.balance) || state.rounds.is_multiple_of(BALANCE_EVERY);
        let may_expire = state
            .ok_since
            .is_some_and(|since| since.elapsed() >= inner.config.lease_time);
        (
            std::mem::take(&mut state.sync_gateways),
            balance,
            state.known_version,
            may_expire,
        )
    };
    let address = inner.config.instance_address.clone();
    let request = Round {
        instance: inner.instance,
        address: &address,
        started_at: inner.started_at,
        lease_time: inner.config.lease_time,
        may_expire,
        sync_gateways,
        balance,
        known_version,
    };
    let outcome = tokio::time::timeout(ROUND_TIMEOUT, inner.store.coordinate(&request)).await;
    match outcome {
        Ok(Ok(outcome)) => {
            {
                let mut state = inner.fleet.round_state();
                state.last_ok = Some(started);
                state.ok_since.get_or_insert(started);
                if outcome.leases.is_some() {
                    state.known_version = Some(outcome.leases_version);
                }
            }
            inner.fleet.alone.store(outcome.instances <= 1, Ordering::Release);
            if let Some(leases) = outcome.leases {
                inner.fleet.fenced.store(false, Ordering::Release);
                apply_leases(inner, leases, at_start_up).await;
            }
            if outcome.others_changed {
                tell(inner, Message::Leases);
            }
        }
        failed => {
            let mut state = inner.fleet.round_state();
            state.ok_since = None;
            state.sync_gateways |= sync_gateways;
            state.balance |= balance;
            match failed {
                Ok(Err(err)) => tracing::warn!(%err, "fleet coordination failed"),
                _ => tracing::warn!("fleet coordination timed out"),
            }
        }
    }
}

/// Closes every connection once the heartbeat is too old for the leases to be trusted.
async fn watchdog(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.fleet.is_stopped() {
            return;
        }
        let last_ok = inner.fleet.round_state().last_ok;
        let stale = last_ok.is_some_and(|at| at.elapsed() >= inner.config.lease_time.mul_f64(FENCE_AFTER));
        if stale && !inner.fleet.is_alone() && !inner.fleet.fenced.swap(true, Ordering::AcqRel) {
            tracing::warn!("the heartbeat could not be renewed: closing every connection before the leases expire");
            inner.fleet.round_state().known_version = None;
            apply_leases(&inner, Vec::new(), false).await;
        }
    }
}

/// Makes the connections here follow `leases`, this instance's complete set.
async fn apply_leases(inner: &Arc<Inner>, leases: Vec<Lease>, at_start_up: bool) {
    let held: HashMap<Uuid, Lease> = leases.into_iter().map(|l| (l.gateway, l)).collect();
    *inner.fleet.leases.lock().expect("leases lock") = held.clone();
    let orchestrator = Orchestrator { inner: inner.clone() };
    let mut acquired = Vec::new();
    let mut to_close = Vec::new();
    let mut handing_over = Vec::new();
    let mut published = Vec::new();
    let mut released = Vec::new();
    let mut unknown = false;
    {
        let mut registry = inner.registry.write().expect("registry lock");
        unknown |= held.keys().any(|id| !registry.contains_key(id));
        for (id, entry) in registry.iter_mut() {
            match held.get(id) {
                Some(lease) if !lease.handing_over && entry.lease != Some(lease.fence) => {
                    if entry.lease.is_none() {
                        acquired.push(*id);
                    }
                    orchestrator.take_lease(entry, lease.fence, at_start_up);
                    published.push((fresh_record(entry), entry.lease));
                }
                Some(lease) if !lease.handing_over => {}
                Some(_) => {
                    if let Some(supervised) = entry.supervisor.take() {
                        to_close.push(supervised.handle);
                    }
                    handing_over.push(*id);
                }
                None if entry.lease.is_some() => {
                    entry.lease = None;
                    entry.live.owner = None;
                    released.push(*id);
                    if let Some(supervised) = entry.supervisor.take() {
                        to_close.push(supervised.handle);
                    }
                    published.push((fresh_record(entry), None));
                }
                None => {}
            }
        }
    }
    for (record, lease) in published {
        inner.publish_gateway(record, lease);
    }
    // A gateway this instance no longer holds shows what its new holder published, not
    // this instance's last state: while it held the lease it did not mirror the records
    // the new holder may already have published (after a database outage both can have
    // been at work), and the holder publishes again only when something changes.
    if !released.is_empty() {
        match inner.store.live_records(Some(&released)).await {
            Ok(records) => apply_mirror(inner, records),
            Err(err) => {
                tracing::debug!(%err, "reading the records of gateways let go");
                inner.fleet.resync.notify_one();
            }
        }
    }
    if unknown {
        inner.fleet.resync.notify_one();
    }
    if !acquired.is_empty() {
        fail_readings_left_behind(inner, &acquired).await;
    }
    if to_close.is_empty() && handing_over.is_empty() {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        crate::futures_join_all(to_close.into_iter().map(|handle| handle.shutdown())).await;
        if handing_over.is_empty() {
            return;
        }
        match inner.store.hand_over(inner.instance, &handing_over).await {
            Ok(moved) => {
                tracing::info!(gateways = moved, "handed gateways over to balance the fleet");
                tell(&inner, Message::Leases);
            }
            Err(err) => {
                tracing::warn!(%err, "handing gateways over; retrying next round");
                inner.fleet.round_state().known_version = None;
            }
        }
    });
}

/// Readings left `requested` or `started` on gateways just taken over were being taken by
/// their previous holder, which went away: nobody will finish them.
async fn fail_readings_left_behind(inner: &Arc<Inner>, gateways: &[Uuid]) {
    let in_flight: Vec<Uuid> = inner
        .readings_in_flight
        .lock()
        .expect("in-flight lock")
        .iter()
        .copied()
        .collect();
    let reason = "the server taking the reading stopped before it finished";
    match inner
        .store
        .fail_unfinished_readings_of(gateways, &in_flight, reason)
        .await
    {
        Ok(ended) => inner.abandoned(ended, reason),
        Err(err) => tracing::warn!(%err, "ending readings a former holder left"),
    }
}

/// Mirrors live records published by the holders of gateways held elsewhere.
fn apply_mirror(inner: &Inner, records: Vec<(Uuid, i64, serde_json::Value)>) {
    let mut published = Vec::new();
    {
        let mut registry = inner.registry.write().expect("registry lock");
        for (id, version, value) in records {
            let Some(entry) = registry.get_mut(&id) else { continue };
            if entry.lease.is_some() || version <= entry.mirror_version {
                continue;
            }
            let Ok(mut record) = serde_json::from_value::<GatewayLive>(value) else {
                continue;
            };
            entry.mirror_version = version;
            // The inventory here is as current as the holder's.
            record.name = entry.gateway.name.clone();
            record.gateway_id = entry.gateway.gateway_id.clone();
            record.factory_id = entry.gateway.factory_id;
            entry.live = record;
            published.push(fresh_record(entry));
        }
    }
    for record in published {
        inner.stream.publish(LiveEvent::Gateway { gateway: record });
    }
}

/// Listens on the fleet channel and for other processes' inventory changes, reconnecting
/// (and catching up on everything) when the connection drops.
async fn listen(inner: Weak<Inner>) {
    let Some((origin, mut alive)) = inner
        .upgrade()
        .map(|i| (i.store.changes().origin().to_owned(), i.fleet.alive.subscribe()))
    else {
        return;
    };
    loop {
        // Held only while connecting: this task must not keep the store (and its pool) open.
        let Some(store) = inner.upgrade().map(|i| i.store.clone()) else {
            return;
        };
        if inner.upgrade().is_none_or(|i| i.fleet.is_stopped()) {
            return;
        }
        let mut listener = match store.listen_to_fleet().await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::debug!(%err, "cannot listen to the fleet yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Whatever was said while not listening is caught up on.
        if let Some(inner) = inner.upgrade() {
            inner.fleet.round_state().synced_until = None;
            inner.fleet.resync.notify_one();
            if let Ok(records) = inner.store.live_records(None).await {
                apply_mirror(&inner, records);
            }
            inner.fleet.wake_to_balance();
        }
        drop(store);
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                _ = alive.changed() => return,
            };
            let notification = match received {
                Ok(Some(notification)) => notification,
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(%err, "fleet listener failed; reconnecting");
                    break;
                }
            };
            let Some(inner) = inner.upgrade() else { return };
            if notification.channel() == INVENTORY_CHANNEL {
                if notification.payload() != origin {
                    inner.fleet.resync.notify_one();
                }
                continue;
            }
            match serde_json::from_str::<Message>(notification.payload()) {
                Ok(message) => heard(&inner, message).await,
                Err(err) => tracing::debug!(%err, "unreadable fleet message"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn heard(inner: &Arc<Inner>, message: Message) {
    let me = inner.instance;
    match message {
        Message::Leases => inner.fleet.wake_to_balance(),
        Message::Live { from, ids } if from != me => match inner.store.live_records(Some(&ids)).await {
            Ok(records) => apply_mirror(inner, records),
            Err(err) => tracing::debug!(%err, "reading published live records"),
        },
        Message::Reading { from, progress } if from != me => {
            inner.stream.publish(LiveEvent::Reading { reading: progress });
        }
        Message::Connect { to, gateway } if to == me => {
            let registry = inner.registry.read().expect("registry lock");
            if let Some(supervised) = registry.get(&gateway).and_then(|e| e.supervisor.as_ref()) {
                supervised.handle.reconnect();
            }
        }
        Message::TakeReading {
            to,
            gateway,
            serial,
            reading,
        } if to == me => {
            let (refused, factory_id) = {
                let registry = inner.registry.read().expect("registry lock");
                match registry.get(&gateway) {
                    Some(entry) if entry.supervisor.is_some() => (
                        crate::readable_sensor(entry, serial).err().map(|e| e.message),
                        entry.gateway.factory_id,
                    ),
                    Some(entry) => (
                        Some("this instance no longer holds the gateway".into()),
                        entry.gateway.factory_id,
                    ),
                    None => (Some("the gateway is not known".into()), Uuid::nil()),
                }
            };
            match refused {
                None => Orchestrator { inner: inner.clone() }.take_reading(gateway, serial, reading),
                Some(error) => {
                    store_failure(inner, reading, error.clone()).await;
                    inner.reading_reached(reading, gateway, factory_id, serial, ReadingStage::Failed, Some(error));
                }
            }
        }
        _ => {}
    }
}

/// Applies other processes' inventory changes when told of them (debounced), and compares
/// with the whole inventory now and then.
async fn resynchronise(inner: Weak<Inner>) {
    let Some((resync, mut alive)) = inner
        .upgrade()
        .map(|i| (i.fleet.resync.clone(), i.fleet.alive.subscribe()))
    else {
        return;
    };
    let mut last_full = Instant::now();
    loop {
        let woken = tokio::select! {
            woken = tokio::time::timeout(FULL_RESYNC_EVERY, resync.notified()) => woken,
            _ = alive.changed() => return,
        };
        tokio::time::sleep(RESYNC_DEBOUNCE).await;
        let Some(strong) = inner.upgrade() else { return };
        if strong.fleet.is_stopped() {
            return;
        }
        let full = woken.is_err() || last_full.elapsed() >= FULL_RESYNC_EVERY;
        if full {
            last_full = Instant::now();
        }
        if let Err(err) = resync_inventory(&strong, full).await {
            tracing::debug!(%err, "catching up on inventory changes");
            strong.fleet.round_state().synced_until = None;
        }
    }
}

/// Brings the registry in line with the stored inventory: everything when `full` (or when
/// nothing was read yet), else what changed since the last time. Returns the gateways read.
async fn resync_inventory(inner: &Arc<Inner>, full: bool) -> Result<usize, StoreError> {
    let since = {
        let state = inner.fleet.round_state();
        if full {
            None
        } else {
            // Overlap: a transaction that began before the last read may have committed after it.
            state.synced_until.map(|at| at - chrono::Duration::seconds(5))
        }
    };
    let (rows, now) = inner.store.gateways_changed_since(since).await?;
    let count = rows.len();
    let orchestrator = Orchestrator { inner: inner.clone() };
    let mut seen = HashSet::new();
    let mut deleted = Vec::new();
    let mut added = false;
    for (gateway, is_deleted, login_version) in rows {
        let known = {
            let registry = inner.registry.read().expect("registry lock");
            registry.get(&gateway.id).map(|e| (e.gateway.clone(), e.login_version))
        };
        if is_deleted {
            if known.is_some() {
                deleted.push(gateway.id);
            }
            continue;
        }
        seen.insert(gateway.id);
        match known {
            None => {
                orchestrator.add(gateway, login_version);
                added = true;
            }
            Some((old, old_login)) if old.updated_at != gateway.updated_at => {
                let change = ConnectionChange {
                    enabled: old.enabled != gateway.enabled,
                    credentials: old.url != gateway.url || old.email != gateway.email || old_login != login_version,
                };
                orchestrator.apply_update(&gateway, change, Some(login_version), false);
            }
            Some(_) => {}
        }
    }
    if since.is_none() {
        let registry = inner.registry.read().expect("registry lock");
        deleted.extend(registry.keys().filter(|id| !seen.contains(id)).copied());
    }
    if !deleted.is_empty() {
        orchestrator.gateways_deleted(&deleted);
    }
    if added {
        inner.fleet.inventory_changed();
    }
    inner.fleet.round_state().synced_until = Some(now);
    Ok(count)
}
