//! Frames of the gateway protocol (docs: ctc-protocol.md §1.2-§1.5).
//!
//! Outbound frames are strict: exactly `Type`, `From: "UI"`, `To: "SERV"`, `Data`, in that order,
//! and only the commands of the catalogue can be built ([`Command`]). Inbound frames are parsed
//! tolerantly: `Target` or `To`, serials as integers or strings, discovery data as an object keyed
//! by serial or `[]`, flexible scalar types, and unknown fields kept in `extra`.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::credentials::Credentials;

/// `From` of every frame the client sends.
pub const CLIENT_ENDPOINT: &str = "UI";
/// `To` of every frame the client sends.
pub const GATEWAY_ENDPOINT: &str = "SERV";

pub const POST_LOGIN: &str = "POST_LOGIN";
pub const POST_SUB_CHANGES: &str = "POST_SUB_CHANGES";
pub const POST_UNSUB_CHANGES: &str = "POST_UNSUB_CHANGES";
pub const GET_DYN_CONNECTED: &str = "GET_DYN_CONNECTED";
pub const TAKE_DYN_READING: &str = "TAKE_DYN_READING";
pub const RTN_LOGIN: &str = "RTN_LOGIN";
pub const RTN_DYN: &str = "RTN_DYN";
pub const RTN_ERR: &str = "RTN_ERR";
pub const NOT_DYN_READING_STARTED: &str = "NOT_DYN_READING_STARTED";
pub const NOT_DYN_READING: &str = "NOT_DYN_READING";
pub const NOT_DYN_TEMP: &str = "NOT_DYN_TEMP";

// ---------------------------------------------------------------------------------------------
// Flexible scalars
// ---------------------------------------------------------------------------------------------

/// A sensor serial number. Sent as an integer; accepted as an integer or a decimal string
/// (§1.5 item 1: `NOT_DYN_READING` and `NOT_DYN_TEMP` carry it as a string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(pub u64);

impl Serial {
    /// Reads a serial from any JSON value the gateway may use: a non-negative integer, an
    /// integral float, or a decimal string (surrounding whitespace allowed).
    pub fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::Number(number) => number
                .as_u64()
                .or_else(|| {
                    number
                        .as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                        .map(|f| f as u64)
                })
                .map(Serial),
            Value::String(text) => text.trim().parse::<u64>().ok().map(Serial),
            _ => None,
        }
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Serial {
    fn from(value: u64) -> Self {
        Serial(value)
    }
}

impl std::str::FromStr for Serial {
    type Err = std::num::ParseIntError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim().parse().map(Serial)
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Serial::from_json(&value).ok_or_else(|| de::Error::custom(format!("invalid serial {value}")))
    }
}

/// A field documented as an integer by the vendor but modelled as a string upstream, or the other
/// way round (`AccessPoint`, `GMode`, `FreqMode`, §1.5 item 7). Serialised back as it came.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(i64),
    Text(String),
}

impl IntOrString {
    fn from_json(value: Value) -> Option<Self> {
        match value {
            Value::Null => None,
            Value::Number(number) => Some(match number.as_i64() {
                Some(int) => IntOrString::Int(int),
                None => IntOrString::Text(number.to_string()),
            }),
            Value::String(text) => Some(IntOrString::Text(text)),
            other => Some(IntOrString::Text(other.to_string())),
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(int) => write!(f, "{int}"),
            IntOrString::Text(text) => f.write_str(text),
        }
    }
}

impl From<i64> for IntOrString {
    fn from(value: i64) -> Self {
        IntOrString::Int(value)
    }
}

impl From<&str> for IntOrString {
    fn from(value: &str) -> Self {
        IntOrString::Text(value.to_owned())
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(int) => serializer.serialize_i64(*int),
            IntOrString::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        IntOrString::from_json(value).ok_or_else(|| de::Error::custom("null is not a value"))
    }
}

fn json_to_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn json_to_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn json_to_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::Number(number) => number.as_f64().map(|f| f != 0.0),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Some(true),
            "0" | "false" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn json_to_string(value: Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text),
        other => Some(other.to_string()),
    }
}

