//! Alarms and notifications: the rules an administrator sets, the alarms they raise,
//! and the channels (webhook, e-mail) that are told. Inputs mirror request bodies and
//! refuse unknown keys; `validate` reports every bad field at once.

use crate::error::{AppError, FieldError};
use crate::inventory::nullable;
use crate::machines::{parse_serial, whole_number, TrendValue};
use crate::secret::ChannelSecret;
use crate::validate::{is_valid_email, parse_uuid, Checker};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A week: a longer delay is a typing mistake, not an alarm.
pub const DELAY_MAX_SECONDS: u32 = 7 * 24 * 3600;
/// `gateway_offline` and `sensor_silent` wait this long unless told otherwise.
pub const DELAY_DEFAULT_SECONDS: u32 = 300;
/// Levels beyond this are a typing mistake in any unit we measure in.
pub const LEVEL_MAX: f64 = 1_000_000.0;
pub const CONSECUTIVE_MAX: u32 = 100;
pub const HYSTERESIS_DEFAULT: f64 = 10.0;
pub const NOTE_MAX: usize = 1000;
pub const URL_MAX: usize = 2000;
pub const SECRET_MAX: usize = 500;
/// How long an undelivered notification is retried before it is given up.
pub const DELIVERY_RETRY_HOURS: i64 = 24;
/// The webhook header carrying `sha256=<hex HMAC-SHA256 of the body with the channel's secret>`.
pub const SIGNATURE_HEADER: &str = "X-Factory-Monitor-Signature";
/// The webhook header carrying the delivery's id (the same on every retry: receivers
/// use it to drop duplicates, delivery being at least once).
pub const DELIVERY_HEADER: &str = "X-Factory-Monitor-Delivery";

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlarmKind {
    /// A gateway not `online` for at least the delay.
    GatewayOffline,
    /// A gateway whose login is refused (raised at once unless a delay is set).
    AuthFailed,
    /// A sensor its gateway reports disconnected, or not heard of for the delay.
    SensorSilent,
    /// An overall value over a level for a number of consecutive readings.
    Threshold,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 4] = [
        AlarmKind::GatewayOffline,
        AlarmKind::AuthFailed,
        AlarmKind::SensorSilent,
        AlarmKind::Threshold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::GatewayOffline => "gateway_offline",
            AlarmKind::AuthFailed => "auth_failed",
            AlarmKind::SensorSilent => "sensor_silent",
            AlarmKind::Threshold => "threshold",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    pub fn label(self) -> &'static str {
        match self {
            AlarmKind::GatewayOffline => "Gateway offline",
            AlarmKind::AuthFailed => "Gateway login refused",
            AlarmKind::SensorSilent => "Sensor silent",
            AlarmKind::Threshold => "Threshold",
        }
    }

    /// Whether its subjects are sensors (else gateways).
    pub fn about_sensors(self) -> bool {
        matches!(self, AlarmKind::SensorSilent | AlarmKind::Threshold)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 2] = [Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// `active` → `acknowledged` and/or `cleared`; `closed` once both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlarmState {
    Active,
    Acknowledged,
    Cleared,
    Closed,
}

impl AlarmState {
    pub const ALL: [AlarmState; 4] = [
        AlarmState::Active,
        AlarmState::Acknowledged,
        AlarmState::Cleared,
        AlarmState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Active => "active",
            AlarmState::Acknowledged => "acknowledged",
            AlarmState::Cleared => "cleared",
            AlarmState::Closed => "closed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn label(self) -> &'static str {
        match self {
            AlarmState::Active => "Active",
            AlarmState::Acknowledged => "Acknowledged",
            AlarmState::Cleared => "Cleared, not acknowledged",
            AlarmState::Closed => "Closed",
        }
    }
}

