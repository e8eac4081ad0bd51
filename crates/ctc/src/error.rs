//! The client's error type. Messages are one line, name the sensor or command concerned and
//! never contain a password.

use std::time::Duration;

use crate::frame::{ErrorReply, Serial};
use crate::waveform::WaveformError;

/// Everything that can go wrong talking to a gateway.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid gateway URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("connection refused by {url}")]
    Refused { url: String },
    #[error("could not connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("timed out after {after:?} connecting to {url}")]
    ConnectTimeout { url: String, after: Duration },
    /// The TLS (`wss://`; the reason starts with `TLS:`) or the WebSocket handshake failed.
    #[error("handshake with {url} failed: {reason}")]
    Handshake { url: String, reason: String },
    /// The gateway rejected the credentials (`RTN_ERR`, or `RTN_LOGIN` with `Success: false`).
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("no reply to POST_LOGIN within {0:?}")]
    LoginTimeout(Duration),
    /// `RTN_ERR` in answer to a command other than login.
    #[error("{command}: {reply}")]
    Gateway { command: &'static str, reply: ErrorReply },
    #[error("{command}: no reply within {after:?}")]
    CommandTimeout { command: &'static str, after: Duration },
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The gateway sent a close frame.
    #[error("connection lost: the gateway closed the connection (code {code}{})", reason_suffix(.reason))]
    ClosedByGateway { code: u16, reason: String },
    #[error("nothing received for {0:?}; connection presumed dead")]
    Dead(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The session was closed by its owner.
    #[error("session closed")]
    Closed,
    #[error("sensor {0} is not known to the gateway")]
    UnknownSensor(Serial),
    #[error("sensor {0} is not connected")]
    SensorDisconnected(Serial),
    #[error("a reading of sensor {0} is already in progress")]
    ReadingInProgress(Serial),
    #[error("reading of sensor {serial} failed: {reason}")]
    ReadingFailed { serial: Serial, reason: String },
    #[error("sensor {serial}: reading did not start within {after:?}")]
    ReadingStartTimeout { serial: Serial, after: Duration },
    #[error("sensor {serial}: no waveform within {after:?} of the reading starting")]
    ReadingTimeout { serial: Serial, after: Duration },
    #[error("sensor {serial}: bad waveform: {source}")]
    Waveform {
        serial: Serial,
        #[source]
        source: WaveformError,
    },
    /// A supervisor was asked for something that needs a live connection.
    #[error("gateway is not online ({0})")]
    NotOnline(String),
    #[error("credentials unavailable: {0}")]
    Credentials(String),
}

impl Error {
    /// The gateway said no to the credentials: retrying soon will not help.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth(_))
    }

    /// The gateway closed the connection with 1000 (normal) or 1008 (policy violation): §1.14
    /// says never to reconnect after these on our own; only a command (reconnect, new
    /// settings, enable) connects again.
    pub fn is_final_close(&self) -> bool {
        matches!(self, Error::ClosedByGateway { code: 1000 | 1008, .. })
    }

    /// A failure of the network or of the connection, as opposed to the gateway's answer.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            Error::Refused { .. }
                | Error::Connect { .. }
                | Error::ConnectTimeout { .. }
                | Error::Handshake { .. }
                | Error::ConnectionLost(_)
                | Error::ClosedByGateway { .. }
                | Error::Dead(_)
        )
    }

    /// A timeout of any kind.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::ConnectTimeout { .. }
                | Error::LoginTimeout(_)
                | Error::CommandTimeout { .. }
                | Error::Dead(_)
                | Error::ReadingStartTimeout { .. }
                | Error::ReadingTimeout { .. }
        )
    }
}

/// `": reason"`, or nothing for an empty close reason.
fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}
