//! One simulated gateway: a WebSocket server on one port that behaves as ctc-protocol.md §1
//! describes, quirks included, with faults that can be switched on and off while it runs.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ctc::frame::{
    GET_DYN_CONNECTED, NOT_DYN_READING, NOT_DYN_READING_STARTED, NOT_DYN_TEMP, POST_LOGIN, POST_SUB_CHANGES,
    POST_UNSUB_CHANGES, RTN_DYN, RTN_ERR, RTN_LOGIN, TAKE_DYN_READING,
};
use ctc::CertificatePin;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::config::{LoginFailure, SimConfig, SimSensor, SimUser};
use crate::synth::{synthesise, SimWaveform};
use crate::tls::SimTls;

/// A misbehaviour to switch on with [`SimHandle::set_fault`].
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Stop listening: new connections get "connection refused". Existing ones stay.
    RefuseConnections,
    /// Accept TCP connections but never answer the WebSocket handshake.
    StallHandshake,
    /// Swallow `POST_LOGIN` without answering.
    NeverAnswerLogin,
    /// Drop a connection (no close frame) when its n-th frame arrives, without answering it.
    DropAfterFrames(usize),
    /// After `NOT_DYN_READING_STARTED`, drop the requesting connection before the waveform.
    DropMidReading,
    /// Before every frame sent, also send a non-JSON text frame, a binary frame, a frame of an
    /// unknown `Type` and a JSON array.
    Garbage,
    /// Once per connection, before the next frame sent, send a text frame of this many bytes.
    OversizedFrame(usize),
    /// Send every reply (`RTN_*`) twice.
    DuplicateReplies,
    /// Wait this long before answering each command.
    DelayReplies(Duration),
    /// Keep sockets open but read and send nothing (no pongs either).
    Silent,
    /// Answer `TAKE_DYN_READING` with its notifications only, no `RTN_*` (as §1.17
    /// shows it; the real reply was never observed, §1.3).
    UnansweredTrigger,
    /// Answer every `POST_LOGIN` with the Python exception of §1.5 item 3
    /// (`RTN_ERR`, `Attempt: null`), whatever the credentials.
    LoginCrashes,
    /// Unsubscribe on `POST_UNSUB_CHANGES` but never answer it (a real gateway's reply to it
    /// was never observed, §1.3).
    UnansweredUnsubscribe,
}

/// The faults currently switched on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub refuse_connections: bool,
    pub stall_handshake: bool,
    pub never_answer_login: bool,
    pub drop_after_frames: Option<usize>,
    pub drop_mid_reading: bool,
    pub garbage: bool,
    pub oversized_frame: Option<usize>,
    pub duplicate_replies: bool,
    pub delay_replies: Option<Duration>,
    pub silent: bool,
    pub unanswered_trigger: bool,
    pub login_crashes: bool,
    pub unanswered_unsubscribe: bool,
}

impl Faults {
    fn set(&mut self, fault: Fault, on: bool) {
        match fault {
            Fault::RefuseConnections => self.refuse_connections = on,
            Fault::StallHandshake => self.stall_handshake = on,
            Fault::NeverAnswerLogin => self.never_answer_login = on,
            Fault::DropAfterFrames(n) => self.drop_after_frames = on.then_some(n),
            Fault::DropMidReading => self.drop_mid_reading = on,
            Fault::Garbage => self.garbage = on,
            Fault::OversizedFrame(size) => self.oversized_frame = on.then_some(size),
            Fault::DuplicateReplies => self.duplicate_replies = on,
            Fault::DelayReplies(delay) => self.delay_replies = on.then_some(delay),
            Fault::Silent => self.silent = on,
            Fault::UnansweredTrigger => self.unanswered_trigger = on,
            Fault::LoginCrashes => self.login_crashes = on,
            Fault::UnansweredUnsubscribe => self.unanswered_unsubscribe = on,
        }
    }
}

