//! `/machines/:id`: a machine, its measurement points with their sensors and
//! schedules, a trend per point of the value and range chosen in the URL (`?value=`,
//! `?range=`, `?from=`/`?to=` for a custom range), and for the point clicked
//! (`?reading=ID`) that reading's waveform and spectrum.

use super::query_value;
use crate::components::alarms::RecentAlarms;
use crate::components::plots::{value_label, Plots, TrendChart};
use crate::components::{DataTable, FormError, TextField, UrlError};
use crate::event_stream::{follow_batches, Link, LinkBanner};
use crate::server_fns::live::{reading_plots, TakeReading};
use crate::server_fns::machines::{
    machine_view, AddPoint, DeleteMachine, MachinePageData, PointSensor, RemovePoint, SetMachineSchedule, SetSchedule,
    UseDefaultSchedule, DEFAULT_RANGE, TREND_RANGES,
};
use domain::live::{ReadingProgress, ReadingStage};
use domain::machines::{ScheduleSource, TrendValue};
use domain::AppError;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::{use_navigate, use_params_map};
use std::collections::HashMap;
use uuid::Uuid;

#[component]
pub fn MachineDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<Uuid>().ok());
    let (value, range, from, to) = (
        query_value("value"),
        query_value("range"),
        query_value("from"),
        query_value("to"),
    );
    // Moved by every change made here, and by readings of this machine's sensors ending:
    // the page's data (trends included) is read again.
    let changes = RwSignal::new(0u32);
    // Kept here, not in the view the data renders, so a reload keeps what is under way.
    let progress = RwSignal::new(HashMap::<u64, ReadingProgress>::new());
    let data = Resource::new(
        move || (id(), value.get(), range.get(), from.get(), to.get(), changes.get()),
        |(id, value, range, from, to, _)| async move {
            match id {
                Some(id) => machine_view(id, value, range, from, to).await,
                None => Err(AppError::new(
                    domain::error::ErrorCode::MachineNotFound,
                    "Machine not found",
                )),
            }
        },
    );
    view! {
        <Transition fallback=|| view! { <p>"Loading machine…"</p> }>
            {move || {
                data.get()
                    .map(|result| match result {
                        Ok(page) => view! { <MachineDetail page changes progress /> }.into_any(),
                        Err(err) => {
                            view! {
                                <div class="error-card" role="alert">
                                    <h1>"Machine unavailable"</h1>
                                    <p>{err.message}</p>
                                    <A href="/machines">"Back to machines"</A>
                                </div>
                            }
                                .into_any()
                        }
                    })
            }}
        </Transition>
    }
}

/// What this page reads of a stream frame: the reading steps.
#[derive(serde::Deserialize)]
struct ReadingsFrame {
    #[serde(default)]
    readings: Vec<ReadingProgress>,
}

