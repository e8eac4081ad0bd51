//! Server functions of the machine pages: machines and their measurement points,
//! sensors' schedules and trends. Reading is for signed-in users, changing for admins.

use domain::machines::{Machine, ScheduleDefault, SensorLocation, SensorSchedule, Trend};
use domain::{AppError, Page};
use leptos::server;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

/// The trend ranges the machine page offers (`?range=`), with their length in hours;
/// `custom` takes `from` and `to` dates instead.
pub const TREND_RANGES: [(&str, &str, i64); 4] = [
    ("24h", "24 h", 24),
    ("7d", "7 d", 24 * 7),
    ("30d", "30 d", 24 * 30),
    ("1y", "1 y", 24 * 365),
];
pub const DEFAULT_RANGE: &str = "30d";
/// Buckets in a plotted trend: about one per two pixels of a desktop plot.
pub const PLOT_BUCKETS: u32 = 250;

/// Active machines by name (all factories, or one).
#[server(prefix = "/rpc", endpoint = "list_machines")]
pub async fn list_machines(factory_id: Option<Uuid>, offset: u64) -> Result<Page<Machine>, AppError> {
    ssr::require_user().await?;
    let page = domain::PageRequest {
        limit: domain::page::DEFAULT_LIMIT,
        offset,
    };
    Ok(ssr::store()?.list_machines(factory_id, page).await?)
}

/// A measurement point's sensor: its schedule and where it was last heard.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PointSensor {
    pub serial: u64,
    pub schedule: Option<SensorSchedule>,
    pub location: Option<SensorLocation>,
}

/// Everything the machine page shows but the trends (those follow the URL).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MachinePageData {
    pub machine: Machine,
    pub factory_name: String,
    pub sensors: Vec<PointSensor>,
    /// The schedule the machine's sensors follow unless they have their own.
    pub default_schedule: Option<ScheduleDefault>,
    /// Each point's name and trend of the value and range asked for, in point order.
    pub trends: Vec<(String, Result<Trend, AppError>)>,
    pub can_edit: bool,
    /// The live stream's position this view is as new as (readings finishing after
    /// it bring the trends again).
    pub as_of: u64,
    /// The machine's alarms, open ones first.
    pub alarms: Vec<domain::alarms::Alarm>,
}

