//! `/alarms`: open alarms first, then the rest, filtered by state, severity, factory
//! and machine from the URL, followed live; any signed-in user acknowledges one or many
//! with a note. `/alarms/:id`: one alarm, its timeline and, for a threshold, the value's
//! trend around it and the waveform and spectrum of the reading that raised it.

use super::{load_error, page_offset, query_value};
use crate::components::plots::{Plots, TrendChart};
use crate::components::{DataTable, Pager, UrlError};
use crate::event_stream::{follow_batches, Link, LinkBanner};
use crate::server_fns::alarms::{alarm_view, alarms_view, AcknowledgeAlarms, AlarmPageData, AlarmsPageData};
use crate::AlarmsChanged;
use domain::alarms::{Alarm, AlarmSort, AlarmState};
use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_params_map;
use std::collections::HashSet;
use uuid::Uuid;

/// What the alarm pages read of a stream frame.
#[derive(serde::Deserialize)]
struct AlarmsFrame {
    #[serde(default)]
    alarms: Vec<serde_json::Value>,
}

/// Follows the event stream from `as_of` and moves `changes` (and the navigation's
/// count) whenever an alarm changes.
fn follow_alarms(as_of: u64, changes: RwSignal<u32>, link: RwSignal<Link>) {
    let badge = use_context::<AlarmsChanged>();
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            let url = format!("/api/events?coalesce=true&last_event_id={as_of}");
            follow_batches(url, link, move |frame: AlarmsFrame| {
                if !frame.alarms.is_empty() {
                    changes.update(|n| *n += 1);
                    if let Some(AlarmsChanged(badge)) = badge {
                        badge.update(|n| *n += 1);
                    }
                }
            });
        }
    });
}

fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[component]
fn SeverityBadge(severity: domain::alarms::Severity) -> impl IntoView {
    let text = severity.as_str();
    view! { <span class=format!("badge severity-{text}")>{text}</span> }
}

#[component]
fn AlarmStateBadge(state: AlarmState) -> impl IntoView {
    view! { <span class=format!("badge alarm-{}", state.as_str())>{state.label()}</span> }
}

/// What an alarm is about: its gateway, or its sensor and machine, as links.
fn subject(alarm: &Alarm) -> AnyView {
    let machine = alarm.machine_id.map(|id| {
        let name = alarm.machine_name.clone().unwrap_or_else(|| "machine".into());
        view! { " on " <A href=format!("/machines/{id}")>{name}</A> }
    });
    match (alarm.serial, alarm.gateway_id) {
        (Some(serial), _) => view! { <span>{format!("Sensor {serial}")}{machine}</span> }.into_any(),
        (None, Some(gateway)) => {
            let name = alarm.gateway_name.clone().unwrap_or_else(|| "gateway".into());
            view! { <A href=format!("/gateways/{gateway}")>{name}</A> }.into_any()
        }
        _ => view! { <span>"—"</span> }.into_any(),
    }
}

#[component]
pub fn AlarmsPage() -> impl IntoView {
    let (state, severity, factory, machine, gateway, page) = (
        query_value("state"),
        query_value("severity"),
        query_value("factory_id"),
        query_value("machine_id"),
        query_value("gateway_id"),
        query_value("page"),
    );
    let sort = query_value("sort");
    let changes = RwSignal::new(0u32);
    let data = Resource::new(
        move || {
            let filters = (state.get(), severity.get(), factory.get(), machine.get(), gateway.get());
            (filters, sort.get(), page.get(), changes.get())
        },
        |((state, severity, factory, machine, gateway), sort, page, _)| {
            alarms_view(state, severity, factory, machine, gateway, sort, page_offset(page))
        },
    );
    view! {
        <header class="page-header">
            <h1>"Alarms"</h1>
            <p class="subtitle">"What needs someone's attention, newest first; acknowledge what you are dealing with"</p>
        </header>
        <UrlError />
        <Transition fallback=|| view! { <p>"Loading alarms…"</p> }>
            {move || data.get().map(|result| match result {
                Ok(page) => view! { <AlarmList page changes /> }.into_any(),
                Err(err) => load_error("alarms", err),
            })}
        </Transition>
    }
}

