//! Live state of the fleet as the orchestrator reports it: what the status page,
//! the status API and the event stream show. One record per gateway, so no two
//! indicators can disagree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One state per gateway (JSON field `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Online,
    Connecting,
    Authenticating,
    Backoff,
    AuthFailed,
    Disconnected,
    Disabled,
}

impl ConnectionState {
    pub const ALL: [ConnectionState; 7] = [
        ConnectionState::Online,
        ConnectionState::Connecting,
        ConnectionState::Authenticating,
        ConnectionState::Backoff,
        ConnectionState::AuthFailed,
        ConnectionState::Disconnected,
        ConnectionState::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Online => "online",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Authenticating => "authenticating",
            ConnectionState::Backoff => "backoff",
            ConnectionState::AuthFailed => "auth_failed",
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Disabled => "disabled",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionState::Online => "Online",
            ConnectionState::Connecting => "Connecting",
            ConnectionState::Authenticating => "Logging in",
            ConnectionState::Backoff => "Retrying",
            ConnectionState::AuthFailed => "Login refused",
            ConnectionState::Disconnected => "Disconnected",
            ConnectionState::Disabled => "Disabled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// What the status page lists first: every gateway that is enabled but not online
    /// (down, or stuck on its way up).
    pub fn needs_attention(self) -> bool {
        !matches!(self, ConnectionState::Online | ConnectionState::Disabled)
    }

    /// Down: neither online nor on its way there.
    pub fn is_down(self) -> bool {
        matches!(
            self,
            ConnectionState::Backoff | ConnectionState::AuthFailed | ConnectionState::Disconnected
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiveCounters {
    pub reconnects: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub errors: u64,
    pub readings: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SensorLive {
    pub serial: u64,
    pub part_number: Option<String>,
    /// Sample rate, Hz.
    pub read_rate: Option<f64>,
    /// Samples per axis per reading.
    pub samples: Option<u32>,
    pub connected: bool,
}

/// The live record of one gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayLive {
    /// The gateway's row id.
    pub id: Uuid,
    pub factory_id: Uuid,
    /// The human id, e.g. GW-SPR-001.
    pub gateway_id: String,
    pub name: String,
    pub state: ConnectionState,
    /// When the current state began.
    pub since: DateTime<Utc>,
    /// For `backoff` and `auth_failed`: when the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt or connection failed, in words.
    pub last_error: Option<String>,
    pub online_since: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub counters: LiveCounters,
    pub sensors: Vec<SensorLive>,
    /// The server instance holding the gateway's connection; `null` while none does.
    #[serde(default)]
    pub owner: Option<Uuid>,
}

/// A live server instance sharing the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    pub id: Uuid,
    /// Where it serves (its `INSTANCE_ADDRESS`, or the address it listens on).
    pub address: String,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    /// How many gateways it holds.
    pub gateways: u64,
}

/// Progress of one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReadingStage {
    Requested,
    Started,
    Finished,
    Failed,
    /// A scheduled reading not taken (the reason is the reading's `error`).
    Skipped,
}

impl ReadingStage {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadingStage::Requested => "requested",
            ReadingStage::Started => "started",
            ReadingStage::Finished => "finished",
            ReadingStage::Failed => "failed",
            ReadingStage::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadingProgress {
    pub reading_id: Uuid,
    /// The gateway's row id.
    pub gateway: Uuid,
    pub factory_id: Uuid,
    pub serial: u64,
    pub stage: ReadingStage,
    pub at: DateTime<Utc>,
    pub error: Option<String>,
}

/// What the event stream (`GET /api/events`) sends. Each event's SSE `event:` name
/// is its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// Every gateway (of the requested factory), sent first and after a gap.
    Snapshot {
        gateways: Vec<GatewayLive>,
    },
    /// One gateway's record changed (state, sensors, counters…): the full record.
    Gateway {
        gateway: GatewayLive,
    },
    /// A gateway was deleted (or moved out of the requested factory).
    Removed {
        id: Uuid,
        factory_id: Uuid,
    },
    Reading {
        reading: ReadingProgress,
    },
    /// An alarm was raised, acknowledged, escalated or cleared: its full record.
    Alarm {
        alarm: Box<crate::alarms::Alarm>,
    },
}

impl LiveEvent {
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::Snapshot { .. } => "snapshot",
            LiveEvent::Gateway { .. } => "gateway",
            LiveEvent::Removed { .. } => "removed",
            LiveEvent::Reading { .. } => "reading",
            LiveEvent::Alarm { .. } => "alarm",
        }
    }

