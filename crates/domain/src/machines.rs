//! Condition monitoring: the machines of a factory, the measurement points their
//! sensors sit on, acquisition schedules, and trends of overall values. Inputs mirror
//! request bodies and refuse unknown keys; `validate` reports every bad field.

use crate::error::AppError;
use crate::inventory::{check_metadata, nullable, Metadata};
use crate::validate::Checker;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub const MACHINE_KINDS: &[&str] = &[
    "motor",
    "pump",
    "fan",
    "gearbox",
    "compressor",
    "blower",
    "turbine",
    "generator",
    "conveyor",
    "spindle",
    "other",
];
pub const AREA_MAX: usize = 255;
pub const CRITICALITY_MAX: usize = 50;
pub const CLASS_MAX: usize = 100;
/// Rated speeds above this are a typing mistake, not a machine.
pub const RPM_MAX: f64 = 200_000.0;
/// A reading can take up to a minute over the radio: a shorter interval would queue
/// readings behind each other.
pub const SCHEDULE_MIN_SECONDS: u32 = 60;
/// A year: longer is not a schedule.
pub const SCHEDULE_MAX_SECONDS: u32 = 366 * 24 * 3600;
/// New schedules read hourly unless told otherwise.
pub const SCHEDULE_DEFAULT_SECONDS: u32 = 3600;
pub const TREND_DEFAULT_BUCKETS: u32 = 500;
pub const TREND_MAX_BUCKETS: u32 = 5_000;

/// A machine (equipment) in a factory, with the points its sensors measure at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Machine {
    pub id: Uuid,
    pub factory_id: Uuid,
    pub name: String,
    /// One of [`MACHINE_KINDS`].
    pub kind: String,
    /// Rated speed, revolutions per minute.
    pub rpm: Option<f64>,
    /// ISO 20816-3 machine group (1–4): sets the velocity zone boundaries.
    pub iso_group: Option<u8>,
    /// A free machine class, where no ISO group fits.
    pub class: Option<String>,
    pub criticality: Option<String>,
    pub area: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Metadata,
    pub points: Vec<MeasurementPoint>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a sensor sits on a machine, e.g. "motor drive end, horizontal".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeasurementPoint {
    pub id: Uuid,
    pub machine_id: Uuid,
    pub name: String,
    /// The sensor's serial (sensors are known by serial, whichever gateway they talk to).
    pub serial: u64,
    pub created_at: DateTime<Utc>,
}

/// ISO 20816-3 velocity zone boundaries, mm/s RMS, rigid foundation: A/B, B/C, C/D.
/// Groups 3 and 4 (pumps with separate / integrated driver) take ISO 10816-3's values.
pub fn iso_zone_limits(group: u8) -> Option<[f64; 3]> {
    match group {
        1 | 3 => Some([2.3, 4.5, 7.1]),
        2 | 4 => Some([1.4, 2.8, 4.5]),
        _ => None,
    }
}

fn check_kind(c: &mut Checker, raw: Option<&str>) -> String {
    let kind = c.required_text("kind", raw, 50).to_ascii_lowercase();
    if !kind.is_empty() && !MACHINE_KINDS.contains(&kind.as_str()) {
        c.fail("kind", format!("must be one of {}", MACHINE_KINDS.join(", ")));
    }
    kind
}

fn check_rpm(c: &mut Checker, value: &Value) -> Option<f64> {
    match value.as_f64() {
        Some(rpm) if rpm > 0.0 && rpm <= RPM_MAX => Some(rpm),
        _ => {
            c.fail("rpm", format!("must be a number above 0 and at most {RPM_MAX}"));
            None
        }
    }
}

/// A whole number from JSON: `2`, `2.0` (JSON Schema's integers include it) or `"2"`.
pub fn whole_number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(63))
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// A group as a number (1–4) or the same as text ("2").
fn check_iso_group(c: &mut Checker, value: &Value) -> Option<u8> {
    let group = whole_number(value);
    match group {
        Some(g @ 1..=4) => Some(g as u8),
        _ => {
            c.fail("iso_group", "must be an ISO 20816-3 machine group: 1, 2, 3 or 4");
            None
        }
    }
}

fn check_factory_id(c: &mut Checker, raw: Option<&str>) -> Uuid {
    match raw.map(str::trim) {
        None | Some("") => {
            c.fail("factory_id", "is required");
            Uuid::nil()
        }
        Some(raw) => crate::validate::parse_uuid(raw).unwrap_or_else(|| {
            c.fail("factory_id", "must be a UUID");
            Uuid::nil()
        }),
    }
}