/// A frame the simulator received, with the connection it came on (numbered from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedFrame {
    pub connection: u64,
    pub text: String,
}

/// A close frame the simulator received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedClose {
    pub connection: u64,
    pub code: Option<u16>,
    pub reason: String,
}

/// Starts simulated gateways.
pub struct SimGateway;

impl SimGateway {
    /// Binds `config.bind:config.port` (port 0: any free port) and serves until
    /// [`SimHandle::shutdown`].
    pub async fn start(config: SimConfig) -> io::Result<SimHandle> {
        let listener = bind(SocketAddr::new(config.bind, config.port))?;
        let addr = listener.local_addr()?;
        let tls = config.tls.clone();
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let shared = Arc::new(Shared {
            addr,
            url: format!("{scheme}://{addr}"),
            tls,
            config: RwLock::new(config),
            faults: watch::channel(Faults::default()).0,
            generation: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            connections: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            peak_sessions: AtomicUsize::new(0),
            next_connection: AtomicU64::new(1),
            subscribers: Mutex::default(),
            outboxes: Mutex::default(),
            received: Mutex::default(),
            closes: Mutex::default(),
            waveforms: Mutex::default(),
            next_reading_id: AtomicI64::new(5521),
            started: std::time::Instant::now(),
        });
        tokio::spawn(accept_loop(shared.clone(), listener));
        Ok(SimHandle { shared })
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Re-binding the same port after "refuse connections" is healed must not wait for TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

struct Shared {
    /// When the simulator started: a sensor's [`Drift`](crate::Drift) counts from here.
    started: std::time::Instant,
    addr: SocketAddr,
    url: String,
    /// The certificate served, for `wss://`; fixed at start.
    tls: Option<SimTls>,
    config: RwLock<SimConfig>,
    faults: watch::Sender<Faults>,
    /// Bumped by `drop_connections`: every connection task watching it ends.
    generation: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    connections: AtomicUsize,
    /// Connections logged in now, and the most there ever were at once.
    sessions: AtomicUsize,
    peak_sessions: AtomicUsize,
    next_connection: AtomicU64,
    /// Outboxes of every open connection (WebSocket handshake done).
    outboxes: Mutex<HashMap<u64, mpsc::UnboundedSender<Outgoing>>>,
    /// Outboxes of the connections that sent `POST_SUB_CHANGES`.
    subscribers: Mutex<HashMap<u64, mpsc::UnboundedSender<Outgoing>>>,
    received: Mutex<VecDeque<ReceivedFrame>>,
    closes: Mutex<Vec<ReceivedClose>>,
    waveforms: Mutex<HashMap<u64, SimWaveform>>,
    next_reading_id: AtomicI64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn config(&self) -> std::sync::RwLockReadGuard<'_, SimConfig> {
        self.config.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn faults(&self) -> Faults {
        self.faults.borrow().clone()
    }

    fn notify_subscribers(&self, text: &Arc<str>) {
        for outbox in lock(&self.subscribers).values() {
            let _ = outbox.send(Outgoing::Frame(text.clone()));
        }
    }
}

/// A cheap handle on a running simulated gateway; clones control the same gateway.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").field("url", &self.shared.url).finish()
    }
}