/// A rule: what to watch, where, and how urgent it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlarmRule {
    pub id: Uuid,
    pub name: String,
    pub kind: AlarmKind,
    pub severity: Severity,
    pub enabled: bool,
    pub delay_seconds: u32,
    /// At most one of the four scope fields is set; none means everything.
    pub factory_id: Option<Uuid>,
    pub machine_id: Option<Uuid>,
    pub gateway_id: Option<Uuid>,
    pub serial: Option<u64>,
    /// Thresholds: the overall value watched (the worst of the three axes).
    pub value: Option<TrendValue>,
    pub alert: Option<f64>,
    pub danger: Option<f64>,
    pub consecutive: u32,
    /// Percent of the level the value must fall below it to clear.
    pub hysteresis: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /api/alarm-rules`; also what a `PATCH` is laid over.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlarmRuleInput {
    /// Defaults to the kind's name.
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = AlarmKind, required = true))]
    pub kind: Option<String>,
    /// Defaults to `warning`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Severity>))]
    pub severity: Option<String>,
    pub enabled: Option<bool>,
    /// Defaults to 300 for `gateway_offline` and `sensor_silent`, 0 otherwise.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>, minimum = 0, maximum = 604800))]
    pub delay_seconds: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Uuid>))]
    pub factory_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Uuid>))]
    pub machine_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Uuid>))]
    pub gateway_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1))]
    pub serial: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<TrendValue>))]
    pub value: Option<String>,
    /// A threshold needs `alert` or `danger`, except a `velocity_rms` rule on a
    /// `machine_id` whose ISO 20816 group is set: given neither, it takes the group's
    /// zone boundaries, B/C as `alert` and C/D as `danger`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub alert: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>))]
    pub danger: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>, minimum = 1, maximum = 100))]
    pub consecutive: Option<Value>,
    /// Percent of the level (0 to under 100); defaults to 10.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, minimum = 0, maximum = 99.99))]
    pub hysteresis: Option<Value>,
}

/// Body of `PATCH /api/alarm-rules/{id}`: any field of the rule but its kind; `null`
/// clears a scope field or a level. Setting one scope field replaces the scope.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlarmRulePatch {
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Severity>))]
    pub severity: Option<String>,
    pub enabled: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>, minimum = 0, maximum = 604800))]
    pub delay_seconds: Option<Value>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Uuid>, nullable))]
    pub factory_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Uuid>, nullable))]
    pub machine_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Uuid>, nullable))]
    pub gateway_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, nullable, minimum = 1))]
    pub serial: Option<Option<Value>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<TrendValue>))]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, nullable))]
    pub alert: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, nullable))]
    pub danger: Option<Option<Value>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>, minimum = 1, maximum = 100))]
    pub consecutive: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, minimum = 0, maximum = 99.99))]
    pub hysteresis: Option<Value>,
}

/// A rule as the store writes it (scope ids not yet checked against the database).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlarmRule {
    pub name: String,
    pub kind: AlarmKind,
    pub severity: Severity,
    pub enabled: bool,
    pub delay_seconds: u32,
    pub factory_id: Option<Uuid>,
    pub machine_id: Option<Uuid>,
    pub gateway_id: Option<Uuid>,
    pub serial: Option<u64>,
    pub value: Option<TrendValue>,
    pub alert: Option<f64>,
    pub danger: Option<f64>,
    pub consecutive: u32,
    pub hysteresis: f64,
}

impl NewAlarmRule {
    /// A velocity threshold on one machine given neither level: it takes the
    /// machine's ISO 20816 zone boundaries, B/C as alert and C/D as danger.
    pub fn takes_iso_levels(&self) -> bool {
        self.kind == AlarmKind::Threshold
            && self.value == Some(TrendValue::VelocityRms)
            && self.machine_id.is_some()
            && self.alert.is_none()
            && self.danger.is_none()
    }

    /// Sets the levels from the machine's ISO 20816 group; without a group there is
    /// nothing to take them from, and the rule is refused naming `alert`.
    pub fn set_iso_levels(&mut self, machine_group: Option<u8>) -> Result<(), AppError> {
        let Some([_, alert, danger]) = machine_group.and_then(crate::machines::iso_zone_limits) else {
            return Err(AppError::validation(vec![FieldError::new(
                "alert",
                "a threshold needs an alert or a danger level (the machine has no ISO 20816 group to take them from)",
            )]));
        };
        self.alert = Some(alert);
        self.danger = Some(danger);
        Ok(())
    }
}

fn check_uuid(c: &mut Checker, field: &str, raw: Option<&str>) -> Option<Uuid> {
    let raw = raw.map(str::trim).filter(|r| !r.is_empty())?;
    let id = parse_uuid(raw);
    if id.is_none() {
        c.fail(field, "must be a UUID");
    }
    id
}

/// A JSON number (not text that looks like one: the document says number).
fn check_number(c: &mut Checker, field: &str, value: Option<&Value>, min: f64, max: f64) -> Option<f64> {
    let value = value.filter(|v| !v.is_null())?;
    match value.as_f64() {
        Some(n) if n.is_finite() && n >= min && n <= max => Some(n),
        _ => {
            c.fail(field, format!("must be a number from {min} to {max}"));
            None
        }
    }
}

/// A whole JSON number (`2` or `2.0`, not `"2"`).
fn check_whole(c: &mut Checker, field: &str, value: Option<&Value>, min: u32, max: u32) -> Option<u32> {
    let value = value.filter(|v| !v.is_null())?;
    match value.is_number().then(|| whole_number(value)).flatten() {
        Some(n) if n >= u64::from(min) && n <= u64::from(max) => Some(n as u32),
        _ => {
            c.fail(field, format!("must be a whole number from {min} to {max}"));
            None
        }
    }
}

impl AlarmRuleInput {
    pub fn validate(self) -> Result<NewAlarmRule, AppError> {
        let mut c = Checker::default();
        let kind = match self.kind.as_deref().map(str::trim) {
            None | Some("") => {
                c.fail("kind", "is required");
                None
            }
            Some(raw) => AlarmKind::parse(raw).or_else(|| {
                c.fail(
                    "kind",
                    "must be gateway_offline, auth_failed, sensor_silent or threshold",
                );
                None
            }),
        };
        let severity = match self.severity.as_deref().map(str::trim) {
            None => Severity::Warning,
            Some(raw) => Severity::parse(raw).unwrap_or_else(|| {
                c.fail("severity", "must be warning or critical");
                Severity::Warning
            }),
        };
        let name = c
            .optional_text("name", self.name.as_deref(), crate::NAME_MAX)
            .unwrap_or_else(|| kind.map(|k| k.label().to_owned()).unwrap_or_default());
        let default_delay = match kind {
            Some(AlarmKind::GatewayOffline | AlarmKind::SensorSilent) => DELAY_DEFAULT_SECONDS,
            _ => 0,
        };
        let delay_seconds = check_whole(
            &mut c,
            "delay_seconds",
            self.delay_seconds.as_ref(),
            0,
            DELAY_MAX_SECONDS,
        )
        .unwrap_or(default_delay);
        let factory_id = check_uuid(&mut c, "factory_id", self.factory_id.as_deref());
        let machine_id = check_uuid(&mut c, "machine_id", self.machine_id.as_deref());
        let gateway_id = check_uuid(&mut c, "gateway_id", self.gateway_id.as_deref());
        let serial = self.serial.as_ref().filter(|v| !v.is_null()).and_then(|v| {
            v.is_number().then(|| parse_serial(v)).flatten().or_else(|| {
                c.fail("serial", crate::machines::SERIAL_PROBLEM);
                None
            })
        });
        let scopes = [
            self.factory_id.as_deref().is_some_and(|s| !s.trim().is_empty()),
            self.machine_id.as_deref().is_some_and(|s| !s.trim().is_empty()),
            self.gateway_id.as_deref().is_some_and(|s| !s.trim().is_empty()),
            self.serial.as_ref().is_some_and(|v| !v.is_null()),
        ];
        if scopes.iter().filter(|&&s| s).count() > 1 {
            c.fail(
                "scope",
                "give at most one of factory_id, machine_id, gateway_id and serial",
            );
        }
        if matches!(kind, Some(k) if !k.about_sensors()) && (scopes[1] || scopes[3]) {
            c.fail(
                if scopes[1] { "machine_id" } else { "serial" },
                "a gateway rule is scoped to everything, a factory or a gateway",
            );
        }
        let value = match self.value.as_deref().map(str::trim) {
            None => None,
            Some(raw) => TrendValue::parse(raw).or_else(|| {
                c.fail(
                    "value",
                    "must be accel_rms, accel_peak, velocity_rms, crest_factor or temperature",
                );
                None
            }),
        };
        let mut level = |field: &str, raw: Option<&Value>| {
            let level = check_number(&mut c, field, raw, -LEVEL_MAX, LEVEL_MAX)?;
            if level < 0.0 && value.is_some_and(|v| v != TrendValue::Temperature) {
                c.fail(field, "must not be negative but for temperature");
                return None;
            }
            Some(level)
        };
        let alert = level("alert", self.alert.as_ref());
        let danger = level("danger", self.danger.as_ref());
        let consecutive =
            check_whole(&mut c, "consecutive", self.consecutive.as_ref(), 1, CONSECUTIVE_MAX).unwrap_or(1);
        let hysteresis = match check_number(&mut c, "hysteresis", self.hysteresis.as_ref(), 0.0, 100.0) {
            Some(h) if h >= 100.0 => {
                c.fail("hysteresis", "must be below 100 (percent of the level)");
                HYSTERESIS_DEFAULT
            }
            Some(h) => h,
            None => HYSTERESIS_DEFAULT,
        };
        if kind == Some(AlarmKind::Threshold) {
            if value.is_none() && self.value.is_none() {
                c.fail("value", "is required for a threshold");
            }
            // A velocity rule on one machine may leave both levels out: the store takes
            // them from the machine's ISO 20816 group (see `NewAlarmRule::takes_iso_levels`).
            let iso_levels = value == Some(TrendValue::VelocityRms) && machine_id.is_some();
            if alert.is_none() && danger.is_none() && self.alert.is_none() && self.danger.is_none() && !iso_levels {
                c.fail("alert", "a threshold needs an alert or a danger level");
            }
        }
        if let (Some(alert), Some(danger)) = (alert, danger) {
            if danger < alert {
                c.fail("danger", "must not be below the alert level");
            }
        }
        let kind = kind.unwrap_or(AlarmKind::GatewayOffline);
        let threshold = kind == AlarmKind::Threshold;
        c.finish(NewAlarmRule {
            name,
            kind,
            severity,
            enabled: self.enabled.unwrap_or(true),
            delay_seconds,
            factory_id,
            machine_id,
            gateway_id,
            serial,
            value: value.filter(|_| threshold),
            alert: alert.filter(|_| threshold),
            danger: danger.filter(|_| threshold),
            consecutive,
            hysteresis,
        })
    }
}

impl AlarmRule {
    /// The rule as an input, for a patch to be laid over and checked as a whole.
    pub fn as_input(&self) -> AlarmRuleInput {
        AlarmRuleInput {
            name: Some(self.name.clone()),
            kind: Some(self.kind.as_str().to_owned()),
            severity: Some(self.severity.as_str().to_owned()),
            enabled: Some(self.enabled),
            delay_seconds: Some(self.delay_seconds.into()),
            factory_id: self.factory_id.map(|id| id.to_string()),
            machine_id: self.machine_id.map(|id| id.to_string()),
            gateway_id: self.gateway_id.map(|id| id.to_string()),
            serial: self.serial.map(Value::from),
            value: self.value.map(|v| v.as_str().to_owned()),
            alert: self.alert.map(Value::from),
            danger: self.danger.map(Value::from),
            consecutive: Some(self.consecutive.into()),
            hysteresis: Some(self.hysteresis.into()),
        }
    }

    /// What the rule watches, in words.
    pub fn describe(&self) -> String {
        match self.kind {
            AlarmKind::Threshold => {
                let value = self.value.map_or("value", TrendValue::as_str);
                let unit = self.value.map_or("", TrendValue::unit);
                let levels: Vec<String> = [("alert", self.alert), ("danger", self.danger)]
                    .into_iter()
                    .filter_map(|(name, level)| level.map(|l| format!("{name} {l} {unit}")))
                    .collect();
                format!("{value} over {}", levels.join(", ")).trim().to_owned()
            }
            kind => format!("{} for {} s", kind.label(), self.delay_seconds),
        }
    }
}

impl AlarmRulePatch {
    /// The rule with this patch laid over it, checked as a whole.
    pub fn apply(self, rule: &AlarmRule) -> Result<NewAlarmRule, AppError> {
        let mut input = rule.as_input();
        if self.name.is_some() {
            input.name = self.name;
        }
        if self.severity.is_some() {
            input.severity = self.severity;
        }
        if self.enabled.is_some() {
            input.enabled = self.enabled;
        }
        if self.delay_seconds.is_some() {
            input.delay_seconds = self.delay_seconds;
        }
        let scope_given = self.factory_id.is_some()
            || self.machine_id.is_some()
            || self.gateway_id.is_some()
            || self.serial.is_some();
        if scope_given {
            input.factory_id = self.factory_id.flatten();
            input.machine_id = self.machine_id.flatten();
            input.gateway_id = self.gateway_id.flatten();
            input.serial = self.serial.flatten();
        }
        if self.value.is_some() {
            input.value = self.value;
        }
        if let Some(alert) = self.alert {
            input.alert = alert;
        }
        if let Some(danger) = self.danger {
            input.danger = danger;
        }
        if self.consecutive.is_some() {
            input.consecutive = self.consecutive;
        }
        if self.hysteresis.is_some() {
            input.hysteresis = self.hysteresis;
        }
        input.validate()
    }
}

/// An alarm: a rule's condition seen on one subject (a gateway or a sensor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alarm {
    pub id: Uuid,
    pub state: AlarmState,
    pub severity: Severity,
    pub kind: AlarmKind,
    pub message: String,
    pub rule_id: Uuid,
    pub rule: AlarmRule,
    pub gateway_id: Option<Uuid>,
    /// The gateway's own id (as the plant knows it), when the subject is a gateway.
    pub gateway_name: Option<String>,
    pub serial: Option<u64>,
    pub factory_id: Option<Uuid>,
    pub machine_id: Option<Uuid>,
    pub machine_name: Option<String>,
    /// Thresholds: the level crossed (`alert` or `danger`), the value, and its reading.
    pub level: Option<String>,
    pub value: Option<f64>,
    pub reading_id: Option<Uuid>,
    pub raised_at: DateTime<Utc>,
    /// Thresholds: when it went from the alert level to danger (its `message`, `value`
    /// and `reading_id` are then the escalation's).
    pub escalated_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub note: Option<String>,
    pub cleared_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/alarms` filters, and the order of the list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AlarmFilter {
    /// Several states: any of them (e.g. active and acknowledged: the open ones).
    pub states: Vec<AlarmState>,
    pub severity: Option<Severity>,
    pub factory_id: Option<Uuid>,
    pub machine_id: Option<Uuid>,
    pub gateway_id: Option<Uuid>,
    pub serial: Option<u64>,
    pub sort: AlarmSort,
}