/// Body of `POST /api/machines`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachineInput {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid, required = true))]
    pub factory_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true))]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true))]
    pub kind: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub rpm: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u8>, minimum = 1, maximum = 4))]
    pub iso_group: Option<Value>,
    pub class: Option<String>,
    pub criticality: Option<String>,
    pub area: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewMachine {
    pub factory_id: Uuid,
    pub name: String,
    pub kind: String,
    pub rpm: Option<f64>,
    pub iso_group: Option<u8>,
    pub class: Option<String>,
    pub criticality: Option<String>,
    pub area: Option<String>,
    pub metadata: Metadata,
}

impl MachineInput {
    pub fn validate(self) -> Result<NewMachine, AppError> {
        let mut c = Checker::default();
        let factory_id = check_factory_id(&mut c, self.factory_id.as_deref());
        let name = c.required_text("name", self.name.as_deref(), crate::NAME_MAX);
        let kind = check_kind(&mut c, self.kind.as_deref());
        let rpm = self.rpm.filter(|v| !v.is_null()).and_then(|v| check_rpm(&mut c, &v));
        let iso_group = self
            .iso_group
            .filter(|v| !v.is_null())
            .and_then(|v| check_iso_group(&mut c, &v));
        let class = c.optional_text("class", self.class.as_deref(), CLASS_MAX);
        let criticality = c.optional_text("criticality", self.criticality.as_deref(), CRITICALITY_MAX);
        let area = c.optional_text("area", self.area.as_deref(), AREA_MAX);
        let metadata = check_metadata(&mut c, self.metadata.filter(|v| !v.is_null())).unwrap_or_default();
        c.finish(NewMachine {
            factory_id,
            name,
            kind,
            rpm,
            iso_group,
            class,
            criticality,
            area,
            metadata,
        })
    }
}

/// Body of `PATCH /api/machines/{id}`: every field optional; `null` clears the
/// optional ones. The factory cannot be changed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachinePatch {
    pub name: Option<String>,
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, nullable))]
    pub rpm: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u8>, nullable, minimum = 1, maximum = 4))]
    pub iso_group: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub class: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub criticality: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub area: Option<Option<String>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

/// What a patch changes: `None` leaves a field, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineChanges {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub rpm: Option<Option<f64>>,
    pub iso_group: Option<Option<u8>>,
    pub class: Option<Option<String>>,
    pub criticality: Option<Option<String>>,
    pub area: Option<Option<String>>,
    pub metadata: Option<Metadata>,
}

impl MachinePatch {
    pub fn validate(self) -> Result<MachineChanges, AppError> {
        let mut c = Checker::default();
        let name = self
            .name
            .as_deref()
            .map(|n| c.required_text("name", Some(n), crate::NAME_MAX));
        let kind = self.kind.as_deref().map(|k| check_kind(&mut c, Some(k)));
        let rpm = self
            .rpm
            .map(|v| v.filter(|v| !v.is_null()).and_then(|v| check_rpm(&mut c, &v)));
        let iso_group = self
            .iso_group
            .map(|v| v.filter(|v| !v.is_null()).and_then(|v| check_iso_group(&mut c, &v)));
        let class = self.class.map(|t| c.optional_text("class", t.as_deref(), CLASS_MAX));
        let criticality = self
            .criticality
            .map(|t| c.optional_text("criticality", t.as_deref(), CRITICALITY_MAX));
        let area = self.area.map(|t| c.optional_text("area", t.as_deref(), AREA_MAX));
        let metadata = check_metadata(&mut c, self.metadata);
        c.finish(MachineChanges {
            name,
            kind,
            rpm,
            iso_group,
            class,
            criticality,
            area,
            metadata,
        })
    }
}

/// The largest sensor serial the API takes: exact as a JSON number in every client.
pub const SERIAL_MAX: u64 = crate::validate::MAX_SAFE_INTEGER;
/// What a bad serial is told (it names [`SERIAL_MAX`]).
pub const SERIAL_PROBLEM: &str = "must be a sensor serial: a whole number from 1 to 9007199254740991";

/// A sensor serial from JSON: a whole number from 1 to [`SERIAL_MAX`] (as
/// `/api/gateways/{id}/sensors` gives it), or the same digits as text.
pub fn parse_serial(value: &Value) -> Option<u64> {
    whole_number(value).filter(|serial| (1..=SERIAL_MAX).contains(serial))
}

