//! The fleet: one supervised connection (a [`ctc::GatewaySupervisor`]) per active,
//! enabled gateway, and the registry that is the single source of truth for each
//! gateway's live state.
//!
//! - Inventory changes arrive through [`store::InventoryObserver`] (the store calls
//!   it after every committed change), so every door (API, web app, CLI) is covered.
//! - Supervisor events go through one recorder task, which updates the registry,
//!   publishes to the [`stream::LiveStream`] and hands persistence to a writer task
//!   (events, sensors, readings, batched `last_seen_at`), so a slow database never
//!   stalls a connection.
//! - Handshakes in progress are bounded by a semaphore and first connections are
//!   spread over a jittered start, so a large fleet comes up without a storm.
//! - Several instances share the fleet through PostgreSQL ([`fleet`]): each connects the
//!   gateways whose leases it holds and mirrors the live state the others publish, so
//!   any instance answers for every gateway.

mod fleet;
mod schedule;
pub mod stream;
mod writer;

use chrono::{DateTime, Utc};
use ctc::{
    Credentials, CredentialsProvider, GatewayCommand, GatewayEvent, GatewayState, GatewayStatus, GatewaySupervisor,
    Serial, SupervisorConfig,
};
use domain::error::ErrorCode;
use domain::live::{ConnectionState, GatewayLive, LiveCounters, LiveEvent, ReadingProgress, ReadingStage, SensorLive};
use domain::{AppError, Gateway};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use store::{ConnectionChange, InventoryObserver, NewReading, Store};
use stream::{LiveStream, Resume, Sequenced};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;
use writer::WriteJob;

/// Persistence jobs queued before new ones are dropped (and counted in `writes_dropped`).
/// This is also what is kept while PostgreSQL is unreachable: about 50 events for each of
/// 1,000 gateways, written in order once it is back.
pub const WRITE_QUEUE: usize = 65_536;

/// Readings whose samples may wait for the writer at once (a 3 × 6,400-sample reading is
/// about 77 KB): beyond this, while the database is far behind, a reading fails as not
/// stored rather than growing memory without bound.
pub const READINGS_WAITING_TO_BE_STORED: usize = 256;

/// How long a connection attempt waits for the stored credentials when it has others
/// to fall back on (the database may be down, and the attempt holds a handshake slot).
const CREDENTIALS_WAIT: Duration = Duration::from_secs(2);

pub use fleet::{HEARTBEAT_INTERVAL, LEASE_TIME};

#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// Connection handshakes (connect + login) in progress at once.
    pub max_handshakes: usize,
    /// First connections at start-up are spread randomly over this long.
    pub start_spread: Duration,
    /// How often `last_seen_at` is written for every online gateway (one statement).
    pub last_seen_interval: Duration,
    pub event_retention: Duration,
    pub reading_retention: Duration,
    /// Finished readings of each sensor kept past `reading_retention` (the newest).
    pub readings_kept_per_sensor: u32,
    /// Client protocol settings (timeouts, liveness) and reconnect backoff.
    pub client: ctc::ClientConfig,
    pub backoff: ctc::BackoffConfig,
    /// Events a stream client may fall behind before it is dropped.
    pub stream_client_buffer: usize,
    /// Events kept for `Last-Event-ID` resumption.
    pub stream_history: usize,
    /// A reading still `requested` or `started` this long after it was requested, and not
    /// being taken by this process, was left behind (its result lost, or the server
    /// restarted): it is ended as `failed`.
    pub reading_timeout: Duration,
    /// Where this instance serves, as listed in `GET /api/instances`.
    pub instance_address: String,
    /// How long an instance's heartbeat keeps its leases ([`LEASE_TIME`]).
    pub lease_time: Duration,
    /// How often it renews them and coordinates ([`HEARTBEAT_INTERVAL`]).
    pub heartbeat_interval: Duration,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            max_handshakes: 64,
            start_spread: Duration::from_secs(5),
            last_seen_interval: Duration::from_secs(30),
            event_retention: Duration::from_secs(30 * 24 * 3600),
            reading_retention: Duration::from_secs(90 * 24 * 3600),
            readings_kept_per_sensor: 10,
            client: ctc::ClientConfig::default(),
            backoff: ctc::BackoffConfig::default(),
            stream_client_buffer: 1024,
            stream_history: 4096,
            reading_timeout: Duration::from_secs(180),
            instance_address: String::new(),
            lease_time: LEASE_TIME,
            heartbeat_interval: HEARTBEAT_INTERVAL,
        }
    }
}

/// Fleet-wide numbers for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub handshakes_in_progress: AtomicUsize,
    pub handshakes_peak: AtomicUsize,
    pub readings_requested: AtomicU64,
    pub readings_finished: AtomicU64,
    pub readings_failed: AtomicU64,
    /// Reading durations (request → result), for a latency histogram.
    pub reading_latency: Histogram,
    /// Persistence jobs dropped because the writer was too far behind.
    pub writes_dropped: AtomicU64,
    /// Readings ended as failed because nothing was taking them any more.
    pub readings_abandoned: AtomicU64,
    /// Readings other clients or the gateways' own schedules triggered (§1.8), stored.
    pub readings_received: AtomicU64,
    /// Messages to the other instances dropped because too many were waiting to be sent.
    pub fleet_messages_dropped: AtomicU64,
    /// Readings taken on a sensor's schedule (retries included).
    pub readings_scheduled: AtomicU64,
    /// Scheduled readings skipped (gateway offline, sensor disconnected).
    pub readings_skipped: AtomicU64,
}

impl Metrics {
    /// Restarts peak tracking from the handshakes in progress now, so one phase (say, the
    /// recovery after a fleet-wide drop) can be measured on its own; returns the old peak.
    pub fn reset_handshakes_peak(&self) -> usize {
        let now = self.handshakes_in_progress.load(Ordering::Relaxed);
        self.handshakes_peak.swap(now, Ordering::Relaxed)
    }
}