mod flex {
    //! `deserialize_with` helpers: absent or `null` gives `None`, a value of the wrong JSON type is
    //! converted when unambiguous (`"25600"` → 25600, `1` → true) and rejected otherwise.
    use super::*;

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.and_then(json_to_string))
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(value) => json_to_bool(&value)
                .map(Some)
                .ok_or_else(|| de::Error::custom(format!("expected a boolean, got {value}"))),
        }
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(value) => json_to_i64(&value)
                .map(Some)
                .ok_or_else(|| de::Error::custom(format!("expected an integer, got {value}"))),
        }
    }

    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(value) => json_to_f64(&value)
                .map(Some)
                .ok_or_else(|| de::Error::custom(format!("expected a number, got {value}"))),
        }
    }

    /// A waveform axis: normally a string (§1.11); a bare JSON array is turned back into its
    /// JSON text so that it goes through the same checked decoder.
    pub fn axis<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        match Value::deserialize(d)? {
            Value::String(text) => Ok(text),
            array @ Value::Array(_) => Ok(array.to_string()),
            other => Err(de::Error::custom(format!(
                "expected the axis as a string, got {}",
                json_kind(&other)
            ))),
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound
// ---------------------------------------------------------------------------------------------

/// A command the client may send. These are the only frames it ever sends (§1.2: any other JSON,
/// e.g. a heartbeat, breaks the gateway's handler).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Login(Credentials),
    Subscribe,
    Unsubscribe,
    GetConnected,
    TakeReading(Serial),
}

#[derive(Serialize)]
struct OutboundEnvelope<'a, D: Serialize> {
    #[serde(rename = "Type")]
    frame_type: &'a str,
    #[serde(rename = "From")]
    from: &'a str,
    #[serde(rename = "To")]
    to: &'a str,
    #[serde(rename = "Data")]
    data: D,
}

#[derive(Serialize)]
struct LoginData<'a> {
    #[serde(rename = "Email")]
    email: &'a str,
    #[serde(rename = "Password")]
    password: &'a str,
}

#[derive(Serialize)]
struct TakeReadingData {
    #[serde(rename = "Serial")]
    serial: Serial,
}

#[derive(Serialize)]
struct NoArguments {}

/// Which replies can answer a command; used to pair replies without a correlation id (§1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    Login,
    Subscribe,
    Unsubscribe,
    GetConnected,
    TakeReading,
}

impl CommandKind {
    /// The command a frame type names, if it is one of the catalogue's.
    pub fn from_frame_type(frame_type: &str) -> Option<Self> {
        [
            CommandKind::Login,
            CommandKind::Subscribe,
            CommandKind::Unsubscribe,
            CommandKind::GetConnected,
            CommandKind::TakeReading,
        ]
        .into_iter()
        .find(|kind| kind.frame_type() == frame_type)
    }

    pub fn frame_type(self) -> &'static str {
        match self {
            CommandKind::Login => POST_LOGIN,
            CommandKind::Subscribe => POST_SUB_CHANGES,
            CommandKind::Unsubscribe => POST_UNSUB_CHANGES,
            CommandKind::GetConnected => GET_DYN_CONNECTED,
            CommandKind::TakeReading => TAKE_DYN_READING,
        }
    }

    /// Whether `reply` can be the answer to this command. With no correlation id on the wire, a
    /// stray or duplicated reply would otherwise shift every later pairing by one (§1.6); this
    /// check lets the session drop such a reply instead.
    ///
    /// - `RTN_ERR` answers anything, unless its `Attempt` names another command of the
    ///   catalogue (a null or unfamiliar `Attempt` proves nothing).
    /// - `RTN_LOGIN` answers only `POST_LOGIN`, and `POST_LOGIN` accepts nothing else.
    /// - `GET_DYN_CONNECTED` needs a sensor list: `[]` or an object whose values are all objects.
    /// - the others accept any other `RTN_*` (their replies were never observed, §1.3) except a
    ///   sensor list, which can only be a late discovery reply.
    pub fn accepts(self, reply: &Inbound) -> bool {
        match reply {
            Inbound::Error(error) => match error.attempt.as_deref().and_then(CommandKind::from_frame_type) {
                Some(attempted) => attempted == self,
                None => true,
            },
            Inbound::Login(_) => self == CommandKind::Login,
            Inbound::Dyn(data) | Inbound::OtherReply { data, .. } => match self {
                CommandKind::Login => false,
                CommandKind::GetConnected => is_sensor_list(data),
                _ => !is_nonempty_sensor_map(data),
            },
            _ => false,
        }
    }
}

