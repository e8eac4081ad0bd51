//! Keeps one gateway connected for as long as it is wanted: the unit the server's orchestrator
//! runs once per gateway.
//!
//! [`GatewaySupervisor::spawn`] starts a task that connects, logs in, subscribes and discovers;
//! reconnects with jittered exponential backoff when the connection is lost (reset after a
//! connection stayed up `stable_after`); waits `auth_failure_delay` after rejected credentials;
//! re-subscribes on every new connection; stays disconnected, without reconnecting, after the
//! gateway closes with code 1000 or 1008 (§1.14) until a command asks it to connect; hands on
//! readings it did not ask for (§1.8); and reports everything as [`GatewayEvent`]s. Commands
//! ([`GatewayCommand`]) take readings, refresh the sensor list, reconfigure, reconnect,
//! enable/disable and shut down. Shutdown (or dropping the handle) unsubscribes, closes with code
//! 1000 and ends the task; no other task is left behind.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use rand::Rng;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, Instrument};

use crate::config::{BackoffConfig, ClientConfig};
use crate::counters::{CounterSnapshot, Counters};
use crate::credentials::CredentialsProvider;
use crate::error::Error;
use crate::frame::{LoginReply, SensorInfo, Serial};
use crate::session::{ConnectPhase, Reading, Session};
use crate::tls::CertificatePin;

/// What a supervisor needs to know about its gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct SupervisorConfig {
    /// `ws://host:port` or `wss://host:port`.
    pub url: String,
    /// For `wss://`: accept exactly the certificate with this fingerprint instead of verifying
    /// it against the platform's root certificates (gateways with self-signed certificates).
    pub tls_pin: Option<CertificatePin>,
    pub client: ClientConfig,
    pub backoff: BackoffConfig,
    /// Re-run discovery this often while online (sensors come and go); `None` never.
    pub rediscover_interval: Option<Duration>,
    /// Start disabled (no connection until [`GatewayCommand::SetEnabled`]`(true)`).
    pub start_disabled: bool,
}

impl SupervisorConfig {
    pub fn new(url: impl Into<String>) -> Self {
        SupervisorConfig {
            url: url.into(),
            tls_pin: None,
            client: ClientConfig::default(),
            backoff: BackoffConfig::default(),
            rediscover_interval: Some(Duration::from_secs(300)),
            start_disabled: false,
        }
    }
}

/// The connection state of a gateway, as the orchestrator's registry shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GatewayState {
    /// Not connected and not trying (before the first attempt, or just after a loss).
    #[default]
    Disconnected,
    /// TCP connect, TLS (`wss://`) and WebSocket handshake.
    Connecting,
    /// Socket open, logging in.
    Authenticating,
    /// Logged in, subscribed, sensors known.
    Online,
    /// Waiting before the next attempt.
    Backoff { next_attempt: SystemTime },
    /// The gateway rejected the credentials; waiting (much longer) before trying again.
    AuthFailed { next_attempt: SystemTime },
    /// Disabled by command; no connection.
    Disabled,
    /// The supervisor has ended.
    Stopped,
}

impl GatewayState {
    pub fn name(&self) -> &'static str {
        match self {
            GatewayState::Disconnected => "disconnected",
            GatewayState::Connecting => "connecting",
            GatewayState::Authenticating => "authenticating",
            GatewayState::Online => "online",
            GatewayState::Backoff { .. } => "backoff",
            GatewayState::AuthFailed { .. } => "auth_failed",
            GatewayState::Disabled => "disabled",
            GatewayState::Stopped => "stopped",
        }
    }
}

/// What a supervisor reports.
#[derive(Clone, Debug)]
pub enum GatewayEvent {
    /// The state changed. `error` is a one-line reason (for `Backoff`, `AuthFailed`, and for
    /// `Disconnected` after a loss), never containing a password.
    StateChanged {
        state: GatewayState,
        at: SystemTime,
        error: Option<String>,
    },
    /// Login succeeded (the `RTN_LOGIN` data).
    LoggedIn { login: LoginReply, at: SystemTime },
    /// The sensor list, after each connection and whenever a re-discovery changes it.
    SensorsDiscovered { sensors: Vec<SensorInfo>, at: SystemTime },
    /// The gateway confirmed a reading started (`NOT_DYN_READING_STARTED`).
    ReadingStarted { serial: Serial, at: SystemTime },
    ReadingFinished {
        serial: Serial,
        at: SystemTime,
        reading: Arc<Reading>,
    },
    ReadingFailed {
        serial: Serial,
        at: SystemTime,
        error: String,
    },
    /// A reading this supervisor did not ask for: triggered by another client or by the
    /// gateway's own schedule (§1.8).
    ReadingReceived {
        serial: Serial,
        at: SystemTime,
        reading: Arc<Reading>,
    },
}