/// The order of an alarm list (`sort=` of `GET /api/alarms` and the Alarms page).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AlarmSort {
    /// Active, then acknowledged, then the rest; each newest first.
    #[default]
    Open,
    /// Critical before warning; open first within each; then newest first.
    Severity,
    Newest,
    Oldest,
}

impl AlarmSort {
    pub const ALL: [AlarmSort; 4] = [
        AlarmSort::Open,
        AlarmSort::Severity,
        AlarmSort::Newest,
        AlarmSort::Oldest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmSort::Open => "open",
            AlarmSort::Severity => "severity",
            AlarmSort::Newest => "newest",
            AlarmSort::Oldest => "oldest",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AlarmSort::Open => "Open first",
            AlarmSort::Severity => "Critical first",
            AlarmSort::Newest => "Newest first",
            AlarmSort::Oldest => "Oldest first",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// The alarm list's query parameters as text (blank is absent): one place that reads
/// them for both the REST API and the Alarms page, naming every bad one.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlarmQuery<'a> {
    /// Comma-separated states.
    pub state: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub factory_id: Option<&'a str>,
    pub machine_id: Option<&'a str>,
    pub gateway_id: Option<&'a str>,
    pub serial: Option<&'a str>,
    pub sort: Option<&'a str>,
}

impl AlarmQuery<'_> {
    pub fn parse(self) -> Result<AlarmFilter, AppError> {
        let mut c = Checker::default();
        let given = |raw: Option<&str>| raw.map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
        let states = match given(self.state) {
            None => Vec::new(),
            Some(raw) => raw
                .split(',')
                .map(|s| AlarmState::parse(s.trim()))
                .collect::<Option<Vec<_>>>()
                .unwrap_or_else(|| {
                    c.fail(
                        "state",
                        "must be active, acknowledged, cleared or closed (comma-separated)",
                    );
                    Vec::new()
                }),
        };
        let severity = given(self.severity).and_then(|raw| {
            let severity = Severity::parse(&raw);
            if severity.is_none() {
                c.fail("severity", "must be warning or critical");
            }
            severity
        });
        let factory_id = check_uuid(&mut c, "factory_id", self.factory_id);
        let machine_id = check_uuid(&mut c, "machine_id", self.machine_id);
        let gateway_id = check_uuid(&mut c, "gateway_id", self.gateway_id);
        let serial = given(self.serial).and_then(|raw| {
            let serial = parse_serial(&Value::String(raw));
            if serial.is_none() {
                c.fail("serial", crate::machines::SERIAL_PROBLEM);
            }
            serial
        });
        let sort = given(self.sort).map_or(AlarmSort::Open, |raw| {
            AlarmSort::parse(&raw).unwrap_or_else(|| {
                c.fail("sort", "must be open, severity, newest or oldest");
                AlarmSort::Open
            })
        });
        c.finish(AlarmFilter {
            states,
            severity,
            factory_id,
            machine_id,
            gateway_id,
            serial,
            sort,
        })
    }
}