impl CommandKind {
    /// A reply that does not fit ([`CommandKind::accepts`]) but might still be the answer: `{}`
    /// to `GET_DYN_CONNECTED`. `[]` is what the gateway sends for "no sensors" [HW], and `{}` is
    /// what subscribe replies look like, so `{}` is held back for a short grace period: if the
    /// real discovery reply follows (the `{}` was a duplicate), that one is used; otherwise the
    /// `{}` is taken as an empty sensor list.
    pub fn may_accept_after_grace(self, reply: &Inbound) -> bool {
        let data = match reply {
            Inbound::Dyn(data) | Inbound::OtherReply { data, .. } => data,
            _ => return false,
        };
        self == CommandKind::GetConnected && data.as_object().is_some_and(Map::is_empty)
    }
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Login(_) => CommandKind::Login,
            Command::Subscribe => CommandKind::Subscribe,
            Command::Unsubscribe => CommandKind::Unsubscribe,
            Command::GetConnected => CommandKind::GetConnected,
            Command::TakeReading(_) => CommandKind::TakeReading,
        }
    }

    pub fn frame_type(&self) -> &'static str {
        self.kind().frame_type()
    }

    /// The frame's exact text, e.g.
    /// `{"Type":"TAKE_DYN_READING","From":"UI","To":"SERV","Data":{"Serial":40417}}`.
    pub fn to_json(&self) -> String {
        let frame_type = self.frame_type();
        let result = match self {
            Command::Login(credentials) => encode(
                frame_type,
                LoginData {
                    email: &credentials.email,
                    password: credentials.password.expose(),
                },
            ),
            Command::TakeReading(serial) => encode(frame_type, TakeReadingData { serial: *serial }),
            Command::Subscribe | Command::Unsubscribe | Command::GetConnected => encode(frame_type, NoArguments {}),
        };
        result.expect("serialising plain strings and integers cannot fail")
    }
}

fn encode<D: Serialize>(frame_type: &str, data: D) -> serde_json::Result<String> {
    serde_json::to_string(&OutboundEnvelope {
        frame_type,
        from: CLIENT_ENDPOINT,
        to: GATEWAY_ENDPOINT,
        data,
    })
}

// ---------------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------------

/// Why an inbound frame could not be used. Never fatal: the session counts, logs and drops it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("frame is JSON but not an object")]
    NotAnObject,
    #[error("frame has no string \"Type\"")]
    MissingType,
    #[error("{frame_type} frame has unusable Data: {reason}")]
    BadData { frame_type: String, reason: String },
}

/// The envelope of an inbound frame with its `Data` still untyped.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub frame_type: String,
    pub from: Option<String>,
    /// `Target` (what the gateway sends) or, failing that, `To`.
    pub target: Option<String>,
    /// `Data`; `null` when absent.
    pub data: Value,
    /// Any other top-level keys (e.g. a `CorrelationId` a future firmware might add).
    pub extra: Map<String, Value>,
}

impl Envelope {
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let value: Value = serde_json::from_str(text).map_err(|error| FrameError::NotJson(error.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(FrameError::NotAnObject);
        };
        let frame_type = match map.remove("Type") {
            Some(Value::String(frame_type)) => frame_type,
            _ => return Err(FrameError::MissingType),
        };
        let from = map.remove("From").and_then(json_to_string);
        let target = map
            .remove("Target")
            .and_then(json_to_string)
            .or_else(|| map.remove("To").and_then(json_to_string));
        let data = map.remove("Data").unwrap_or(Value::Null);
        Ok(Envelope {
            frame_type,
            from,
            target,
            data,
            extra: map,
        })
    }

    /// Types the `Data` according to `Type`.
    pub fn into_inbound(self) -> Result<Inbound, FrameError> {
        let Envelope { frame_type, data, .. } = self;
        fn typed<T: serde::de::DeserializeOwned>(frame_type: &str, data: Value) -> Result<T, FrameError> {
            serde_json::from_value(data).map_err(|error| FrameError::BadData {
                frame_type: frame_type.to_owned(),
                reason: error.to_string(),
            })
        }
        Ok(match frame_type.as_str() {
            RTN_LOGIN => Inbound::Login(typed(&frame_type, data)?),
            RTN_DYN => Inbound::Dyn(data),
            RTN_ERR => Inbound::Error(typed(&frame_type, data)?),
            NOT_DYN_READING_STARTED => Inbound::ReadingStarted(typed(&frame_type, data)?),
            NOT_DYN_READING => Inbound::Reading(typed(&frame_type, data)?),
            NOT_DYN_TEMP => Inbound::Temperature(typed(&frame_type, data)?),
            other if other.starts_with("RTN_") => Inbound::OtherReply { frame_type, data },
            other if other.starts_with("NOT_") => Inbound::OtherNotification { frame_type, data },
            _ => Inbound::Unknown { frame_type, data },
        })
    }
}