/// Body of `POST /api/machines/{id}/points`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PointInput {
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true))]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = u64, required = true, minimum = 1))]
    pub serial: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPoint {
    pub name: String,
    pub serial: u64,
}

impl PointInput {
    pub fn validate(self) -> Result<NewPoint, AppError> {
        let mut c = Checker::default();
        let name = c.required_text("name", self.name.as_deref(), crate::NAME_MAX);
        let serial = match self.serial.as_ref().filter(|v| !v.is_null()) {
            None => {
                c.fail("serial", "is required");
                0
            }
            Some(value) => parse_serial(value).unwrap_or_else(|| {
                c.fail("serial", SERIAL_PROBLEM);
                0
            }),
        };
        c.finish(NewPoint { name, serial })
    }
}

/// A sensor's acquisition schedule: a reading every `interval_seconds` while enabled,
/// spread over the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SensorSchedule {
    pub serial: u64,
    pub interval_seconds: u32,
    pub enabled: bool,
    /// When the next reading is due (none while disabled).
    pub next_due_at: Option<DateTime<Utc>>,
    /// Where the schedule comes from: `sensor` (set for this sensor), `machine` or
    /// `factory` (that default), or `none` (no schedule: off).
    pub source: ScheduleSource,
    pub updated_at: DateTime<Utc>,
}

/// Where a sensor's schedule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ScheduleSource {
    Sensor,
    Machine,
    Factory,
    None,
}

impl ScheduleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleSource::Sensor => "sensor",
            ScheduleSource::Machine => "machine",
            ScheduleSource::Factory => "factory",
            ScheduleSource::None => "none",
        }
    }

    pub fn parse(raw: &str) -> Self {
        match raw {
            "sensor" => ScheduleSource::Sensor,
            "machine" => ScheduleSource::Machine,
            "factory" => ScheduleSource::Factory,
            _ => ScheduleSource::None,
        }
    }
}

/// The schedule a machine's or a factory's sensors follow unless they have their own
/// (`GET/PUT/DELETE /api/machines/{id}/schedule` and `/api/factories/{id}/schedule`).
/// Without one set (`set: false`) it reads as off, every hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleDefault {
    pub interval_seconds: u32,
    pub enabled: bool,
    /// Whether a default is set (a `DELETE` unsets it).
    pub set: bool,
    pub updated_at: Option<DateTime<Utc>>,
}

impl ScheduleDefault {
    /// What a machine or factory without a default has.
    pub fn unset() -> Self {
        ScheduleDefault {
            interval_seconds: SCHEDULE_DEFAULT_SECONDS,
            enabled: false,
            set: false,
            updated_at: None,
        }
    }
}

/// What a schedule default belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleScope {
    Machine(Uuid),
    Factory(Uuid),
}

/// Where a sensor was last heard: the gateway that reported it most recently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorLocation {
    pub serial: u64,
    pub gateway_id: Uuid,
    pub gateway_name: String,
    pub connected: bool,
    pub last_seen_at: DateTime<Utc>,
}

/// Body of `PUT /api/sensors/{serial}/schedule`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleInput {
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>, minimum = 60, maximum = 31_622_400))]
    pub interval_seconds: Option<Value>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewSchedule {
    pub interval_seconds: u32,
    pub enabled: bool,
}