    pub fn factory(&self) -> Option<Uuid> {
        match self {
            LiveEvent::Snapshot { .. } => None,
            LiveEvent::Gateway { gateway } => Some(gateway.factory_id),
            LiveEvent::Removed { factory_id, .. } => Some(*factory_id),
            LiveEvent::Reading { reading } => Some(reading.factory_id),
            LiveEvent::Alarm { alarm } => alarm.factory_id,
        }
    }

    /// Whether a stream of `factory` (or of every factory) carries this event.
    pub fn is_for(&self, factory: Option<Uuid>) -> bool {
        factory.is_none_or(|f| self.factory() == Some(f))
    }
}

/// One frame of the coalesced event stream (`GET /api/events?coalesce=true`, SSE
/// event `batch`): what changed since the previous frame, each gateway's last state
/// only, at most a few frames a second whatever the fleet does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiveBatch {
    /// Each changed gateway's latest record, `sensors` left empty (see
    /// `/api/gateways/{id}/status` for them).
    pub gateways: Vec<GatewayLive>,
    /// Gateways deleted (or moved out of the requested factory).
    pub removed: Vec<RemovedGateway>,
    /// Reading progress, every step (readings are not coalesced).
    pub readings: Vec<ReadingProgress>,
    /// Alarms that changed, each one's newest record.
    #[serde(default)]
    pub alarms: Vec<crate::alarms::Alarm>,
    /// The counts as of this frame, when they may have changed (and in the first frame).
    pub summary: Option<FleetStatus>,
    /// The client missed changes (it fell behind, or its last event id is unknown):
    /// it should load its view again.
    pub resync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemovedGateway {
    pub id: Uuid,
    pub factory_id: Uuid,
}

/// Fleet summary: counts per state, overall and per factory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetStatus {
    pub total: u64,
    /// State name → count; every state is present.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub states: std::collections::BTreeMap<String, u64>,
    pub factories: Vec<FactoryStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactoryStatus {
    pub factory_id: Uuid,
    pub total: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub states: std::collections::BTreeMap<String, u64>,
}

impl FleetStatus {
    pub fn of(gateways: &[GatewayLive]) -> Self {
        Self::count(gateways.iter().map(|g| (g.factory_id, g.state)))
    }

    /// Counts (factory, state) pairs, one per gateway, without needing the records.
    /// Counted in arrays by state first: the named maps are built once per factory.
    pub fn count(gateways: impl Iterator<Item = (Uuid, ConnectionState)>) -> Self {
        let index = |state: ConnectionState| ConnectionState::ALL.iter().position(|s| *s == state).unwrap_or(0);
        let named = |counts: &[u64; 7]| {
            ConnectionState::ALL
                .iter()
                .zip(counts)
                .map(|(s, n)| (s.as_str().to_owned(), *n))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let mut all = [0u64; 7];
        let mut per_factory: std::collections::HashMap<Uuid, [u64; 7]> = Default::default();
        for (factory_id, state) in gateways {
            let at = index(state);
            all[at] += 1;
            per_factory.entry(factory_id).or_default()[at] += 1;
        }
        let mut factories: Vec<FactoryStatus> = per_factory
            .into_iter()
            .map(|(factory_id, counts)| FactoryStatus {
                factory_id,
                total: counts.iter().sum(),
                states: named(&counts),
            })
            .collect();
        factories.sort_by_key(|f| f.factory_id);
        Self {
            total: all.iter().sum(),
            states: named(&all),
            factories,
        }
    }
}

/// One entry of a gateway's connection history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayEventRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// connected, disconnected, auth_failed, error, enabled, disabled
    pub kind: String,
    pub message: Option<String>,
    pub close_code: Option<i32>,
}

