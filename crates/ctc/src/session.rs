//! One authenticated connection to a gateway.
//!
//! [`Session::connect`] opens the socket, logs in (`POST_LOGIN` is the first frame, §1.2),
//! subscribes (`POST_SUB_CHANGES`) and discovers the sensors (`GET_DYN_CONNECTED`). A background
//! task owns the socket; [`Session`] handles talk to it through a channel. The task:
//! - sends one command at a time and pairs replies in FIFO order, dropping replies that cannot
//!   answer the pending command (duplicates, strays) so they never shift later pairings (§1.6);
//! - fails every pending command and reading at once when the connection ends;
//! - routes `NOT_DYN_*` notifications to the reading waiting for that serial, and hands a
//!   `NOT_DYN_READING` nobody here asked for (another client's trigger, the gateway's own
//!   schedule, §1.8) to [`Session::unsolicited_reading`];
//! - lets a trigger's own `NOT_DYN_*` stand in for its `RTN_*`, which may never come (§1.3, §1.17);
//! - sends WebSocket ping control frames and declares the connection dead when nothing arrives;
//! - ends when the last handle is dropped or [`Session::close`] is called (unsubscribe, then a
//!   close frame with code 1000).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn, Instrument};

use crate::config::ClientConfig;
use crate::counters::Counters;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::frame::{
    parse_inbound, parse_sensor_list, Command, CommandKind, Inbound, LoginReply, ReadingData, ReadingStarted,
    SensorInfo, Serial, TemperatureData, CLIENT_ENDPOINT, GATEWAY_ENDPOINT,
};
use crate::tls::{self, CertificatePin};
use crate::waveform::{decode_waveform, DecodeOptions, Waveform};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A completed reading.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub serial: Serial,
    /// The gateway's reading id (`ID`).
    pub id: Option<i64>,
    /// The gateway's `Time` string, as sent (format unknown, §1.11).
    pub time: Option<String>,
    pub waveform: Waveform,
    /// `NOT_DYN_TEMP`, presumably °C; `None` if it did not arrive in time.
    pub temperature: Option<f64>,
    /// Unknown fields of the `NOT_DYN_READING` data.
    pub extra: Map<String, Value>,
    pub received_at: SystemTime,
}

/// Steps of [`Session::connect_with`], reported to its observer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectPhase {
    /// TCP connect, TLS (`wss://`) and WebSocket handshake.
    Connecting,
    /// Socket open, `POST_LOGIN` sent.
    Authenticating,
    /// Logged in; subscribing and discovering sensors.
    Subscribing,
}

/// Validates the URL form accepted by the predecessor: `ws://` or `wss://` (§1.1).
pub fn validate_url(url: &str) -> Result<(), Error> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| Error::InvalidUrl {
            url: url.to_owned(),
            reason: "must start with ws:// or wss://".into(),
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::InvalidUrl {
            url: url.to_owned(),
            reason: "no host".into(),
        });
    }
    Ok(())
}

/// Opens the WebSocket (TCP connect, TLS for `wss://`, WebSocket handshake) within
/// `config.connect_timeout`. With a pin, the gateway's certificate must be the pinned one.
async fn open_socket(url: &str, tls_pin: Option<&CertificatePin>, config: &ClientConfig) -> Result<Socket, Error> {
    validate_url(url)?;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(config.buffer_size)
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    let connecting = async {
        let connector = tls::connector(url, tls_pin).await?;
        tokio_tungstenite::connect_async_tls_with_config(url, Some(ws_config), true, Some(connector))
            .await
            .map_err(|error| connect_error(url, error))
    };
    match timeout(config.connect_timeout, connecting).await {
        Err(_) => Err(Error::ConnectTimeout {
            url: url.to_owned(),
            after: config.connect_timeout,
        }),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(error)) => Err(error),
    }
}

fn connect_error(url: &str, error: tungstenite::Error) -> Error {
    use tungstenite::Error as Ws;
    let url = url.to_owned();
    match error {
        Ws::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => Error::Refused { url },
        // tokio-rustls's "tls handshake eof": typically a plain ws:// server.
        Ws::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof && url.starts_with("wss://") => Error::Handshake {
            url,
            reason: "TLS: the gateway closed the connection during the handshake (does it serve wss://?)".into(),
        },
        Ws::Io(io) => match tls::tls_failure(&io) {
            Some(reason) => Error::Handshake { url, reason },
            None => Error::Connect {
                url,
                reason: io.to_string(),
            },
        },
        Ws::Tls(tungstenite::error::TlsError::InvalidDnsName) => Error::InvalidUrl {
            url,
            reason: "the host is neither a DNS name nor an IP address".into(),
        },
        Ws::Url(reason) => Error::InvalidUrl {
            url,
            reason: reason.to_string(),
        },
        other => Error::Handshake {
            url,
            reason: other.to_string(),
        },
    }
}

