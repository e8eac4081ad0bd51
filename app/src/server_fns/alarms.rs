//! Server functions of the alarm pages: alarms (any signed-in user may acknowledge),
//! rules and notification channels (admins change them).

use domain::alarms::{Alarm, AlarmCounts, AlarmRule, Delivery, NotificationChannel};
use domain::machines::Trend;
use domain::{AppError, Page};
use leptos::server;
use uuid::Uuid;

#[cfg(feature = "ssr")]
use crate::ssr;

/// How many alarms are open, for the navigation's badge (zero when signed out).
#[server(prefix = "/rpc", endpoint = "open_alarm_counts")]
pub async fn open_alarm_counts() -> Result<AlarmCounts, AppError> {
    // Not `require_user`: that gives the page being rendered its 401 or 403, and this
    // is read on every page, /login and the password change included.
    let signed_in = ssr::current_user()
        .await?
        .is_some_and(|user| !user.must_change_password);
    if !signed_in {
        return Ok(AlarmCounts::default());
    }
    Ok(ssr::store()?.alarm_counts().await?)
}

/// The Alarms page's data: a page of alarms as the URL filters them, the factories and
/// machines to filter by, and the live stream's position it is as new as.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlarmsPageData {
    pub alarms: Page<Alarm>,
    pub factories: Vec<(Uuid, String)>,
    pub machines: Vec<(Uuid, String)>,
    pub as_of: u64,
}

#[cfg(feature = "ssr")]
fn stream_position() -> u64 {
    leptos::prelude::use_context::<orchestrator::Orchestrator>()
        .map(|o| o.stream_position())
        .unwrap_or_default()
}

/// Alarms filtered and sorted as `GET /api/alarms` does (`state` may list several, comma-separated).
#[server(prefix = "/rpc", endpoint = "alarms_view")]
pub async fn alarms_view(
    state: Option<String>,
    severity: Option<String>,
    factory_id: Option<String>,
    machine_id: Option<String>,
    gateway_id: Option<String>,
    sort: Option<String>,
    offset: u64,
) -> Result<AlarmsPageData, AppError> {
    ssr::require_user().await?;
    let store = ssr::store()?;
    let as_of = stream_position();
    let filter = domain::alarms::AlarmQuery {
        state: state.as_deref(),
        severity: severity.as_deref(),
        factory_id: factory_id.as_deref(),
        machine_id: machine_id.as_deref(),
        gateway_id: gateway_id.as_deref(),
        serial: None,
        sort: sort.as_deref(),
    }
    .parse()?;
    let page = domain::PageRequest {
        limit: domain::page::DEFAULT_LIMIT,
        offset,
    };
    let alarms = store.list_alarms(&filter, page).await?;
    let factories = store.factory_names().await?;
    let machines = store
        .machine_choices()
        .await?
        .into_iter()
        .map(|(id, machine, factory, _)| (id, format!("{factory} / {machine}")))
        .collect();
    Ok(AlarmsPageData {
        alarms,
        factories,
        machines,
        as_of,
    })
}

/// Acknowledges the alarms `ids` (one or many) with a note; any signed-in user may.
#[server(prefix = "/rpc", endpoint = "acknowledge_alarms")]
pub async fn acknowledge_alarms(ids: Vec<Uuid>, note: Option<String>) -> Result<usize, AppError> {
    let user = ssr::require_user().await?;
    let note = domain::alarms::AcknowledgeInput { note }.validate()?;
    if ids.is_empty() {
        return Err(AppError::validation(vec![domain::FieldError::new(
            "ids",
            "choose at least one alarm",
        )]));
    }
    let store = ssr::store()?;
    for id in &ids {
        store.acknowledge_alarm(*id, &user.email, note.as_deref()).await?;
    }
    Ok(ids.len())
}

