//! Alarms: rules, the alarms they raise and clear, notification channels, and the
//! outbox their notifications are delivered from.
//!
//! - **Evaluation** of gateway and silence rules is one transaction of set-based
//!   statements ([`Store::evaluate_alarms`]), run by whichever instance takes the
//!   transaction-level advisory lock first; thresholds are evaluated in the transaction
//!   that stores a reading's overall values ([`evaluate_thresholds`]). The partial unique
//!   index `alarms_open_key` keeps one open alarm per rule and subject whatever runs.
//! - **Notifications** of a raise, an escalation or a clear are written to
//!   `notification_deliveries` in the same transaction as the change (an outbox), and
//!   delivered at least once by whichever instance claims them ([`Store::claim_deliveries`]).

use crate::{Store, StoreError};
use chrono::{DateTime, Utc};
use domain::alarms::{
    Alarm, AlarmCounts, AlarmFilter, AlarmKind, AlarmRule, AlarmSort, AlarmState, ChannelKind, Delivery,
    DeliveryAttempt, NewAlarmRule, NewChannel, NotificationChannel, Severity, DELIVERY_RETRY_HOURS,
};
use domain::error::ErrorCode;
use domain::machines::TrendValue;
use domain::{AppError, ChannelSecret, Page, PageRequest};
use sqlx::{PgConnection, Postgres, Transaction};
use std::time::Duration;
use uuid::Uuid;

/// The advisory lock one evaluation holds for its transaction ("alarm" in ASCII).
const EVALUATION_LOCK: i64 = 0x0061_6c61_726d;

const RULE_COLUMNS: &str = "r.id AS r_id, r.name AS r_name, r.kind AS r_kind, r.severity AS r_severity,
    r.enabled AS r_enabled, r.delay_seconds AS r_delay_seconds, r.factory_id AS r_factory_id,
    r.machine_id AS r_machine_id, r.gateway_id AS r_gateway_id, r.serial AS r_serial, r.value AS r_value,
    r.alert AS r_alert, r.danger AS r_danger, r.consecutive AS r_consecutive, r.hysteresis AS r_hysteresis,
    r.created_at AS r_created_at, r.updated_at AS r_updated_at";

const ALARM_SELECT: &str = "SELECT a.id, a.state, a.severity, a.message, a.gateway_id, gw.gateway_id AS gateway_name,
    a.serial, a.factory_id, a.machine_id, m.name AS machine_name, a.level, a.value, a.reading_id, a.raised_at,
    a.escalated_at, a.acknowledged_at, a.acknowledged_by, a.note, a.cleared_at, a.updated_at, ";

const ALARM_FROM: &str = "FROM alarms a JOIN alarm_rules r ON r.id = a.rule_id
    LEFT JOIN gateways gw ON gw.id = a.gateway_id LEFT JOIN machines m ON m.id = a.machine_id";

/// The worst axis of an overall value, per rule (`r`) and row (`o`).
const RULE_VALUE: &str = "CASE r.value
    WHEN 'accel_rms' THEN GREATEST(o.x_accel_rms, o.y_accel_rms, o.z_accel_rms)
    WHEN 'accel_peak' THEN GREATEST(o.x_accel_peak, o.y_accel_peak, o.z_accel_peak)
    WHEN 'velocity_rms' THEN GREATEST(o.x_velocity_rms, o.y_velocity_rms, o.z_velocity_rms)
    WHEN 'crest_factor' THEN GREATEST(o.x_crest_factor, o.y_crest_factor, o.z_crest_factor)
    ELSE o.temperature END";

/// Each known sensor (by serial) where it was last heard, with its point's machine:
/// what sensor rules are scoped against.
const SENSOR_PLACES: &str = "SELECT DISTINCT ON (s.serial) s.serial, s.gateway_id, g.factory_id, s.connected,
        s.last_seen_at, p.machine_id, (l.live->>'state') = 'online' AS gateway_online
    FROM sensors s JOIN gateways g ON g.id = s.gateway_id AND g.deleted_at IS NULL AND g.enabled
    LEFT JOIN gateway_live l ON l.gateway_id = g.id
    LEFT JOIN measurement_points p ON p.serial = s.serial AND p.deleted_at IS NULL
    ORDER BY s.serial, s.last_seen_at DESC";

/// Whether sensor place `sp` is in rule `r`'s scope.
const SENSOR_IN_SCOPE: &str = "(r.factory_id IS NULL OR r.factory_id = sp.factory_id)
    AND (r.gateway_id IS NULL OR r.gateway_id = sp.gateway_id)
    AND (r.machine_id IS NULL OR r.machine_id = sp.machine_id)
    AND (r.serial IS NULL OR r.serial = sp.serial)";

#[derive(sqlx::FromRow)]
struct RuleRow {
    r_id: Uuid,
    r_name: String,
    r_kind: String,
    r_severity: String,
    r_enabled: bool,
    r_delay_seconds: i32,
    r_factory_id: Option<Uuid>,
    r_machine_id: Option<Uuid>,
    r_gateway_id: Option<Uuid>,
    r_serial: Option<i64>,
    r_value: Option<String>,
    r_alert: Option<f64>,
    r_danger: Option<f64>,
    r_consecutive: i32,
    r_hysteresis: f64,
    r_created_at: DateTime<Utc>,
    r_updated_at: DateTime<Utc>,
}