impl ScheduleInput {
    pub fn validate(self) -> Result<NewSchedule, AppError> {
        let mut c = Checker::default();
        let interval_seconds = match self.interval_seconds.filter(|v| !v.is_null()) {
            None => SCHEDULE_DEFAULT_SECONDS,
            // Numbers only: 3600 or 3600.0, not "3600".
            Some(value) => match value.as_number().and_then(|_| whole_number(&value)) {
                Some(n) if n < u64::from(SCHEDULE_MIN_SECONDS) => {
                    let minimum = SCHEDULE_MIN_SECONDS;
                    c.fail(
                        "interval_seconds",
                        format!("must be at least {minimum} seconds (the minimum: a reading can take that long)"),
                    );
                    0
                }
                Some(n) if n <= u64::from(SCHEDULE_MAX_SECONDS) => n as u32,
                _ => {
                    let (minimum, maximum) = (SCHEDULE_MIN_SECONDS, SCHEDULE_MAX_SECONDS);
                    c.fail(
                        "interval_seconds",
                        format!("must be a whole number of seconds from {minimum} to {maximum}"),
                    );
                    0
                }
            },
        };
        c.finish(NewSchedule {
            interval_seconds,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

/// The overall values a trend can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TrendValue {
    AccelRms,
    AccelPeak,
    VelocityRms,
    CrestFactor,
    Temperature,
}

impl TrendValue {
    pub const ALL: [TrendValue; 5] = [
        TrendValue::AccelRms,
        TrendValue::AccelPeak,
        TrendValue::VelocityRms,
        TrendValue::CrestFactor,
        TrendValue::Temperature,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrendValue::AccelRms => "accel_rms",
            TrendValue::AccelPeak => "accel_peak",
            TrendValue::VelocityRms => "velocity_rms",
            TrendValue::CrestFactor => "crest_factor",
            TrendValue::Temperature => "temperature",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == raw)
    }

    pub fn unit(self) -> &'static str {
        match self {
            TrendValue::AccelRms | TrendValue::AccelPeak => "g",
            TrendValue::VelocityRms => "mm/s",
            TrendValue::CrestFactor => "",
            TrendValue::Temperature => "°C",
        }
    }

    /// Whether the value is per axis (all but temperature).
    pub fn per_axis(self) -> bool {
        self != TrendValue::Temperature
    }
}

/// Lowest and highest of a value in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

/// One bucket of a trend: the readings in `[start, end)`. `min`/`max` are over the
/// worst axis of each reading (the highest of x, y, z), or the temperature;
/// `reading_id` is the reading with the highest value (the one a click opens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrendBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub reading_id: Uuid,
    /// When that reading was taken.
    pub at: DateTime<Utc>,
    pub x: Option<Range>,
    pub y: Option<Range>,
    pub z: Option<Range>,
}

/// `GET /api/sensors/{serial}/trend`: a value over `[from, to)` in `buckets` equal
/// buckets; buckets without readings are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trend {
    pub serial: u64,
    pub value: TrendValue,
    pub unit: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// How many buckets the range was cut into.
    pub buckets: u32,
    pub data: Vec<TrendBucket>,
    /// ISO 20816 zone boundaries (A/B, B/C, C/D) for velocity, when the sensor sits on a
    /// machine whose group is set.
    pub zones: Option<[f64; 3]>,
}

/// A checked trend request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendRequest {
    pub value: TrendValue,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub buckets: u32,
}