#[component]
fn AlarmList(page: AlarmsPageData, changes: RwSignal<u32>) -> impl IntoView {
    let link = RwSignal::new(Link::Connecting);
    follow_alarms(page.as_of, changes, link);
    let (state, severity, factory, machine, gateway, sort) = (
        query_value("state").get_untracked().unwrap_or_default(),
        query_value("severity").get_untracked().unwrap_or_default(),
        query_value("factory_id").get_untracked().unwrap_or_default(),
        query_value("machine_id").get_untracked().unwrap_or_default(),
        query_value("gateway_id").get_untracked().unwrap_or_default(),
        query_value("sort").get_untracked().unwrap_or_default(),
    );
    let options = |choices: Vec<(String, String)>, chosen: &str| {
        choices
            .into_iter()
            .map(|(value, text)| {
                let selected = value == chosen;
                view! { <option value=value selected=selected>{text}</option> }
            })
            .collect_view()
    };
    let states = [
        ("", "Any state"),
        ("active,acknowledged", "Open"),
        ("active", "Active"),
        ("acknowledged", "Acknowledged"),
        ("cleared", "Cleared, not acknowledged"),
        ("closed", "Closed"),
    ]
    .map(|(v, t)| (v.to_owned(), t.to_owned()))
    .to_vec();
    let severities = [("", "Any severity"), ("critical", "Critical"), ("warning", "Warning")]
        .map(|(v, t)| (v.to_owned(), t.to_owned()))
        .to_vec();
    let sorts = AlarmSort::ALL
        .map(|s| (s.as_str().to_owned(), s.label().to_owned()))
        .to_vec();
    let with_all = |all: &str, list: &[(Uuid, String)]| {
        std::iter::once((String::new(), all.to_owned()))
            .chain(list.iter().map(|(id, name)| (id.to_string(), name.clone())))
            .collect::<Vec<_>>()
    };
    let base = format!(
        "/alarms?state={state}&severity={severity}&factory_id={factory}&machine_id={machine}&gateway_id={gateway}&sort={sort}&"
    );
    let filters = view! {
        <Form method="GET" action="/alarms" attr:class="search" attr:role="search">
            <label for="alarm-state">"State"</label>
            <select id="alarm-state" name="state">{options(states, &state)}</select>
            <label for="alarm-severity">"Severity"</label>
            <select id="alarm-severity" name="severity">{options(severities, &severity)}</select>
            <label for="alarm-factory">"Factory"</label>
            <select id="alarm-factory" name="factory_id">{options(with_all("All factories", &page.factories), &factory)}</select>
            <label for="alarm-machine">"Machine"</label>
            <select id="alarm-machine" name="machine_id">{options(with_all("All machines", &page.machines), &machine)}</select>
            <label for="alarm-sort">"Sort"</label>
            <select id="alarm-sort" name="sort">{options(sorts, if sort.is_empty() { "open" } else { &sort })}</select>
            {(!gateway.is_empty()).then(|| view! { <input type="hidden" name="gateway_id" value=gateway.clone() /> })}
            <button type="submit">"Show"</button>
        </Form>
    };

    let selected = RwSignal::new(HashSet::<Uuid>::new());
    let note = RwSignal::new(String::new());
    let acknowledge = ServerAction::<AcknowledgeAlarms>::new();
    Effect::new(move |_| {
        if let Some(Ok(_)) = acknowledge.value().get() {
            selected.set(HashSet::new());
            note.set(String::new());
            changes.update(|n| *n += 1);
        }
    });
    let ack_error = move || {
        acknowledge
            .value()
            .get()
            .and_then(Result::err)
            .map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })
    };
    let total = page.alarms.pagination.total;
    let pagination = page.alarms.pagination;
    let open: Vec<Uuid> = page
        .alarms
        .data
        .iter()
        .filter(|a| a.acknowledged_at.is_none())
        .map(|a| a.id)
        .collect();
    let rows = page
        .alarms
        .data
        .into_iter()
        .map(|alarm| {
            let id = alarm.id;
            let can_ack = alarm.acknowledged_at.is_none();
            let checkbox = can_ack.then(|| {
                view! {
                    <input
                        type="checkbox"
                        aria-label=format!("Select alarm: {}", alarm.message)
                        prop:checked=move || selected.with(|s| s.contains(&id))
                        on:change=move |_| selected.update(|s| if !s.remove(&id) { s.insert(id); })
                    />
                }
            });
            let acknowledged = alarm
                .acknowledged_by
                .clone()
                .map(|by| match &alarm.note {
                    Some(note) => format!("{by}: {note}"),
                    None => by,
                })
                .unwrap_or_else(|| "—".into());
            let about = subject(&alarm);
            let message = alarm.message.clone();
            view! {
                <tr class=format!("alarm-row alarm-{}", alarm.state.as_str())>
                    <td>{checkbox}</td>
                    <td><SeverityBadge severity=alarm.severity /></td>
                    <td><AlarmStateBadge state=alarm.state /></td>
                    <td class="strong"><A href=format!("/alarms/{id}")>{message}</A></td>
                    <td>{about}</td>
                    <td class="hide-narrow">{when(alarm.raised_at)}</td>
                    <td class="hide-narrow">{acknowledged}</td>
                </tr>
            }
        })
        .collect_view();
    let table = if total == 0 {
        view! { <div class="empty"><h2>"No alarms"</h2><p>"Nothing matches; all quiet."</p></div> }.into_any()
    } else {
        view! {
            <h2>{format!("{total} {}", if total == 1 { "alarm" } else { "alarms" })}</h2>
            <form class="form inline-form" aria-label="Acknowledge alarms" on:submit=move |ev| {
                ev.prevent_default();
                let ids: Vec<Uuid> = selected.get_untracked().into_iter().collect();
                acknowledge.dispatch(AcknowledgeAlarms { ids, note: Some(note.get_untracked()) });
            }>
                <button type="button" on:click={
                    let open = open.clone();
                    move |_| selected.set(open.iter().copied().collect())
                }>"Select all open"</button>
                <label for="ack-note">"Note"</label>
                <input id="ack-note" name="note" maxlength=domain::alarms::NOTE_MAX
                    placeholder="e.g. Maintenance is on its way"
                    prop:value=move || note.get() on:input=move |ev| note.set(event_target_value(&ev)) />
                <button type="submit" class="primary" disabled=move || selected.with(HashSet::is_empty)>
                    {move || format!("Acknowledge selected ({})", selected.with(HashSet::len))}
                </button>
                {ack_error}
            </form>
            <DataTable
                label="Alarms"
                columns=vec![
                    ("", ""),
                    ("Severity", ""),
                    ("State", ""),
                    ("Alarm", ""),
                    ("Subject", ""),
                    ("Raised", "hide-narrow"),
                    ("Acknowledged", "hide-narrow"),
                ]
            >
                {rows}
            </DataTable>
            <Pager pagination base />
        }
        .into_any()
    };
    view! {
        <LinkBanner link />
        <section class="card">{filters}</section>
        <section class="card">{table}</section>
    }
}