/// A fixed-bucket histogram (seconds), cheap to update from any task.
#[derive(Debug)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<AtomicU64>,
    pub sum_micros: AtomicU64,
    pub count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        const BOUNDS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        Self {
            bounds: BOUNDS,
            counts: BOUNDS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add(value.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// A gateway as this instance knows it: connected here when it holds the lease
/// (`lease`), else mirrored from what its holder publishes.
struct Entry {
    gateway: Gateway,
    live: GatewayLive,
    /// The fencing number of this instance's lease on the gateway, while it holds one.
    lease: Option<i64>,
    /// Version of the mirrored record (see `gateway_live`), for gateways held elsewhere.
    mirror_version: i64,
    login_version: i64,
    supervisor: Option<Supervised>,
    /// Readings being taken, by serial: the first sent the trigger; the others were asked
    /// for while it ran and get its result (the gateway takes one reading of a sensor at once).
    pending_readings: HashMap<u64, Vec<Uuid>>,
}

struct Supervised {
    handle: GatewaySupervisor,
    status: Arc<GatewayStatus>,
    /// Which supervisor of this gateway this is. Every event carries it: one from a
    /// supervisor that has since been replaced (still closing, say) is dropped, so it can
    /// never overwrite the state its successor reported.
    generation: u64,
}

struct Inner {
    store: Store,
    config: OrchestratorConfig,
    /// This process's id among the instances sharing the fleet.
    instance: Uuid,
    started_at: DateTime<Utc>,
    fleet: fleet::FleetState,
    registry: RwLock<HashMap<Uuid, Entry>>,
    handshakes: Arc<Semaphore>,
    stream: LiveStream,
    events: mpsc::UnboundedSender<SupervisorEvent>,
    writes: mpsc::Sender<WriteJob>,
    metrics: Metrics,
    next_generation: AtomicU64,
    /// Readings this process is taking or still writing: never "left behind".
    readings_in_flight: Mutex<HashSet<Uuid>>,
    /// See [`READINGS_WAITING_TO_BE_STORED`].
    readings_waiting: Arc<Semaphore>,
    /// Scheduled readings being taken, and those that failed once and are to be retried.
    scheduled: Mutex<HashMap<Uuid, schedule::Scheduled>>,
    schedule_retries: Mutex<Vec<schedule::Scheduled>>,
}

impl Inner {
    fn not_in_flight(&self, reading: Uuid) {
        self.readings_in_flight.lock().expect("in-flight lock").remove(&reading);
    }

    /// A reading reached `stage`: the stream hears of it, and once it has ended it is no
    /// longer in flight.
    fn reading_reached(
        &self,
        reading: Uuid,
        gateway: Uuid,
        factory_id: Uuid,
        serial: u64,
        stage: ReadingStage,
        error: Option<String>,
    ) {
        if matches!(stage, ReadingStage::Finished | ReadingStage::Failed) {
            self.not_in_flight(reading);
            self.scheduled_reading_ended(reading, stage == ReadingStage::Failed);
        }
        self.publish_reading(ReadingProgress {
            reading_id: reading,
            gateway,
            factory_id,
            serial,
            stage,
            at: Utc::now(),
            error,
        });
    }

    /// Readings the store ended as failed because nothing was taking them any more
    /// (reading, gateway, serial): counted and announced.
    fn abandoned(&self, ended: Vec<(Uuid, Uuid, u64)>, reason: &str) {
        for (reading, gateway, serial) in ended {
            self.metrics.readings_abandoned.fetch_add(1, Ordering::Relaxed);
            let factory_id = self
                .registry
                .read()
                .expect("registry lock")
                .get(&gateway)
                .map(|e| e.gateway.factory_id);
            if let Some(factory_id) = factory_id {
                let error = Some(reason.to_owned());
                self.reading_reached(reading, gateway, factory_id, serial, ReadingStage::Failed, error);
            }
        }
    }

    /// A reading's progress, on this instance's stream and, through the fleet channel,
    /// on the others' (the reading may have been asked for there).
    fn publish_reading(&self, progress: ReadingProgress) {
        if !self.fleet.is_alone() {
            fleet::tell(
                self,
                fleet::Message::Reading {
                    from: self.instance,
                    progress: progress.clone(),
                },
            );
        }
        self.stream.publish(LiveEvent::Reading { reading: progress });
    }

    /// Publishes a gateway's record here and, when this instance holds it, to the others.
    fn publish_gateway(&self, record: GatewayLive, lease: Option<i64>) {
        if let Some(fence) = lease {
            if self
                .writes
                .try_send(WriteJob::Live {
                    fence,
                    record: record.clone(),
                })
                .is_err()
            {
                self.metrics.writes_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stream.publish(LiveEvent::Gateway { gateway: record });
    }
}

/// An event, the gateway it is about, and the generation of the supervisor that sent it.
struct SupervisorEvent {
    gateway: Uuid,
    generation: u64,
    event: GatewayEvent,
}

/// The orchestrator handle; cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

fn utc(at: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(at)
}

fn connection_state(state: &GatewayState) -> ConnectionState {
    match state {
        GatewayState::Disconnected | GatewayState::Stopped => ConnectionState::Disconnected,
        GatewayState::Connecting => ConnectionState::Connecting,
        GatewayState::Authenticating => ConnectionState::Authenticating,
        GatewayState::Online => ConnectionState::Online,
        GatewayState::Backoff { .. } => ConnectionState::Backoff,
        GatewayState::AuthFailed { .. } => ConnectionState::AuthFailed,
        GatewayState::Disabled => ConnectionState::Disabled,
    }
}

fn live_record(gateway: &Gateway) -> GatewayLive {
    GatewayLive {
        id: gateway.id,
        factory_id: gateway.factory_id,
        gateway_id: gateway.gateway_id.clone(),
        name: gateway.name.clone(),
        state: if gateway.enabled {
            ConnectionState::Disconnected
        } else {
            ConnectionState::Disabled
        },
        since: Utc::now(),
        next_attempt_at: None,
        last_error: None,
        online_since: None,
        last_seen_at: gateway.last_seen_at,
        counters: LiveCounters::default(),
        sensors: Vec::new(),
        owner: None,
    }
}

fn counters_of(status: &GatewayStatus) -> LiveCounters {
    let c = status.counters();
    LiveCounters {
        reconnects: c.connection_attempts.saturating_sub(1),
        frames_in: c.frames_received,
        frames_out: c.frames_sent,
        errors: c.connection_failures + c.invalid_frames + c.stray_replies + c.readings_failed,
        readings: c.readings_completed,
    }
}

/// Asks the store for the gateway's login before every attempt (so edited
/// credentials are used at once), after taking a handshake slot, and spreads the
/// very first attempt over the start-up window. While the database is unreachable,
/// the credentials last read are used (held only here, zeroized when dropped).
struct StoreCredentials {
    store: Store,
    gateway: Uuid,
    handshakes: Arc<Semaphore>,
    first_delay: Mutex<Option<Duration>>,
    last_read: Mutex<Option<Credentials>>,
    orchestrator: std::sync::Weak<Inner>,
}

/// One of the handshake slots, held by exactly one connection attempt: the supervisor
/// drops it with the attempt's credentials when the attempt ends, however it ends, so a
/// reconnect during a handshake can never wait for a slot while holding one.
struct HandshakeSlot {
    _permit: OwnedSemaphorePermit,
    orchestrator: std::sync::Weak<Inner>,
}

impl HandshakeSlot {
    fn new(permit: OwnedSemaphorePermit, orchestrator: std::sync::Weak<Inner>) -> Self {
        if let Some(inner) = orchestrator.upgrade() {
            let now = inner.metrics.handshakes_in_progress.fetch_add(1, Ordering::Relaxed) + 1;
            inner.metrics.handshakes_peak.fetch_max(now, Ordering::Relaxed);
        }
        Self {
            _permit: permit,
            orchestrator,
        }
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        if let Some(inner) = self.orchestrator.upgrade() {
            inner.metrics.handshakes_in_progress.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl CredentialsProvider for StoreCredentials {
    fn credentials(&self) -> ctc::credentials::CredentialsFuture<'_> {
        Box::pin(async move {
            let delay = self.first_delay.lock().expect("delay lock").take();
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let permit = self
                .handshakes
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| "shutting down".to_owned())?;
            let slot = HandshakeSlot::new(permit, self.orchestrator.clone());
            let last_read = self.last_read.lock().expect("credentials lock").clone();
            // Boxed, so that the wait for a slot above holds a small future, not this query's.
            let read = Box::pin(self.store.gateway_credentials(self.gateway));
            // `Err(None)`: no answer in time, with the credentials last read to fall back on.
            let read = match last_read {
                Some(_) => match tokio::time::timeout(CREDENTIALS_WAIT, read).await {
                    Ok(result) => result.map_err(Some),
                    Err(_) => Err(None),
                },
                None => read.await.map_err(Some),
            };
            let credentials = match (read, last_read) {
                (Ok(login), _) => {
                    let credentials = Credentials::new(login.email, login.password.expose());
                    *self.last_read.lock().expect("credentials lock") = Some(credentials.clone());
                    credentials
                }
                (Err(err), Some(credentials)) if err.as_ref().is_none_or(store::StoreError::is_unavailable) => {
                    tracing::warn!(gateway = %self.gateway, "database unavailable; logging in with the credentials last read");
                    credentials
                }
                (Err(err), _) => {
                    if let Some(err) = err {
                        tracing::warn!(gateway = %self.gateway, %err, "loading gateway credentials");
                    }
                    return Err("could not load the gateway's credentials".to_owned());
                }
            };
            Ok(credentials.held_with(slot))
        })
    }
}

impl Orchestrator {
    /// Starts the recorder, the writer and the timers, registers as the store's observer
    /// and as an instance of the fleet, and connects the gateways whose leases it gets.
    pub async fn start(store: Store, config: OrchestratorConfig) -> Result<Self, store::StoreError> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        // A connecting gateway queues three jobs (event, last seen, sensors): room for a
        // 10,000-gateway fleet's start or recovery twice over before jobs are dropped.
        let (writes_tx, writes_rx) = mpsc::channel(WRITE_QUEUE);
        let instance = Uuid::new_v4();
        let inner = Arc::new(Inner {
            stream: LiveStream::new(config.stream_client_buffer, config.stream_history),
            handshakes: Arc::new(Semaphore::new(config.max_handshakes.max(1))),
            store: store.clone(),
            config,
            instance,
            started_at: Utc::now(),
            fleet: fleet::FleetState::default(),
            registry: RwLock::new(HashMap::new()),
            events: events_tx,
            writes: writes_tx,
            metrics: Metrics::default(),
            next_generation: AtomicU64::new(0),
            readings_in_flight: Mutex::default(),
            readings_waiting: Arc::new(Semaphore::new(READINGS_WAITING_TO_BE_STORED)),
            scheduled: Mutex::default(),
            schedule_retries: Mutex::default(),
        });
        let orchestrator = Orchestrator { inner };
        // Readings left unfinished on gateways no live instance holds were interrupted
        // (a restart, a crash): nobody will finish them.
        let abandoned = store
            .fail_unfinished_readings(
                Utc::now(),
                &[],
                "the server restarted before the reading finished",
                Some(orchestrator.inner.config.lease_time),
            )
            .await?;
        if !abandoned.is_empty() {
            tracing::info!(
                readings = abandoned.len(),
                "ended readings a restart interrupted as failed"
            );
        }
        let outbox = fleet::outbox(&store);
        tokio::spawn(writer::run(store.clone(), writes_rx, instance, outbox.clone()));
        tokio::spawn(record(Arc::downgrade(&orchestrator.inner), events_rx));
        tokio::spawn(tick(Arc::downgrade(&orchestrator.inner)));
        store.set_observer(Arc::new(InventoryHook(Arc::downgrade(&orchestrator.inner))));
        let count = fleet::start(&orchestrator, outbox).await?;
        tracing::info!(gateways = count, %instance, "orchestrator started");
        Ok(orchestrator)
    }

    /// This instance's id in the fleet.
    pub fn instance(&self) -> Uuid {
        self.inner.instance
    }

    /// The live instances sharing the fleet, with how many gateways each holds.
    pub async fn instances(&self) -> Result<Vec<domain::live::Instance>, AppError> {
        Ok(self.inner.store.list_instances(self.inner.config.lease_time).await?)
    }

    /// Gateways whose leases this instance holds.
    pub fn gateways_held(&self) -> usize {
        let registry = self.inner.registry.read().expect("registry lock");
        registry.values().filter(|e| e.lease.is_some()).count()
    }

    /// Registers a gateway; it is connected here once this instance holds its lease.
    fn add(&self, gateway: Gateway, login_version: i64) {
        let lease = self.inner.fleet.lease_of(gateway.id);
        let mut entry = Entry {
            live: live_record(&gateway),
            gateway,
            lease: None,
            mirror_version: 0,
            login_version,
            supervisor: None,
            pending_readings: HashMap::new(),
        };
        if let Some(fence) = lease {
            self.take_lease(&mut entry, fence, false);
        }
        let record = entry.live.clone();
        let lease = entry.lease;
        self.inner
            .registry
            .write()
            .expect("registry lock")
            .insert(record.id, entry);
        self.inner.publish_gateway(record, lease);
    }

    /// This instance now holds `entry`'s lease under `fence`: it connects the gateway.
    fn take_lease(&self, entry: &mut Entry, fence: i64, at_start_up: bool) {
        entry.lease = Some(fence);
        entry.live.owner = Some(self.inner.instance);
        if entry.gateway.enabled && entry.supervisor.is_none() {
            entry.supervisor = Some(self.supervise(&entry.gateway, at_start_up));
        }
    }

    fn supervise(&self, gateway: &Gateway, at_start_up: bool) -> Supervised {
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let spread = self.inner.config.start_spread;
        let first_delay =
            (at_start_up && !spread.is_zero()).then(|| rand::thread_rng().gen_range(Duration::ZERO..spread));
        let credentials = StoreCredentials {
            store: self.inner.store.clone(),
            gateway: gateway.id,
            handshakes: self.inner.handshakes.clone(),
            first_delay: Mutex::new(first_delay),
            last_read: Mutex::new(None),
            orchestrator: Arc::downgrade(&self.inner),
        };
        let events = self.inner.events.clone();
        let id = gateway.id;
        let sink = ctc::EventSink::new(move |event| {
            let _ = events.send(SupervisorEvent {
                gateway: id,
                generation,
                event,
            });
        });
        let handle = GatewaySupervisor::spawn(self.supervisor_config(gateway), Arc::new(credentials), sink);
        Supervised {
            status: handle.status(),
            handle,
            generation,
        }
    }

    fn supervisor_config(&self, gateway: &Gateway) -> SupervisorConfig {
        let mut config = SupervisorConfig::new(gateway.url.clone());
        config.client = self.inner.config.client.clone();
        config.backoff = self.inner.config.backoff.clone();
        // Stored in its checked form (migration 0011), so it always parses.
        config.tls_pin = gateway.tls_pin.as_deref().and_then(|pin| pin.parse().ok());
        config
    }

    /// Every gateway's live record, counters fresh.
    pub fn snapshot(&self, factory: Option<Uuid>) -> Vec<GatewayLive> {
        let registry = self.inner.registry.read().expect("registry lock");
        let mut all: Vec<GatewayLive> = registry
            .values()
            .filter(|e| factory.is_none_or(|f| e.gateway.factory_id == f))
            .map(fresh_record)
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        all
    }

    /// Every gateway's counters added up (for `/metrics`), without copying any record.
    pub fn counter_totals(&self) -> LiveCounters {
        let registry = self.inner.registry.read().expect("registry lock");
        let mut total = LiveCounters::default();
        for entry in registry.values() {
            let fresh;
            let counters = match &entry.supervisor {
                Some(supervised) => {
                    fresh = counters_of(&supervised.status);
                    &fresh
                }
                None => &entry.live.counters,
            };
            total.reconnects += counters.reconnects;
            total.frames_in += counters.frames_in;
            total.frames_out += counters.frames_out;
            total.errors += counters.errors;
            total.readings += counters.readings;
        }
        total
    }

    /// Counts per state, overall and per factory, without copying any record.
    pub fn fleet_status(&self, factory: Option<Uuid>) -> domain::live::FleetStatus {
        let registry = self.inner.registry.read().expect("registry lock");
        domain::live::FleetStatus::count(
            registry
                .values()
                .filter(|e| factory.is_none_or(|f| e.gateway.factory_id == f))
                .map(|e| (e.gateway.factory_id, e.live.state)),
        )
    }

    /// The gateways that need attention (enabled, not online), those unseen the
    /// longest first, at most `limit` of them (without sensors), and how many there are.
    pub fn attention(&self, limit: usize) -> (Vec<GatewayLive>, u64) {
        let registry = self.inner.registry.read().expect("registry lock");
        let mut waiting: Vec<&Entry> = registry.values().filter(|e| e.live.state.needs_attention()).collect();
        let total = waiting.len() as u64;
        // Never seen (None) sorts first.
        let order = |a: &&Entry, b: &&Entry| {
            (a.live.last_seen_at, &a.live.name, a.live.id).cmp(&(b.live.last_seen_at, &b.live.name, b.live.id))
        };
        if waiting.len() > limit {
            waiting.select_nth_unstable_by(limit, order);
            waiting.truncate(limit);
        }
        waiting.sort_by(order);
        let records = waiting
            .into_iter()
            .map(|e| {
                let mut live = fresh_record(e);
                live.sensors.clear();
                live
            })
            .collect();
        (records, total)
    }

    /// The gateways in `state` now (live state is not stored: lists filter by it here).
    pub fn ids_in_state(&self, state: ConnectionState) -> Vec<Uuid> {
        let registry = self.inner.registry.read().expect("registry lock");
        registry
            .values()
            .filter(|e| e.live.state == state)
            .map(|e| e.gateway.id)
            .collect()
    }

    /// One action on a selection of 1 to [`BULK_MAX`](domain::live::BULK_MAX) gateways,
    /// each on its own: which were done, and why the others were not. Stops (with the
    /// error) only when the service itself fails.
    pub async fn bulk(
        &self,
        action: domain::live::BulkAction,
        ids: Vec<Uuid>,
    ) -> Result<domain::live::BulkOutcome, AppError> {
        use domain::live::{BulkAction, BulkFailure, BulkOutcome, BULK_MAX};
        if ids.is_empty() || ids.len() > BULK_MAX {
            return Err(AppError::validation(vec![domain::FieldError::new(
                "ids",
                format!("must name 1 to {BULK_MAX} gateways"),
            )]));
        }
        let mut outcome = BulkOutcome {
            action,
            done: Vec::new(),
            failed: Vec::new(),
        };
        let mut seen = HashSet::new();
        for id in ids.into_iter().filter(|id| seen.insert(*id)) {
            let result = match action {
                BulkAction::Enable | BulkAction::Disable => self
                    .inner
                    .store
                    .update_gateway(id, enabled_change(action == BulkAction::Enable))
                    .await
                    .map(|_| ())
                    .map_err(AppError::from),
                BulkAction::Connect => self.connect(id).await.map(|_| ()),
                BulkAction::Disconnect => self.disconnect(id).await.map(|_| ()),
            };
            match result {
                Ok(()) => outcome.done.push(id),
                Err(err) if err.code == ErrorCode::ServiceUnavailable || err.code == ErrorCode::InternalError => {
                    return Err(err)
                }
                Err(err) => outcome.failed.push(BulkFailure {
                    id,
                    code: err.code,
                    message: err.message,
                }),
            }
        }
        Ok(outcome)
    }

    /// The live stream's position (see [`LiveStream::position`]).
    pub fn stream_position(&self) -> u64 {
        self.inner.stream.position()
    }

    pub fn status(&self, gateway: Uuid) -> Option<GatewayLive> {
        let registry = self.inner.registry.read().expect("registry lock");
        registry.get(&gateway).map(fresh_record)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Persistence jobs waiting for the writer (see [`WRITE_QUEUE`]).
    pub fn writes_queued(&self) -> usize {
        WRITE_QUEUE - self.inner.writes.capacity()
    }

    pub fn stream_clients(&self) -> usize {
        self.inner.stream.clients()
    }

    /// Puts an alarm's change on this instance's live stream (each instance watches the
    /// alarms table for itself: see the server's alarm watcher).
    pub fn publish_alarm(&self, alarm: domain::alarms::Alarm) {
        self.inner.stream.publish(LiveEvent::Alarm { alarm: Box::new(alarm) });
    }

    /// Subscribes to the live stream; see [`LiveStream::subscribe`].
    pub fn subscribe(&self, last_id: Option<u64>) -> (Resume, tokio::sync::broadcast::Receiver<Arc<Sequenced>>) {
        self.inner.stream.subscribe(last_id)
    }

    /// Drops the connection (or cuts a wait short) and connects now; enables a
    /// gateway that was disabled. A gateway held by another instance is reconnected there.
    pub async fn connect(&self, gateway: Uuid) -> Result<GatewayLive, AppError> {
        let enabled = self.known(gateway)?.enabled;
        if !enabled {
            self.inner.store.update_gateway(gateway, enabled_change(true)).await?;
        } else {
            let holder = {
                let registry = self.inner.registry.read().expect("registry lock");
                registry.get(&gateway).and_then(|entry| match &entry.supervisor {
                    Some(s) => {
                        s.handle.reconnect();
                        None
                    }
                    None => entry.live.owner.filter(|owner| *owner != self.inner.instance),
                })
            };
            if let Some(to) = holder {
                fleet::tell(&self.inner, fleet::Message::Connect { to, gateway });
            }
        }
        self.status(gateway).ok_or_else(AppError::gateway_not_found)
    }

    /// Disconnects cleanly and keeps the gateway disconnected (disables it).
    pub async fn disconnect(&self, gateway: Uuid) -> Result<GatewayLive, AppError> {
        if self.known(gateway)?.enabled {
            self.inner.store.update_gateway(gateway, enabled_change(false)).await?;
        }
        self.status(gateway).ok_or_else(AppError::gateway_not_found)
    }

    fn known(&self, gateway: Uuid) -> Result<Gateway, AppError> {
        let registry = self.inner.registry.read().expect("registry lock");
        registry
            .get(&gateway)
            .map(|e| e.gateway.clone())
            .ok_or_else(AppError::gateway_not_found)
    }

    /// Starts a reading on a connected sensor; the result arrives as events and
    /// in the readings table. Returns the reading id. While a reading of the same
    /// sensor is being taken, the new request gets that reading's result.
    /// While the database is unreachable the request is still taken: its row is
    /// written, in order with its result, when the database is back. A gateway held by
    /// another instance is read there.
    pub async fn request_reading(&self, gateway: Uuid, serial: u64) -> Result<Uuid, AppError> {
        // In a task of its own: a caller that goes away mid-request (a closed HTTP
        // connection) must not leave a reading half registered and never ended.
        let this = self.clone();
        tokio::spawn(async move { this.start_reading(gateway, serial).await })
            .await
            .unwrap_or_else(|_| Err(AppError::internal()))
    }

    async fn start_reading(&self, gateway: Uuid, serial: u64) -> Result<Uuid, AppError> {
        let (holder, sensor, factory_id) = {
            let registry = self.inner.registry.read().expect("registry lock");
            let entry = registry.get(&gateway).ok_or_else(AppError::gateway_not_found)?;
            let sensor = readable_sensor(entry, serial)?;
            let holder = if entry.lease.is_some() {
                if entry.supervisor.is_none() {
                    return Err(AppError::new(ErrorCode::GatewayNotOnline, "The gateway is disabled"));
                }
                None
            } else {
                let owner = entry.live.owner.filter(|owner| *owner != self.inner.instance);
                Some(owner.ok_or_else(|| AppError::new(ErrorCode::GatewayNotOnline, "No instance holds the gateway"))?)
            };
            (holder, sensor, entry.gateway.factory_id)
        };
        let reading = Uuid::new_v4();
        // In flight before its row exists, so the sweep for abandoned readings never takes it.
        self.inner
            .readings_in_flight
            .lock()
            .expect("in-flight lock")
            .insert(reading);
        let request = NewReading {
            gateway,
            serial,
            requested_at: Utc::now(),
            samples: sensor.samples,
            sample_rate: sensor.read_rate,
        };
        match self.inner.store.create_reading(reading, &request).await {
            Ok(()) => {}
            Err(err) if err.is_unavailable() && holder.is_none() => {
                let kept = self.inner.writes.try_send(WriteJob::ReadingRequested {
                    reading,
                    request: request.clone(),
                });
                if kept.is_err() {
                    self.inner.metrics.writes_dropped.fetch_add(1, Ordering::Relaxed);
                    self.inner.not_in_flight(reading);
                    return Err(err.into());
                }
                tracing::warn!(%gateway, serial, %err, "database unavailable; the reading request is kept for later");
            }
            Err(err) => {
                self.inner.not_in_flight(reading);
                return Err(err.into());
            }
        }
        self.inner.metrics.readings_requested.fetch_add(1, Ordering::Relaxed);
        self.inner
            .reading_reached(reading, gateway, factory_id, serial, ReadingStage::Requested, None);
        match holder {
            // The holder takes it and tells every instance how it goes; the sweep for
            // abandoned readings ends it if the holder goes away first.
            Some(to) => {
                self.inner.not_in_flight(reading);
                fleet::tell(
                    &self.inner,
                    fleet::Message::TakeReading {
                        to,
                        gateway,
                        serial,
                        reading,
                    },
                );
            }
            None => self.take_reading(gateway, serial, reading),
        }
        Ok(reading)
    }

    /// Takes reading `reading` (already stored as requested) of a sensor on a gateway
    /// held here, or joins the one of that sensor being taken.
    fn take_reading(&self, gateway: Uuid, serial: u64, reading: Uuid) {
        self.inner
            .readings_in_flight
            .lock()
            .expect("in-flight lock")
            .insert(reading);
        let (triggers, commands, factory_id) = {
            let mut registry = self.inner.registry.write().expect("registry lock");
            match registry.get_mut(&gateway) {
                Some(entry) => {
                    let commands = entry.supervisor.as_ref().map(|s| s.handle.command_sender());
                    let waiting = entry.pending_readings.entry(serial).or_default();
                    waiting.push(reading);
                    (waiting.len() == 1, commands, Some(entry.gateway.factory_id))
                }
                None => (true, None, None),
            }
        };
        if !triggers {
            // The reading already being taken answers this request too.
            return;
        }
        let (reply, result) = oneshot::channel();
        if let Some(commands) = commands {
            let _ = commands.send(GatewayCommand::TakeReading {
                serial: Serial(serial),
                reply,
            });
        }
        let inner = Arc::downgrade(&self.inner);
        let requested = std::time::Instant::now();
        tokio::spawn(async move {
            let outcome = result
                .await
                .unwrap_or_else(|_| Err(ctc::Error::NotOnline("the connection ended".into())));
            let Some(inner) = inner.upgrade() else { return };
            inner.metrics.reading_latency.observe(requested.elapsed());
            let answered = {
                let mut registry = inner.registry.write().expect("registry lock");
                match registry.get_mut(&gateway) {
                    Some(entry) if entry.pending_readings.get(&serial).and_then(|w| w.first()) == Some(&reading) => {
                        entry.pending_readings.remove(&serial).unwrap_or_default()
                    }
                    _ => vec![reading],
                }
            };
            let factory_id = factory_id.unwrap_or_default();
            for reading in answered {
                let outcome = outcome.clone();
                let (stage, error) = match outcome {
                    Ok(data) => match store_result(&inner, reading, data).await {
                        Ok(()) => {
                            inner.metrics.readings_finished.fetch_add(1, Ordering::Relaxed);
                            (ReadingStage::Finished, None)
                        }
                        Err(message) => {
                            inner.metrics.readings_failed.fetch_add(1, Ordering::Relaxed);
                            (ReadingStage::Failed, Some(message))
                        }
                    },
                    Err(err) => {
                        inner.metrics.readings_failed.fetch_add(1, Ordering::Relaxed);
                        let message = err.to_string();
                        store_failure(&inner, reading, message.clone()).await;
                        (ReadingStage::Failed, Some(message))
                    }
                };
                inner.reading_reached(reading, gateway, factory_id, serial, stage, error);
            }
        });
    }

    /// Waits until every persistence job queued so far (events, sensors, `last_seen_at`)
    /// is written: before closing the database, or before measuring a steady state.
    pub async fn flush_writes(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.inner.writes.send(WriteJob::Barrier(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
    }

    /// Disconnects every gateway cleanly (unsubscribe, close 1000), then leaves the fleet
    /// so that the other instances take its gateways over at once.
    pub async fn shutdown(&self) {
        self.inner.fleet.stop();
        let supervisors: Vec<Supervised> = {
            let mut registry = self.inner.registry.write().expect("registry lock");
            registry.values_mut().filter_map(|e| e.supervisor.take()).collect()
        };
        let stops = supervisors.into_iter().map(|s| s.handle.shutdown());
        futures_join_all(stops).await;
        fleet::leave(&self.inner).await;
        tracing::info!("orchestrator stopped");
    }
}

/// The sensor `serial` of a gateway that is online, if it can be read now.
fn readable_sensor(entry: &Entry, serial: u64) -> Result<SensorLive, AppError> {
    let sensor = entry.live.sensors.iter().find(|s| s.serial == serial).cloned();
    let sensor = sensor.ok_or_else(|| {
        AppError::new(
            ErrorCode::SensorNotFound,
            format!("Sensor {serial} is not known on this gateway"),
        )
    })?;
    if entry.live.state != ConnectionState::Online {
        return Err(AppError::new(
            ErrorCode::GatewayNotOnline,
            format!("The gateway is {}, not online", entry.live.state.label().to_lowercase()),
        ));
    }
    if !sensor.connected {
        return Err(AppError::new(
            ErrorCode::GatewayNotOnline,
            format!("Sensor {serial} is not connected to the gateway"),
        ));
    }
    Ok(sensor)
}

/// Hands a reading's result to the writer and waits until it is stored (through a
/// database outage, too); `Err` says why it could not be.
async fn store_result(inner: &Inner, reading: Uuid, data: Arc<ctc::Reading>) -> Result<(), String> {
    let job = WriteJob::ReadingFinished {
        reading,
        at: Utc::now(),
        data,
        done: None,
    };
    if queue_reading(inner, job).await {
        return Ok(());
    }
    let message = "the reading arrived but could not be stored".to_owned();
    store_failure(inner, reading, message.clone()).await;
    Err(message)
}

/// Queues a job carrying samples and waits until it is written, holding one of the
/// [`READINGS_WAITING_TO_BE_STORED`] places meanwhile. `false`: no place or no room in
/// the queue (the database is far behind; counted as dropped), or the write failed.
async fn queue_reading(inner: &Inner, job: WriteJob) -> bool {
    let Ok(_place) = inner.readings_waiting.clone().try_acquire_owned() else {
        inner.metrics.writes_dropped.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    queue(inner, job).await
}

/// Queues a reading job and waits until it is written; `false` if it was not.
async fn queue(inner: &Inner, job: WriteJob) -> bool {
    let (done_tx, done_rx) = oneshot::channel();
    if inner.writes.try_send(job.answering(done_tx)).is_err() {
        inner.metrics.writes_dropped.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    done_rx.await == Ok(true)
}

async fn store_failure(inner: &Inner, reading: Uuid, error: String) {
    let job = WriteJob::ReadingFailed {
        reading,
        at: Utc::now(),
        error,
        done: None,
    };
    queue(inner, job).await;
}

/// Stores a reading nobody here asked for (§1.8) as a finished reading of its sensor,
/// then announces it.
async fn store_received_reading(inner: Arc<Inner>, factory_id: Uuid, request: NewReading, data: Arc<ctc::Reading>) {
    let reading = Uuid::new_v4();
    inner.readings_in_flight.lock().expect("in-flight lock").insert(reading);
    let (gateway, serial) = (request.gateway, request.serial);
    let job = WriteJob::ReadingReceived {
        reading,
        request,
        data,
        done: None,
    };
    if queue_reading(&inner, job).await {
        inner.metrics.readings_received.fetch_add(1, Ordering::Relaxed);
        inner.reading_reached(reading, gateway, factory_id, serial, ReadingStage::Finished, None);
    } else {
        inner.not_in_flight(reading);
    }
}

/// Ends readings nothing is taking any more (see [`OrchestratorConfig::reading_timeout`]).
async fn fail_abandoned_readings(inner: &Inner) {
    let in_flight: Vec<Uuid> = inner
        .readings_in_flight
        .lock()
        .expect("in-flight lock")
        .iter()
        .copied()
        .collect();
    let before = Utc::now() - chrono::Duration::from_std(inner.config.reading_timeout).unwrap_or_default();
    let reason = "no result arrived in time: the connection was lost or the result could not be stored";
    let ended = match inner
        .store
        .fail_unfinished_readings(before, &in_flight, reason, None)
        .await
    {
        Ok(ended) => ended,
        Err(err) => {
            tracing::warn!(%err, "ending abandoned readings");
            return;
        }
    };
    inner.abandoned(ended, reason);
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(futures: impl Iterator<Item = F>) {
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    for task in tasks {
        let _ = task.await;
    }
}

fn enabled_change(enabled: bool) -> domain::GatewayChanges {
    domain::GatewayChanges {
        enabled: Some(enabled),
        ..Default::default()
    }
}

fn fresh_record(entry: &Entry) -> GatewayLive {
    let mut live = entry.live.clone();
    if let Some(s) = &entry.supervisor {
        live.counters = counters_of(&s.status);
    }
    live
}

impl InventoryObserver for Orchestrator {
    fn gateway_created(&self, gateway: &Gateway) {
        self.add(gateway.clone(), 0);
        // A new gateway needs a lease before anyone connects it.
        self.inner.fleet.inventory_changed();
    }

    fn gateway_updated(&self, gateway: &Gateway, change: ConnectionChange) {
        self.apply_update(gateway, change, None, true);
    }

    fn gateways_deleted(&self, ids: &[Uuid]) {
        let removed: Vec<Entry> = {
            let mut registry = self.inner.registry.write().expect("registry lock");
            ids.iter().filter_map(|id| registry.remove(id)).collect()
        };
        for entry in removed {
            // Each sensor's first reading is answered by its trigger's end (the supervisor
            // closes); the ones that joined it are answered here, their gateway gone.
            for (serial, waiting) in &entry.pending_readings {
                for &reading in waiting.iter().skip(1) {
                    let inner = self.inner.clone();
                    let (gateway, factory_id, serial) = (entry.gateway.id, entry.gateway.factory_id, *serial);
                    tokio::spawn(async move {
                        let error = "the gateway was deleted".to_owned();
                        store_failure(&inner, reading, error.clone()).await;
                        inner.reading_reached(reading, gateway, factory_id, serial, ReadingStage::Failed, Some(error));
                    });
                }
            }
            if let Some(supervised) = entry.supervisor {
                tokio::spawn(supervised.handle.shutdown());
            }
            self.inner.stream.publish(LiveEvent::Removed {
                id: entry.gateway.id,
                factory_id: entry.gateway.factory_id,
            });
        }
        self.inner.fleet.inventory_changed();
    }
}

impl Orchestrator {
    /// An edit of a gateway, made here (`record_event`: this instance records enabled and
    /// disabled) or heard of from another process (with the row's login version).
    fn apply_update(
        &self,
        gateway: &Gateway,
        change: ConnectionChange,
        login_version: Option<i64>,
        record_event: bool,
    ) {
        let mut registry = self.inner.registry.write().expect("registry lock");
        let Some(entry) = registry.get_mut(&gateway.id) else {
            drop(registry);
            self.add(gateway.clone(), login_version.unwrap_or_default());
            return;
        };
        if let Some(version) = login_version {
            entry.login_version = version;
        }
        // Where to connect and which certificate to accept: a new supervisor configuration.
        let target_changed = entry.gateway.url != gateway.url || entry.gateway.tls_pin != gateway.tls_pin;
        entry.gateway = gateway.clone();
        entry.live.name = gateway.name.clone();
        entry.live.gateway_id = gateway.gateway_id.clone();
        let moved_from = (entry.live.factory_id != gateway.factory_id).then_some(entry.live.factory_id);
        entry.live.factory_id = gateway.factory_id;
        if change.enabled {
            if record_event {
                let kind = if gateway.enabled { "enabled" } else { "disabled" };
                let _ = self.inner.writes.try_send(WriteJob::Event(store::NewGatewayEvent {
                    gateway: gateway.id,
                    at: Utc::now(),
                    kind,
                    message: None,
                    close_code: None,
                    fence: None,
                }));
            }
            if gateway.enabled && entry.lease.is_some() {
                if let Some(previous) = entry.supervisor.replace(self.supervise(gateway, false)) {
                    tokio::spawn(previous.handle.shutdown());
                }
            } else if !gateway.enabled {
                if let Some(supervised) = entry.supervisor.take() {
                    tokio::spawn(supervised.handle.shutdown());
                }
                // Shown at once, here and (through its holder) everywhere.
                entry.live.state = ConnectionState::Disabled;
                entry.live.since = Utc::now();
                entry.live.next_attempt_at = None;
                entry.live.online_since = None;
            }
        } else if let Some(supervised) = &entry.supervisor {
            if target_changed {
                supervised.handle.reconfigure(self.supervisor_config(gateway));
            } else if change.credentials {
                supervised.handle.reconnect();
            }
        }
        let record = fresh_record(entry);
        let lease = entry.lease;
        drop(registry);
        if let Some(old_factory) = moved_from {
            self.inner.stream.publish(LiveEvent::Removed {
                id: gateway.id,
                factory_id: old_factory,
            });
        }
        self.inner.publish_gateway(record, lease);
    }
}

/// What the store calls. It holds the orchestrator weakly: the orchestrator
/// holds the store, so a strong handle here was a cycle that kept both, and
/// their database pool, alive after the last user dropped them.
struct InventoryHook(std::sync::Weak<Inner>);

impl InventoryHook {
    fn orchestrator(&self) -> Option<Orchestrator> {
        self.0.upgrade().map(|inner| Orchestrator { inner })
    }
}

impl InventoryObserver for InventoryHook {
    fn gateway_created(&self, gateway: &Gateway) {
        if let Some(orchestrator) = self.orchestrator() {
            orchestrator.gateway_created(gateway);
        }
    }

    fn gateway_updated(&self, gateway: &Gateway, change: ConnectionChange) {
        if let Some(orchestrator) = self.orchestrator() {
            orchestrator.gateway_updated(gateway, change);
        }
    }

    fn gateways_deleted(&self, ids: &[Uuid]) {
        if let Some(orchestrator) = self.orchestrator() {
            orchestrator.gateways_deleted(ids);
        }
    }
}

/// Applies supervisor events to the registry, in order, and publishes them.
async fn record(inner: std::sync::Weak<Inner>, mut events: mpsc::UnboundedReceiver<SupervisorEvent>) {
    while let Some(SupervisorEvent {
        gateway: id,
        generation,
        event,
    }) = events.recv().await
    {
        let Some(inner) = inner.upgrade() else { return };
        let mut writes = Vec::new();
        let mut published = Vec::new();
        let mut record_published = None;
        {
            let mut registry = inner.registry.write().expect("registry lock");
            let Some(entry) = registry.get_mut(&id) else { continue };
            // A supervisor that was replaced or stopped (still closing) reports too: only the
            // current one speaks for the gateway, and a disabled gateway has none.
            if entry.supervisor.as_ref().map(|s| s.generation) != Some(generation) {
                continue;
            }
            // A supervisor runs only under a lease.
            let Some(fence) = entry.lease else { continue };
            let fenced_event = |at, kind, message| event_row(id, fence, at, kind, message);
            match event {
                GatewayEvent::StateChanged { state, at, error } => {
                    let previous = entry.live.state;
                    let next = connection_state(&state);
                    let at = utc(at);
                    entry.live.state = next;
                    entry.live.since = at;
                    entry.live.next_attempt_at = match &state {
                        GatewayState::Backoff { next_attempt } | GatewayState::AuthFailed { next_attempt } => {
                            Some(utc(*next_attempt))
                        }
                        _ => None,
                    };
                    if let Some(error) = &error {
                        entry.live.last_error = Some(error.clone());
                    }
                    match next {
                        ConnectionState::Online => {
                            entry.live.online_since = Some(at);
                            entry.live.last_seen_at = Some(at);
                            entry.live.last_error = None;
                            writes.push(WriteJob::Event(fenced_event(at, "connected", None)));
                            writes.push(WriteJob::Seen(id, at, fence));
                        }
                        ConnectionState::AuthFailed => {
                            entry.live.online_since = None;
                            writes.push(WriteJob::Event(fenced_event(at, "auth_failed", error)));
                        }
                        _ if previous == ConnectionState::Online => {
                            entry.live.online_since = None;
                            writes.push(WriteJob::Event(fenced_event(at, "disconnected", error)));
                        }
                        // The gateway closed with 1000/1008 during the handshake: no retry follows.
                        ConnectionState::Disconnected
                            if error.is_some()
                                && matches!(
                                    previous,
                                    ConnectionState::Connecting | ConnectionState::Authenticating
                                ) =>
                        {
                            writes.push(WriteJob::Event(fenced_event(at, "error", error)));
                        }
                        // A failed attempt; not the wait after a loss, already recorded above.
                        ConnectionState::Backoff if error.is_some() && previous != ConnectionState::Disconnected => {
                            writes.push(WriteJob::Event(fenced_event(at, "error", error)));
                        }
                        _ => {}
                    }
                    if previous != next || next != ConnectionState::Online {
                        record_published = Some((fresh_record(entry), fence));
                    }
                }
                GatewayEvent::LoggedIn { .. } => {}
                GatewayEvent::SensorsDiscovered { sensors, .. } => {
                    entry.live.sensors = sensors
                        .iter()
                        .map(|s| SensorLive {
                            serial: s.serial.0,
                            part_number: s.part_number.clone(),
                            read_rate: s.read_rate,
                            samples: s.samples.map(|n| n as u32),
                            connected: s.connected,
                        })
                        .collect();
                    let discovered = sensors
                        .iter()
                        .map(|s| store::DiscoveredSensor {
                            serial: s.serial.0,
                            part_number: s.part_number.clone(),
                            read_rate: s.read_rate,
                            samples: s.samples.map(|n| n as u32),
                            connected: s.connected,
                            metadata: serde_json::to_value(s)
                                .ok()
                                .and_then(|v| v.as_object().cloned())
                                .unwrap_or_default(),
                        })
                        .collect();
                    writes.push(WriteJob::Sensors {
                        gateway: id,
                        fence,
                        sensors: discovered,
                    });
                    record_published = Some((fresh_record(entry), fence));
                }
                GatewayEvent::ReadingStarted { serial, at } => {
                    let at = utc(at);
                    for &reading in entry.pending_readings.get(&serial.0).into_iter().flatten() {
                        writes.push(WriteJob::ReadingStarted { reading, at });
                        published.push(ReadingProgress {
                            reading_id: reading,
                            gateway: id,
                            factory_id: entry.gateway.factory_id,
                            serial: serial.0,
                            stage: ReadingStage::Started,
                            at,
                            error: None,
                        });
                    }
                }
                GatewayEvent::ReadingReceived { serial, at, reading } => {
                    let sensor = entry.live.sensors.iter().find(|s| s.serial == serial.0);
                    let request = NewReading {
                        gateway: id,
                        serial: serial.0,
                        requested_at: utc(at),
                        samples: sensor.and_then(|s| s.samples),
                        sample_rate: sensor.and_then(|s| s.read_rate),
                    };
                    tokio::spawn(store_received_reading(
                        inner.clone(),
                        entry.gateway.factory_id,
                        request,
                        reading,
                    ));
                }
                // Results arrive through the reading request's reply.
                GatewayEvent::ReadingFinished { .. } | GatewayEvent::ReadingFailed { .. } => {}
            }
        }
        for job in writes {
            if inner.writes.try_send(job).is_err() {
                inner.metrics.writes_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some((record, fence)) = record_published {
            inner.publish_gateway(record, Some(fence));
        }
        for progress in published {
            inner.publish_reading(progress);
        }
    }
}

fn event_row(
    gateway: Uuid,
    fence: i64,
    at: DateTime<Utc>,
    kind: &'static str,
    message: Option<String>,
) -> store::NewGatewayEvent {
    store::NewGatewayEvent {
        gateway,
        fence: Some(fence),
        at,
        kind,
        close_code: message.as_deref().and_then(close_code_of),
        message,
    }
}

/// The WebSocket close code a disconnect reason names ("… code 1006 …"), if any.
fn close_code_of(message: &str) -> Option<i32> {
    let index = message.find("code ")?;
    let digits: String = message[index + 5..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Periodic work: `last_seen_at` for every online gateway in one statement, readings
/// left behind, scheduled readings, and retention.
async fn tick(inner: std::sync::Weak<Inner>) {
    let Some(interval) = inner.upgrade().map(|i| i.config.last_seen_interval) else {
        return;
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let mut last_purge = std::time::Instant::now() - Duration::from_secs(3600);
    // Sensors heard for the first time take up their factory's default schedule.
    let mut last_defaults = std::time::Instant::now();
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Utc::now();
        let online: Vec<(Uuid, i64)> = {
            let mut registry = inner.registry.write().expect("registry lock");
            registry
                .values_mut()
                .filter(|e| e.supervisor.is_some() && e.live.state == ConnectionState::Online)
                .filter_map(|e| {
                    e.live.last_seen_at = Some(now);
                    Some((e.gateway.id, e.lease?))
                })
                .collect()
        };
        if let Err(err) = inner.store.touch_last_seen(&online).await {
            tracing::warn!(%err, "updating last_seen_at");
        }
        fail_abandoned_readings(&inner).await;
        if last_defaults.elapsed() >= Duration::from_secs(60) {
            last_defaults = std::time::Instant::now();
            if let Err(err) = inner.store.apply_schedule_defaults().await {
                tracing::warn!(%err, "applying default schedules");
            }
        }
        schedule::run_due(&Orchestrator { inner: inner.clone() }).await;
        if last_purge.elapsed() >= Duration::from_secs(3600) {
            last_purge = std::time::Instant::now();
            let events_before = now - chrono::Duration::from_std(inner.config.event_retention).unwrap_or_default();
            let readings_before = now - chrono::Duration::from_std(inner.config.reading_retention).unwrap_or_default();
            match inner
                .store
                .purge_history(events_before, readings_before, inner.config.readings_kept_per_sensor)
                .await
            {
                Ok((events, readings)) if events + readings > 0 => {
                    tracing::info!(events, readings, "purged history past retention")
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "purging history"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_are_read_from_reasons() {
        assert_eq!(close_code_of("connection closed (code 1006): abnormal"), Some(1006));
        assert_eq!(close_code_of("timed out"), None);
    }
}