impl SimHandle {
    /// `ws://127.0.0.1:PORT`, or `wss://127.0.0.1:PORT` with TLS.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The fingerprint of the certificate served (with TLS): what a client pins.
    pub fn tls_pin(&self) -> Option<CertificatePin> {
        self.shared.tls.as_ref().map(SimTls::pin)
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn set_fault(&self, fault: Fault) {
        self.shared.faults.send_modify(|faults| faults.set(fault, true));
    }

    /// Switches one fault off (its parameter is ignored).
    pub fn clear_fault(&self, fault: Fault) {
        self.shared.faults.send_modify(|faults| faults.set(fault, false));
    }

    pub fn clear_faults(&self) {
        self.shared.faults.send_replace(Faults::default());
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Closes every open connection with a close frame of `code` and `reason` (the gateway
    /// ending the session itself, §1.14).
    pub fn close_connections(&self, code: u16, reason: &str) {
        for outbox in lock(&self.shared.outboxes).values() {
            let _ = outbox.send(Outgoing::Close(code, reason.to_owned()));
        }
    }

    /// Starts a reading of `serial` as the gateway's own schedule (or another client) would:
    /// its notifications go to every subscribed connection, none of which asked for it (§1.8).
    /// `false` if no such sensor is connected.
    pub fn scheduled_reading(&self, serial: u64) -> bool {
        let sensor = self
            .shared
            .config()
            .sensors
            .iter()
            .find(|sensor| sensor.serial == serial && sensor.connected)
            .cloned();
        let Some(sensor) = sensor else { return false };
        let (nobody, _) = mpsc::unbounded_channel();
        tokio::spawn(run_reading(self.shared.clone(), sensor, nobody));
        true
    }

    /// Drops every open connection at once, without a close frame (a network cut).
    pub fn drop_connections(&self) {
        self.shared.generation.send_modify(|generation| *generation += 1);
    }

    /// Connections currently open (including ones stalled in the handshake).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections logged in now.
    pub fn sessions(&self) -> usize {
        self.shared.sessions.load(Ordering::SeqCst)
    }

    /// The most connections that were logged in at once since start (or the last reset):
    /// a client that must hold one session per gateway keeps this at 1.
    pub fn peak_sessions(&self) -> usize {
        self.shared.peak_sessions.load(Ordering::SeqCst)
    }

    /// Restarts peak tracking from the sessions open now.
    pub fn reset_peak_sessions(&self) {
        let now = self.sessions();
        self.shared.peak_sessions.store(now, Ordering::SeqCst);
    }

    /// Connections accepted since start.
    pub fn total_connections(&self) -> u64 {
        self.shared.next_connection.load(Ordering::SeqCst) - 1
    }

    /// Connections that subscribed and have not unsubscribed.
    pub fn subscribed_connections(&self) -> usize {
        lock(&self.shared.subscribers).len()
    }

    /// Every text frame received, oldest first.
    pub fn received_frames(&self) -> Vec<String> {
        lock(&self.shared.received)
            .iter()
            .map(|frame| frame.text.clone())
            .collect()
    }

    /// Every text frame received, with its connection number.
    pub fn received(&self) -> Vec<ReceivedFrame> {
        lock(&self.shared.received).iter().cloned().collect()
    }

    /// The `Type` of every frame received (`"?"` for frames without one).
    pub fn received_types(&self) -> Vec<String> {
        lock(&self.shared.received)
            .iter()
            .map(|frame| {
                serde_json::from_str::<Value>(&frame.text)
                    .ok()
                    .and_then(|value| value.get("Type")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "?".to_owned())
            })
            .collect()
    }

    pub fn clear_received(&self) {
        lock(&self.shared.received).clear();
    }

    /// Close frames received from clients.
    pub fn received_closes(&self) -> Vec<ReceivedClose> {
        lock(&self.shared.closes).clone()
    }

    /// The last waveform sent for `serial`, as a correct decoder reads it.
    pub fn last_waveform(&self, serial: u64) -> Option<SimWaveform> {
        lock(&self.shared.waveforms).get(&serial).cloned()
    }

    pub fn config(&self) -> SimConfig {
        self.shared.config().clone()
    }

    /// Changes the configuration at run time (credentials, sensors, timing…). The listening
    /// address does not change.
    pub fn update_config(&self, change: impl FnOnce(&mut SimConfig)) {
        let mut config = self
            .shared
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut config);
    }

    /// Replaces the accounts with one.
    pub fn set_credentials(&self, email: &str, password: &str) {
        self.update_config(|config| {
            config.users = vec![SimUser {
                email: email.to_owned(),
                password: password.to_owned(),
                ..SimUser::default()
            }]
        });
    }

    pub fn set_sensors(&self, sensors: Vec<SimSensor>) {
        self.update_config(|config| config.sensors = sensors);
    }

    /// Marks a sensor connected or not; `false` if there is no such sensor.
    pub fn set_sensor_connected(&self, serial: u64, connected: bool) -> bool {
        let mut found = false;
        self.update_config(|config| {
            for sensor in config.sensors.iter_mut().filter(|s| s.serial == serial) {
                sensor.connected = connected;
                found = true;
            }
        });
        found
    }

    /// Waits until `condition` holds, polling every 5 ms; `false` on timeout.
    pub async fn wait_until(&self, within: Duration, condition: impl Fn(&SimHandle) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if condition(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops listening and ends every connection and task of this gateway.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

// ---------------------------------------------------------------------------------------------
// Listening
// ---------------------------------------------------------------------------------------------

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut listener = Some(listener);
    let mut faults = shared.faults.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if faults.borrow_and_update().refuse_connections {
            listener = None; // closing the socket makes the port refuse connections
        } else if listener.is_none() {
            match bind(shared.addr) {
                Ok(bound) => listener = Some(bound),
                Err(error) => {
                    debug!(%error, addr = %shared.addr, "re-bind failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
        match &listener {
            None => tokio::select! {
                _ = faults.changed() => {}
                _ = shutdown.changed() => return,
            },
            Some(bound) => tokio::select! {
                accepted = bound.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve_connection(shared.clone(), stream));
                    }
                }
                _ = faults.changed() => {}
                _ = shutdown.changed() => return,
            },
        }
    }
}

/// Counts a logged-in connection among the sessions until it ends.
struct SessionGuard(Arc<Shared>);

impl SessionGuard {
    fn open(shared: &Arc<Shared>) -> Self {
        let now = shared.sessions.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak_sessions.fetch_max(now, Ordering::SeqCst);
        SessionGuard(shared.clone())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts an open connection and unregisters it when it ends.
struct ConnectionGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        lock(&self.shared.subscribers).remove(&self.id);
        lock(&self.shared.outboxes).remove(&self.id);
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

enum Outgoing {
    Frame(Arc<str>),
    /// Drop the connection (fault "drop mid-reading").
    Drop,
    /// Send a close frame with this code and reason, then end the connection.
    Close(u16, String),
}

/// Whether a frame is a reply (`RTN_*`, duplicated by the fault) or a notification.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reply,
    Notification,
}

/// Signals that end a connection: `drop_connections` and `shutdown`.
struct Stop {
    generation: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
}

impl Stop {
    fn new(shared: &Shared) -> Self {
        let mut generation = shared.generation.subscribe();
        generation.borrow_and_update();
        Stop {
            generation,
            shutdown: shared.shutdown.subscribe(),
        }
    }

    async fn requested(&mut self) {
        if *self.shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = self.generation.changed() => {}
            _ = self.shutdown.changed() => {}
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, mut stream: TcpStream) {
    let id = shared.next_connection.fetch_add(1, Ordering::SeqCst);
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let _guard = ConnectionGuard {
        shared: shared.clone(),
        id,
    };
    let mut stop = Stop::new(&shared);
    let mut faults = shared.faults.subscribe();

    if faults.borrow_and_update().stall_handshake {
        // Read (and ignore) the HTTP upgrade request until the client gives up.
        let mut buffer = [0u8; 1024];
        loop {
            tokio::select! {
                read = stream.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = stop.requested() => return,
            }
        }
    }

    let ws_config = WebSocketConfig::default()
        .read_buffer_size(8 << 10)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20));
    // TLS (for wss://) and the WebSocket handshake, within one time limit.
    let handshake = timeout(Duration::from_secs(10), async {
        let stream = match &shared.tls {
            Some(tls) => match tls.acceptor().accept(stream).await {
                Ok(stream) => SimStream::Tls(Box::new(stream)),
                Err(error) => {
                    debug!(%error, "TLS handshake failed");
                    return None;
                }
            },
            None => SimStream::Plain(stream),
        };
        tokio_tungstenite::accept_async_with_config(stream, Some(ws_config))
            .await
            .ok()
    });
    let socket = tokio::select! {
        result = handshake => match result {
            Ok(Some(socket)) => socket,
            _ => return,
        },
        _ = stop.requested() => return,
    };
    let (sink, mut incoming) = socket.split();
    let (outbox_tx, mut outbox) = mpsc::unbounded_channel();
    lock(&shared.outboxes).insert(id, outbox_tx.clone());
    let mut connection = Connection {
        id,
        shared: shared.clone(),
        sink,
        outbox: outbox_tx,
        logged_in: None,
        session: None,
        frames: 0,
        oversized_sent: false,
    };
    // Replies wait here until due, so that a delayed reply never stops the connection from
    // reading (and answering pings), as a real gateway's WebSocket library would not.
    let mut replies: VecDeque<(Instant, String)> = VecDeque::new();
    loop {
        if faults.borrow_and_update().silent {
            tokio::select! {
                _ = faults.changed() => continue,
                _ = stop.requested() => return,
            }
        }
        let next_reply = replies.front().map(|(due, _)| *due);
        tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => match connection.on_frame(text.as_str()) {
                    Ok(answers) => {
                        let delay = shared.faults().delay_replies.unwrap_or_default();
                        let due = Instant::now() + delay;
                        replies.extend(answers.into_iter().map(|answer| (due, answer)));
                    }
                    Err(Dropped) => return,
                },
                Some(Ok(Message::Close(frame))) => {
                    lock(&shared.closes).push(ReceivedClose {
                        connection: id,
                        code: frame.as_ref().map(|frame| u16::from(frame.code)),
                        reason: frame.map(|frame| frame.reason.to_string()).unwrap_or_default(),
                    });
                    // tungstenite answers the close; the stream then ends.
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            _ = sleep_until(next_reply.unwrap_or_else(Instant::now)), if next_reply.is_some() => {
                while replies.front().is_some_and(|(due, _)| *due <= Instant::now()) {
                    let (_, reply) = replies.pop_front().expect("checked above");
                    if connection.send(&reply, Kind::Reply).await.is_err() {
                        return;
                    }
                }
            }
            outgoing = outbox.recv() => match outgoing {
                Some(Outgoing::Frame(text)) => {
                    if connection.send(&text, Kind::Notification).await.is_err() {
                        return;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let close = Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }));
                    if connection.sink.send(close).await.is_ok() {
                        // The client's answering close frame ends the stream.
                        let _ = timeout(Duration::from_secs(2), async {
                            while let Some(Ok(_)) = incoming.next().await {}
                        })
                        .await;
                    }
                    return;
                }
                Some(Outgoing::Drop) | None => return,
            },
            _ = faults.changed() => {}
            _ = stop.requested() => return,
        }
    }
}

/// The connection was dropped (by a fault, or the peer went away).
struct Dropped;

/// A connection's socket: plain for `ws://`, TLS for `wss://`.
enum SimStream {
    Plain(TcpStream),
    /// Boxed: the TLS state is large and plain connections are the many.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for SimStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SimStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            SimStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SimStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            SimStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SimStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            SimStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SimStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            SimStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

struct Connection {
    id: u64,
    shared: Arc<Shared>,
    sink: SplitSink<WebSocketStream<SimStream>, Message>,
    outbox: mpsc::UnboundedSender<Outgoing>,
    /// The account logged in on this connection.
    logged_in: Option<SimUser>,
    /// Counts this connection among the gateway's sessions while it is logged in.
    session: Option<SessionGuard>,
    frames: usize,
    oversized_sent: bool,
}

fn frame(frame_type: &str, data: Value) -> String {
    // Built by hand to keep the gateway's key order: Type, From, Target, Data.
    format!(
        r#"{{"Type":{},"From":"SERV","Target":"UI","Data":{}}}"#,
        Value::from(frame_type),
        data
    )
}

fn error_frame(attempt: Option<&str>, error: &str) -> String {
    frame(RTN_ERR, json!({ "Attempt": attempt, "Error": error }))
}

impl Connection {
    /// Records a frame and returns the gateway's answers to it.
    fn on_frame(&mut self, text: &str) -> Result<Vec<String>, Dropped> {
        self.frames += 1;
        {
            let config = self.shared.config();
            if config.record_frames {
                let mut received = lock(&self.shared.received);
                received.push_back(ReceivedFrame {
                    connection: self.id,
                    text: text.to_owned(),
                });
                while received.len() > config.max_recorded_frames {
                    received.pop_front();
                }
            }
        }
        let faults = self.shared.faults();
        if faults.drop_after_frames.is_some_and(|limit| self.frames >= limit) {
            return Err(Dropped);
        }
        Ok(self.respond(text, &faults))
    }

    /// The gateway's answer to one frame (§1.2-§1.10), quirks included.
    fn respond(&mut self, text: &str, faults: &Faults) -> Vec<String> {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            // What Python's json module says about non-JSON.
            Err(_) => return vec![error_frame(None, "Expecting value: line 1 column 1 (char 0)")],
        };
        let Value::Object(envelope) = value else {
            return vec![error_frame(None, "'list' object has no attribute 'get'")];
        };
        let frame_type = envelope.get("Type").and_then(Value::as_str);
        // [HW] anything before POST_LOGIN breaks the handler's state.
        if self.logged_in.is_none() && frame_type != Some(POST_LOGIN) {
            return vec![error_frame(None, "secondary_command referenced before assignment")];
        }
        // [HW] the predecessor's JSON heartbeat after login produced duplicate RTN_LOGIN frames.
        if frame_type.is_none() {
            if let Some(user) = &self.logged_in {
                return vec![login_success(user)];
            }
        }
        // [HW] exactly Type, From, To, Data; anything else makes the handler throw.
        if let Some(extra) = envelope
            .keys()
            .find(|key| !matches!(key.as_str(), "Type" | "From" | "To" | "Data"))
        {
            return vec![error_frame(
                None,
                &format!("Message.__init__() got an unexpected keyword argument '{extra}'"),
            )];
        }
        for required in ["Type", "From", "To", "Data"] {
            if !envelope.contains_key(required) {
                return vec![error_frame(None, &format!("KeyError: '{required}'"))];
            }
        }
        let frame_type = frame_type.unwrap_or_default();
        let data = envelope.get("Data").cloned().unwrap_or(Value::Null);
        match frame_type {
            POST_LOGIN => {
                if faults.never_answer_login {
                    return Vec::new();
                }
                self.login(&data)
            }
            POST_SUB_CHANGES => {
                lock(&self.shared.subscribers).insert(self.id, self.outbox.clone());
                vec![frame(RTN_DYN, json!({}))]
            }
            POST_UNSUB_CHANGES => {
                lock(&self.shared.subscribers).remove(&self.id);
                if faults.unanswered_unsubscribe {
                    return Vec::new();
                }
                vec![frame(RTN_DYN, json!({}))]
            }
            GET_DYN_CONNECTED => vec![frame(RTN_DYN, self.sensor_list())],
            TAKE_DYN_READING => self.trigger(&data),
            other => vec![error_frame(Some(other), &format!("Unknown command type: {other}"))],
        }
    }

    fn login(&mut self, data: &Value) -> Vec<String> {
        if self.shared.faults().login_crashes {
            return vec![error_frame(None, "'NoneType' object is not subscriptable")];
        }
        let email = data.get("Email").and_then(Value::as_str);
        let password = data.get("Password").and_then(Value::as_str);
        let (Some(email), Some(password)) = (email, password) else {
            return vec![error_frame(Some(POST_LOGIN), "KeyError: 'Email' or 'Password' missing")];
        };
        let config = self.shared.config();
        let user = config
            .users
            .iter()
            .find(|user| user.email.eq_ignore_ascii_case(email) && user.password == password)
            .cloned();
        match user {
            Some(user) => {
                let reply = login_success(&user);
                self.logged_in = Some(user);
                if self.session.is_none() {
                    self.session = Some(SessionGuard::open(&self.shared));
                }
                vec![reply]
            }
            None => match config.login_failure {
                LoginFailure::RtnErr => {
                    vec![error_frame(Some(POST_LOGIN), "Invalid email or password")]
                }
                LoginFailure::RtnLoginFalse => vec![frame(
                    RTN_LOGIN,
                    json!({"Email": email, "First": "", "Last": "", "Success": false,
                           "AccessLevel": 0, "Verified": false}),
                )],
            },
        }
    }

    /// `[]` without sensors (§1.5 item 2), else an object keyed by the serial as a string.
    fn sensor_list(&self) -> Value {
        let config = self.shared.config();
        if config.sensors.is_empty() {
            return if config.empty_sensor_list_as_object {
                json!({})
            } else {
                json!([])
            };
        }
        let entries: Map<String, Value> = config
            .sensors
            .iter()
            .map(|sensor| (sensor.serial.to_string(), sensor_entry(sensor)))
            .collect();
        Value::Object(entries)
    }

    fn trigger(&mut self, data: &Value) -> Vec<String> {
        let Some(serial) = data.get("Serial").and_then(ctc::Serial::from_json) else {
            return vec![error_frame(Some(TAKE_DYN_READING), "KeyError: 'Serial'")];
        };
        let sensor = self
            .shared
            .config()
            .sensors
            .iter()
            .find(|sensor| sensor.serial == serial.0 && sensor.connected)
            .cloned();
        let Some(sensor) = sensor else {
            return vec![error_frame(Some(TAKE_DYN_READING), "Sensor not connected")];
        };
        tokio::spawn(run_reading(self.shared.clone(), sensor, self.outbox.clone()));
        if self.shared.faults().unanswered_trigger {
            return Vec::new();
        }
        vec![frame(RTN_DYN, json!({}))]
    }

    async fn send(&mut self, text: &str, kind: Kind) -> Result<(), Dropped> {
        let faults = self.shared.faults();
        if faults.garbage {
            let garbage = [
                Message::text("\u{1}<<garbage>> not json {"),
                Message::binary(vec![0xde, 0xad, 0xbe, 0xef]),
                Message::text(frame("NOT_SOMETHING_NEW", json!({"Serial": "1"}))),
                Message::text(r#"{"Type":"HELLO","From":"SERV","Target":"UI","Data":{}}"#),
                Message::text("[1,2,3]"),
            ];
            for message in garbage {
                self.sink.send(message).await.map_err(|_| Dropped)?;
            }
        }
        if let Some(size) = faults.oversized_frame.filter(|_| !self.oversized_sent) {
            self.oversized_sent = true;
            // Built by hand: serialising tens of megabytes through serde_json takes seconds in
            // a debug build, long enough for a client's login to time out first.
            let padding = "x".repeat(size.saturating_sub(60));
            let blob = format!(r#"{{"Type":"NOT_BLOB","From":"SERV","Target":"UI","Data":"{padding}"}}"#);
            self.sink.send(Message::text(blob)).await.map_err(|_| Dropped)?;
        }
        let copies = if kind == Kind::Reply && faults.duplicate_replies {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.sink
                .send(Message::text(text.to_owned()))
                .await
                .map_err(|_| Dropped)?;
        }
        Ok(())
    }
}

fn login_success(user: &SimUser) -> String {
    frame(
        RTN_LOGIN,
        json!({"Email": user.email, "First": user.first, "Last": user.last, "Success": true,
               "AccessLevel": user.access_level, "Verified": user.verified}),
    )
}

/// A discovery entry: `Serial` an integer, `Connected` 1/0 (§1.4).
fn sensor_entry(sensor: &SimSensor) -> Value {
    let mut entry = Map::new();
    entry.insert("Serial".into(), json!(sensor.serial));
    entry.insert("Connected".into(), json!(u8::from(sensor.connected)));
    if let Some(access_point) = &sensor.access_point {
        entry.insert("AccessPoint".into(), json!(access_point));
    }
    entry.insert("PartNum".into(), json!(sensor.part_number));
    entry.insert("ReadRate".into(), json!(sensor.read_rate));
    if let Some(g_mode) = &sensor.g_mode {
        entry.insert("GMode".into(), json!(g_mode));
    }
    if let Some(freq_mode) = &sensor.freq_mode {
        entry.insert("FreqMode".into(), json!(freq_mode));
    }
    if let Some(read_period) = sensor.read_period {
        entry.insert("ReadPeriod".into(), json!(read_period));
    }
    entry.insert("Samples".into(), json!(sensor.samples));
    if let Some(version) = &sensor.hardware_version {
        entry.insert("HwVer".into(), json!(version));
    }
    if let Some(version) = &sensor.firmware_version {
        entry.insert("FmVer".into(), json!(version));
    }
    if let Some(name) = &sensor.name {
        entry.insert("Name".into(), json!(name));
    }
    Value::Object(entry)
}

/// One acquisition: started, waveform, temperature, sent to every subscribed connection
/// (`Serial` an integer in the first, a string in the others, §1.5 item 1).
async fn run_reading(shared: Arc<Shared>, sensor: SimSensor, requester: mpsc::UnboundedSender<Outgoing>) {
    let mut shutdown = shared.shutdown.subscribe();
    let acquisition = async {
        let config = shared.config().clone();
        tokio::time::sleep(config.started_delay()).await;
        let started = frame(
            NOT_DYN_READING_STARTED,
            json!({"Serial": sensor.serial, "Success": !sensor.fail_start}),
        );
        shared.notify_subscribers(&Arc::from(started));
        if sensor.fail_start {
            return;
        }
        if shared.faults().drop_mid_reading {
            let _ = requester.send(Outgoing::Drop);
            return;
        }
        tokio::time::sleep(config.reading_delay()).await;
        let reading_id = shared.next_reading_id.fetch_add(1, Ordering::SeqCst);
        let age_days = shared.started.elapsed().as_secs_f64() / 86_400.0;
        let (waveform, encoded) = synthesise(&sensor, reading_id, config.encoding.into(), config.decimals, age_days);
        lock(&shared.waveforms).insert(sensor.serial, waveform);
        let reading = frame(
            NOT_DYN_READING,
            json!({"ID": reading_id, "Serial": sensor.serial.to_string(),
                   "Time": gateway_time(SystemTime::now()),
                   "X": encoded.x, "Y": encoded.y, "Z": encoded.z}),
        );
        shared.notify_subscribers(&Arc::from(reading));
        if let Some(temperature) = sensor.temperature_c {
            tokio::time::sleep(config.temperature_delay()).await;
            let temp = frame(
                NOT_DYN_TEMP,
                json!({"Serial": sensor.serial.to_string(), "Temp": temperature}),
            );
            shared.notify_subscribers(&Arc::from(temp));
        }
    };
    tokio::select! {
        _ = acquisition => {}
        _ = shutdown.changed() => {}
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, the shape of the document's example `Time`.
pub fn gateway_time(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_time_format() {
        let time = UNIX_EPOCH + Duration::from_secs(1_770_501_483);
        assert_eq!(gateway_time(time), "2026-02-07 21:58:03");
        assert_eq!(gateway_time(UNIX_EPOCH), "1970-01-01 00:00:00");
    }
}