/// A logged-in, subscribed connection to one gateway. Cheap to clone; the connection closes when
/// the last clone is dropped or [`Session::close`] is called.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    link: Link,
    login: LoginReply,
    sensors: Mutex<Vec<SensorInfo>>,
    config: ClientConfig,
    next_token: AtomicU64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("url", &self.inner.url)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Session {
    /// Connects, logs in, subscribes and discovers the sensors. A `wss://` gateway's certificate
    /// must verify against the platform's root certificates (see [`Session::connect_pinned`]).
    pub async fn connect(url: &str, credentials: &Credentials, config: &ClientConfig) -> Result<Session, Error> {
        Self::connect_with(url, None, credentials, config, Arc::default(), |_| {}).await
    }

    /// [`Session::connect`] to a `wss://` gateway that must present the certificate `tls_pin`
    /// (typically a self-signed one), whatever its chain, names and dates.
    pub async fn connect_pinned(
        url: &str,
        tls_pin: &CertificatePin,
        credentials: &Credentials,
        config: &ClientConfig,
    ) -> Result<Session, Error> {
        Self::connect_with(url, Some(tls_pin), credentials, config, Arc::default(), |_| {}).await
    }

    /// [`Session::connect`], pinned to `tls_pin` if there is one (which needs a `wss://` URL),
    /// counting into `counters` and reporting each step to `on_phase`.
    pub async fn connect_with(
        url: &str,
        tls_pin: Option<&CertificatePin>,
        credentials: &Credentials,
        config: &ClientConfig,
        counters: Arc<Counters>,
        mut on_phase: impl FnMut(ConnectPhase),
    ) -> Result<Session, Error> {
        on_phase(ConnectPhase::Connecting);
        Counters::bump(&counters.connection_attempts);
        let socket = open_socket(url, tls_pin, config).await?;
        let link = Link::spawn(socket, url.to_owned(), config.clone(), counters);

        on_phase(ConnectPhase::Authenticating);
        let login = match link
            .command(Command::Login(credentials.clone()), config.login_timeout)
            .await
        {
            Ok(Inbound::Login(login)) if login.succeeded() => login,
            Ok(Inbound::Login(_)) => {
                return Err(Error::Auth(format!(
                    "gateway rejected the credentials of {} (RTN_LOGIN Success false)",
                    credentials.email
                )))
            }
            Ok(Inbound::Error(reply)) if reply.refuses_credentials() => return Err(Error::Auth(reply.to_string())),
            Ok(Inbound::Error(reply)) => return Err(Error::Protocol(format!("the gateway failed the login: {reply}"))),
            Ok(other) => {
                return Err(Error::Protocol(format!(
                    "unexpected {} in answer to POST_LOGIN",
                    other.frame_type()
                )))
            }
            Err(Error::CommandTimeout { .. }) => return Err(Error::LoginTimeout(config.login_timeout)),
            Err(error) => return Err(error),
        };
        info!(url, email = %credentials.email, "logged in to gateway");

        on_phase(ConnectPhase::Subscribing);
        match link.command(Command::Subscribe, config.command_timeout).await? {
            Inbound::Error(reply) => {
                return Err(Error::Gateway {
                    command: CommandKind::Subscribe.frame_type(),
                    reply,
                })
            }
            _ => debug!(url, "subscribed to changes"),
        }
        let session = Session {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                link,
                login,
                sensors: Mutex::default(),
                config: config.clone(),
                next_token: AtomicU64::new(1),
            }),
        };
        session.refresh_sensors().await?;
        Ok(session)
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The `RTN_LOGIN` data (user name, access level).
    pub fn login(&self) -> &LoginReply {
        &self.inner.login
    }

    /// The sensors of the last discovery, sorted by serial.
    pub fn sensors(&self) -> Vec<SensorInfo> {
        lock(&self.inner.sensors).clone()
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.inner.link.counters
    }

    /// Sends `GET_DYN_CONNECTED` and stores the answer.
    pub async fn refresh_sensors(&self) -> Result<Vec<SensorInfo>, Error> {
        let reply = self.command(Command::GetConnected).await?;
        let data = match reply {
            Inbound::Dyn(data) | Inbound::OtherReply { data, .. } => data,
            Inbound::Error(reply) => {
                return Err(Error::Gateway {
                    command: CommandKind::GetConnected.frame_type(),
                    reply,
                })
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected {} in answer to GET_DYN_CONNECTED",
                    other.frame_type()
                )))
            }
        };
        let list = parse_sensor_list(&data).map_err(|error| Error::Protocol(error.to_string()))?;
        for skipped in &list.skipped {
            warn!(url = %self.inner.url, "skipping unusable sensor {skipped}");
        }
        *lock(&self.inner.sensors) = list.sensors.clone();
        Ok(list.sensors)
    }

    /// Sends one command and returns its reply frame (an `RTN_ERR` is returned, not an error).
    pub async fn command(&self, command: Command) -> Result<Inbound, Error> {
        self.inner
            .link
            .command(command, self.inner.config.command_timeout)
            .await
    }

    /// The next reading this session did not ask for (triggered by another client or by the
    /// gateway's own schedule, §1.8), decoded against the sensor's `Samples`. `None` once the
    /// connection has ended. Its temperature is not awaited (`None`).
    pub async fn unsolicited_reading(&self) -> Option<Result<Reading, Error>> {
        let data = *self.inner.link.unsolicited.lock().await.recv().await?;
        let serial = data.serial;
        let sensor = lock(&self.inner.sensors).iter().find(|s| s.serial == serial).cloned();
        let options = DecodeOptions::expecting(sensor.and_then(|s| s.expected_samples()));
        Some(
            decode_waveform(&data.x, &data.y, &data.z, &options)
                .map_err(|source| Error::Waveform { serial, source })
                .map(|waveform| Reading {
                    serial,
                    id: data.id,
                    time: data.time,
                    waveform,
                    temperature: None,
                    extra: data.extra,
                    received_at: SystemTime::now(),
                }),
        )
    }

    /// Takes a reading of `serial`: see [`Session::take_reading_observed`].
    pub async fn take_reading(&self, serial: Serial) -> Result<Reading, Error> {
        self.take_reading_observed(serial, || {}).await
    }

    /// Takes a reading: checks the sensor is known and connected (re-discovering once if not),
    /// arms the notification waiters, sends `TAKE_DYN_READING`, waits for
    /// `NOT_DYN_READING_STARTED` (`on_started` is called then), `NOT_DYN_READING` and, briefly,
    /// `NOT_DYN_TEMP`, and decodes the waveform against the sensor's `Samples`.
    pub async fn take_reading_observed(&self, serial: Serial, on_started: impl FnOnce()) -> Result<Reading, Error> {
        let timeouts = &self.inner.config.reading;
        let sensor = self.connected_sensor(serial).await?;
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let (started_tx, started_rx) = oneshot::channel();
        let (reading_tx, reading_rx) = oneshot::channel();
        let (temperature_tx, mut temperature_rx) = oneshot::channel();
        let (ack_tx, ack_rx) = oneshot::channel();
        let link = &self.inner.link;
        link.send(Request::TakeReading {
            serial,
            timeout: self.inner.config.command_timeout,
            waiter: ReadingWaiter {
                token,
                started: Some(started_tx),
                reading: Some(reading_tx),
                temperature: Some(temperature_tx),
            },
            reply: ack_tx,
        })?;
        // Whatever happens from here on, the waiters are removed when this function returns.
        let _disarm = DisarmOnDrop {
            requests: link.requests.clone(),
            serial,
            token,
        };
        if let Inbound::Error(reply) = link.reply(ack_rx).await? {
            return Err(Error::ReadingFailed {
                serial,
                reason: format!("gateway refused the trigger: {reply}"),
            });
        }

        let mut started_rx = Some(started_rx);
        let mut on_started = Some(on_started);
        let mut reading_rx = reading_rx;
        let mut deadline = Instant::now() + timeouts.started;
        let acquisition = timeouts.acquisition_for(&sensor);
        let data: ReadingData = loop {
            tokio::select! {
                started = async { started_rx.as_mut().expect("guarded").await }, if started_rx.is_some() => {
                    started_rx = None;
                    let started: ReadingStarted = match started {
                        Ok(started) => started,
                        Err(_) => return Err(link.closed_reason()),
                    };
                    if !started.succeeded() {
                        return Err(Error::ReadingFailed {
                            serial,
                            reason: "the gateway reported that the reading failed to start".into(),
                        });
                    }
                    if let Some(on_started) = on_started.take() {
                        on_started();
                    }
                    deadline = Instant::now() + acquisition;
                }
                reading = &mut reading_rx => match reading {
                    Ok(data) => break data,
                    Err(_) => return Err(link.closed_reason()),
                },
                _ = sleep_until(deadline) => {
                    return Err(if started_rx.is_some() {
                        Error::ReadingStartTimeout { serial, after: timeouts.started }
                    } else {
                        Error::ReadingTimeout { serial, after: acquisition }
                    });
                }
            }
        };
        let received_at = SystemTime::now();
        let options = DecodeOptions::expecting(sensor.expected_samples());
        let waveform = decode_waveform(&data.x, &data.y, &data.z, &options)
            .map_err(|source| Error::Waveform { serial, source })?;
        let temperature = match temperature_rx.try_recv() {
            Ok(temperature) => temperature.temp,
            Err(oneshot::error::TryRecvError::Closed) => None,
            Err(oneshot::error::TryRecvError::Empty) => match timeout(timeouts.temperature, temperature_rx).await {
                Ok(Ok(temperature)) => temperature.temp,
                _ => {
                    debug!(%serial, "no temperature with this reading");
                    None
                }
            },
        };
        Ok(Reading {
            serial,
            id: data.id,
            time: data.time,
            waveform,
            temperature,
            extra: data.extra,
            received_at,
        })
    }

    async fn connected_sensor(&self, serial: Serial) -> Result<SensorInfo, Error> {
        let find = |sensors: &[SensorInfo]| sensors.iter().find(|s| s.serial == serial).cloned();
        if let Some(sensor) = find(&lock(&self.inner.sensors)).filter(|s| s.connected) {
            return Ok(sensor);
        }
        // The list may be stale: ask once more before refusing.
        match find(&self.refresh_sensors().await?) {
            Some(sensor) if sensor.connected => Ok(sensor),
            Some(_) => Err(Error::SensorDisconnected(serial)),
            None => Err(Error::UnknownSensor(serial)),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.inner.link.closed.borrow().is_some()
    }

    /// Waits until the connection ends and returns why.
    pub async fn closed(&self) -> Error {
        let mut closed = self.inner.link.closed.clone();
        let reason = match closed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(Error::Closed),
            Err(_) => Error::Closed,
        };
        reason
    }

    /// Closes cleanly: `POST_UNSUB_CHANGES`, then a close frame with code 1000. Pending commands
    /// and readings fail with [`Error::Closed`]. Returns once the connection is gone (bounded by
    /// `close_timeout`).
    pub async fn close(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.inner.link.send(Request::Close { done: done_tx }).is_ok() {
            let _ = done_rx.await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The connection task and its handle
// ---------------------------------------------------------------------------------------------

type ReplySender = oneshot::Sender<Result<Inbound, Error>>;

/// Sent boxed ([`Requests`]): a channel allocates its slots in blocks of 32 up front, per
/// connection, so a slot holds a pointer rather than the largest request.
enum Request {
    Command {
        command: Box<Command>,
        timeout: Duration,
        reply: ReplySender,
    },
    /// Arms the waiters for `serial`, then queues `TAKE_DYN_READING` (in that order, so that no
    /// notification can arrive unobserved).
    TakeReading {
        serial: Serial,
        timeout: Duration,
        waiter: ReadingWaiter,
        reply: ReplySender,
    },
    Disarm {
        serial: Serial,
        token: u64,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

struct ReadingWaiter {
    token: u64,
    started: Option<oneshot::Sender<ReadingStarted>>,
    reading: Option<oneshot::Sender<ReadingData>>,
    temperature: Option<oneshot::Sender<TemperatureData>>,
}

type Requests = mpsc::UnboundedSender<Box<Request>>;

struct DisarmOnDrop {
    requests: Requests,
    serial: Serial,
    token: u64,
}

impl Drop for DisarmOnDrop {
    fn drop(&mut self) {
        let _ = self.requests.send(Box::new(Request::Disarm {
            serial: self.serial,
            token: self.token,
        }));
    }
}

/// The handle side of the connection task.
struct Link {
    requests: Requests,
    closed: watch::Receiver<Option<Error>>,
    counters: Arc<Counters>,
    unsolicited: tokio::sync::Mutex<mpsc::Receiver<Box<ReadingData>>>,
}

/// Unsolicited readings held for [`Session::unsolicited_reading`] before more are dropped
/// (and counted as unmatched notifications): a waveform is large, and nobody may be reading.
const UNSOLICITED_BUFFER: usize = 8;

impl Link {
    fn spawn(socket: Socket, url: String, config: ClientConfig, counters: Arc<Counters>) -> Link {
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = watch::channel(None);
        let (unsolicited_tx, unsolicited_rx) = mpsc::channel(UNSOLICITED_BUFFER);
        let (sink, stream) = socket.split();
        let ping = config.ping_interval.map(|period| {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let task = ConnectionTask {
            url,
            sink,
            stream,
            requests: requests_rx,
            queue: VecDeque::new(),
            in_flight: None,
            readings: HashMap::new(),
            last_received: Instant::now(),
            ping,
            subscribed: false,
            counters: counters.clone(),
            config,
            closed: closed_tx,
            unsolicited: unsolicited_tx,
        };
        // The caller's span (e.g. one carrying a gateway id) follows the connection task.
        tokio::spawn(task.run().instrument(tracing::Span::current()));
        Link {
            requests: requests_tx,
            closed: closed_rx,
            counters,
            unsolicited: tokio::sync::Mutex::new(unsolicited_rx),
        }
    }

    fn closed_reason(&self) -> Error {
        self.closed
            .borrow()
            .clone()
            .unwrap_or_else(|| Error::ConnectionLost("connection task ended".into()))
    }

    fn send(&self, request: Request) -> Result<(), Error> {
        self.requests.send(Box::new(request)).map_err(|_| self.closed_reason())
    }

    async fn reply(&self, reply: oneshot::Receiver<Result<Inbound, Error>>) -> Result<Inbound, Error> {
        match reply.await {
            Ok(result) => result,
            Err(_) => Err(self.closed_reason()),
        }
    }

    async fn command(&self, command: Command, timeout: Duration) -> Result<Inbound, Error> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.send(Request::Command {
            command: Box::new(command),
            timeout,
            reply: reply_tx,
        })?;
        self.reply(reply_rx).await
    }
}

struct Queued {
    command: Command,
    timeout: Duration,
    reply: ReplySender,
    /// The reading armed for this `TAKE_DYN_READING`, disarmed if the trigger fails.
    reading: Option<(Serial, u64)>,
}

struct InFlight {
    kind: CommandKind,
    deadline: Instant,
    timeout: Duration,
    reply: ReplySender,
    reading: Option<(Serial, u64)>,
    /// A reply held back until `.1` ([`CommandKind::may_accept_after_grace`]).
    tentative: Option<(Inbound, Instant)>,
    /// The held reply stands in for a trigger's missing `RTN_*` (see
    /// [`ConnectionTask::notification_answers_trigger`]); it is no stray if a real one comes.
    tentative_is_stand_in: bool,
}

/// How long a tentative reply waits for a better one. Duplicates arrive back to back, so a
/// fraction of a second separates them from a genuine answer.
const TENTATIVE_REPLY_GRACE: Duration = Duration::from_millis(300);

impl InFlight {
    fn next_deadline(&self) -> Instant {
        match &self.tentative {
            Some((_, until)) => self.deadline.min(*until),
            None => self.deadline,
        }
    }
}

struct ConnectionTask {
    url: String,
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    requests: mpsc::UnboundedReceiver<Box<Request>>,
    queue: VecDeque<Queued>,
    in_flight: Option<InFlight>,
    readings: HashMap<Serial, ReadingWaiter>,
    last_received: Instant,
    ping: Option<tokio::time::Interval>,
    subscribed: bool,
    counters: Arc<Counters>,
    config: ClientConfig,
    closed: watch::Sender<Option<Error>>,
    // Boxed: a channel allocates its slots in blocks of 32 up front, per connection.
    unsolicited: mpsc::Sender<Box<ReadingData>>,
}

/// Why the connection task stopped.
enum Exit {
    Failed(Error),
    /// Asked to close (or every handle dropped); `done` is told once the socket is closed.
    Close(Option<oneshot::Sender<()>>),
}

impl ConnectionTask {
    async fn run(mut self) {
        match self.serve().await {
            Exit::Failed(error) => {
                warn!(url = %self.url, %error, "gateway connection ended");
                // Publish the reason before failing the waiters, so that they can read it.
                self.closed.send_replace(Some(error.clone()));
                self.fail_pending(&error);
            }
            Exit::Close(done) => {
                self.closed.send_replace(Some(Error::Closed));
                self.fail_pending(&Error::Closed);
                self.close_politely().await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }

    fn fail_pending(&mut self, reason: &Error) {
        if let Some(flight) = self.in_flight.take() {
            let _ = flight.reply.send(Err(reason.clone()));
        }
        for queued in self.queue.drain(..) {
            let _ = queued.reply.send(Err(reason.clone()));
        }
        // Dropping the senders wakes each reading, which then reports `reason`.
        self.readings.clear();
    }

    async fn serve(&mut self) -> Exit {
        loop {
            if self.in_flight.is_none() {
                if let Some(next) = self.queue.pop_front() {
                    if let Err(error) = self.send_command(next).await {
                        return Exit::Failed(error);
                    }
                }
            }
            let command_deadline = self.in_flight.as_ref().map(InFlight::next_deadline);
            let dead_at = self.last_received + self.config.dead_after;
            tokio::select! {
                message = self.stream.next() => match message {
                    Some(Ok(message)) => {
                        self.last_received = Instant::now();
                        if let Some(error) = self.on_message(message) {
                            return Exit::Failed(error);
                        }
                    }
                    Some(Err(error)) => return Exit::Failed(read_error(error)),
                    None => {
                        return Exit::Failed(Error::ConnectionLost(
                            "the gateway closed the connection".into(),
                        ))
                    }
                },
                request = self.requests.recv() => match request.map(|request| *request) {
                    Some(Request::Close { done }) => return Exit::Close(Some(done)),
                    None => return Exit::Close(None),
                    Some(request) => self.accept(request),
                },
                _ = sleep_until(command_deadline.unwrap_or(dead_at)), if command_deadline.is_some() => {
                    let mut flight = self.in_flight.take().expect("guarded by command_deadline");
                    if let Some((reply, _)) = flight.tentative.take() {
                        debug!(url = %self.url, command = flight.kind.frame_type(), "nothing better came; taking the held reply");
                        self.resolve(flight, reply);
                        continue;
                    }
                    let error = Error::CommandTimeout { command: flight.kind.frame_type(), after: flight.timeout };
                    let _ = flight.reply.send(Err(error.clone()));
                    // A late reply would now be paired with the next command: start afresh.
                    return Exit::Failed(error);
                }
                _ = async { self.ping.as_mut().expect("guarded").tick().await }, if self.ping.is_some() => {
                    let ping = timeout(self.config.command_timeout, self.sink.send(Message::Ping(Default::default())));
                    match ping.await {
                        Ok(Ok(())) => Counters::bump(&self.counters.pings_sent),
                        Ok(Err(error)) => return Exit::Failed(read_error(error)),
                        Err(_) => return Exit::Failed(Error::ConnectionLost("could not send a ping".into())),
                    }
                }
                _ = sleep_until(dead_at) => return Exit::Failed(Error::Dead(self.config.dead_after)),
            }
        }
    }

    fn accept(&mut self, request: Request) {
        match request {
            Request::Command {
                command,
                timeout,
                reply,
            } => self.queue.push_back(Queued {
                command: *command,
                timeout,
                reply,
                reading: None,
            }),
            Request::TakeReading {
                serial,
                timeout,
                waiter,
                reply,
            } => {
                if self.readings.contains_key(&serial) {
                    let _ = reply.send(Err(Error::ReadingInProgress(serial)));
                    return;
                }
                let token = waiter.token;
                self.readings.insert(serial, waiter);
                self.queue.push_back(Queued {
                    command: Command::TakeReading(serial),
                    timeout,
                    reply,
                    reading: Some((serial, token)),
                });
            }
            Request::Disarm { serial, token } => self.disarm(serial, token),
            Request::Close { .. } => unreachable!("handled by serve"),
        }
    }

    fn disarm(&mut self, serial: Serial, token: u64) {
        if self.readings.get(&serial).is_some_and(|waiter| waiter.token == token) {
            self.readings.remove(&serial);
        }
    }

    async fn send_command(&mut self, queued: Queued) -> Result<(), Error> {
        let kind = queued.command.kind();
        let text = queued.command.to_json();
        match timeout(self.config.command_timeout, self.sink.send(Message::text(text))).await {
            Ok(Ok(())) => {
                Counters::bump(&self.counters.frames_sent);
                debug!(url = %self.url, command = kind.frame_type(), "sent");
                self.in_flight = Some(InFlight {
                    kind,
                    deadline: Instant::now() + queued.timeout,
                    timeout: queued.timeout,
                    reply: queued.reply,
                    reading: queued.reading,
                    tentative: None,
                    tentative_is_stand_in: false,
                });
                Ok(())
            }
            Ok(Err(error)) => {
                let error = read_error(error);
                let _ = queued.reply.send(Err(error.clone()));
                Err(error)
            }
            Err(_) => {
                let error = Error::ConnectionLost(format!("could not send {}", kind.frame_type()));
                let _ = queued.reply.send(Err(error.clone()));
                Err(error)
            }
        }
    }

    /// Handles one inbound message; returns an error when the connection must end.
    fn on_message(&mut self, message: Message) -> Option<Error> {
        Counters::bump(&self.counters.frames_received);
        match message {
            Message::Text(text) => {
                Counters::add(&self.counters.bytes_received, text.len() as u64);
                self.on_text(text.as_str());
                None
            }
            Message::Binary(bytes) => {
                Counters::add(&self.counters.bytes_received, bytes.len() as u64);
                Counters::bump(&self.counters.invalid_frames);
                warn!(url = %self.url, len = bytes.len(), "ignoring binary frame");
                None
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
            Message::Close(frame) => Some(match frame {
                Some(frame) => Error::ClosedByGateway {
                    code: u16::from(frame.code),
                    reason: frame.reason.to_string(),
                },
                None => Error::ConnectionLost("the gateway closed the connection".into()),
            }),
        }
    }

    fn on_text(&mut self, text: &str) {
        let inbound = match crate::frame::Envelope::parse(text) {
            Ok(envelope) => {
                if envelope.from.as_deref() != Some(GATEWAY_ENDPOINT)
                    || envelope.target.as_deref() != Some(CLIENT_ENDPOINT)
                {
                    debug!(url = %self.url, from = ?envelope.from, target = ?envelope.target,
                        "unusual envelope addresses; accepted");
                }
                envelope.into_inbound()
            }
            Err(error) => Err(error),
        };
        let inbound = match inbound {
            Ok(inbound) => inbound,
            Err(error) => {
                Counters::bump(&self.counters.invalid_frames);
                warn!(url = %self.url, %error, frame = %preview(text), "ignoring unusable frame");
                return;
            }
        };
        match inbound {
            reply if reply.is_reply() => self.on_reply(reply),
            Inbound::ReadingStarted(started) => {
                self.notification_answers_trigger(started.serial);
                let sender = self
                    .readings
                    .get_mut(&started.serial)
                    .and_then(|waiter| waiter.started.take());
                self.deliver(sender, started, "NOT_DYN_READING_STARTED");
            }
            Inbound::Reading(reading) => {
                self.notification_answers_trigger(reading.serial);
                let sender = self
                    .readings
                    .get_mut(&reading.serial)
                    .and_then(|waiter| waiter.reading.take());
                let undelivered = match sender {
                    Some(sender) => sender.send(reading).err(),
                    None => Some(reading),
                };
                if let Some(reading) = undelivered {
                    self.on_unsolicited_reading(reading);
                }
            }
            Inbound::Temperature(temperature) => {
                let sender = self
                    .readings
                    .get_mut(&temperature.serial)
                    .and_then(|waiter| waiter.temperature.take());
                self.deliver(sender, temperature, "NOT_DYN_TEMP");
            }
            Inbound::OtherNotification { frame_type, .. } => {
                Counters::bump(&self.counters.unmatched_notifications);
                debug!(url = %self.url, frame_type, "ignoring notification");
            }
            other => {
                Counters::bump(&self.counters.unknown_frames);
                warn!(url = %self.url, frame_type = other.frame_type(), "ignoring frame of unknown type");
            }
        }
    }

    /// The reply to `TAKE_DYN_READING` was never observed (§1.3), and §1.17 shows the
    /// trigger followed straight by its notifications. So a notification for the serial
    /// being triggered stands in for the reply: held briefly, because a real reply may
    /// still come and must not be left to pair with the next command, then taken.
    fn notification_answers_trigger(&mut self, serial: Serial) {
        let Some(flight) = self.in_flight.as_mut() else {
            return;
        };
        let triggering = flight.kind == CommandKind::TakeReading && flight.reading.is_some_and(|(s, _)| s == serial);
        if triggering && flight.tentative.is_none() {
            debug!(url = %self.url, "trigger answered by its notification; holding for a late reply");
            flight.tentative = Some((
                Inbound::Dyn(Value::Object(Default::default())),
                Instant::now() + TENTATIVE_REPLY_GRACE,
            ));
            flight.tentative_is_stand_in = true;
        }
    }

    fn on_unsolicited_reading(&self, reading: ReadingData) {
        debug!(url = %self.url, serial = %reading.serial, "a reading nobody here asked for");
        if self.unsolicited.try_send(Box::new(reading)).is_err() {
            Counters::bump(&self.counters.unmatched_notifications);
            warn!(url = %self.url, "unsolicited readings are not being taken; one dropped");
        }
    }

    fn deliver<T>(&self, sender: Option<oneshot::Sender<T>>, value: T, frame_type: &str) {
        let delivered = sender.is_some_and(|sender| sender.send(value).is_ok());
        if !delivered {
            Counters::bump(&self.counters.unmatched_notifications);
            debug!(url = %self.url, frame_type, "notification no reading was waiting for");
        }
    }

    fn on_reply(&mut self, reply: Inbound) {
        let Some(flight) = self.in_flight.as_mut() else {
            Counters::bump(&self.counters.stray_replies);
            warn!(url = %self.url, frame_type = reply.frame_type(), "reply with no command pending; dropped");
            return;
        };
        if flight.kind.accepts(&reply) {
            if flight.tentative.is_some() && !flight.tentative_is_stand_in {
                Counters::bump(&self.counters.stray_replies); // the held reply was the stray
            }
            let flight = self.in_flight.take().expect("checked above");
            self.resolve(flight, reply);
        } else if flight.kind.may_accept_after_grace(&reply) {
            match flight.tentative {
                // A second such reply: nothing better is coming.
                Some(_) => {
                    Counters::bump(&self.counters.stray_replies);
                    let flight = self.in_flight.take().expect("checked above");
                    self.resolve(flight, reply);
                }
                None => flight.tentative = Some((reply, Instant::now() + TENTATIVE_REPLY_GRACE)),
            }
        } else {
            Counters::bump(&self.counters.stray_replies);
            warn!(url = %self.url, frame_type = reply.frame_type(), pending = flight.kind.frame_type(),
                "reply cannot answer the pending command (duplicate or stray); dropped");
        }
    }

    fn resolve(&mut self, flight: InFlight, reply: Inbound) {
        if let Inbound::Error(_) = reply {
            if let Some((serial, token)) = flight.reading {
                self.disarm(serial, token);
            }
        } else if flight.kind == CommandKind::Subscribe {
            self.subscribed = true;
        } else if flight.kind == CommandKind::Unsubscribe {
            self.subscribed = false;
        }
        let _ = flight.reply.send(Ok(reply));
    }

    /// Unsubscribes (if subscribed) and sends a close frame with code 1000, bounded by
    /// `close_timeout`. Errors are logged, never returned: the connection is going anyway.
    async fn close_politely(&mut self) {
        let deadline = Instant::now() + self.config.close_timeout;
        if self.subscribed {
            let sent = timeout_at(deadline, self.sink.send(Message::text(Command::Unsubscribe.to_json()))).await;
            if matches!(sent, Ok(Ok(()))) {
                Counters::bump(&self.counters.frames_sent);
                // Wait for its reply (any reply, ignoring notifications) so the gateway has
                // processed it before the socket closes.
                while let Ok(Some(Ok(message))) = timeout_at(deadline, self.stream.next()).await {
                    if let Message::Text(text) = message {
                        if parse_inbound(text.as_str()).is_ok_and(|inbound| inbound.is_reply()) {
                            break;
                        }
                    }
                }
            }
        }
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "client shutdown".into(),
        }));
        if let Ok(Ok(())) = timeout_at(deadline, self.sink.send(close)).await {
            // Wait for the gateway's close frame, so the close handshake completes.
            while let Ok(Some(Ok(_))) = timeout_at(deadline, self.stream.next()).await {}
        }
        let _ = timeout_at(deadline, self.sink.close()).await;
    }
}

fn read_error(error: tungstenite::Error) -> Error {
    use tungstenite::error::CapacityError;
    match error {
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => Error::ConnectionLost(
            format!("incoming message of {size} bytes exceeds the limit of {max_size} bytes"),
        ),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Error::ConnectionLost("connection closed".into())
        }
        other => Error::ConnectionLost(other.to_string()),
    }
}

/// The start of a frame, for logs.
fn preview(text: &str) -> &str {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
