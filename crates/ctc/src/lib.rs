//! Client for the CTC Connect Wireless gateway protocol: JSON frames over a WebSocket
//! (see `shared/docs/ctc-protocol.md`; section numbers in comments refer to it).
//!
//! - [`frame`]: the frames, strict outbound and tolerant inbound.
//! - [`waveform`]: decoding the `X`/`Y`/`Z` strings of a reading, with statistics.
//! - [`Session`]: one logged-in connection (commands, readings, liveness).
//! - [`supervisor`]: keeps a gateway connected (reconnect, backoff, events, commands).
//! - [`probe`]: the field engineer's one-shot check behind `factory-monitor gateway probe`.
//! - [`tls`]: `wss://` with the platform's root certificates or a [`CertificatePin`].
//!
//! No web or database code lives here.

pub mod config;
pub mod counters;
pub mod credentials;
pub mod error;
pub mod frame;
pub mod probe;
pub mod session;
pub mod supervisor;
pub mod tls;
pub mod waveform;

pub use config::{BackoffConfig, ClientConfig, ReadingTimeouts};
pub use counters::{CounterSnapshot, Counters};
pub use credentials::{Credentials, CredentialsProvider, Password};
pub use error::Error;
pub use frame::{Command, Inbound, IntOrString, LoginReply, SensorInfo, Serial};
pub use session::{ConnectPhase, Reading, Session};
pub use supervisor::{
    run_gateway, EventSink, GatewayCommand, GatewayEvent, GatewayState, GatewayStatus, GatewaySupervisor,
    SupervisorConfig,
};
pub use tls::{CertificatePin, PinParseError};
pub use waveform::{decode_waveform, AxisStats, DecodeOptions, Encoding, Waveform, WaveformError};