/// A sensor as last discovered on a gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SensorRecord {
    pub serial: u64,
    pub part_number: Option<String>,
    pub read_rate: Option<f64>,
    pub samples: Option<u32>,
    pub connected: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// Statistics of one axis of a waveform, in g.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AxisStatistics {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub rms: f64,
    pub peak: f64,
    pub crest_factor: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadingStatistics {
    pub x: AxisStatistics,
    pub y: AxisStatistics,
    pub z: AxisStatistics,
}

/// A reading without its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadingSummary {
    pub id: Uuid,
    /// The gateway's row id.
    pub gateway: Uuid,
    pub serial: u64,
    pub status: ReadingStage,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// Sample rate, Hz, as the sensor reported it.
    pub sample_rate: Option<f64>,
    /// Samples per axis.
    pub samples: Option<u32>,
    /// °C, when the gateway sent it.
    pub temperature: Option<f64>,
    pub statistics: Option<ReadingStatistics>,
    /// The overall values computed when the reading was stored (finished readings).
    #[serde(default)]
    pub overall: Option<ReadingOverall>,
}

/// One axis's overall values (AC: the mean is removed first). Acceleration in g,
/// velocity in mm/s RMS over 10–1,000 Hz; crest factor = peak / RMS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AxisOverall {
    pub accel_rms: f64,
    pub accel_peak: f64,
    pub velocity_rms: f64,
    pub crest_factor: f64,
}

/// A reading's overall values per axis, and the sensor's temperature (°C) when known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadingOverall {
    pub x: AxisOverall,
    pub y: AxisOverall,
    pub z: AxisOverall,
    pub temperature: Option<f64>,
}

/// A reading with its waveform (possibly min/max-downsampled to `points`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadingDetail {
    #[serde(flatten)]
    pub summary: ReadingSummary,
    /// Whether `x`/`y`/`z` were downsampled (min/max pairs per bucket).
    pub downsampled: bool,
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub z: Vec<f32>,
}

/// Reduces `samples` to at most `points` values by keeping each bucket's minimum
/// and maximum in time order, so peaks survive (what a plot of the full signal shows).
pub fn downsample_min_max(samples: &[f32], points: usize) -> Vec<f32> {
    if points < 2 || samples.len() <= points {
        return samples.to_vec();
    }
    let buckets = points / 2;
    let mut out = Vec::with_capacity(buckets * 2);
    for b in 0..buckets {
        let start = b * samples.len() / buckets;
        let end = ((b + 1) * samples.len() / buckets).max(start + 1);
        let bucket = &samples[start..end];
        let (mut min_i, mut max_i) = (0, 0);
        for (i, v) in bucket.iter().enumerate() {
            if *v < bucket[min_i] {
                min_i = i;
            }
            if *v > bucket[max_i] {
                max_i = i;
            }
        }
        let (first, second) = if min_i <= max_i { (min_i, max_i) } else { (max_i, min_i) };
        out.push(bucket[first]);
        out.push(bucket[second]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_extremes_and_bounds_length() {
        let mut samples: Vec<f32> = (0..65_536).map(|i| (i as f32 * 0.01).sin()).collect();
        samples[12_345] = 9.0;
        samples[54_321] = -9.0;
        let reduced = downsample_min_max(&samples, 2000);
        assert!(reduced.len() <= 2000);
        assert!(reduced.contains(&9.0) && reduced.contains(&-9.0));
        assert_eq!(downsample_min_max(&samples[..100], 2000).len(), 100);
    }

    #[test]
    fn fleet_status_counts_every_state() {
        let status = FleetStatus::of(&[]);
        assert_eq!(status.states.len(), ConnectionState::ALL.len());
        assert_eq!(status.total, 0);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let status = FleetStatus::count(
            [
                (a, ConnectionState::Online),
                (a, ConnectionState::Backoff),
                (b, ConnectionState::Online),
                (a, ConnectionState::Online),
            ]
            .into_iter(),
        );
        assert_eq!(status.total, 4);
        assert_eq!(status.states["online"], 3);
        assert_eq!(status.states["backoff"], 1);
        assert_eq!(status.states["disabled"], 0);
        assert_eq!(status.factories.len(), 2);
        let first = &status.factories[0];
        assert_eq!((first.factory_id, first.total), (a, 3));
        assert_eq!((first.states["online"], first.states["backoff"]), (2, 1));
        assert_eq!(first.states.len(), ConnectionState::ALL.len());
    }
}

/// What a bulk action does to each gateway of a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    Enable,
    Disable,
    Connect,
    Disconnect,
}

/// Body of `POST /api/gateways/bulk`: one action on up to [`BULK_MAX`] gateways.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkRequest {
    pub action: BulkAction,
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub ids: Vec<Uuid>,
}