#[component]
pub fn AlarmDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<Uuid>().ok());
    let changes = RwSignal::new(0u32);
    let data = Resource::new(
        move || (id(), changes.get()),
        |(id, _)| async move {
            match id {
                Some(id) => alarm_view(id).await,
                None => Err(domain::AppError::new(
                    domain::error::ErrorCode::AlarmNotFound,
                    "Alarm not found",
                )),
            }
        },
    );
    view! {
        <Transition fallback=|| view! { <p>"Loading alarm…"</p> }>
            {move || data.get().map(|result| match result {
                Ok(page) => view! { <AlarmDetail page changes /> }.into_any(),
                Err(err) => view! {
                    <div class="error-card" role="alert">
                        <h1>"Alarm unavailable"</h1>
                        <p>{err.message}</p>
                        <A href="/alarms">"Back to alarms"</A>
                    </div>
                }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn AlarmDetail(page: AlarmPageData, changes: RwSignal<u32>) -> impl IntoView {
    let link = RwSignal::new(Link::Connecting);
    follow_alarms(page.as_of, changes, link);
    let AlarmPageData {
        alarm, trend, plots, ..
    } = page;
    let id = alarm.id;
    let note = RwSignal::new(String::new());
    let acknowledge = ServerAction::<AcknowledgeAlarms>::new();
    Effect::new(move |_| {
        if let Some(Ok(_)) = acknowledge.value().get() {
            changes.update(|n| *n += 1);
        }
    });
    let mut timeline = match alarm.escalated_at {
        // The message is the escalation's; the raise was at the alert level.
        Some(at) => vec![
            (alarm.raised_at, "Raised: over the alert level".to_owned()),
            (at, format!("Escalated to danger: {}", alarm.message)),
        ],
        None => vec![(alarm.raised_at, format!("Raised: {}", alarm.message))],
    };
    if let Some(at) = alarm.acknowledged_at {
        let by = alarm.acknowledged_by.clone().unwrap_or_default();
        let note = alarm.note.clone().map(|n| format!(": “{n}”")).unwrap_or_default();
        timeline.push((at, format!("Acknowledged by {by}{note}")));
    }
    if let Some(at) = alarm.cleared_at {
        timeline.push((at, "Cleared: the condition ended".to_owned()));
    }
    timeline.sort_by_key(|(at, _)| *at);
    let timeline = timeline
        .into_iter()
        .map(|(at, text)| view! { <li><time>{when(at)}</time>" "{text}</li> })
        .collect_view();
    let ack_form = alarm.acknowledged_at.is_none().then(|| {
        view! {
            <form class="form inline-form" aria-label="Acknowledge alarm" on:submit=move |ev| {
                ev.prevent_default();
                acknowledge.dispatch(AcknowledgeAlarms { ids: vec![id], note: Some(note.get_untracked()) });
            }>
                <label for="ack-note">"Note"</label>
                <input id="ack-note" maxlength=domain::alarms::NOTE_MAX placeholder="e.g. Bearing ordered"
                    prop:value=move || note.get() on:input=move |ev| note.set(event_target_value(&ev)) />
                <button type="submit" class="primary">"Acknowledge"</button>
            </form>
        }
    });
    let value = alarm
        .value
        .map(|v| {
            let unit = alarm.rule.value.map(|v| v.unit()).unwrap_or("");
            format!("{v:.3} {unit}")
        })
        .unwrap_or_else(|| "—".into());
    let trend = trend.map(|trend| {
        let label = format!("Sensor {}", alarm.serial.unwrap_or_default());
        view! { <section class="card"><TrendChart trend label href_of=move |_| format!("/alarms/{id}") /></section> }
    });
    let plots = plots.map(|result| match result {
        Ok(plots) => view! { <Plots plots /> }.into_any(),
        Err(err) => {
            view! { <p class="form-error" role="alert">{format!("The reading: {}", err.message)}</p> }.into_any()
        }
    });
    view! {
        <LinkBanner link />
        <header class="page-header">
            <p class="breadcrumb"><A href="/alarms">"Alarms"</A></p>
            <h1>{alarm.message.clone()}</h1>
            <p class="subtitle">
                <SeverityBadge severity=alarm.severity />" "<AlarmStateBadge state=alarm.state />
            </p>
        </header>
        <section class="card">
            <dl class="facts">
                <dt>"Subject"</dt><dd>{subject(&alarm)}</dd>
                <dt>"Rule"</dt><dd>{format!("{}: {}", alarm.rule.name, alarm.rule.describe())}</dd>
                <dt>"Level"</dt><dd>{alarm.level.clone().unwrap_or_else(|| "—".into())}</dd>
                <dt>"Value"</dt><dd>{value}</dd>
            </dl>
            <h2>"Timeline"</h2>
            <ol class="timeline">{timeline}</ol>
            {ack_form}
        </section>
        {trend}
        {plots}
    }
}

lazy_page!(AlarmsRoute, AlarmsPage);
lazy_page!(AlarmDetailRoute, AlarmDetailPage);