/// Parses one inbound text frame into a typed message.
pub fn parse_inbound(text: &str) -> Result<Inbound, FrameError> {
    Envelope::parse(text)?.into_inbound()
}

/// A typed inbound frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// `RTN_LOGIN`: the answer to `POST_LOGIN` (§1.5 item 6).
    Login(LoginReply),
    /// `RTN_DYN`: the answer to the other commands; `Data` is an object or an array.
    Dyn(Value),
    /// `RTN_ERR`: a command failed.
    Error(ErrorReply),
    /// Any other `RTN_*`, accepted as a reply (§1.3).
    OtherReply {
        frame_type: String,
        data: Value,
    },
    ReadingStarted(ReadingStarted),
    Reading(ReadingData),
    Temperature(TemperatureData),
    /// Any other `NOT_*` notification.
    OtherNotification {
        frame_type: String,
        data: Value,
    },
    /// Neither a reply nor a notification; counted and ignored.
    Unknown {
        frame_type: String,
        data: Value,
    },
}

impl Inbound {
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            Inbound::Login(_) | Inbound::Dyn(_) | Inbound::Error(_) | Inbound::OtherReply { .. }
        )
    }

    pub fn frame_type(&self) -> &str {
        match self {
            Inbound::Login(_) => RTN_LOGIN,
            Inbound::Dyn(_) => RTN_DYN,
            Inbound::Error(_) => RTN_ERR,
            Inbound::ReadingStarted(_) => NOT_DYN_READING_STARTED,
            Inbound::Reading(_) => NOT_DYN_READING,
            Inbound::Temperature(_) => NOT_DYN_TEMP,
            Inbound::OtherReply { frame_type, .. }
            | Inbound::OtherNotification { frame_type, .. }
            | Inbound::Unknown { frame_type, .. } => frame_type,
        }
    }
}

/// `RTN_LOGIN` data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoginReply {
    #[serde(rename = "Email", default, deserialize_with = "flex::opt_string")]
    pub email: Option<String>,
    #[serde(rename = "First", default, deserialize_with = "flex::opt_string")]
    pub first: Option<String>,
    #[serde(rename = "Last", default, deserialize_with = "flex::opt_string")]
    pub last: Option<String>,
    /// `false` means the credentials were rejected. Absent counts as success: `RTN_LOGIN` is
    /// the success reply [HW] and the failure frame was never captured (§1.7).
    #[serde(rename = "Success", default, deserialize_with = "flex::opt_bool")]
    pub success: Option<bool>,
    #[serde(rename = "AccessLevel", default, deserialize_with = "flex::opt_i64")]
    pub access_level: Option<i64>,
    #[serde(rename = "Verified", default, deserialize_with = "flex::opt_bool")]
    pub verified: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LoginReply {
    pub fn succeeded(&self) -> bool {
        self.success != Some(false)
    }
}

/// `RTN_ERR` data. `Attempt` may be `null` (§1.5 item 3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    #[serde(rename = "Attempt", default, deserialize_with = "flex::opt_string")]
    pub attempt: Option<String>,
    #[serde(rename = "Error", default, deserialize_with = "flex::opt_string")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ErrorReply {
    /// Whether this refusal of `POST_LOGIN` is about the credentials: it names the
    /// login as its `Attempt`, or its text says so. A null `Attempt` with other text
    /// is the gateway failing (§1.5 item 3), which is worth retrying soon.
    pub fn refuses_credentials(&self) -> bool {
        let text = self.error.as_deref().unwrap_or("").to_ascii_lowercase();
        self.attempt.as_deref() == Some(POST_LOGIN)
            || ["invalid", "credential", "password"]
                .iter()
                .any(|word| text.contains(word))
    }
}

impl fmt::Display for ErrorReply {
    /// The predecessor's wording: `Command error: <Error> (Attempt: <Attempt>)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command error: {}", self.error.as_deref().unwrap_or("(no message)"))?;
        if let Some(attempt) = &self.attempt {
            write!(f, " (Attempt: {attempt})")?;
        }
        Ok(())
    }
}