/// An alarm's page: the alarm and, for a threshold, its value's trend around it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlarmPageData {
    pub alarm: Alarm,
    pub trend: Option<Trend>,
    /// The waveform and spectrum of the reading that raised it (loaded here, with the
    /// page's data: a resource nested in the page would break its hydration).
    pub plots: Option<Result<crate::server_fns::live::ReadingCharts, AppError>>,
    pub as_of: u64,
}

#[server(prefix = "/rpc", endpoint = "alarm_view")]
pub async fn alarm_view(id: Uuid) -> Result<AlarmPageData, AppError> {
    ssr::require_user().await?;
    let store = ssr::store()?;
    let as_of = stream_position();
    let alarm = store.get_alarm(id).await?;
    let trend = match (alarm.serial, alarm.rule.value) {
        (Some(serial), Some(value)) => {
            // Three days either side of the raise (or up to now).
            let from = alarm.raised_at - chrono::Duration::days(3);
            let to = (alarm.raised_at + chrono::Duration::days(3)).min(chrono::Utc::now());
            let request = domain::machines::TrendRequest::parse(
                Some(value.as_str()),
                Some(&from.to_rfc3339()),
                Some(&to.to_rfc3339()),
                Some(&crate::server_fns::machines::PLOT_BUCKETS.to_string()),
                chrono::Utc::now(),
            )?;
            let trend = store.sensor_trend(serial, request).await?;
            Some(crate::server_fns::machines::without_axes(trend))
        }
        _ => None,
    };
    let plots = match alarm.reading_id {
        Some(reading) => Some(crate::server_fns::live::reading_plots(reading, 1200).await),
        None => None,
    };
    Ok(AlarmPageData {
        alarm,
        trend,
        plots,
        as_of,
    })
}

/// Rules, with the names of the factories, machines and gateways they are scoped to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RulesPageData {
    pub rules: Vec<AlarmRule>,
    pub factories: Vec<(Uuid, String)>,
    /// Each machine as "factory / machine", with its ISO 20816 velocity levels when set.
    pub machines: Vec<(Uuid, String)>,
    pub can_edit: bool,
}

#[server(prefix = "/rpc", endpoint = "rules_view")]
pub async fn rules_view() -> Result<RulesPageData, AppError> {
    let user = ssr::require_user().await?;
    let store = ssr::store()?;
    let rules = store
        .list_alarm_rules(domain::PageRequest { limit: 100, offset: 0 })
        .await?
        .data;
    Ok(RulesPageData {
        rules,
        factories: store.factory_names().await?,
        machines: store
            .machine_choices()
            .await?
            .into_iter()
            .map(|(id, machine, factory, group)| {
                let levels = group
                    .and_then(|g| domain::machines::iso_zone_limits(u8::try_from(g).ok()?))
                    .map(|[_, alert, danger]| format!(" (ISO group: velocity alert {alert}, danger {danger} mm/s)"))
                    .unwrap_or_default();
                (id, format!("{factory} / {machine}{levels}"))
            })
            .collect(),
        can_edit: user.is_admin(),
    })
}

/// A form's optional value: blank is none.
#[cfg(feature = "ssr")]
fn given(raw: Option<String>) -> Option<String> {
    raw.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty())
}

/// A form's optional number, passed on as text when it is none, for the domain's check to name.
#[cfg(feature = "ssr")]
fn number(raw: Option<String>) -> Option<serde_json::Value> {
    given(raw).map(|raw| match raw.parse::<f64>() {
        Ok(n) => serde_json::json!(n),
        Err(_) => serde_json::Value::String(raw),
    })
}

/// Where a refused form goes back to: `page`, editing `id` when one is given.
#[cfg(feature = "ssr")]
fn form_page(page: &str, id: Option<&str>) -> String {
    match id.map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => format!("{page}?edit={}", domain::links::encode_query_value(id)),
        None => page.to_owned(),
    }
}