#[component]
fn MachineDetail(
    page: MachinePageData,
    changes: RwSignal<u32>,
    progress: RwSignal<HashMap<u64, ReadingProgress>>,
) -> impl IntoView {
    let machine = page.machine.clone();
    let machine_id = machine.id;
    let serials: Vec<u64> = machine.points.iter().map(|p| p.serial).collect();
    let (value, range, from, to) = (
        query_value("value"),
        query_value("range"),
        query_value("from"),
        query_value("to"),
    );
    let reading = query_value("reading");
    let chosen_value = Memo::new(move |_| {
        value
            .get()
            .and_then(|v| TrendValue::parse(&v))
            .unwrap_or(TrendValue::VelocityRms)
    });
    let chosen_range = Memo::new(move |_| range.get().unwrap_or_else(|| DEFAULT_RANGE.to_owned()));

    let link = RwSignal::new(Link::Connecting);
    let (as_of, factory_id) = (page.as_of, machine.factory_id);
    let watched = serials.clone();
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            let watched = watched.clone();
            let url = format!("/api/events?coalesce=true&factory_id={factory_id}&last_event_id={as_of}");
            follow_batches(url, link, move |frame: ReadingsFrame| {
                for step in frame.readings.into_iter().filter(|r| watched.contains(&r.serial)) {
                    if matches!(step.stage, ReadingStage::Finished | ReadingStage::Failed) {
                        changes.update(|n| *n += 1);
                    }
                    progress.update(|p| {
                        p.insert(step.serial, step);
                    });
                }
            });
        }
    });

    let plots = Resource::new(
        move || reading.get().and_then(|r| r.parse::<Uuid>().ok()),
        |reading| async move {
            match reading {
                Some(id) => reading_plots(id, 1200).await.map(Some),
                None => Ok(None),
            }
        },
    );
    // A point's link keeps the chosen value and range.
    let href_of = move |reading: Uuid| {
        let mut href = format!(
            "/machines/{machine_id}?value={}&range={}",
            chosen_value.get_untracked().as_str(),
            chosen_range.get_untracked()
        );
        for (name, raw) in [("from", from.get_untracked()), ("to", to.get_untracked())] {
            if let Some(raw) = raw {
                href.push_str(&format!("&{name}={}", domain::links::encode_query_value(&raw)));
            }
        }
        href.push_str(&format!("&reading={reading}"));
        href
    };

    let can_edit = page.can_edit;
    let take = ServerAction::<TakeReading>::new();
    let add = ServerAction::<AddPoint>::new();
    let remove = ServerAction::<RemovePoint>::new();
    let schedule = ServerAction::<SetSchedule>::new();
    let use_default = ServerAction::<UseDefaultSchedule>::new();
    let machine_schedule = ServerAction::<SetMachineSchedule>::new();
    let delete = ServerAction::<DeleteMachine>::new();
    let actions = can_edit.then_some(PointActions {
        take,
        remove,
        schedule,
        use_default,
    });
    // Successful changes only: a refused one keeps its form and message on screen.
    let reload_after = move |succeeded: Signal<bool>| {
        Effect::new(move |_| {
            if succeeded.get() {
                changes.update(|n| *n += 1);
            }
        });
    };
    reload_after(Signal::derive(move || matches!(add.value().get(), Some(Ok(_)))));
    reload_after(Signal::derive(move || matches!(remove.value().get(), Some(Ok(_)))));
    reload_after(Signal::derive(move || matches!(schedule.value().get(), Some(Ok(_)))));
    reload_after(Signal::derive(move || matches!(use_default.value().get(), Some(Ok(_)))));
    reload_after(Signal::derive(move || {
        matches!(machine_schedule.value().get(), Some(Ok(_)))
    }));
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(_)) = delete.value().get() {
            navigate("/machines", Default::default());
        }
    });
    let add_error = Signal::derive(move || add.value().get().and_then(Result::err));
    let action_error = move || {
        [
            take.value().get().and_then(Result::err),
            remove.value().get().and_then(Result::err),
            schedule.value().get().and_then(Result::err),
            use_default.value().get().and_then(Result::err),
            machine_schedule.value().get().and_then(Result::err),
            delete.value().get().and_then(Result::err),
        ]
        .into_iter()
        .flatten()
        .next()
        .map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })
    };

    let facts = [
        Some(machine.kind.clone()),
        machine.rpm.map(|r| format!("{r:.0} RPM")),
        machine.iso_group.map(|g| format!("ISO 20816 group {g}")),
        machine.area.clone(),
        machine.criticality.clone().map(|c| format!("criticality {c}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    let point_rows = machine
        .points
        .iter()
        .zip(page.sensors.iter().cloned())
        .map(|(point, sensor)| point_row(point.id, point.name.clone(), sensor, machine_id, actions, progress))
        .collect_view();
    let delete_confirm = format!(
        "Delete “{}”? Its sensors leave their points and keep their history.",
        machine.name
    );

    view! {
        <header class="page-header">
            <p class="muted">
                <A href="/machines">"Machines"</A>
                " / "
                <A href=format!("/machines?factory_id={}", machine.factory_id)>{page.factory_name.clone()}</A>
            </p>
            <h1>{machine.name.clone()}</h1>
            <p class="subtitle">{facts}</p>
        </header>
        <LinkBanner link />
        <UrlError />
        <RecentAlarms alarms=page.alarms.clone() all=format!("/alarms?machine_id={machine_id}") />
        <section class="card" aria-label="Measurement points">
            <h2>"Measurement points"</h2>
            {action_error}
            {if machine.points.is_empty() {
                view! { <p class="muted">"No sensor sits on this machine yet."</p> }.into_any()
            } else {
                view! {
                    <DataTable
                        label="Measurement points"
                        columns=vec![
                            ("Point", ""),
                            ("Sensor", ""),
                            ("Gateway", "hide-narrow"),
                            ("Schedule", ""),
                            ("Reading", ""),
                        ]
                    >
                        {point_rows}
                    </DataTable>
                }
                .into_any()
            }}
            <DefaultSchedule machine_id default=page.default_schedule.clone() action=can_edit.then_some(machine_schedule) />
            {can_edit.then(|| view! {
                <ActionForm action=add attr:class="form inline-fields" attr:aria-label="Add measurement point">
                    <input type="hidden" name="machine" value=machine_id.to_string() />
                    <TextField label="Point name" name="name" placeholder="e.g. Motor drive end, horizontal" required=true max_length=domain::NAME_MAX error=add_error />
                    <TextField label="Sensor serial" name="serial" placeholder="As its gateway lists it" required=true max_length=20 error=add_error />
                    <FormError error=add_error />
                    <button type="submit" class="primary">"Add point"</button>
                </ActionForm>
            })}
        </section>
        <section class="card" aria-label="Trends">
            <h2>"Trends"</h2>
            <TrendControls machine_id value=chosen_value range=chosen_range from to />
            {if page.trends.is_empty() {
                view! { <p class="muted">"Add a measurement point to see its trend."</p> }.into_any()
            } else {
                page.trends
                    .into_iter()
                    .map(|(name, trend)| match trend {
                        Ok(trend) => view! { <TrendChart trend label=name href_of /> }.into_any(),
                        Err(err) => view! { <p class="form-error" role="alert">{format!("{name}: {}", err.message)}</p> }.into_any(),
                    })
                    .collect_view()
                    .into_any()
            }}
        </section>
        <Transition fallback=|| ()>
            {move || {
                plots
                    .get()
                    .map(|result| match result {
                        Ok(Some(plots)) => view! { <Plots plots /> }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(err) => view! {
                            <section class="card" aria-label="Waveform and spectrum">
                                <p class="form-error" role="alert">
                                    {format!("{} (points of imported history have no waveform)", err.message)}
                                </p>
                            </section>
                        }
                            .into_any(),
                    })
            }}
        </Transition>
        {can_edit.then(|| view! {
            <section class="card" aria-label="Delete machine">
                <details class="confirm">
                    <summary>"Delete machine"</summary>
                    <div class="confirm-box">
                        <p>{delete_confirm}</p>
                        <ActionForm action=delete>
                            <input type="hidden" name="id" value=machine_id.to_string() />
                            <button type="submit" class="danger">"Delete machine"</button>
                        </ActionForm>
                    </div>
                </details>
            </section>
        })}
    }
}

/// The value and range pickers, a plain GET form: the choice lives in the URL.
#[component]
fn TrendControls(
    machine_id: Uuid,
    value: Memo<TrendValue>,
    range: Memo<String>,
    from: Memo<Option<String>>,
    to: Memo<Option<String>>,
) -> impl IntoView {
    let values = move || {
        TrendValue::ALL
            .into_iter()
            .map(|v| view! { <option value=v.as_str() selected=value.get() == v>{value_label(v)}</option> })
            .collect_view()
    };
    let ranges = move || {
        TREND_RANGES
            .iter()
            .map(|(name, text, _)| (*name, *text))
            .chain([("custom", "Custom")])
            .map(|(name, text)| view! { <option value=name selected=range.get() == name>{text}</option> })
            .collect_view()
    };
    view! {
        <Form method="GET" action=format!("/machines/{machine_id}") attr:class="search trend-controls">
            <label for="trend-value">"Value"</label>
            <select id="trend-value" name="value">{values}</select>
            <label for="trend-range">"Range"</label>
            <select id="trend-range" name="range">{ranges}</select>
            <label for="trend-from">"From"</label>
            <input id="trend-from" type="date" name="from" value=move || from.get().unwrap_or_default() />
            <label for="trend-to">"To"</label>
            <input id="trend-to" type="date" name="to" value=move || to.get().unwrap_or_default() />
            <button type="submit">"Show"</button>
        </Form>
    }
}

#[allow(clippy::too_many_arguments)]
/// The schedule the machine's sensors follow unless they have their own: a form for
/// admins (`action`), a sentence for others.
#[component]
fn DefaultSchedule(
    machine_id: Uuid,
    default: Option<domain::machines::ScheduleDefault>,
    action: Option<ServerAction<SetMachineSchedule>>,
) -> impl IntoView {
    let (minutes, enabled) = default
        .as_ref()
        .map_or((60, false), |d| (d.interval_seconds / 60, d.enabled));
    let text = match &default {
        Some(d) if d.enabled => format!("every {}", minutes_words(d.interval_seconds / 60)),
        Some(_) => "off".to_owned(),
        None => "none (the factory's default applies)".to_owned(),
    };
    match action {
        Some(action) => view! {
            <ActionForm action attr:class="inline-form schedule-form machine-schedule" attr:aria-label="Machine default schedule">
                <input type="hidden" name="machine" value=machine_id.to_string() />
                <span class="strong">"Default for this machine's sensors: "</span>
                <label>
                    <input type="checkbox" name="enabled" value="on" checked=enabled />
                    " every "
                </label>
                <input type="number" name="interval_minutes" min="1" value=minutes aria-label="Default minutes between readings" class="minutes" />
                " min "
                <button type="submit">"Save default"</button>
            </ActionForm>
        }
        .into_any(),
        None => view! { <p class="muted">{format!("Default for this machine's sensors: {text}")}</p> }.into_any(),
    }
}

/// What an admin can do from a point's row.
#[derive(Clone, Copy)]
struct PointActions {
    take: ServerAction<TakeReading>,
    remove: ServerAction<RemovePoint>,
    schedule: ServerAction<SetSchedule>,
    use_default: ServerAction<UseDefaultSchedule>,
}

fn point_row(
    point: Uuid,
    name: String,
    sensor: PointSensor,
    machine: Uuid,
    actions: Option<PointActions>,
    progress: RwSignal<HashMap<u64, ReadingProgress>>,
) -> impl IntoView {
    let serial = sensor.serial;
    let gateway = sensor.location.clone().map(|l| {
        view! {
            <A href=format!("/gateways/{}", l.gateway_id)>{l.gateway_name}</A>
            {(!l.connected).then(|| view! { <span class="muted">" (sensor not connected)"</span> })}
        }
    });
    let (interval_minutes, enabled, source) = sensor.schedule.as_ref().map_or((60, false, ScheduleSource::None), |s| {
        (s.interval_seconds / 60, s.enabled, s.source)
    });
    let schedule_text = if enabled {
        format!("every {}", minutes_words(interval_minutes))
    } else {
        "off".to_owned()
    };
    let origin = match source {
        ScheduleSource::Machine => Some("machine default"),
        ScheduleSource::Factory => Some("factory default"),
        ScheduleSource::Sensor | ScheduleSource::None => None,
    }
    .map(|origin| view! { <span class="muted">{format!(" ({origin})")}</span> });
    let schedule_cell = if let Some(PointActions {
        schedule, use_default, ..
    }) = actions
    {
        view! {
            <ActionForm action=schedule attr:class="inline-form schedule-form" attr:aria-label=format!("Schedule of {name}")>
                <input type="hidden" name="machine" value=machine.to_string() />
                <input type="hidden" name="serial" value=serial />
                <label>
                    <input type="checkbox" name="enabled" value="on" checked=enabled />
                    " every "
                </label>
                <input type="number" name="interval_minutes" min="1" value=interval_minutes aria-label="Minutes between readings" class="minutes" />
                " min "
                <button type="submit">"Save"</button>
            </ActionForm>
            {origin}
            {(source == ScheduleSource::Sensor).then(|| view! {
                <ActionForm action=use_default attr:class="inline-form">
                    <input type="hidden" name="machine" value=machine.to_string() />
                    <input type="hidden" name="serial" value=serial />
                    <button type="submit" class="link-button neutral">"Use default"</button>
                </ActionForm>
            })}
        }
        .into_any()
    } else {
        view! { <span>{schedule_text}</span> {origin} }.into_any()
    };
    let stage = move || {
        progress.with(|p| {
            p.get(&serial).map(|r| match r.stage {
                ReadingStage::Requested => "requested…".to_owned(),
                ReadingStage::Started => "started…".to_owned(),
                ReadingStage::Finished => "received ✓ (in the trend)".to_owned(),
                ReadingStage::Failed | ReadingStage::Skipped => {
                    format!("{}: {}", r.stage.as_str(), r.error.clone().unwrap_or_default())
                }
            })
        })
    };
    let reading_cell = actions.map(|PointActions { take, remove, .. }| {
        let location = sensor.location.clone();
        view! {
            {location.map(|l| view! {
                <ActionForm action=take attr:class="inline-form">
                    <input type="hidden" name="gateway" value=l.gateway_id.to_string() />
                    <input type="hidden" name="serial" value=serial />
                    <button type="submit" disabled=!l.connected>"Take reading"</button>
                </ActionForm>
            })}
            <ActionForm action=remove attr:class="inline-form">
                <input type="hidden" name="machine" value=machine.to_string() />
                <input type="hidden" name="point" value=point.to_string() />
                <button type="submit" class="link-button">"Remove point"</button>
            </ActionForm>
        }
    });
    view! {
        <tr data-serial=serial>
            <td class="strong">{name.clone()}</td>
            <td>{serial}</td>
            <td class="hide-narrow">{gateway}</td>
            <td>{schedule_cell}</td>
            <td>
                {reading_cell}
                <span class="reading-progress" role="status">{stage}</span>
            </td>
        </tr>
    }
}

/// "15 min", "1 h", "1 h 30 min", "2 d".
fn minutes_words(minutes: u32) -> String {
    match minutes {
        m if m % 1440 == 0 => format!("{} d", m / 1440),
        m if m >= 60 && m % 60 == 0 => format!("{} h", m / 60),
        m if m > 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{m} min"),
    }
}

lazy_page!(MachineDetailRoute, MachineDetailPage);