/// `NOT_DYN_READING_STARTED` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadingStarted {
    #[serde(rename = "Serial")]
    pub serial: Serial,
    /// Absent is taken as `true`: the notification itself says the reading started.
    #[serde(rename = "Success", default, deserialize_with = "flex::opt_bool")]
    pub success: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ReadingStarted {
    pub fn succeeded(&self) -> bool {
        self.success != Some(false)
    }
}

/// `NOT_DYN_READING` data: the waveform, still encoded (§1.11).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingData {
    #[serde(rename = "ID", default, deserialize_with = "flex::opt_i64")]
    pub id: Option<i64>,
    #[serde(rename = "Serial")]
    pub serial: Serial,
    #[serde(rename = "Time", default, deserialize_with = "flex::opt_string")]
    pub time: Option<String>,
    #[serde(rename = "X", deserialize_with = "flex::axis")]
    pub x: String,
    #[serde(rename = "Y", deserialize_with = "flex::axis")]
    pub y: String,
    #[serde(rename = "Z", deserialize_with = "flex::axis")]
    pub z: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl fmt::Debug for ReadingData {
    /// Axis texts can be megabytes long: show their lengths only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadingData")
            .field("id", &self.id)
            .field("serial", &self.serial)
            .field("time", &self.time)
            .field("x_len", &self.x.len())
            .field("y_len", &self.y.len())
            .field("z_len", &self.z.len())
            .field("extra", &self.extra)
            .finish()
    }
}

/// `NOT_DYN_TEMP` data; `Temp` presumably in °C (§1.12).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemperatureData {
    #[serde(rename = "Serial")]
    pub serial: Serial,
    #[serde(rename = "Temp", default, deserialize_with = "flex::opt_f64")]
    pub temp: Option<f64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------------
// Sensors (§1.4, §1.9)
// ---------------------------------------------------------------------------------------------

/// One entry of the `GET_DYN_CONNECTED` reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorInfo {
    #[serde(rename = "Serial")]
    pub serial: Serial,
    /// `Connected: 1` (or `true`).
    #[serde(rename = "Connected", with = "connected_flag", default)]
    pub connected: bool,
    #[serde(rename = "AccessPoint", default, skip_serializing_if = "Option::is_none")]
    pub access_point: Option<IntOrString>,
    #[serde(
        rename = "PartNum",
        default,
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub part_number: Option<String>,
    /// Sample rate in Hz.
    #[serde(
        rename = "ReadRate",
        default,
        deserialize_with = "flex::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_rate: Option<f64>,
    #[serde(rename = "GMode", default, skip_serializing_if = "Option::is_none")]
    pub g_mode: Option<IntOrString>,
    #[serde(rename = "FreqMode", default, skip_serializing_if = "Option::is_none")]
    pub freq_mode: Option<IntOrString>,
    #[serde(
        rename = "ReadPeriod",
        default,
        deserialize_with = "flex::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_period: Option<i64>,
    /// Samples per axis per reading.
    #[serde(
        rename = "Samples",
        default,
        deserialize_with = "flex::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub samples: Option<i64>,
    #[serde(
        rename = "HwVer",
        default,
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub hardware_version: Option<String>,
    #[serde(
        rename = "FmVer",
        default,
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub firmware_version: Option<String>,
    #[serde(
        rename = "Name",
        default,
        deserialize_with = "flex::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SensorInfo {
    /// A minimal entry, for tests and simulators.
    pub fn new(serial: Serial) -> Self {
        SensorInfo {
            serial,
            connected: true,
            access_point: None,
            part_number: None,
            read_rate: None,
            g_mode: None,
            freq_mode: None,
            read_period: None,
            samples: None,
            hardware_version: None,
            firmware_version: None,
            name: None,
            extra: Map::new(),
        }
    }

    /// Expected samples per axis, when the gateway reported a usable count.
    pub fn expected_samples(&self) -> Option<usize> {
        self.samples
            .filter(|count| *count > 0)
            .and_then(|count| usize::try_from(count).ok())
    }

    /// How long one capture takes (`Samples / ReadRate`), when both are known.
    pub fn capture_duration(&self) -> Option<std::time::Duration> {
        let samples = self.expected_samples()? as f64;
        let rate = self.read_rate.filter(|rate| *rate > 0.0)?;
        std::time::Duration::try_from_secs_f64(samples / rate).ok()
    }
}

mod connected_flag {
    use super::*;