/// A form's `id` (blank when it adds a new rule or channel).
#[cfg(feature = "ssr")]
fn editing(id: Option<String>) -> Result<Option<Uuid>, AppError> {
    match given(id) {
        None => Ok(None),
        Some(raw) => domain::validate::parse_uuid(&raw)
            .map(Some)
            .ok_or_else(|| AppError::validation(vec![domain::FieldError::new("id", "must be a UUID")])),
    }
}

/// Adds a rule, or changes the one `id` names (its kind and enabled flag stay; a blank
/// field is none, as in the form).
#[allow(clippy::too_many_arguments)]
#[server(prefix = "/rpc", endpoint = "save_alarm_rule")]
pub async fn save_alarm_rule(
    id: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    severity: String,
    delay_seconds: Option<String>,
    factory_id: Option<String>,
    machine_id: Option<String>,
    gateway_id: Option<String>,
    serial: Option<String>,
    value: Option<String>,
    alert: Option<String>,
    danger: Option<String>,
    consecutive: Option<String>,
    hysteresis: Option<String>,
) -> Result<AlarmRule, AppError> {
    // Kept for a refused plain form post (no JavaScript yet): the form comes back filled in.
    let kept = [
        ("name", name.clone().unwrap_or_default()),
        ("kind", kind.clone().unwrap_or_default()),
        ("severity", severity.clone()),
        ("delay_seconds", delay_seconds.clone().unwrap_or_default()),
        ("factory_id", factory_id.clone().unwrap_or_default()),
        ("machine_id", machine_id.clone().unwrap_or_default()),
        ("serial", serial.clone().unwrap_or_default()),
        ("value", value.clone().unwrap_or_default()),
        ("alert", alert.clone().unwrap_or_default()),
        ("danger", danger.clone().unwrap_or_default()),
        ("consecutive", consecutive.clone().unwrap_or_default()),
        ("hysteresis", hysteresis.clone().unwrap_or_default()),
    ];
    let retry = form_page("/alarm-rules", id.as_deref());
    let saved = async {
        let user = ssr::require_admin().await?;
        let store = ssr::store()?;
        let editing = editing(id)?;
        let stored = match editing {
            Some(id) => Some(store.get_alarm_rule(id).await?),
            None => None,
        };
        let input = domain::alarms::AlarmRuleInput {
            name: given(name),
            kind: stored.as_ref().map(|r| r.kind.as_str().to_owned()).or(kind),
            severity: Some(severity),
            enabled: stored.as_ref().map(|r| r.enabled),
            delay_seconds: number(delay_seconds),
            factory_id: given(factory_id),
            machine_id: given(machine_id),
            gateway_id: given(gateway_id),
            serial: number(serial),
            value: given(value),
            alert: number(alert),
            danger: number(danger),
            consecutive: number(consecutive),
            hysteresis: number(hysteresis),
        };
        let rule = input.validate()?;
        let saved = match editing {
            Some(id) => store.update_alarm_rule(id, rule).await?,
            None => store.create_alarm_rule(rule).await?,
        };
        tracing::info!(rule_id = %saved.id, user_id = %user.id, created = editing.is_none(), "alarm rule saved");
        Ok(saved)
    }
    .await;
    ssr::answer_form_keeping("/alarm-rules", &retry, &kept, saved)
}

#[server(prefix = "/rpc", endpoint = "set_alarm_rule_enabled")]
pub async fn set_alarm_rule_enabled(id: Uuid, enabled: bool) -> Result<AlarmRule, AppError> {
    ssr::require_admin().await?;
    let store = ssr::store()?;
    let rule = store.get_alarm_rule(id).await?;
    let patch = domain::alarms::AlarmRulePatch {
        enabled: Some(enabled),
        ..Default::default()
    };
    Ok(store.update_alarm_rule(id, patch.apply(&rule)?).await?)
}