impl From<RuleRow> for AlarmRule {
    fn from(r: RuleRow) -> Self {
        AlarmRule {
            id: r.r_id,
            name: r.r_name,
            kind: AlarmKind::parse(&r.r_kind).unwrap_or(AlarmKind::GatewayOffline),
            severity: Severity::parse(&r.r_severity).unwrap_or(Severity::Warning),
            enabled: r.r_enabled,
            delay_seconds: r.r_delay_seconds.max(0) as u32,
            factory_id: r.r_factory_id,
            machine_id: r.r_machine_id,
            gateway_id: r.r_gateway_id,
            serial: r.r_serial.map(|s| s as u64),
            value: r.r_value.as_deref().and_then(TrendValue::parse),
            alert: r.r_alert,
            danger: r.r_danger,
            consecutive: r.r_consecutive.max(1) as u32,
            hysteresis: r.r_hysteresis,
            created_at: r.r_created_at,
            updated_at: r.r_updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AlarmRow {
    id: Uuid,
    state: String,
    severity: String,
    message: String,
    gateway_id: Option<Uuid>,
    gateway_name: Option<String>,
    serial: Option<i64>,
    factory_id: Option<Uuid>,
    machine_id: Option<Uuid>,
    machine_name: Option<String>,
    level: Option<String>,
    value: Option<f64>,
    reading_id: Option<Uuid>,
    raised_at: DateTime<Utc>,
    escalated_at: Option<DateTime<Utc>>,
    acknowledged_at: Option<DateTime<Utc>>,
    acknowledged_by: Option<String>,
    note: Option<String>,
    cleared_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    #[sqlx(flatten)]
    rule: RuleRow,
}

impl From<AlarmRow> for Alarm {
    fn from(a: AlarmRow) -> Self {
        let rule = AlarmRule::from(a.rule);
        Alarm {
            id: a.id,
            state: AlarmState::parse(&a.state).unwrap_or(AlarmState::Active),
            severity: Severity::parse(&a.severity).unwrap_or(Severity::Warning),
            kind: rule.kind,
            message: a.message,
            rule_id: rule.id,
            rule,
            gateway_id: a.gateway_id,
            gateway_name: a.gateway_name,
            serial: a.serial.map(|s| s as u64),
            factory_id: a.factory_id,
            machine_id: a.machine_id,
            machine_name: a.machine_name,
            level: a.level,
            value: a.value,
            reading_id: a.reading_id,
            raised_at: a.raised_at,
            escalated_at: a.escalated_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by,
            note: a.note,
            cleared_at: a.cleared_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: Uuid,
    name: String,
    kind: String,
    url: Option<String>,
    has_secret: bool,
    email_to: Option<String>,
    severities: Vec<String>,
    factory_id: Option<Uuid>,
    send_clears: bool,
    enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const CHANNEL_COLUMNS: &str = "id, name, kind, url, secret_encrypted IS NOT NULL AS has_secret, email_to, severities,
    factory_id, send_clears, enabled, created_at, updated_at";

impl From<ChannelRow> for NotificationChannel {
    fn from(c: ChannelRow) -> Self {
        NotificationChannel {
            id: c.id,
            name: c.name,
            kind: ChannelKind::parse(&c.kind).unwrap_or(ChannelKind::Webhook),
            url: c.url,
            has_secret: c.has_secret,
            to: c.email_to,
            severities: c.severities.iter().filter_map(|s| Severity::parse(s)).collect(),
            factory_id: c.factory_id,
            send_clears: c.send_clears,
            enabled: c.enabled,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A notification claimed for delivery, with what delivering it needs.
pub struct ClaimedDelivery {
    pub id: i64,
    pub channel_id: Uuid,
    pub kind: ChannelKind,
    pub url: Option<String>,
    /// The signing secret, or why it could not be opened.
    pub secret: Result<Option<ChannelSecret>, String>,
    pub to: Option<String>,
    pub event: String,
    pub payload: serde_json::Value,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for ClaimedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedDelivery")
            .field("id", &self.id)
            .field("channel_id", &self.channel_id)
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

/// How one delivery attempt went.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
    pub delivered: bool,
}

/// What one evaluation changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub raised: usize,
    pub cleared: usize,
    /// Another instance held the evaluation lock: nothing was done.
    pub skipped: bool,
}

fn rule_not_found() -> StoreError {
    StoreError::code(ErrorCode::AlarmRuleNotFound, "Alarm rule not found")
}

fn alarm_not_found() -> StoreError {
    StoreError::code(ErrorCode::AlarmNotFound, "Alarm not found")
}

fn channel_not_found() -> StoreError {
    StoreError::code(ErrorCode::ChannelNotFound, "Notification channel not found")
}

/// Alarms by id, in the shape the API answers with.
async fn alarms_by_id(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Alarm>, StoreError> {
    let rows: Vec<AlarmRow> = sqlx::query_as(&format!(
        "{ALARM_SELECT}{RULE_COLUMNS} {ALARM_FROM} WHERE a.id = ANY($1) ORDER BY a.raised_at, a.id"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Writes a notification of `event` for each alarm to every channel that wants it.
async fn enqueue_notifications(conn: &mut PgConnection, ids: &[Uuid], event: &str) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let alarms = alarms_by_id(&mut *conn, ids).await?;
    let payloads: Vec<sqlx::types::Json<serde_json::Value>> = alarms
        .iter()
        .map(|alarm| sqlx::types::Json(serde_json::json!({ "event": event, "alarm": alarm })))
        .collect();
    let alarm_ids: Vec<Uuid> = alarms.iter().map(|a| a.id).collect();
    sqlx::query(
        "INSERT INTO notification_deliveries (channel_id, alarm_id, event, payload)
         SELECT c.id, a.id, $3, u.payload
         FROM UNNEST($1::uuid[], $2::jsonb[]) AS u(alarm_id, payload)
         JOIN alarms a ON a.id = u.alarm_id
         JOIN notification_channels c ON c.deleted_at IS NULL AND c.enabled AND a.severity = ANY(c.severities)
              AND (c.factory_id IS NULL OR c.factory_id = a.factory_id)
              AND ($3 <> 'cleared' OR c.send_clears)",
    )
    .bind(&alarm_ids)
    .bind(&payloads)
    .bind(event)
    .execute(conn)
    .await?;
    Ok(())
}

/// Evaluates the enabled threshold rules covering `serial` on its newest overall values,
/// in the transaction that stored them: raises (or escalates to `danger`) after
/// `consecutive` readings over a level, clears below the level less the hysteresis.
pub(crate) async fn evaluate_thresholds(tx: &mut Transaction<'_, Postgres>, serial: i64) -> Result<(), StoreError> {
    // Each rule's newest `consecutive` values of this sensor (only those since the rule
    // last changed), their lowest, and the newest value and reading.
    let windows = format!(
        "WITH sp AS (SELECT * FROM ({SENSOR_PLACES}) places WHERE serial = $1),
         rules AS (
            SELECT r.* FROM alarm_rules r, sp
            WHERE r.kind = 'threshold' AND r.enabled AND r.deleted_at IS NULL AND {SENSOR_IN_SCOPE}
         ),
         windows AS (
            SELECT r.id AS rule_id, r.severity, r.alert, r.danger, r.hysteresis, r.consecutive, r.value AS value_name,
                   w.n, w.lowest, w.newest, w.reading_id, sp.factory_id, sp.machine_id, sp.gateway_id
            FROM rules r CROSS JOIN sp
            CROSS JOIN LATERAL (
                SELECT count(v) AS n, min(v) AS lowest, (array_agg(v ORDER BY at DESC))[1] AS newest,
                       (array_agg(reading_id ORDER BY at DESC))[1] AS reading_id
                FROM (SELECT o.at, o.reading_id, ({RULE_VALUE})::float8 AS v FROM overall_values o
                      WHERE o.serial = $1 AND o.at >= r.updated_at ORDER BY o.at DESC LIMIT r.consecutive) last
            ) w
         )"
    );
    sqlx::query("SET LOCAL jit = off").execute(&mut **tx).await?;
    // Raise, or escalate an open alert-level alarm to danger.
    let raised: Vec<(Uuid, bool)> = sqlx::query_as(&format!(
        "{windows}
         INSERT INTO alarms AS a (rule_id, subject, serial, gateway_id, factory_id, machine_id, severity, level, value,
                                  reading_id, message)
         SELECT w.rule_id, $1::text, $1, w.gateway_id, w.factory_id, w.machine_id,
                CASE WHEN w.danger IS NOT NULL AND w.lowest > w.danger THEN 'critical' ELSE w.severity END,
                CASE WHEN w.danger IS NOT NULL AND w.lowest > w.danger THEN 'danger' ELSE 'alert' END,
                w.newest, w.reading_id,
                format('Sensor %s: %s %s over its %s level %s', $1, w.value_name, round(w.newest::numeric, 3),
                       CASE WHEN w.danger IS NOT NULL AND w.lowest > w.danger THEN 'danger' ELSE 'alert' END,
                       CASE WHEN w.danger IS NOT NULL AND w.lowest > w.danger THEN w.danger ELSE w.alert END)
         FROM windows w
         WHERE w.n = w.consecutive
           AND ((w.alert IS NOT NULL AND w.lowest > w.alert) OR (w.danger IS NOT NULL AND w.lowest > w.danger))
         ON CONFLICT (rule_id, subject) WHERE cleared_at IS NULL DO UPDATE
             SET level = 'danger', severity = 'critical', value = EXCLUDED.value, reading_id = EXCLUDED.reading_id,
                 message = EXCLUDED.message, escalated_at = now(), updated_at = now()
             WHERE a.level = 'alert' AND EXCLUDED.level = 'danger'
         RETURNING a.id, (xmax = 0) AS inserted"
    ))
    .bind(serial)
    .fetch_all(&mut **tx)
    .await?;
    // Clear: the newest value below the lowest level less the hysteresis.
    let cleared: Vec<Uuid> = sqlx::query_scalar(&format!(
        "{windows}
         UPDATE alarms a SET cleared_at = now(), updated_at = now()
         FROM windows w
         WHERE a.rule_id = w.rule_id AND a.subject = $1::text AND a.cleared_at IS NULL AND w.n > 0
           AND w.newest < COALESCE(w.alert, w.danger) * (1 - w.hysteresis / 100)
         RETURNING a.id"
    ))
    .bind(serial)
    .fetch_all(&mut **tx)
    .await?;
    let (new, escalated): (Vec<_>, Vec<_>) = raised.into_iter().partition(|(_, inserted)| *inserted);
    let ids = |list: Vec<(Uuid, bool)>| list.into_iter().map(|(id, _)| id).collect::<Vec<Uuid>>();
    enqueue_notifications(tx, &ids(new), "raised").await?;
    enqueue_notifications(tx, &ids(escalated), "escalated").await?;
    enqueue_notifications(tx, &cleared, "cleared").await?;
    Ok(())
}

impl Store {
    /// Checks the rule's scope ids, and gives a velocity rule on a machine without
    /// levels the machine's ISO 20816 zone boundaries.
    async fn prepare_rule(&self, rule: &mut NewAlarmRule) -> Result<(), StoreError> {
        self.check_rule_scope(rule).await?;
        if let (true, Some(machine_id)) = (rule.takes_iso_levels(), rule.machine_id) {
            let group: Option<i16> = sqlx::query_scalar("SELECT iso_group FROM machines WHERE id = $1")
                .bind(machine_id)
                .fetch_one(&self.pool)
                .await?;
            rule.set_iso_levels(group.and_then(|g| u8::try_from(g).ok()))?;
        }
        Ok(())
    }

    async fn check_rule_scope(&self, rule: &NewAlarmRule) -> Result<(), StoreError> {
        let missing = |code, what: &str| Err(StoreError::code(code, &format!("No such {what}")));
        // (The table names are these constants, never input.)
        let parents = [
            (rule.factory_id, "factories", ErrorCode::UnknownFactory, "factory"),
            (rule.machine_id, "machines", ErrorCode::UnknownMachine, "machine"),
            (rule.gateway_id, "gateways", ErrorCode::UnknownGateway, "gateway"),
        ];
        for (id, table, code, what) in parents {
            let Some(id) = id else { continue };
            let found: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1 AND deleted_at IS NULL)"
            ))
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
            if !found {
                return missing(code, what);
            }
        }
        if let Some(serial) = rule.serial {
            if !self.sensor_known(serial).await? {
                return missing(ErrorCode::UnknownSensor, "sensor");
            }
        }
        Ok(())
    }

    pub async fn create_alarm_rule(&self, mut rule: NewAlarmRule) -> Result<AlarmRule, StoreError> {
        self.prepare_rule(&mut rule).await?;
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO alarm_rules (name, kind, severity, enabled, delay_seconds, factory_id, machine_id, gateway_id,
                                      serial, value, alert, danger, consecutive, hysteresis)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(&rule.name)
        .bind(rule.kind.as_str())
        .bind(rule.severity.as_str())
        .bind(rule.enabled)
        .bind(rule.delay_seconds as i32)
        .bind(rule.factory_id)
        .bind(rule.machine_id)
        .bind(rule.gateway_id)
        .bind(rule.serial.map(|s| s as i64))
        .bind(rule.value.map(TrendValue::as_str))
        .bind(rule.alert)
        .bind(rule.danger)
        .bind(rule.consecutive as i32)
        .bind(rule.hysteresis)
        .fetch_one(&self.pool)
        .await?;
        self.get_alarm_rule(id).await
    }

    pub async fn get_alarm_rule(&self, id: Uuid) -> Result<AlarmRule, StoreError> {
        let row: Option<RuleRow> = sqlx::query_as(&format!(
            "SELECT {RULE_COLUMNS} FROM alarm_rules r WHERE r.id = $1 AND r.deleted_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Into::into).ok_or_else(rule_not_found)
    }

    pub async fn list_alarm_rules(&self, page: PageRequest) -> Result<Page<AlarmRule>, StoreError> {
        let rows: Vec<RuleRow> = sqlx::query_as(&format!(
            "SELECT {RULE_COLUMNS} FROM alarm_rules r WHERE r.deleted_at IS NULL
             ORDER BY r.kind, r.name, r.id LIMIT $1 OFFSET $2"
        ))
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM alarm_rules WHERE deleted_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(Page::new(
            rows.into_iter().map(Into::into).collect(),
            total as u64,
            page,
        ))
    }

    /// Replaces a rule's settings (its kind stays). Its open alarms stay open until their
    /// condition ends under the new settings.
    pub async fn update_alarm_rule(&self, id: Uuid, mut rule: NewAlarmRule) -> Result<AlarmRule, StoreError> {
        self.prepare_rule(&mut rule).await?;
        let updated = sqlx::query(
            "UPDATE alarm_rules SET name = $2, severity = $3, enabled = $4, delay_seconds = $5, factory_id = $6,
                 machine_id = $7, gateway_id = $8, serial = $9, value = $10, alert = $11, danger = $12,
                 consecutive = $13, hysteresis = $14, updated_at = now()
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(&rule.name)
        .bind(rule.severity.as_str())
        .bind(rule.enabled)
        .bind(rule.delay_seconds as i32)
        .bind(rule.factory_id)
        .bind(rule.machine_id)
        .bind(rule.gateway_id)
        .bind(rule.serial.map(|s| s as i64))
        .bind(rule.value.map(TrendValue::as_str))
        .bind(rule.alert)
        .bind(rule.danger)
        .bind(rule.consecutive as i32)
        .bind(rule.hysteresis)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(rule_not_found());
        }
        self.get_alarm_rule(id).await
    }

    /// Soft-deletes a rule and clears its open alarms (their history stays).
    pub async fn delete_alarm_rule(&self, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "UPDATE alarm_rules SET deleted_at = now(), enabled = false WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(rule_not_found());
        }
        sqlx::query(
            "UPDATE alarms SET cleared_at = now(), updated_at = now() WHERE rule_id = $1 AND cleared_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Alarms in the filter's order (by default open ones first: active, then
    /// acknowledged, each newest first, then the rest newest first).
    pub async fn list_alarms(&self, filter: &AlarmFilter, page: PageRequest) -> Result<Page<Alarm>, StoreError> {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        const OPEN_FIRST: &str = "CASE a.state WHEN 'active' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END";
        let order = match filter.sort {
            AlarmSort::Open => format!("{OPEN_FIRST}, a.raised_at DESC"),
            AlarmSort::Severity => {
                format!("CASE a.severity WHEN 'critical' THEN 0 ELSE 1 END, {OPEN_FIRST}, a.raised_at DESC")
            }
            AlarmSort::Newest => "a.raised_at DESC".to_owned(),
            AlarmSort::Oldest => "a.raised_at".to_owned(),
        };
        let condition = "($1::text[] = '{}' OR a.state = ANY($1)) AND ($2::text IS NULL OR a.severity = $2)
            AND ($3::uuid IS NULL OR a.factory_id = $3) AND ($4::uuid IS NULL OR a.machine_id = $4)
            AND ($5::uuid IS NULL OR a.gateway_id = $5) AND ($6::bigint IS NULL OR a.serial = $6)";
        let rows: Vec<AlarmRow> = sqlx::query_as(&format!(
            "{ALARM_SELECT}{RULE_COLUMNS} {ALARM_FROM} WHERE {condition}
             ORDER BY {order}, a.id LIMIT $7 OFFSET $8"
        ))
        .bind(&states)
        .bind(filter.severity.map(Severity::as_str))
        .bind(filter.factory_id)
        .bind(filter.machine_id)
        .bind(filter.gateway_id)
        .bind(filter.serial.map(|s| s as i64))
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM alarms a WHERE {condition}"))
            .bind(&states)
            .bind(filter.severity.map(Severity::as_str))
            .bind(filter.factory_id)
            .bind(filter.machine_id)
            .bind(filter.gateway_id)
            .bind(filter.serial.map(|s| s as i64))
            .fetch_one(&self.pool)
            .await?;
        Ok(Page::new(
            rows.into_iter().map(Into::into).collect(),
            total as u64,
            page,
        ))
    }

    pub async fn get_alarm(&self, id: Uuid) -> Result<Alarm, StoreError> {
        let mut conn = self.pool.acquire().await?;
        alarms_by_id(&mut conn, &[id]).await?.pop().ok_or_else(alarm_not_found)
    }

    /// Alarms changed after `since` (for the event stream), oldest change first.
    pub async fn alarms_changed_since(&self, since: DateTime<Utc>) -> Result<Vec<Alarm>, StoreError> {
        let rows: Vec<AlarmRow> = sqlx::query_as(&format!(
            "{ALARM_SELECT}{RULE_COLUMNS} {ALARM_FROM} WHERE a.updated_at > $1 ORDER BY a.updated_at, a.id LIMIT 500"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn alarm_counts(&self) -> Result<AlarmCounts, StoreError> {
        let (active, open): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FROM alarms WHERE cleared_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(AlarmCounts {
            active: active as u64,
            open: open as u64,
        })
    }

    /// Acknowledges an alarm (by `who`, with a note). Again: unchanged, not an error.
    pub async fn acknowledge_alarm(&self, id: Uuid, who: &str, note: Option<&str>) -> Result<Alarm, StoreError> {
        sqlx::query(
            "UPDATE alarms SET acknowledged_at = now(), acknowledged_by = $2, note = $3, updated_at = now()
             WHERE id = $1 AND acknowledged_at IS NULL",
        )
        .bind(id)
        .bind(who)
        .bind(note)
        .execute(&self.pool)
        .await?;
        self.get_alarm(id).await
    }

    /// One evaluation of the gateway and silence rules, unless another instance is at
    /// it. Raises what has held for its rule's delay, clears what has ended, and writes
    /// the notifications of both in the same transaction.
    pub async fn evaluate_alarms(&self) -> Result<Evaluation, StoreError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(EVALUATION_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(Evaluation {
                skipped: true,
                ..Evaluation::default()
            });
        }
        // Every second, small answers: compiling the statements (JIT, which their cost
        // estimates at fleet scale would trigger) costs more than running them.
        sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
        // A gateway is down since the first failure after it was last connected (or
        // enabled), from the stored events: a restart does not reset the clock.
        let raised_gateways: Vec<Uuid> = sqlx::query_scalar(
            "WITH down AS MATERIALIZED (
                SELECT g.id, g.factory_id, g.gateway_id AS name, l.live->>'state' AS state,
                       (l.live->>'since')::timestamptz AS state_since
                FROM gateways g JOIN gateway_live l ON l.gateway_id = g.id
                WHERE g.deleted_at IS NULL AND g.enabled AND l.live->>'state' NOT IN ('online', 'disabled')
             ),
             since AS MATERIALIZED (
                SELECT d.*, COALESCE((
                    SELECT min(e.at) FROM gateway_events e
                    WHERE e.gateway_id = d.id AND e.kind IN ('disconnected', 'auth_failed', 'error')
                      AND e.at > COALESCE((SELECT max(c.at) FROM gateway_events c
                                           WHERE c.gateway_id = d.id AND c.kind IN ('connected', 'enabled')),
                                          '-infinity')), d.state_since) AS down_since
                FROM down d
             ),
             rules AS MATERIALIZED (
                SELECT id, kind, severity, delay_seconds, factory_id, gateway_id FROM alarm_rules
                WHERE deleted_at IS NULL AND enabled AND kind IN ('gateway_offline', 'auth_failed')
             ),
             -- Each scope by equality (an OR in one join would compare every rule with every
             -- gateway down).
             matched AS (
                SELECT r.*, s.id AS gateway, s.factory_id AS factory, s.name, s.state, s.state_since, s.down_since
                FROM since s JOIN rules r ON r.gateway_id = s.id
                UNION ALL
                SELECT r.*, s.id, s.factory_id, s.name, s.state, s.state_since, s.down_since
                FROM since s JOIN rules r ON r.factory_id = s.factory_id
                UNION ALL
                SELECT r.*, s.id, s.factory_id, s.name, s.state, s.state_since, s.down_since
                FROM since s CROSS JOIN rules r WHERE r.gateway_id IS NULL AND r.factory_id IS NULL
             )
             INSERT INTO alarms (rule_id, subject, gateway_id, factory_id, severity, message)
             SELECT m.id, m.gateway::text, m.gateway, m.factory, m.severity,
                    CASE m.kind WHEN 'auth_failed' THEN format('Gateway %s refuses our login', m.name)
                         ELSE format('Gateway %s offline since %s (%s)', m.name,
                                     to_char(m.down_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"'),
                                     replace(m.state, '_', ' ')) END
             FROM matched m
             WHERE (m.kind = 'gateway_offline' AND m.down_since <= now() - make_interval(secs => m.delay_seconds))
                OR (m.kind = 'auth_failed' AND m.state = 'auth_failed'
                    AND m.state_since <= now() - make_interval(secs => m.delay_seconds))
             ON CONFLICT (rule_id, subject) WHERE cleared_at IS NULL DO NOTHING
             RETURNING id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let cleared_gateways: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE alarms a SET cleared_at = now(), updated_at = now()
             FROM alarm_rules r
             WHERE a.rule_id = r.id AND a.cleared_at IS NULL AND r.kind IN ('gateway_offline', 'auth_failed')
               AND (r.deleted_at IS NOT NULL OR NOT r.enabled OR NOT EXISTS (
                    SELECT 1 FROM gateways g JOIN gateway_live l ON l.gateway_id = g.id
                    WHERE g.id = a.gateway_id AND g.deleted_at IS NULL AND g.enabled
                      AND l.live->>'state' NOT IN ('online', 'disabled')
                      AND (r.kind <> 'auth_failed' OR l.live->>'state' = 'auth_failed')))
             RETURNING a.id",
        )
        .fetch_all(&mut *tx)
        .await?;
        // A sensor is silent when its (online) gateway reports it disconnected, or, for a
        // sensor read on a schedule (others are not expected to report), when nothing was
        // heard of it (a changed sensor list or a finished reading) for the delay.
        let heard = format!(
            "WITH sp AS MATERIALIZED (SELECT * FROM ({SENSOR_PLACES}) places),
             heard AS MATERIALIZED (
                SELECT sp.*, COALESCE(ss.enabled, false) AS scheduled, GREATEST(sp.last_seen_at, (
                    SELECT r.finished_at FROM readings r WHERE r.serial = sp.serial AND r.status = 'finished'
                    ORDER BY r.requested_at DESC LIMIT 1)) AS heard_at
                FROM sp LEFT JOIN sensor_schedules ss ON ss.serial = sp.serial
                WHERE sp.gateway_online
             )"
        );
        let raised_sensors: Vec<Uuid> = sqlx::query_scalar(&format!(
            "{heard}
             INSERT INTO alarms (rule_id, subject, serial, gateway_id, factory_id, machine_id, severity, message)
             SELECT r.id, sp.serial::text, sp.serial, sp.gateway_id, sp.factory_id, sp.machine_id, r.severity,
                    CASE WHEN NOT sp.connected THEN format('Sensor %s is reported disconnected by its gateway', sp.serial)
                         ELSE format('Sensor %s not heard of since %s', sp.serial,
                              to_char(sp.heard_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"')) END
             FROM alarm_rules r JOIN heard sp ON {SENSOR_IN_SCOPE}
             WHERE r.kind = 'sensor_silent' AND r.deleted_at IS NULL AND r.enabled
               AND (NOT sp.connected
                    OR (sp.scheduled AND sp.heard_at <= now() - make_interval(secs => r.delay_seconds)))
             ON CONFLICT (rule_id, subject) WHERE cleared_at IS NULL DO NOTHING
             RETURNING id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let cleared_sensors: Vec<Uuid> = sqlx::query_scalar(&format!(
            "{heard}
             UPDATE alarms a SET cleared_at = now(), updated_at = now()
             FROM alarm_rules r
             WHERE a.rule_id = r.id AND a.cleared_at IS NULL AND r.kind = 'sensor_silent'
               AND (r.deleted_at IS NOT NULL OR NOT r.enabled OR EXISTS (
                    SELECT 1 FROM heard sp WHERE sp.serial = a.serial AND sp.connected
                      AND (NOT sp.scheduled OR sp.heard_at > now() - make_interval(secs => r.delay_seconds))))
             RETURNING a.id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let raised: Vec<Uuid> = raised_gateways.into_iter().chain(raised_sensors).collect();
        let cleared: Vec<Uuid> = cleared_gateways.into_iter().chain(cleared_sensors).collect();
        enqueue_notifications(&mut tx, &raised, "raised").await?;
        enqueue_notifications(&mut tx, &cleared, "cleared").await?;
        tx.commit().await?;
        Ok(Evaluation {
            raised: raised.len(),
            cleared: cleared.len(),
            skipped: false,
        })
    }

    pub async fn create_channel(&self, channel: NewChannel) -> Result<NotificationChannel, StoreError> {
        if let Some(factory) = channel.factory_id {
            self.get_factory(factory)
                .await
                .map_err(|_| StoreError::Client(AppError::new(ErrorCode::UnknownFactory, "No such factory")))?;
        }
        let id = Uuid::new_v4();
        let secret = match &channel.secret {
            Some(secret) => Some(self.keys.encrypt(secret.expose(), id)?),
            None => None,
        };
        sqlx::query(
            "INSERT INTO notification_channels (id, name, kind, url, secret_encrypted, email_to, severities,
                                                factory_id, send_clears, enabled)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(&channel.name)
        .bind(channel.kind.as_str())
        .bind(&channel.url)
        .bind(secret)
        .bind(&channel.to)
        .bind(channel.severities.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .bind(channel.factory_id)
        .bind(channel.send_clears)
        .bind(channel.enabled)
        .execute(&self.pool)
        .await?;
        self.get_channel(id).await
    }

    pub async fn get_channel(&self, id: Uuid) -> Result<NotificationChannel, StoreError> {
        let row: Option<ChannelRow> = sqlx::query_as(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Into::into).ok_or_else(channel_not_found)
    }

    pub async fn list_channels(&self, page: PageRequest) -> Result<Page<NotificationChannel>, StoreError> {
        let rows: Vec<ChannelRow> = sqlx::query_as(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE deleted_at IS NULL
             ORDER BY name, id LIMIT $1 OFFSET $2"
        ))
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_channels WHERE deleted_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(Page::new(
            rows.into_iter().map(Into::into).collect(),
            total as u64,
            page,
        ))
    }

    /// Updates a channel; its secret changes only when a new one is given.
    pub async fn update_channel(&self, id: Uuid, channel: NewChannel) -> Result<NotificationChannel, StoreError> {
        if let Some(factory) = channel.factory_id {
            self.get_factory(factory)
                .await
                .map_err(|_| StoreError::Client(AppError::new(ErrorCode::UnknownFactory, "No such factory")))?;
        }
        let secret = match &channel.secret {
            Some(secret) => Some(self.keys.encrypt(secret.expose(), id)?),
            None => None,
        };
        let updated = sqlx::query(
            "UPDATE notification_channels SET name = $2, url = $3, secret_encrypted = COALESCE($4, secret_encrypted),
                 email_to = $5, severities = $6, factory_id = $7, send_clears = $8, enabled = $9, updated_at = now()
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(&channel.name)
        .bind(&channel.url)
        .bind(secret)
        .bind(&channel.to)
        .bind(channel.severities.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .bind(channel.factory_id)
        .bind(channel.send_clears)
        .bind(channel.enabled)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(channel_not_found());
        }
        self.get_channel(id).await
    }

    /// Soft-deletes a channel; what it had not delivered yet is given up.
    pub async fn delete_channel(&self, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "UPDATE notification_channels SET deleted_at = now(), enabled = false, secret_encrypted = NULL
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(channel_not_found());
        }
        sqlx::query(
            "UPDATE notification_deliveries SET gave_up_at = now(), last_error = 'channel deleted'
             WHERE channel_id = $1 AND delivered_at IS NULL AND gave_up_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queues a test notification to a channel (the "Send test" button).
    pub async fn send_test_notification(&self, id: Uuid) -> Result<Delivery, StoreError> {
        let channel = self.get_channel(id).await?;
        let payload = serde_json::json!({
            "event": "test",
            "channel": { "id": channel.id, "name": channel.name },
            "message": "A test notification from factory-monitor",
            "sent_at": Utc::now(),
        });
        let delivery: i64 = sqlx::query_scalar(
            "INSERT INTO notification_deliveries (channel_id, event, payload) VALUES ($1, 'test', $2) RETURNING id",
        )
        .bind(id)
        .bind(sqlx::types::Json(payload))
        .fetch_one(&self.pool)
        .await?;
        let mut page = self
            .channel_deliveries(id, PageRequest { limit: 100, offset: 0 })
            .await?;
        page.data.retain(|d| d.id == delivery);
        page.data.pop().ok_or_else(channel_not_found)
    }

    /// A channel's notifications, newest first, each with its attempts.
    pub async fn channel_deliveries(&self, id: Uuid, page: PageRequest) -> Result<Page<Delivery>, StoreError> {
        self.get_channel(id).await?;
        #[derive(sqlx::FromRow)]
        struct Row {
            id: i64,
            alarm_id: Option<Uuid>,
            event: String,
            created_at: DateTime<Utc>,
            next_attempt_at: DateTime<Utc>,
            attempts: i32,
            delivered_at: Option<DateTime<Utc>>,
            gave_up_at: Option<DateTime<Utc>>,
            last_error: Option<String>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, alarm_id, event, created_at, next_attempt_at, attempts, delivered_at, gave_up_at, last_error
             FROM notification_deliveries WHERE channel_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(id)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_deliveries WHERE channel_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        #[derive(sqlx::FromRow)]
        struct Attempt {
            delivery_id: i64,
            at: DateTime<Utc>,
            status_code: Option<i32>,
            error: Option<String>,
            duration_ms: i32,
        }
        let attempts: Vec<Attempt> = sqlx::query_as(
            "SELECT delivery_id, at, status_code, error, duration_ms FROM notification_attempts
             WHERE delivery_id = ANY($1) ORDER BY id",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let deliveries = rows
            .into_iter()
            .map(|r| Delivery {
                id: r.id,
                channel_id: id,
                alarm_id: r.alarm_id,
                event: r.event,
                created_at: r.created_at,
                status: if r.delivered_at.is_some() {
                    "delivered"
                } else if r.gave_up_at.is_some() {
                    "failed"
                } else {
                    "pending"
                }
                .to_owned(),
                attempts: r.attempts.max(0) as u32,
                next_attempt_at: (r.delivered_at.is_none() && r.gave_up_at.is_none()).then_some(r.next_attempt_at),
                delivered_at: r.delivered_at,
                last_error: r.last_error,
                attempt_log: attempts
                    .iter()
                    .filter(|a| a.delivery_id == r.id)
                    .map(|a| DeliveryAttempt {
                        at: a.at,
                        status_code: a.status_code.map(|c| c as u16),
                        error: a.error.clone(),
                        duration_ms: a.duration_ms.max(0) as u32,
                    })
                    .collect(),
            })
            .collect();
        Ok(Page::new(deliveries, total as u64, page))
    }

    /// Claims up to `limit` due notifications for `lease` (no other instance takes them
    /// meanwhile; if this one dies they are due again when the lease ends).
    pub async fn claim_deliveries(&self, limit: u32, lease: Duration) -> Result<Vec<ClaimedDelivery>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: i64,
            channel_id: Uuid,
            kind: String,
            url: Option<String>,
            secret_encrypted: Option<String>,
            email_to: Option<String>,
            event: String,
            payload: sqlx::types::Json<serde_json::Value>,
            attempts: i32,
            created_at: DateTime<Utc>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "WITH due AS (
                SELECT d.id FROM notification_deliveries d
                WHERE d.delivered_at IS NULL AND d.gave_up_at IS NULL AND d.next_attempt_at <= now()
                ORDER BY d.next_attempt_at, d.id LIMIT $1 FOR UPDATE SKIP LOCKED
             )
             UPDATE notification_deliveries d SET next_attempt_at = now() + $2::interval
             FROM due, notification_channels c
             WHERE d.id = due.id AND c.id = d.channel_id
             RETURNING d.id, d.channel_id, c.kind, c.url, c.secret_encrypted, c.email_to, d.event, d.payload,
                       d.attempts, d.created_at",
        )
        .bind(i64::from(limit))
        .bind(format!("{} milliseconds", lease.as_millis()))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            // A secret that no key opens (its key was rotated away) fails this delivery
            // only: sending it unsigned would be worse, and the others must go out.
            let secret = match &row.secret_encrypted {
                Some(sealed) => match self.keys.decrypt(sealed, row.channel_id) {
                    Ok(secret) => Ok(Some(ChannelSecret::new(secret.expose()))),
                    Err(err) => Err(format!("the channel's secret cannot be decrypted: {err}")),
                },
                None => Ok(None),
            };
            claimed.push(ClaimedDelivery {
                id: row.id,
                channel_id: row.channel_id,
                kind: ChannelKind::parse(&row.kind).unwrap_or(ChannelKind::Webhook),
                url: row.url,
                secret,
                to: row.email_to,
                event: row.event,
                payload: row.payload.0,
                attempts: row.attempts.max(0) as u32,
                created_at: row.created_at,
            });
        }
        Ok(claimed)
    }

    /// Records a batch of attempts, `(delivery, outcome, retry_in)`, in one transaction:
    /// each delivered, or due again after its `retry_in`, or given up once it has been
    /// retried for [`DELIVERY_RETRY_HOURS`].
    pub async fn record_delivery_attempts(
        &self,
        attempts: &[(i64, AttemptOutcome, Duration)],
    ) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = attempts.iter().map(|a| a.0).collect();
        let delivered: Vec<bool> = attempts.iter().map(|a| a.1.delivered).collect();
        let codes: Vec<Option<i32>> = attempts.iter().map(|a| a.1.status_code.map(i32::from)).collect();
        let errors: Vec<Option<String>> = attempts
            .iter()
            .map(|a| a.1.error.as_deref().map(|e| e.chars().take(500).collect()))
            .collect();
        let millis: Vec<i32> = attempts
            .iter()
            .map(|a| a.1.duration.as_millis().min(i32::MAX as u128) as i32)
            .collect();
        let retry: Vec<f64> = attempts.iter().map(|a| a.2.as_secs_f64()).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO notification_attempts (delivery_id, status_code, error, duration_ms)
             SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::int[])",
        )
        .bind(&ids)
        .bind(&codes)
        .bind(&errors)
        .bind(&millis)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE notification_deliveries d SET attempts = d.attempts + 1, last_error = u.error,
                 delivered_at = CASE WHEN u.delivered THEN now() END,
                 next_attempt_at = CASE WHEN u.delivered THEN d.next_attempt_at
                                        ELSE now() + make_interval(secs => u.retry) END,
                 gave_up_at = CASE WHEN NOT u.delivered AND d.created_at <= now() - make_interval(hours => $5)
                                   THEN now() END
             FROM UNNEST($1::bigint[], $2::bool[], $3::text[], $4::float8[]) AS u(id, delivered, error, retry)
             WHERE d.id = u.id",
        )
        .bind(&ids)
        .bind(&delivered)
        .bind(&errors)
        .bind(&retry)
        .bind(DELIVERY_RETRY_HOURS as i32)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