/// The machine page's data; the trends are of `value` over `range` (see
/// [`range_bounds`]), as the page's URL chose them.
#[server(prefix = "/rpc", endpoint = "machine_view")]
pub async fn machine_view(
    id: Uuid,
    value: Option<String>,
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> Result<MachinePageData, AppError> {
    let user = ssr::require_user().await?;
    let store = ssr::store()?;
    let as_of = leptos::prelude::use_context::<orchestrator::Orchestrator>()
        .map(|o| o.stream_position())
        .unwrap_or_default();
    let machine = store.get_machine(id).await?;
    let factory_name = store
        .get_factory(machine.factory_id)
        .await
        .map(|f| f.name)
        .unwrap_or_default();
    let serials: Vec<u64> = machine.points.iter().map(|p| p.serial).collect();
    let mut locations = store.sensor_locations(&serials).await?;
    let mut sensors = Vec::with_capacity(serials.len());
    for serial in serials {
        let location = locations
            .iter()
            .position(|l| l.serial == serial)
            .map(|i| locations.swap_remove(i));
        sensors.push(PointSensor {
            serial,
            schedule: store.get_schedule(serial).await.ok(),
            location,
        });
    }
    let now = chrono::Utc::now();
    let range = range.unwrap_or_else(|| DEFAULT_RANGE.to_owned());
    let bounds = range_bounds(&range, from.as_deref(), to.as_deref(), now);
    let buckets = PLOT_BUCKETS.to_string();
    let mut trends = Vec::with_capacity(machine.points.len());
    for point in &machine.points {
        let trend = match &bounds {
            Ok((from, to)) => {
                match domain::machines::TrendRequest::parse(value.as_deref(), Some(from), Some(to), Some(&buckets), now)
                {
                    Ok(request) => store
                        .sensor_trend(point.serial, request)
                        .await
                        .map(without_axes)
                        .map_err(AppError::from),
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err.clone()),
        };
        trends.push((point.name.clone(), trend));
    }
    let default_schedule = store
        .get_schedule_default(domain::machines::ScheduleScope::Machine(id))
        .await?;
    let alarms = domain::alarms::AlarmFilter {
        machine_id: Some(id),
        ..Default::default()
    };
    let alarms = store
        .list_alarms(&alarms, domain::PageRequest { limit: 10, offset: 0 })
        .await?
        .data;
    Ok(MachinePageData {
        alarms,
        machine,
        factory_name,
        sensors,
        default_schedule,
        trends,
        can_edit: user.role.can_write(),
        as_of,
    })
}

/// The time range of `range` (`24h`, `7d`, `30d`, `1y`; `custom` with `from`/`to` as
/// dates, `to` included) ending now, as RFC 3339 `from`/`to` for [`domain::machines::TrendRequest`].
pub fn range_bounds(
    range: &str,
    from: Option<&str>,
    to: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, String), AppError> {
    if range == "custom" {
        let date = |field: &str, raw: Option<&str>| {
            raw.and_then(|raw| chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").ok())
                .ok_or_else(|| {
                    AppError::validation(vec![domain::FieldError::new(field, "must be a date (YYYY-MM-DD)")])
                })
        };
        let from = date("from", from)?.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
        let to = (date("to", to)? + chrono::Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        return Ok((from.to_rfc3339(), to.to_rfc3339()));
    }
    let hours = TREND_RANGES
        .iter()
        .find(|(name, _, _)| *name == range)
        .map_or(24 * 30, |(_, _, hours)| *hours);
    Ok(((now - chrono::Duration::hours(hours)).to_rfc3339(), now.to_rfc3339()))
}

/// A trend without its per-axis ranges: the plot draws the worst axis only, and the
/// page (and its hydration data) is a third lighter without them.
#[cfg(feature = "ssr")]
pub(crate) fn without_axes(mut trend: Trend) -> Trend {
    for bucket in &mut trend.data {
        (bucket.x, bucket.y, bucket.z) = (None, None, None);
    }
    trend
}

/// One sensor's trend of `value` over `range` (see [`range_bounds`]) ending at `now`
/// (RFC 3339; the present when none), in [`PLOT_BUCKETS`].
#[server(prefix = "/rpc", endpoint = "sensor_trend")]
pub async fn sensor_trend(
    serial: u64,
    value: String,
    range: String,
    from: Option<String>,
    to: Option<String>,
    now: Option<String>,
) -> Result<Trend, AppError> {
    ssr::require_user().await?;
    let now = now
        .and_then(|now| chrono::DateTime::parse_from_rfc3339(&now).ok())
        .map_or_else(chrono::Utc::now, |now| now.with_timezone(&chrono::Utc));
    let (from, to) = range_bounds(&range, from.as_deref(), to.as_deref(), now)?;
    let buckets = PLOT_BUCKETS.to_string();
    let request = domain::machines::TrendRequest::parse(Some(&value), Some(&from), Some(&to), Some(&buckets), now)?;
    Ok(without_axes(ssr::store()?.sensor_trend(serial, request).await?))
}

/// A form's optional number: blank is none; text that is no number is passed on as
/// text, for the domain's check to name.
#[cfg(feature = "ssr")]
fn form_number(raw: &str) -> Option<serde_json::Value> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    Some(match raw.parse::<f64>() {
        Ok(n) => serde_json::json!(n),
        Err(_) => serde_json::Value::String(raw.to_owned()),
    })
}

#[allow(clippy::too_many_arguments)]
#[server(prefix = "/rpc", endpoint = "create_machine")]
pub async fn create_machine(
    factory_id: String,
    name: String,
    kind: String,
    rpm: String,
    iso_group: String,
    criticality: String,
    area: String,
) -> Result<Machine, AppError> {
    let kept = [
        ("factory_id", factory_id.clone()),
        ("name", name.clone()),
        ("kind", kind.clone()),
        ("rpm", rpm.clone()),
        ("iso_group", iso_group.clone()),
        ("criticality", criticality.clone()),
        ("area", area.clone()),
    ];
    let created: Result<Machine, AppError> = async {
        let user = ssr::require_admin().await?;
        let input = domain::machines::MachineInput {
            factory_id: Some(factory_id),
            name: Some(name),
            kind: Some(kind),
            rpm: form_number(&rpm),
            iso_group: form_number(&iso_group),
            criticality: Some(criticality),
            area: Some(area),
            ..Default::default()
        }
        .validate()?;
        let machine = ssr::store()?.create_machine(input).await?;
        tracing::info!(machine_id = %machine.id, user_id = %user.id, "machine created");
        Ok(machine)
    }
    .await;
    let page = match &created {
        Ok(machine) => format!("/machines/{}", machine.id),
        Err(_) => "/machines".to_owned(),
    };
    ssr::answer_form_keeping(&page, "/machines", &kept, created)
}

#[server(prefix = "/rpc", endpoint = "delete_machine")]
pub async fn delete_machine(id: Uuid) -> Result<String, AppError> {
    let result: Result<String, AppError> = async {
        let user = ssr::require_admin().await?;
        let store = ssr::store()?;
        let machine = store.get_machine(id).await?;
        store.delete_machine(id).await?;
        tracing::info!(machine_id = %id, user_id = %user.id, "machine deleted");
        Ok(machine.name)
    }
    .await;
    ssr::answer_form("/machines", result)
}

/// Puts a sensor on a new measurement point of the machine.
#[server(prefix = "/rpc", endpoint = "add_point")]
pub async fn add_point(machine: Uuid, name: String, serial: String) -> Result<(), AppError> {
    let kept = [("name", name.clone()), ("serial", serial.clone())];
    let added: Result<(), AppError> = async {
        let user = ssr::require_admin().await?;
        let point = domain::machines::PointInput {
            name: Some(name),
            serial: Some(serde_json::Value::String(serial)),
        }
        .validate()?;
        let point = ssr::store()?.add_point(machine, point).await?;
        tracing::info!(machine_id = %machine, point_id = %point.id, user_id = %user.id, "measurement point added");
        Ok(())
    }
    .await;
    let page = format!("/machines/{machine}");
    ssr::answer_form_keeping(&page, &page, &kept, added)
}

#[server(prefix = "/rpc", endpoint = "remove_point")]
pub async fn remove_point(machine: Uuid, point: Uuid) -> Result<(), AppError> {
    let result: Result<(), AppError> = async {
        let user = ssr::require_admin().await?;
        ssr::store()?.delete_point(machine, point).await?;
        tracing::info!(machine_id = %machine, point_id = %point, user_id = %user.id, "measurement point removed");
        Ok(())
    }
    .await;
    ssr::answer_form(&format!("/machines/{machine}"), result)
}

/// A schedule from a form: every `interval_minutes`, on when `enabled` is ticked (a
/// checkbox sends nothing when it is not). The limits are named in minutes, as asked.
#[cfg(feature = "ssr")]
fn schedule_from_form(
    interval_minutes: &str,
    enabled: Option<String>,
) -> Result<domain::machines::NewSchedule, AppError> {
    let (min, max) = (
        domain::machines::SCHEDULE_MIN_SECONDS / 60,
        domain::machines::SCHEDULE_MAX_SECONDS / 60,
    );
    let minutes = interval_minutes
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|m| (min..=max).contains(m))
        .ok_or_else(|| {
            AppError::validation(vec![domain::FieldError::new(
                "interval_minutes",
                format!("must be a whole number of minutes from {min} (a reading can take a minute) to {max}"),
            )])
        })?;
    domain::machines::ScheduleInput {
        interval_seconds: Some(serde_json::json!(minutes * 60)),
        enabled: Some(enabled.is_some()),
    }
    .validate()
}

/// Sets a sensor's own schedule from the machine page.
#[server(prefix = "/rpc", endpoint = "set_schedule")]
pub async fn set_schedule(
    machine: Uuid,
    serial: u64,
    interval_minutes: String,
    enabled: Option<String>,
) -> Result<SensorSchedule, AppError> {
    let result: Result<SensorSchedule, AppError> = async {
        let user = ssr::require_admin().await?;
        let schedule = schedule_from_form(&interval_minutes, enabled)?;
        let schedule = ssr::store()?.put_schedule(serial, schedule).await?;
        tracing::info!(serial, enabled = schedule.enabled, user_id = %user.id, "schedule set");
        Ok(schedule)
    }
    .await;
    ssr::answer_form(&format!("/machines/{machine}"), result)
}

/// Drops a sensor's own schedule: it follows the machine's or factory's default again.
#[server(prefix = "/rpc", endpoint = "use_default_schedule")]
pub async fn use_default_schedule(machine: Uuid, serial: u64) -> Result<SensorSchedule, AppError> {
    let result: Result<SensorSchedule, AppError> = async {
        let user = ssr::require_admin().await?;
        let schedule = ssr::store()?.delete_schedule(serial).await?;
        tracing::info!(serial, user_id = %user.id, "schedule back to default");
        Ok(schedule)
    }
    .await;
    ssr::answer_form(&format!("/machines/{machine}"), result)
}

/// Sets the default schedule of the machine's sensors.
#[server(prefix = "/rpc", endpoint = "set_machine_schedule")]
pub async fn set_machine_schedule(
    machine: Uuid,
    interval_minutes: String,
    enabled: Option<String>,
) -> Result<ScheduleDefault, AppError> {
    let result: Result<ScheduleDefault, AppError> = async {
        let user = ssr::require_admin().await?;
        let schedule = schedule_from_form(&interval_minutes, enabled)?;
        let scope = domain::machines::ScheduleScope::Machine(machine);
        let default = ssr::store()?.put_schedule_default(scope, schedule).await?;
        tracing::info!(machine_id = %machine, enabled = default.enabled, user_id = %user.id, "machine schedule set");
        Ok(default)
    }
    .await;
    ssr::answer_form(&format!("/machines/{machine}"), result)
}