impl TrendRequest {
    /// From query parameters: `value` (default `velocity_rms`), `from`/`to` as RFC 3339
    /// (default: the 30 days to `now`), `buckets` (default 500, at most 5,000).
    pub fn parse(
        value: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        buckets: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, AppError> {
        let mut c = Checker::default();
        let value = match value.map(str::trim) {
            None | Some("") => TrendValue::VelocityRms,
            Some(raw) => TrendValue::parse(raw).unwrap_or_else(|| {
                let names: Vec<&str> = TrendValue::ALL.iter().map(|v| v.as_str()).collect();
                c.fail("value", format!("must be one of {}", names.join(", ")));
                TrendValue::VelocityRms
            }),
        };
        let mut time = |field: &str, raw: Option<&str>| -> Option<DateTime<Utc>> {
            let raw = raw.map(str::trim).filter(|r| !r.is_empty())?;
            match DateTime::parse_from_rfc3339(raw) {
                Ok(t) => Some(t.with_timezone(&Utc)),
                Err(_) => {
                    c.fail(field, "must be an RFC 3339 time, such as 2026-01-31T00:00:00Z");
                    None
                }
            }
        };
        let to = time("to", to).unwrap_or(now);
        let from = time("from", from).unwrap_or(to - chrono::Duration::days(30));
        let buckets = match buckets.map(str::trim).filter(|r| !r.is_empty()) {
            None => TREND_DEFAULT_BUCKETS,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=TREND_MAX_BUCKETS).contains(&n) => n,
                _ => {
                    c.fail(
                        "buckets",
                        format!("must be a whole number from 1 to {TREND_MAX_BUCKETS}"),
                    );
                    TREND_DEFAULT_BUCKETS
                }
            },
        };
        if c.errors.is_empty() && from >= to {
            c.fail("from", "must be before to");
        }
        c.finish(TrendRequest {
            value,
            from,
            to,
            buckets,
        })
    }

    /// Where bucket `b` starts (bucket `buckets` is `to`): `from` plus `b` parts of the
    /// range, in whole microseconds, so buckets tile the range exactly.
    pub fn bucket_start(&self, b: u32) -> DateTime<Utc> {
        let span = (self.to - self.from).num_microseconds().unwrap_or(i64::MAX) as i128;
        let offset = span * i128::from(b) / i128::from(self.buckets);
        self.from + chrono::Duration::microseconds(offset as i64)
    }

    /// The bucket `at` falls in, if it is within the range.
    pub fn bucket_of(&self, at: DateTime<Utc>) -> Option<u32> {
        if at < self.from || at >= self.to {
            return None;
        }
        let span = (self.to - self.from).num_microseconds().unwrap_or(i64::MAX) as i128;
        let offset = (at - self.from).num_microseconds().unwrap_or(i64::MAX) as i128;
        let mut b = (offset * i128::from(self.buckets) / span) as u32;
        // Integer rounding of the starts: step to the bucket whose start is at or before.
        while b > 0 && self.bucket_start(b) > at {
            b -= 1;
        }
        while b + 1 < self.buckets && self.bucket_start(b + 1) <= at {
            b += 1;
        }
        Some(b)
    }

    /// Min/max buckets of `points` (time order), the reading with each bucket's highest
    /// value kept (the latest of equals). A point's value is its worst axis; for
    /// temperature (not per axis) only the first of its values is set.
    pub fn buckets_of(&self, points: impl IntoIterator<Item = TrendPoint>) -> Vec<TrendBucket> {
        let mut out: Vec<TrendBucket> = Vec::new();
        let mut current: Option<u32> = None;
        for point in points {
            let Some(b) = self.bucket_of(point.at) else { continue };
            let Some(value) = point.values.iter().flatten().copied().reduce(f64::max) else {
                continue;
            };
            let axis = |v: Option<f64>| v.map(|v| Range { min: v, max: v });
            if current != Some(b) {
                current = Some(b);
                out.push(TrendBucket {
                    start: self.bucket_start(b),
                    end: self.bucket_start(b + 1),
                    count: 0,
                    min: value,
                    max: value,
                    reading_id: point.reading_id,
                    at: point.at,
                    x: None,
                    y: None,
                    z: None,
                });
            }
            let bucket = out.last_mut().expect("a bucket was just pushed");
            bucket.count += 1;
            bucket.min = bucket.min.min(value);
            if value >= bucket.max {
                bucket.max = value;
                bucket.reading_id = point.reading_id;
                bucket.at = point.at;
            }
            if self.value.per_axis() {
                for (range, v) in [&mut bucket.x, &mut bucket.y, &mut bucket.z]
                    .into_iter()
                    .zip(point.values)
                {
                    *range = match (*range, axis(v)) {
                        (Some(r), Some(n)) => Some(Range {
                            min: r.min.min(n.min),
                            max: r.max.max(n.max),
                        }),
                        (r, n) => r.or(n),
                    };
                }
            }
        }
        out
    }
}