/// The most gateways one bulk request may name.
pub const BULK_MAX: usize = 1000;

/// One gateway a bulk action could not be applied to, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkFailure {
    pub id: Uuid,
    pub code: crate::error::ErrorCode,
    pub message: String,
}

/// What a bulk action did: each gateway either done or failed (the others still done).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkOutcome {
    pub action: BulkAction,
    pub done: Vec<Uuid>,
    pub failed: Vec<BulkFailure>,
}

/// A gateway's connection health over time, from its stored events: the share of each
/// window it was online (percent, of the part of the window it existed; `null` when it
/// did not exist yet) and how often an established connection was lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayHealth {
    pub uptime_24h: Option<f64>,
    pub uptime_7d: Option<f64>,
    pub uptime_30d: Option<f64>,
    pub disconnections_24h: u64,
    pub disconnections_7d: u64,
    pub disconnections_30d: u64,
    /// The last 24 hours as consecutive segments, oldest first.
    pub timeline: Vec<TimelineSegment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TimelineState {
    Online,
    Offline,
    Disabled,
    /// Before the first event known (or before the gateway existed).
    Unknown,
}

impl TimelineState {
    pub fn as_str(self) -> &'static str {
        match self {
            TimelineState::Online => "online",
            TimelineState::Offline => "offline",
            TimelineState::Disabled => "disabled",
            TimelineState::Unknown => "unknown",
        }
    }

    /// The state an event begins: `connected` online, `disabled` disabled, any other
    /// (a loss, a refusal, an error, or enabled and not yet connected) offline.
    pub fn after(kind: &str) -> Self {
        match kind {
            "connected" => TimelineState::Online,
            "disabled" => TimelineState::Disabled,
            _ => TimelineState::Offline,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineSegment {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub state: TimelineState,
}

/// The states from `from` to `now`, given the events `(at, kind)` since `from` and the
/// last one before it (which sets the state `from` opens in); neighbours in the same
/// state are merged.
pub fn timeline(events: &[(DateTime<Utc>, String)], from: DateTime<Utc>, now: DateTime<Utc>) -> Vec<TimelineSegment> {
    let mut ordered: Vec<&(DateTime<Utc>, String)> = events.iter().collect();
    ordered.sort_by_key(|(at, _)| *at);
    let mut segments: Vec<TimelineSegment> = Vec::new();
    let mut push = |from: DateTime<Utc>, to: DateTime<Utc>, state: TimelineState| {
        if to <= from {
            return;
        }
        match segments.last_mut() {
            Some(last) if last.state == state && last.to == from => last.to = to,
            _ => segments.push(TimelineSegment { from, to, state }),
        }
    };
    let (mut cursor, mut state) = (from, TimelineState::Unknown);
    for (at, kind) in ordered {
        let at = (*at).min(now);
        if at > cursor {
            push(cursor, at, state);
            cursor = at;
        }
        state = TimelineState::after(kind);
    }
    push(cursor, now, state);
    segments
}