/// How many alarms are open, for the navigation's badge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlarmCounts {
    /// Neither acknowledged nor cleared.
    pub active: u64,
    /// Active or acknowledged (not cleared yet).
    pub open: u64,
}

/// Body of `POST /api/alarms/{id}/acknowledge`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcknowledgeInput {
    pub note: Option<String>,
}

impl AcknowledgeInput {
    pub fn validate(self) -> Result<Option<String>, AppError> {
        let mut c = Checker::default();
        let note = c.optional_text("note", self.note.as_deref(), NOTE_MAX);
        c.finish(note)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChannelKind {
    Webhook,
    Email,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Email => "email",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "webhook" => Some(ChannelKind::Webhook),
            "email" => Some(ChannelKind::Email),
            _ => None,
        }
    }
}

/// Where notifications go. The webhook secret is never part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationChannel {
    pub id: Uuid,
    pub name: String,
    pub kind: ChannelKind,
    /// Webhooks: where the JSON is POSTed.
    pub url: Option<String>,
    /// Whether a signing secret is set (the secret itself is never returned).
    pub has_secret: bool,
    /// E-mail: the recipients, comma-separated.
    pub to: Option<String>,
    pub severities: Vec<Severity>,
    /// Only alarms of this factory; none: every factory.
    pub factory_id: Option<Uuid>,
    /// Whether clears are sent too.
    pub send_clears: bool,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /api/notification-channels`, and of `PATCH` (every field optional there;
/// the kind cannot change).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelInput {
    #[cfg_attr(feature = "openapi", schema(value_type = ChannelKind, required = true))]
    pub kind: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = true))]
    pub name: Option<String>,
    pub url: Option<String>,
    /// The webhook's HMAC-SHA256 key; write-only.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub secret: Option<ChannelSecret>,
    pub to: Option<String>,
    /// Defaults to both.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Severity>>))]
    pub severities: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Uuid>, nullable))]
    pub factory_id: Option<Option<String>>,
    pub send_clears: Option<bool>,
    pub enabled: Option<bool>,
}

/// A channel as the store writes it; `secret: None` keeps the stored one on update.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChannel {
    pub kind: ChannelKind,
    pub name: String,
    pub url: Option<String>,
    pub secret: Option<ChannelSecret>,
    pub to: Option<String>,
    pub severities: Vec<Severity>,
    pub factory_id: Option<Uuid>,
    pub send_clears: bool,
    pub enabled: bool,
}

/// An http(s) URL with a host.
pub fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://")) else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !url.chars().any(char::is_whitespace)
}

impl ChannelInput {
    /// Checks a new channel (`existing: None`) or this patch laid over `existing`.
    pub fn validate(self, existing: Option<&NotificationChannel>) -> Result<NewChannel, AppError> {
        let mut c = Checker::default();
        let kind = match (existing, self.kind.as_deref().map(str::trim)) {
            (Some(channel), None) => Some(channel.kind),
            (Some(channel), Some(raw)) => {
                if ChannelKind::parse(raw) != Some(channel.kind) {
                    c.fail("kind", "cannot be changed; create another channel");
                }
                Some(channel.kind)
            }
            (None, None | Some("")) => {
                c.fail("kind", "is required");
                None
            }
            (None, Some(raw)) => ChannelKind::parse(raw).or_else(|| {
                c.fail("kind", "must be webhook or email");
                None
            }),
        };
        let name = match (&self.name, existing) {
            (None, Some(channel)) => channel.name.clone(),
            _ => c.required_text("name", self.name.as_deref(), crate::NAME_MAX),
        };
        // A field of the other kind is refused, not silently dropped.
        match kind {
            Some(ChannelKind::Email) if self.url.is_some() => c.fail("url", "is only for webhook channels"),
            Some(ChannelKind::Webhook) if self.to.is_some() => c.fail("to", "is only for e-mail channels"),
            _ => {}
        }
        let url = self
            .url
            .as_deref()
            .map(str::trim)
            .map(str::to_owned)
            .or_else(|| existing.and_then(|ch| ch.url.clone()));
        let to = self
            .to
            .as_deref()
            .map(str::trim)
            .map(str::to_owned)
            .or_else(|| existing.and_then(|ch| ch.to.clone()));
        match kind {
            Some(ChannelKind::Webhook) => match url.as_deref() {
                None | Some("") => c.fail("url", "is required for a webhook"),
                Some(url) if url.chars().count() > URL_MAX => {
                    c.fail("url", format!("must be at most {URL_MAX} characters"))
                }
                Some(url) if !is_http_url(url) => c.fail("url", "must be an http:// or https:// URL"),
                Some(_) => {}
            },
            Some(ChannelKind::Email) => match to.as_deref() {
                None | Some("") => c.fail("to", "is required for e-mail"),
                Some(to) => {
                    if to.chars().count() > URL_MAX || !to.split(',').map(str::trim).all(is_valid_email) {
                        c.fail("to", "must be e-mail addresses, separated by commas");
                    }
                }
            },
            None => {}
        }
        if let Some(secret) = &self.secret {
            let length = secret.expose().chars().count();
            if length == 0 || length > SECRET_MAX {
                c.fail("secret", format!("must be 1 to {SECRET_MAX} characters"));
            } else if secret.expose().contains('\0') {
                c.fail("secret", crate::validate::NUL_MESSAGE);
            }
        }
        let severities = match self.severities {
            None => existing.map_or_else(|| Severity::ALL.to_vec(), |ch| ch.severities.clone()),
            Some(raw) => {
                let parsed: Vec<Option<Severity>> = raw.iter().map(|s| Severity::parse(s.trim())).collect();
                if raw.is_empty() || parsed.iter().any(Option::is_none) {
                    c.fail("severities", "must list warning and/or critical");
                }
                let mut list: Vec<Severity> = parsed.into_iter().flatten().collect();
                list.sort();
                list.dedup();
                list
            }
        };
        let factory_id = match self.factory_id {
            None => existing.and_then(|ch| ch.factory_id),
            Some(raw) => check_uuid(&mut c, "factory_id", raw.as_deref()),
        };
        let is_webhook = kind == Some(ChannelKind::Webhook);
        c.finish(NewChannel {
            kind: kind.unwrap_or(ChannelKind::Webhook),
            name,
            url: url.filter(|_| is_webhook),
            secret: self.secret.filter(|_| is_webhook),
            to: to.filter(|_| !is_webhook),
            severities,
            factory_id,
            send_clears: self.send_clears.or(existing.map(|ch| ch.send_clears)).unwrap_or(true),
            enabled: self.enabled.or(existing.map(|ch| ch.enabled)).unwrap_or(true),
        })
    }
}

/// One notification in the outbox, with every attempt to deliver it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: i64,
    pub channel_id: Uuid,
    pub alarm_id: Option<Uuid>,
    /// `raised`, `escalated`, `cleared` or `test`.
    pub event: String,
    pub created_at: DateTime<Utc>,
    /// `pending`, `delivered` or `failed` (given up after 24 h of retries).
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub attempt_log: Vec<DeliveryAttempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status (webhooks), when it answered.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u32,
}

/// Delay before retry `attempt` (1-based): `first` doubling each time, at most `longest`.
pub fn retry_delay(attempt: u32, first: std::time::Duration, longest: std::time::Duration) -> std::time::Duration {
    first
        .saturating_mul(1 << attempt.saturating_sub(1).min(20))
        .min(longest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(body: Value) -> Result<NewAlarmRule, AppError> {
        serde_json::from_value::<AlarmRuleInput>(body).unwrap().validate()
    }

    fn fields(err: AppError) -> Vec<String> {
        err.details.into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn a_gateway_rule_takes_its_defaults() {
        let rule = rule(json!({"kind": "gateway_offline"})).unwrap();
        assert_eq!(rule.delay_seconds, DELAY_DEFAULT_SECONDS);
        assert_eq!(rule.severity, Severity::Warning);
        assert_eq!(rule.name, "Gateway offline");
        assert!(rule.enabled);
    }

    #[test]
    fn bad_rules_name_each_field() {
        let err = rule(json!({"kind": "threshold", "delay_seconds": -5, "value": "accel_rms",
            "alert": 5, "danger": 2, "hysteresis": 150, "consecutive": 0}))
        .unwrap_err();
        assert_eq!(fields(err), ["delay_seconds", "consecutive", "hysteresis", "danger"]);
        let err = rule(json!({"kind": "threshold", "value": "accel_rms"})).unwrap_err();
        assert_eq!(fields(err), ["alert"]);
        let err = rule(json!({"kind": "gateway_offline", "factory_id": Uuid::nil().to_string(),
            "gateway_id": Uuid::nil().to_string()}))
        .unwrap_err();
        assert_eq!(fields(err), ["scope"]);
        let err = rule(json!({"kind": "gateway_offline", "serial": 5})).unwrap_err();
        assert_eq!(fields(err), ["serial"]);
        let err = rule(json!({"kind": "gateway_offline", "delay_seconds": 9_999_999})).unwrap_err();
        assert_eq!(fields(err), ["delay_seconds"]);
    }

    #[test]
    fn an_alarm_query_names_every_bad_parameter() {
        let filter = AlarmQuery {
            state: Some("active, acknowledged"),
            severity: Some("critical"),
            serial: Some("40417"),
            sort: Some("severity"),
            factory_id: Some(" "),
            ..Default::default()
        }
        .parse()
        .unwrap();
        assert_eq!(filter.states, [AlarmState::Active, AlarmState::Acknowledged]);
        assert_eq!(
            (filter.severity, filter.serial, filter.sort),
            (Some(Severity::Critical), Some(40417), AlarmSort::Severity)
        );
        assert_eq!(filter.factory_id, None, "blank is absent");
        assert_eq!(AlarmQuery::default().parse().unwrap().sort, AlarmSort::Open);
        let err = AlarmQuery {
            state: Some("open"),
            severity: Some("loud"),
            factory_id: Some("x"),
            serial: Some("0"),
            sort: Some("name"),
            ..Default::default()
        }
        .parse()
        .unwrap_err();
        assert_eq!(fields(err), ["state", "severity", "factory_id", "serial", "sort"]);
    }

    #[test]
    fn a_velocity_rule_on_a_machine_may_take_its_levels_from_the_iso_group() {
        let machine = Uuid::new_v4().to_string();
        let mut new = rule(json!({"kind": "threshold", "value": "velocity_rms", "machine_id": machine})).unwrap();
        assert!(new.takes_iso_levels());
        new.set_iso_levels(Some(2)).unwrap();
        assert_eq!((new.alert, new.danger), (Some(2.8), Some(4.5)));
        assert!(!new.takes_iso_levels(), "levels once set are the rule's own");
        let mut without_group =
            rule(json!({"kind": "threshold", "value": "velocity_rms", "machine_id": machine})).unwrap();
        assert_eq!(fields(without_group.set_iso_levels(None).unwrap_err()), ["alert"]);
        // Only velocity has ISO zones, and only a machine has a group.
        let err = rule(json!({"kind": "threshold", "value": "accel_rms", "machine_id": machine})).unwrap_err();
        assert_eq!(fields(err), ["alert"]);
        let err = rule(json!({"kind": "threshold", "value": "velocity_rms", "serial": 7})).unwrap_err();
        assert_eq!(fields(err), ["alert"]);
        let own =
            rule(json!({"kind": "threshold", "value": "velocity_rms", "machine_id": machine, "alert": 3})).unwrap();
        assert!(!own.takes_iso_levels());
    }

    #[test]
    fn a_patch_is_checked_with_the_rule_it_changes() {
        let new = rule(json!({"kind": "threshold", "value": "velocity_rms", "alert": 4.5, "danger": 7.1})).unwrap();
        let stored = AlarmRule {
            id: Uuid::nil(),
            name: new.name,
            kind: new.kind,
            severity: new.severity,
            enabled: true,
            delay_seconds: 0,
            factory_id: None,
            machine_id: None,
            gateway_id: None,
            serial: Some(7),
            value: new.value,
            alert: new.alert,
            danger: new.danger,
            consecutive: 1,
            hysteresis: 10.0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let patch: AlarmRulePatch = serde_json::from_value(json!({"alert": 8})).unwrap();
        assert_eq!(fields(patch.apply(&stored).unwrap_err()), ["danger"]);
        let patch: AlarmRulePatch = serde_json::from_value(json!({"danger": null, "alert": 8})).unwrap();
        let changed = patch.apply(&stored).unwrap();
        assert_eq!(
            (changed.alert, changed.danger, changed.serial),
            (Some(8.0), None, Some(7))
        );
        let patch: AlarmRulePatch = serde_json::from_value(json!({"factory_id": Uuid::nil().to_string()})).unwrap();
        let moved = patch.apply(&stored).unwrap();
        assert_eq!((moved.factory_id, moved.serial), (Some(Uuid::nil()), None));
    }

    #[test]
    fn a_webhook_needs_an_http_url() {
        let input: ChannelInput =
            serde_json::from_value(json!({"kind": "webhook", "name": "ops", "url": "ftp://x"})).unwrap();
        assert_eq!(fields(input.validate(None).unwrap_err()), ["url"]);
        let input: ChannelInput = serde_json::from_value(
            json!({"kind": "webhook", "name": "ops", "url": "https://hooks.example.com/x", "secret": "s3"}),
        )
        .unwrap();
        let channel = input.validate(None).unwrap();
        assert_eq!(channel.secret.unwrap().expose(), "s3");
        let input: ChannelInput =
            serde_json::from_value(json!({"kind": "email", "name": "ops", "to": "a@example.com, nope"})).unwrap();
        assert_eq!(fields(input.validate(None).unwrap_err()), ["to"]);
    }

    #[test]
    fn a_field_of_the_other_kind_is_refused() {
        let input: ChannelInput = serde_json::from_value(
            json!({"kind": "email", "name": "ops", "to": "a@example.com", "url": "https://hooks.example.com/x"}),
        )
        .unwrap();
        let err = input.validate(None).unwrap_err();
        assert_eq!(err.field_message("url"), Some("is only for webhook channels"));
        let input: ChannelInput = serde_json::from_value(
            json!({"kind": "webhook", "name": "ops", "url": "https://hooks.example.com/x", "to": "a@example.com"}),
        )
        .unwrap();
        assert_eq!(fields(input.validate(None).unwrap_err()), ["to"]);
    }

    #[test]
    fn retries_back_off_to_the_longest_delay() {
        use std::time::Duration;
        let delays: Vec<u64> = (1..=12)
            .map(|n| retry_delay(n, Duration::from_secs(5), Duration::from_secs(3600)).as_secs())
            .collect();
        assert_eq!(&delays[..4], &[5, 10, 20, 40]);
        assert_eq!(delays[11], 3600);
    }
}