/// One reading's value for a trend: per axis (x, y, z), or the temperature first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendPoint {
    pub reading_id: Uuid,
    pub at: DateTime<Utc>,
    pub values: [Option<f64>; 3],
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn buckets_tile_the_range_and_keep_the_highest_reading() {
        let from: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        // Three buckets over 10 s: starts at 0, 3.333333 and 6.666666 s.
        let request = TrendRequest {
            value: TrendValue::AccelRms,
            from,
            to: from + chrono::Duration::seconds(10),
            buckets: 3,
        };
        let at = |us: i64| from + chrono::Duration::microseconds(us);
        assert_eq!(request.bucket_of(at(-1)), None);
        assert_eq!(request.bucket_of(at(3_333_332)), Some(0));
        assert_eq!(request.bucket_of(at(3_333_333)), Some(1));
        assert_eq!(request.bucket_of(at(9_999_999)), Some(2));
        assert_eq!(request.bucket_of(at(10_000_000)), None);
        let point = |us: i64, x: f64| TrendPoint {
            reading_id: Uuid::from_u128(us as u128),
            at: at(us),
            values: [Some(x), Some(x / 2.0), None],
        };
        let buckets = request.buckets_of([
            point(0, 1.0),
            point(1_000, 3.0),
            point(2_000, 3.0),
            point(9_000_000, 0.5),
        ]);
        assert_eq!(buckets.len(), 2);
        let first = &buckets[0];
        assert_eq!((first.count, first.min, first.max), (3, 1.0, 3.0));
        assert_eq!(first.reading_id, Uuid::from_u128(2_000), "the latest of equal highs");
        assert_eq!(first.y, Some(Range { min: 0.5, max: 1.5 }));
        assert_eq!(first.z, None);
        assert_eq!((buckets[1].start, buckets[1].end), (at(6_666_666), request.to));
    }

    fn machine(body: Value) -> Result<NewMachine, AppError> {
        serde_json::from_value::<MachineInput>(body).unwrap().validate()
    }

    #[test]
    fn a_machine_needs_a_factory_a_name_and_a_known_kind() {
        let err = machine(json!({"kind": "toaster", "rpm": -5, "iso_group": 7})).unwrap_err();
        for field in ["factory_id", "name", "kind", "rpm", "iso_group"] {
            assert!(err.field_message(field).is_some(), "{field}: {err:?}");
        }
        let ok = machine(
            json!({"factory_id": Uuid::nil().to_string(), "name": " P-101 ", "kind": "Pump",
            "rpm": 1480, "iso_group": "2"}),
        )
        .unwrap();
        assert_eq!(
            (ok.name.as_str(), ok.kind.as_str(), ok.rpm, ok.iso_group),
            ("P-101", "pump", Some(1480.0), Some(2))
        );
    }

    #[test]
    fn a_patch_tells_clearing_from_leaving() {
        let changes = serde_json::from_value::<MachinePatch>(json!({"rpm": null, "area": "Hall 2"}))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(changes.rpm, Some(None));
        assert_eq!(changes.area, Some(Some("Hall 2".into())));
        assert_eq!(changes.iso_group, None);
    }

    #[test]
    fn a_point_needs_a_whole_serial() {
        for bad in [json!(-1), json!(1.5), json!("abc"), json!(0), json!(null), json!(-2.0)] {
            let err = serde_json::from_value::<PointInput>(json!({"name": "DE", "serial": bad}))
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(err.field_message("serial").is_some());
        }
        let point = serde_json::from_value::<PointInput>(json!({"name": "DE", "serial": 40417}))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(point.serial, 40417);
        assert_eq!(parse_serial(&json!(40417.0)), Some(40417));
        assert_eq!(parse_serial(&json!(SERIAL_MAX)), Some(SERIAL_MAX));
        assert_eq!(parse_serial(&json!(SERIAL_MAX + 1)), None);
        assert!(SERIAL_PROBLEM.ends_with(&SERIAL_MAX.to_string()));
        assert_eq!(parse_serial(&json!((SERIAL_MAX + 1).to_string())), None);
    }

    #[test]
    fn a_schedule_shorter_than_a_reading_is_refused_with_the_minimum() {
        let err = serde_json::from_value::<ScheduleInput>(json!({"interval_seconds": 5, "enabled": true}))
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.field_message("interval_seconds").unwrap().contains("60 seconds"));
        let ok = serde_json::from_value::<ScheduleInput>(json!({"interval_seconds": 3600, "enabled": true}))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!((ok.interval_seconds, ok.enabled), (3600, true));
        let float = serde_json::from_value::<ScheduleInput>(json!({"interval_seconds": 1814.0}))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(float.interval_seconds, 1814);
    }

    #[test]
    fn trend_ranges_are_checked() {
        let now = Utc::now();
        let bad = TrendRequest::parse(
            Some("velocity_rms"),
            Some("2026-02-01T00:00:00Z"),
            Some("2026-01-01T00:00:00Z"),
            None,
            now,
        );
        assert!(bad.unwrap_err().field_message("from").is_some());
        let too_many = TrendRequest::parse(None, None, None, Some("5001"), now).unwrap_err();
        assert!(too_many.field_message("buckets").is_some());
        assert!(TrendRequest::parse(Some("speed"), None, None, None, now).is_err());
        assert!(TrendRequest::parse(None, Some("yesterday"), None, None, now).is_err());
        let default = TrendRequest::parse(None, None, None, None, now).unwrap();
        assert_eq!(
            (default.bucket_start(0), default.bucket_start(500)),
            (default.from, default.to)
        );
        assert_eq!(
            (default.value, default.buckets, default.to),
            (TrendValue::VelocityRms, 500, now)
        );
        assert_eq!(default.to - default.from, chrono::Duration::days(30));
    }
}