    pub fn serialize<S: Serializer>(connected: &bool, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(u8::from(*connected))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
        match Option::<Value>::deserialize(deserializer)? {
            None | Some(Value::Null) => Ok(false),
            Some(value) => {
                json_to_bool(&value).ok_or_else(|| de::Error::custom(format!("invalid Connected value {value}")))
            }
        }
    }
}

/// The sensors of a discovery reply, and the entries that could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SensorList {
    /// Sorted by serial.
    pub sensors: Vec<SensorInfo>,
    /// One line per unusable entry (key and reason); such entries are logged, not fatal.
    pub skipped: Vec<String>,
}

/// Reads the `Data` of a `GET_DYN_CONNECTED` reply: `[]` (no sensors, §1.5 item 2), or an object
/// keyed by serial whose entries carry `Serial` as an integer (the key is used when an entry has
/// no usable `Serial`). An array of entries is accepted too.
pub fn parse_sensor_list(data: &Value) -> Result<SensorList, FrameError> {
    let mut list = SensorList::default();
    let mut add = |key: Option<&str>, entry: &Value| {
        let label = key.map_or_else(|| "entry".to_owned(), |key| format!("entry {key:?}"));
        let Value::Object(fields) = entry else {
            list.skipped
                .push(format!("{label}: expected an object, got {}", json_kind(entry)));
            return;
        };
        let mut fields = fields.clone();
        let serial_usable = fields.get("Serial").and_then(Serial::from_json).is_some();
        if !serial_usable {
            match key.and_then(|key| key.parse::<Serial>().ok()) {
                Some(serial) => {
                    fields.insert("Serial".into(), Value::from(serial.0));
                }
                None => {
                    list.skipped.push(format!("{label}: no usable Serial"));
                    return;
                }
            }
        }
        match serde_json::from_value::<SensorInfo>(Value::Object(fields)) {
            Ok(sensor) => list.sensors.push(sensor),
            Err(error) => list.skipped.push(format!("{label}: {error}")),
        }
    };
    match data {
        Value::Array(entries) => entries.iter().for_each(|entry| add(None, entry)),
        Value::Object(entries) => entries.iter().for_each(|(key, entry)| add(Some(key), entry)),
        other => {
            return Err(FrameError::BadData {
                frame_type: RTN_DYN.to_owned(),
                reason: format!("sensor list must be an object or an array, got {}", json_kind(other)),
            })
        }
    }
    list.sensors.sort_by_key(|sensor| sensor.serial);
    Ok(list)
}

/// `[]`, or a non-empty object of objects: what a discovery reply looks like.
pub fn is_sensor_list(data: &Value) -> bool {
    match data {
        Value::Array(entries) => entries.iter().all(Value::is_object),
        _ => is_nonempty_sensor_map(data),
    }
}