/// Requests to a supervisor. Replies, where there are any, go through the enclosed channel.
#[derive(Debug)]
pub enum GatewayCommand {
    /// Take a reading now; fails at once if the gateway is not online.
    TakeReading {
        serial: Serial,
        reply: oneshot::Sender<Result<Arc<Reading>, Error>>,
    },
    /// Re-run discovery now.
    RefreshSensors {
        reply: Option<oneshot::Sender<Result<Vec<SensorInfo>, Error>>>,
    },
    /// Replace the configuration (URL, timeouts…) and reconnect with it at once.
    Reconfigure(Box<SupervisorConfig>),
    /// Drop the connection (or cut a wait short) and connect again now, e.g. after the
    /// credentials changed.
    Reconnect,
    /// `false`: close and stay disconnected (state `Disabled`); `true`: resume.
    SetEnabled(bool),
    /// Close cleanly and end the supervisor.
    Shutdown,
}

/// Where events go. Called from the supervisor task; it must not block.
#[derive(Clone)]
pub struct EventSink(Arc<dyn Fn(GatewayEvent) + Send + Sync>);

impl EventSink {
    pub fn new(emit: impl Fn(GatewayEvent) + Send + Sync + 'static) -> Self {
        EventSink(Arc::new(emit))
    }

    /// A sink that forwards to an unbounded channel, and its receiver.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<GatewayEvent>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            EventSink::new(move |event| {
                let _ = sender.send(event);
            }),
            receiver,
        )
    }

    /// A sink that drops every event.
    pub fn discard() -> Self {
        EventSink::new(|_| {})
    }

    pub fn emit(&self, event: GatewayEvent) {
        (self.0)(event)
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

/// The live status of one supervised gateway, shared with whoever wants to read it (the
/// orchestrator's registry): current state and counters, updated in place.
#[derive(Debug, Default)]
pub struct GatewayStatus {
    counters: Arc<Counters>,
    state: Mutex<GatewayState>,
}

impl GatewayStatus {
    pub fn state(&self) -> GatewayState {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// The live counters, shared with the gateway's sessions.
    pub fn live_counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    fn set_state(&self, state: GatewayState) {
        *self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }
}

/// The handle of a running supervisor. Dropping it shuts the supervisor down (in the background);
/// [`GatewaySupervisor::shutdown`] does the same and waits for it.
#[derive(Debug)]
pub struct GatewaySupervisor {
    commands: mpsc::UnboundedSender<GatewayCommand>,
    status: Arc<GatewayStatus>,
    task: Option<JoinHandle<()>>,
}

impl GatewaySupervisor {
    /// Starts the supervisor task on the current Tokio runtime, inside the caller's current
    /// tracing span (enter a span with the gateway's id first to tag every log line).
    pub fn spawn(config: SupervisorConfig, credentials: Arc<dyn CredentialsProvider>, events: EventSink) -> Self {
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let status = Arc::new(GatewayStatus::default());
        let task = tokio::spawn(
            run_gateway(config, credentials, commands_rx, events, status.clone()).instrument(tracing::Span::current()),
        );
        GatewaySupervisor {
            commands: commands_tx,
            status,
            task: Some(task),
        }
    }

    /// Sends a command; `false` if the supervisor has ended.
    pub fn send(&self, command: GatewayCommand) -> bool {
        self.commands.send(command).is_ok()
    }

    /// A sender for commands, for callers that keep their own handle.
    pub fn command_sender(&self) -> mpsc::UnboundedSender<GatewayCommand> {
        self.commands.clone()
    }

    pub fn state(&self) -> GatewayState {
        self.status.state()
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.status.counters()
    }

    /// State and counters, shared and updated in place.
    pub fn status(&self) -> Arc<GatewayStatus> {
        self.status.clone()
    }

    pub async fn take_reading(&self, serial: Serial) -> Result<Arc<Reading>, Error> {
        let (reply, result) = oneshot::channel();
        if !self.send(GatewayCommand::TakeReading { serial, reply }) {
            return Err(Error::NotOnline("supervisor stopped".into()));
        }
        result
            .await
            .unwrap_or_else(|_| Err(Error::NotOnline("supervisor stopped".into())))
    }

    pub async fn refresh_sensors(&self) -> Result<Vec<SensorInfo>, Error> {
        let (reply, result) = oneshot::channel();
        if !self.send(GatewayCommand::RefreshSensors { reply: Some(reply) }) {
            return Err(Error::NotOnline("supervisor stopped".into()));
        }
        result
            .await
            .unwrap_or_else(|_| Err(Error::NotOnline("supervisor stopped".into())))
    }

    pub fn reconfigure(&self, config: SupervisorConfig) {
        self.send(GatewayCommand::Reconfigure(Box::new(config)));
    }

    pub fn reconnect(&self) {
        self.send(GatewayCommand::Reconnect);
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.send(GatewayCommand::SetEnabled(enabled));
    }

    /// Closes cleanly and waits for the task to end.
    pub async fn shutdown(mut self) {
        self.send(GatewayCommand::Shutdown);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The supervisor loop itself, for callers that run it in a task of their own. Ends on
/// [`GatewayCommand::Shutdown`] or when every command sender is dropped; `status` is kept up to
/// date throughout.
pub async fn run_gateway(
    config: SupervisorConfig,
    credentials: Arc<dyn CredentialsProvider>,
    commands: mpsc::UnboundedReceiver<GatewayCommand>,
    events: EventSink,
    status: Arc<GatewayStatus>,
) {
    let mut supervisor = Supervisor {
        enabled: !config.start_disabled,
        counters: status.counters.clone(),
        config,
        credentials,
        commands,
        events,
        status,
        attempt: 0,
    };
    supervisor.run().await;
    supervisor.set_state(GatewayState::Stopped, None);
}

struct Supervisor {
    config: SupervisorConfig,
    credentials: Arc<dyn CredentialsProvider>,
    commands: mpsc::UnboundedReceiver<GatewayCommand>,
    events: EventSink,
    counters: Arc<Counters>,
    status: Arc<GatewayStatus>,
    enabled: bool,
    /// Failed attempts since the last stable connection.
    attempt: u32,
}

/// What ended a phase of the loop.
enum Next {
    /// Try to connect now.
    Connect,
    /// Wait `Duration` (backoff) before connecting.
    Backoff(Duration, Error),
    AuthFailed(Duration, Error),
    /// The gateway closed with 1000 or 1008 (§1.14): no reconnect until a command asks.
    Idle(Error),
    Stop,
}

/// What a command means for the current phase.
enum Interrupt {
    None,
    Reconnect,
    Stop,
}

impl Supervisor {
    async fn run(&mut self) {
        let mut next = Next::Connect;
        loop {
            if !self.enabled {
                match self.wait_while_disabled().await {
                    Interrupt::Stop => return,
                    _ => next = Next::Connect,
                }
            }
            next = match next {
                Next::Stop => return,
                Next::Connect => self.connect_and_serve().await,
                Next::Backoff(delay, error) => {
                    let until = SystemTime::now() + delay;
                    self.set_state(GatewayState::Backoff { next_attempt: until }, Some(error.to_string()));
                    self.wait(delay).await
                }
                Next::Idle(error) => {
                    self.set_state(GatewayState::Disconnected, Some(error.to_string()));
                    self.wait_for_command().await
                }
                Next::AuthFailed(delay, error) => {
                    let until = SystemTime::now() + delay;
                    self.set_state(
                        GatewayState::AuthFailed { next_attempt: until },
                        Some(error.to_string()),
                    );
                    self.wait(delay).await
                }
            };
        }
    }

    fn set_state(&self, state: GatewayState, error: Option<String>) {
        self.status.set_state(state.clone());
        match &error {
            Some(error) => {
                info!(url = %self.config.url, state = state.name(), %error, "gateway state")
            }
            None => info!(url = %self.config.url, state = state.name(), "gateway state"),
        }
        self.events.emit(GatewayEvent::StateChanged {
            state,
            at: SystemTime::now(),
            error,
        });
    }

    fn emit(&self, event: GatewayEvent) {
        self.events.emit(event);
    }

    /// Handles a command arriving while not online. Returns what the loop must do.
    fn on_command_offline(&mut self, command: Option<GatewayCommand>, why: &str) -> Interrupt {
        match command {
            None | Some(GatewayCommand::Shutdown) => Interrupt::Stop,
            Some(GatewayCommand::TakeReading { reply, .. }) => {
                let _ = reply.send(Err(Error::NotOnline(why.to_owned())));
                Interrupt::None
            }
            Some(GatewayCommand::RefreshSensors { reply }) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(Error::NotOnline(why.to_owned())));
                }
                Interrupt::None
            }
            Some(GatewayCommand::Reconfigure(config)) => {
                self.config = *config;
                self.attempt = 0;
                Interrupt::Reconnect
            }
            Some(GatewayCommand::Reconnect) => {
                self.attempt = 0;
                Interrupt::Reconnect
            }
            Some(GatewayCommand::SetEnabled(enabled)) => {
                let changed = self.enabled != enabled;
                self.enabled = enabled;
                if changed {
                    Interrupt::Reconnect
                } else {
                    Interrupt::None
                }
            }
        }
    }

    async fn wait_while_disabled(&mut self) -> Interrupt {
        self.set_state(GatewayState::Disabled, None);
        while !self.enabled {
            let command = self.commands.recv().await;
            if let Interrupt::Stop = self.on_command_offline(command, "disabled") {
                return Interrupt::Stop;
            }
        }
        self.attempt = 0;
        Interrupt::Reconnect
    }

    /// Sleeps for a backoff delay, answering commands meanwhile.
    async fn wait(&mut self, delay: Duration) -> Next {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = sleep_until(until) => return Next::Connect,
                command = self.commands.recv() => match self.on_command_offline(command, "waiting to reconnect") {
                    Interrupt::Stop => return Next::Stop,
                    Interrupt::Reconnect => return Next::Connect,
                    Interrupt::None => {}
                },
            }
        }
    }

    /// Waits, disconnected, until a command asks to connect (or to stop).
    async fn wait_for_command(&mut self) -> Next {
        loop {
            let command = self.commands.recv().await;
            match self.on_command_offline(command, "closed by the gateway") {
                Interrupt::Stop => return Next::Stop,
                Interrupt::Reconnect => return Next::Connect,
                Interrupt::None => {}
            }
        }
    }

    fn backoff_after(&mut self, error: Error) -> Next {
        Counters::bump(&self.counters.connection_failures);
        if error.is_final_close() {
            return Next::Idle(error);
        }
        let unit = rand::thread_rng().gen::<f64>();
        if error.is_auth() {
            Next::AuthFailed(self.config.backoff.auth_delay(unit), error)
        } else {
            let delay = self.config.backoff.delay(self.attempt, unit);
            self.attempt = self.attempt.saturating_add(1);
            Next::Backoff(delay, error)
        }
    }

    /// Runs one step of a connection attempt while answering commands; `Err` with what
    /// to do next when a command ends the attempt (dropping the step closes what it opened).
    async fn while_connecting<T>(&mut self, mut step: impl Future<Output = T> + Unpin) -> Result<T, Next> {
        loop {
            tokio::select! {
                result = &mut step => return Ok(result),
                command = self.commands.recv() => match self.on_command_offline(command, "connecting") {
                    Interrupt::Stop => return Err(Next::Stop),
                    Interrupt::Reconnect => return Err(Next::Connect),
                    Interrupt::None => {}
                },
            }
        }
    }

    async fn connect_and_serve(&mut self) -> Next {
        self.set_state(GatewayState::Connecting, None);
        // Two steps, each in its own allocation, so that a gateway waiting for a handshake
        // slot (inside the credentials provider) holds only that small future, not the
        // large one of the handshakes: at start-up most of a fleet waits at once.
        let provider = self.credentials.clone();
        let credentials = match self.while_connecting(provider.credentials()).await {
            Ok(Ok(credentials)) => credentials,
            Ok(Err(reason)) => {
                let error = Error::Credentials(reason);
                debug!(url = %self.config.url, %error, "connection attempt failed");
                return self.backoff_after(error);
            }
            Err(next) => return next,
        };
        let config = self.config.clone();
        let counters = self.counters.clone();
        let events = self.events.clone();
        let status = self.status.clone();
        let connecting = Box::pin(async move {
            let mut phase_reporter = |phase| {
                if phase == ConnectPhase::Authenticating {
                    status.set_state(GatewayState::Authenticating);
                    events.emit(GatewayEvent::StateChanged {
                        state: GatewayState::Authenticating,
                        at: SystemTime::now(),
                        error: None,
                    });
                }
            };
            Session::connect_with(
                &config.url,
                config.tls_pin.as_ref(),
                &credentials,
                &config.client,
                counters,
                &mut phase_reporter,
            )
            .await
        });
        // The step's allocation is freed when it ends: this function lives as long as the
        // session, and a finished future keeps its memory until dropped.
        let connected = match self.while_connecting(connecting).await {
            Ok(connected) => connected,
            Err(next) => return next,
        };
        let session = match connected {
            Ok(session) => session,
            Err(error) => {
                debug!(url = %self.config.url, %error, "connection attempt failed");
                return self.backoff_after(error);
            }
        };

        Counters::bump(&self.counters.sessions_established);
        let online_since = Instant::now();
        self.set_state(GatewayState::Online, None);
        self.emit(GatewayEvent::LoggedIn {
            login: session.login().clone(),
            at: SystemTime::now(),
        });
        self.emit(GatewayEvent::SensorsDiscovered {
            sensors: session.sensors(),
            at: SystemTime::now(),
        });

        let outcome = self.serve(&session).await;
        if online_since.elapsed() >= self.config.backoff.stable_after {
            self.attempt = 0;
        }
        match outcome {
            Served::Lost(error) if error.is_final_close() => self.backoff_after(error),
            Served::Lost(error) => {
                self.set_state(GatewayState::Disconnected, Some(error.to_string()));
                self.backoff_after(error)
            }
            Served::Stop => {
                session.close().await;
                Next::Stop
            }
            Served::Reconnect => {
                session.close().await;
                Next::Connect
            }
        }
    }

    /// Runs while the session is up: answers commands, runs readings concurrently, re-discovers.
    async fn serve(&mut self, session: &Session) -> Served {
        let mut work = FuturesUnordered::new();
        let mut rediscover = self.config.rediscover_interval.map(|period| {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let outcome = loop {
            tokio::select! {
                error = session.closed() => break Served::Lost(error),
                Some(()) = work.next(), if !work.is_empty() => {}
                Some(received) = session.unsolicited_reading() => match received {
                    Ok(reading) => self.emit(GatewayEvent::ReadingReceived {
                        serial: reading.serial,
                        at: SystemTime::now(),
                        reading: Arc::new(reading),
                    }),
                    Err(error) => {
                        Counters::bump(&self.counters.readings_failed);
                        info!(url = %self.config.url, %error, "unusable unsolicited reading");
                    }
                },
                _ = async { rediscover.as_mut().expect("guarded").tick().await }, if rediscover.is_some() => {
                    work.push(self.refresh(session, None));
                }
                command = self.commands.recv() => match command {
                    None | Some(GatewayCommand::Shutdown) => break Served::Stop,
                    Some(GatewayCommand::TakeReading { serial, reply }) => {
                        work.push(self.reading(session, serial, reply));
                    }
                    Some(GatewayCommand::RefreshSensors { reply }) => {
                        work.push(self.refresh(session, reply));
                    }
                    Some(GatewayCommand::Reconfigure(config)) => {
                        self.config = *config;
                        self.attempt = 0;
                        break Served::Reconnect;
                    }
                    Some(GatewayCommand::Reconnect) => {
                        self.attempt = 0;
                        break Served::Reconnect;
                    }
                    Some(GatewayCommand::SetEnabled(enabled)) => {
                        if !enabled {
                            self.enabled = false;
                            break Served::Reconnect;
                        }
                    }
                },
            }
        };
        if !work.is_empty() {
            // Readings still running get their answer: the close fails them at once.
            session.close().await;
            while work.next().await.is_some() {}
        }
        outcome
    }

    fn refresh<'a>(
        &self,
        session: &'a Session,
        reply: Option<oneshot::Sender<Result<Vec<SensorInfo>, Error>>>,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        let events = self.events.clone();
        Box::pin(async move {
            let before = session.sensors();
            let result = session.refresh_sensors().await;
            if let Ok(sensors) = &result {
                if *sensors != before {
                    events.emit(GatewayEvent::SensorsDiscovered {
                        sensors: sensors.clone(),
                        at: SystemTime::now(),
                    });
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        })
    }

    fn reading<'a>(
        &self,
        session: &'a Session,
        serial: Serial,
        reply: oneshot::Sender<Result<Arc<Reading>, Error>>,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        let events = self.events.clone();
        let counters = self.counters.clone();
        Box::pin(async move {
            let started_events = events.clone();
            let result = session
                .take_reading_observed(serial, move || {
                    started_events.emit(GatewayEvent::ReadingStarted {
                        serial,
                        at: SystemTime::now(),
                    })
                })
                .await
                .map(Arc::new);
            match &result {
                Ok(reading) => {
                    Counters::bump(&counters.readings_completed);
                    events.emit(GatewayEvent::ReadingFinished {
                        serial,
                        at: SystemTime::now(),
                        reading: reading.clone(),
                    });
                }
                Err(error) => {
                    Counters::bump(&counters.readings_failed);
                    events.emit(GatewayEvent::ReadingFailed {
                        serial,
                        at: SystemTime::now(),
                        error: error.to_string(),
                    });
                }
            }
            let _ = reply.send(result);
        })
    }
}

enum Served {
    Lost(Error),
    Stop,
    Reconnect,
}
