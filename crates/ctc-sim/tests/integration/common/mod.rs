//! Shared helpers of the client-against-simulator tests.

use std::time::Duration;

use ctc::config::{BackoffConfig, ClientConfig, ReadingTimeouts};
use ctc::{Credentials, SupervisorConfig};
use ctc_sim::{SimConfig, SimGateway, SimHandle, SimSensor, SimTls};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub const EMAIL: &str = "tech@plant.example";
pub const PASSWORD: &str = "s3cret";
pub const SERIAL: u64 = 40417;
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);
pub const DEAD_AFTER: Duration = Duration::from_millis(1500);

/// Short timeouts so that every failure shows within two seconds, with room for a busy machine.
pub fn fast_client() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_millis(1500),
        login_timeout: Duration::from_millis(1500),
        command_timeout: COMMAND_TIMEOUT,
        ping_interval: Some(Duration::from_millis(100)),
        dead_after: DEAD_AFTER,
        reading: ReadingTimeouts {
            started: Duration::from_millis(2000),
            acquisition_floor: Duration::from_millis(3000),
            capture_multiplier: 2.0,
            temperature: Duration::from_millis(300),
        },
        max_message_size: 16 << 20,
        buffer_size: 8 << 10,
        close_timeout: Duration::from_millis(500),
    }
}

pub fn fast_supervisor(url: &str) -> SupervisorConfig {
    SupervisorConfig {
        url: url.to_owned(),
        tls_pin: None,
        client: fast_client(),
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            multiplier: 2.0,
            max: Duration::from_millis(200),
            stable_after: Duration::from_secs(60),
            auth_failure_delay: Duration::from_secs(30),
        },
        rediscover_interval: None,
        start_disabled: false,
    }
}

pub fn credentials() -> Credentials {
    Credentials::new(EMAIL, PASSWORD)
}

/// A quick simulator: one 6,400-sample sensor (plus optional others), short delays.
pub fn sim_config() -> SimConfig {
    SimConfig {
        started_delay_ms: 5,
        reading_delay_ms: 30,
        temperature_delay_ms: 5,
        ..SimConfig::default()
    }
    .with_credentials(EMAIL, PASSWORD)
}

pub async fn start_sim(config: SimConfig) -> SimHandle {
    SimGateway::start(config).await.expect("simulator starts")
}

pub async fn start_default_sim() -> SimHandle {
    start_sim(sim_config()).await
}

/// [`sim_config`] serving wss:// with a new self-signed certificate.
pub async fn start_tls_sim() -> SimHandle {
    start_sim(sim_config().with_tls(SimTls::localhost().expect("certificate"))).await
}

pub fn sensor(serial: u64) -> SimSensor {
    SimSensor::new(serial)
}

/// Tasks alive on this runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Waits (up to 3 s) for the number of live tasks to fall back to `baseline`.
pub async fn tasks_settle_to(baseline: usize) -> bool {
    for _ in 0..600 {
        if alive_tasks() <= baseline {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("alive tasks: {} (baseline {baseline})", alive_tasks());
    false
}

/// A bare WebSocket client for checking the simulator's wire behaviour frame by frame.
pub struct RawClient {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl RawClient {
    pub async fn connect(url: &str) -> RawClient {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("raw connect");
        RawClient { socket }
    }

    pub async fn send(&mut self, text: &str) {
        self.socket
            .send(Message::text(text.to_owned()))
            .await
            .expect("raw send");
    }

    /// The next text frame as JSON, within 2 s.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(2), self.socket.next())
                .await
                .expect("a frame within 2 s")
                .expect("stream open")
                .expect("frame ok");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).expect("simulator sends JSON");
            }
        }
    }

    /// `None` if no text frame arrives within `within`.
    pub async fn maybe_json(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).ok();
            }
        }
    }

    pub async fn login(&mut self) -> Value {
        self.send(&format!(
            r#"{{"Type":"POST_LOGIN","From":"UI","To":"SERV","Data":{{"Email":"{EMAIL}","Password":"{PASSWORD}"}}}}"#
        ))
        .await;
        self.next_json().await
    }

    pub async fn command(&mut self, frame_type: &str, data: &str) -> Value {
        self.send(&format!(
            r#"{{"Type":"{frame_type}","From":"UI","To":"SERV","Data":{data}}}"#
        ))
        .await;
        self.next_json().await
    }
}