fn is_nonempty_sensor_map(data: &Value) -> bool {
    match data {
        Value::Object(entries) => !entries.is_empty() && entries.values().all(Value::is_object),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outbound_frames_are_the_exact_four_key_envelope() {
        let login = Command::Login(Credentials::new("tech@plant.example", "s3cret"));
        assert_eq!(
            login.to_json(),
            r#"{"Type":"POST_LOGIN","From":"UI","To":"SERV","Data":{"Email":"tech@plant.example","Password":"s3cret"}}"#
        );
        assert_eq!(
            Command::Subscribe.to_json(),
            r#"{"Type":"POST_SUB_CHANGES","From":"UI","To":"SERV","Data":{}}"#
        );
        assert_eq!(
            Command::Unsubscribe.to_json(),
            r#"{"Type":"POST_UNSUB_CHANGES","From":"UI","To":"SERV","Data":{}}"#
        );
        assert_eq!(
            Command::GetConnected.to_json(),
            r#"{"Type":"GET_DYN_CONNECTED","From":"UI","To":"SERV","Data":{}}"#
        );
        assert_eq!(
            Command::TakeReading(Serial(40417)).to_json(),
            r#"{"Type":"TAKE_DYN_READING","From":"UI","To":"SERV","Data":{"Serial":40417}}"#
        );
    }

    #[test]
    fn password_is_escaped_not_broken_out_of_the_string() {
        let login = Command::Login(Credentials::new("a@b.c", "q\"uo\\te"));
        let parsed: Value = serde_json::from_str(&login.to_json()).unwrap();
        assert_eq!(parsed["Data"]["Password"], "q\"uo\\te");
        assert!(!format!("{login:?}").contains("uo"));
    }

    #[test]
    fn every_catalogue_example_parses() {
        let login = parse_inbound(r#"{"Type":"RTN_LOGIN","From":"SERV","Target":"UI","Data":{"Email":"tech@plant.example","First":"Dana","Last":"Reyes","Success":true,"AccessLevel":2,"Verified":true}}"#).unwrap();
        let Inbound::Login(login) = login else {
            panic!("{login:?}")
        };
        assert!(login.succeeded());
        assert_eq!(login.first.as_deref(), Some("Dana"));
        assert_eq!(login.access_level, Some(2));

        let error = parse_inbound(r#"{"Type":"RTN_ERR","From":"SERV","Target":"UI","Data":{"Attempt":null,"Error":"'NoneType' object is not subscriptable"}}"#).unwrap();
        let Inbound::Error(error) = error else { panic!() };
        assert_eq!(error.attempt, None);
        assert_eq!(
            error.to_string(),
            "Command error: 'NoneType' object is not subscriptable"
        );

        let started = parse_inbound(
            r#"{"Type":"NOT_DYN_READING_STARTED","From":"SERV","Target":"UI","Data":{"Serial":40417,"Success":true}}"#,
        )
        .unwrap();
        assert!(matches!(started, Inbound::ReadingStarted(ref s) if s.serial == Serial(40417) && s.succeeded()));

        let reading = parse_inbound(r#"{"Type":"NOT_DYN_READING","From":"SERV","Target":"UI","Data":{"ID":5521,"Serial":"40417","Time":"2026-02-07 21:58:03","X":"0.012,-0.034,0.051","Y":"0.101,0.098,0.102","Z":"0.997,1.004,1.001"}}"#).unwrap();
        let Inbound::Reading(reading) = reading else { panic!() };
        assert_eq!(reading.serial, Serial(40417));
        assert_eq!(reading.id, Some(5521));
        assert_eq!(reading.z, "0.997,1.004,1.001");

        let temp = parse_inbound(
            r#"{"Type":"NOT_DYN_TEMP","From":"SERV","Target":"UI","Data":{"Serial":"40417","Temp":31.2}}"#,
        )
        .unwrap();
        assert!(matches!(temp, Inbound::Temperature(ref t) if t.serial == Serial(40417) && t.temp == Some(31.2)));
    }

    #[test]
    fn discovery_reply_object_and_empty_array() {
        let frame = r#"{"Type":"RTN_DYN","From":"SERV","Target":"UI","Data":{"40417":{"Serial":40417,"Connected":1,"AccessPoint":"AP-2","PartNum":"CTC-WV-3A","ReadRate":25600,"GMode":1,"FreqMode":0,"ReadPeriod":3600,"Samples":6400,"HwVer":"1.2","FmVer":"3.4.1"},"40418":{"Serial":40418,"Connected":0,"PartNum":"CTC-WV-3A","ReadRate":25600,"Samples":6400}}}"#;
        let Inbound::Dyn(data) = parse_inbound(frame).unwrap() else {
            panic!()
        };
        let list = parse_sensor_list(&data).unwrap();
        assert_eq!(list.sensors.len(), 2);
        assert!(list.skipped.is_empty());
        let first = &list.sensors[0];
        assert_eq!(first.serial, Serial(40417));
        assert!(first.connected);
        assert_eq!(first.access_point, Some(IntOrString::Text("AP-2".into())));
        assert_eq!(first.g_mode, Some(IntOrString::Int(1)));
        assert_eq!(first.expected_samples(), Some(6400));
        assert!(!list.sensors[1].connected);

        let Inbound::Dyn(empty) = parse_inbound(r#"{"Type":"RTN_DYN","From":"SERV","Target":"UI","Data":[]}"#).unwrap()
        else {
            panic!()
        };
        assert!(parse_sensor_list(&empty).unwrap().sensors.is_empty());
        assert!(is_sensor_list(&empty));
    }

    #[test]
    fn doc_typed_sensor_fields_and_string_serials_are_accepted() {
        // Vendor-doc types: AccessPoint int, GMode/FreqMode strings, numbers as strings.
        let data = json!({"7": {"Serial": "7", "Connected": "1", "AccessPoint": 3, "GMode": "2g",
            "FreqMode": "high", "ReadRate": "25600", "Samples": "6400", "BatteryPercent": 88},
            "8": {"Connected": true}});
        let list = parse_sensor_list(&data).unwrap();
        assert_eq!(list.sensors.len(), 2, "{:?}", list.skipped);
        let seven = &list.sensors[0];
        assert_eq!(seven.access_point, Some(IntOrString::Int(3)));
        assert_eq!(seven.g_mode, Some(IntOrString::Text("2g".into())));
        assert_eq!(seven.read_rate, Some(25600.0));
        assert_eq!(seven.extra.get("BatteryPercent"), Some(&json!(88)));
        // Entry without Serial takes it from its key.
        assert_eq!(list.sensors[1].serial, Serial(8));
    }

    #[test]
    fn null_optional_fields_are_absent() {
        let data = json!({"5": {"Serial": 5, "Connected": 1, "AccessPoint": null, "GMode": null,
            "PartNum": null, "Samples": null, "ReadRate": null}});
        let sensor = &parse_sensor_list(&data).unwrap().sensors[0];
        assert_eq!(sensor.access_point, None);
        assert_eq!(sensor.g_mode, None);
        assert_eq!(sensor.expected_samples(), None);
        assert_eq!(sensor.capture_duration(), None);
    }

    #[test]
    fn a_bad_sensor_entry_is_skipped_not_fatal() {
        let data = json!({"x": {"Connected": 1}, "9": {"Serial": 9, "Connected": 1}, "10": 5});
        let list = parse_sensor_list(&data).unwrap();
        assert_eq!(list.sensors.len(), 1);
        assert_eq!(list.skipped.len(), 2);
    }

    #[test]
    fn to_instead_of_target_and_extra_keys_are_tolerated() {
        let envelope =
            Envelope::parse(r#"{"Type":"RTN_DYN","From":"SERV","To":"UI","Data":{},"CorrelationId":"abc"}"#).unwrap();
        assert_eq!(envelope.target.as_deref(), Some("UI"));
        assert_eq!(envelope.extra.get("CorrelationId"), Some(&json!("abc")));
    }

    #[test]
    fn unusable_frames_are_errors_not_panics() {
        assert!(matches!(parse_inbound("not json"), Err(FrameError::NotJson(_))));
        assert!(matches!(parse_inbound("[1]"), Err(FrameError::NotAnObject)));
        assert!(matches!(
            parse_inbound(r#"{"type":"pong"}"#),
            Err(FrameError::MissingType)
        ));
        assert!(matches!(
            parse_inbound(r#"{"Type":"NOT_DYN_READING","Data":{"Serial":"abc"}}"#),
            Err(FrameError::BadData { .. })
        ));
        assert!(matches!(
            parse_inbound(r#"{"Type":"HELLO","Data":1}"#),
            Ok(Inbound::Unknown { .. })
        ));
    }

    #[test]
    fn reply_pairing_rules() {
        let login = Inbound::Login(LoginReply::default());
        let empty_object = Inbound::Dyn(json!({}));
        let sensors = Inbound::Dyn(json!({"1": {"Serial": 1}}));
        let none = Inbound::Dyn(json!([]));
        let error = Inbound::Error(ErrorReply::default());
        assert!(CommandKind::Login.accepts(&login));
        assert!(!CommandKind::Login.accepts(&empty_object));
        assert!(!CommandKind::Subscribe.accepts(&login));
        assert!(CommandKind::Subscribe.accepts(&empty_object));
        assert!(!CommandKind::TakeReading.accepts(&sensors));
        assert!(CommandKind::GetConnected.accepts(&sensors));
        assert!(CommandKind::GetConnected.accepts(&none));
        assert!(!CommandKind::GetConnected.accepts(&empty_object));
        assert!(CommandKind::GetConnected.may_accept_after_grace(&empty_object));
        assert!(!CommandKind::Subscribe.may_accept_after_grace(&empty_object));
        assert!(!CommandKind::GetConnected.may_accept_after_grace(&login));
        for kind in [
            CommandKind::Login,
            CommandKind::Subscribe,
            CommandKind::Unsubscribe,
            CommandKind::GetConnected,
            CommandKind::TakeReading,
        ] {
            assert!(kind.accepts(&error), "Attempt null fits anything");
        }
        let login_error = Inbound::Error(ErrorReply {
            attempt: Some("POST_LOGIN".into()),
            ..ErrorReply::default()
        });
        assert!(CommandKind::Login.accepts(&login_error));
        assert!(!CommandKind::GetConnected.accepts(&login_error));
        let odd_attempt = Inbound::Error(ErrorReply {
            attempt: Some("login".into()),
            ..ErrorReply::default()
        });
        assert!(CommandKind::GetConnected.accepts(&odd_attempt));
    }
}