#[server(prefix = "/rpc", endpoint = "delete_alarm_rule")]
pub async fn delete_alarm_rule(id: Uuid) -> Result<(), AppError> {
    ssr::require_admin().await?;
    Ok(ssr::store()?.delete_alarm_rule(id).await?)
}

/// A channel with its latest deliveries.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelWithLog {
    pub channel: NotificationChannel,
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelsPageData {
    pub channels: Vec<ChannelWithLog>,
    pub factories: Vec<(Uuid, String)>,
}

#[server(prefix = "/rpc", endpoint = "channels_view")]
pub async fn channels_view() -> Result<ChannelsPageData, AppError> {
    ssr::require_admin().await?;
    let store = ssr::store()?;
    let channels = store
        .list_channels(domain::PageRequest { limit: 100, offset: 0 })
        .await?
        .data;
    let mut out = Vec::with_capacity(channels.len());
    for channel in channels {
        let deliveries = store
            .channel_deliveries(channel.id, domain::PageRequest { limit: 10, offset: 0 })
            .await?
            .data;
        out.push(ChannelWithLog { channel, deliveries });
    }
    Ok(ChannelsPageData {
        channels: out,
        factories: store.factory_names().await?,
    })
}

/// Adds a channel, or changes the one `id` names. Severities are two checkboxes
/// (`warning`, `critical`) and `send_clears` one; a blank secret keeps the stored one.
#[allow(clippy::too_many_arguments)]
#[server(prefix = "/rpc", endpoint = "save_channel")]
pub async fn save_channel(
    id: Option<String>,
    kind: Option<String>,
    name: String,
    url: Option<String>,
    secret: Option<String>,
    to: Option<String>,
    warning: Option<String>,
    critical: Option<String>,
    factory_id: Option<String>,
    send_clears: Option<String>,
) -> Result<NotificationChannel, AppError> {
    // The secret is never kept in a URL.
    let kept = [
        ("kind", kind.clone().unwrap_or_default()),
        ("name", name.clone()),
        ("url", url.clone().unwrap_or_default()),
        ("to", to.clone().unwrap_or_default()),
        ("factory_id", factory_id.clone().unwrap_or_default()),
    ];
    let retry = form_page("/notification-channels", id.as_deref());
    let saved = async {
        let user = ssr::require_admin().await?;
        let store = ssr::store()?;
        let editing = editing(id)?;
        let stored = match editing {
            Some(id) => Some(store.get_channel(id).await?),
            None => None,
        };
        let severities = [("warning", &warning), ("critical", &critical)]
            .into_iter()
            .filter(|(_, checked)| checked.is_some())
            .map(|(severity, _)| severity.to_owned())
            .collect();
        let input = domain::alarms::ChannelInput {
            kind: if stored.is_some() { None } else { kind },
            name: Some(name),
            url: given(url),
            secret: given(secret).map(domain::ChannelSecret::new),
            to: given(to),
            severities: Some(severities),
            factory_id: Some(given(factory_id)),
            send_clears: Some(send_clears.is_some()),
            enabled: None,
        };
        let channel = input.validate(stored.as_ref())?;
        let saved = match editing {
            Some(id) => store.update_channel(id, channel).await?,
            None => store.create_channel(channel).await?,
        };
        tracing::info!(channel_id = %saved.id, user_id = %user.id, created = editing.is_none(), "notification channel saved");
        Ok(saved)
    }
    .await;
    ssr::answer_form_keeping("/notification-channels", &retry, &kept, saved)
}

#[server(prefix = "/rpc", endpoint = "delete_channel")]
pub async fn delete_channel(id: Uuid) -> Result<(), AppError> {
    ssr::require_admin().await?;
    Ok(ssr::store()?.delete_channel(id).await?)
}

#[server(prefix = "/rpc", endpoint = "send_test_notification")]
pub async fn send_test_notification(id: Uuid) -> Result<Delivery, AppError> {
    ssr::require_admin().await?;
    Ok(ssr::store()?.send_test_notification(id).await?)
}
