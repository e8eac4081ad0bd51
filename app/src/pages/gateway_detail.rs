//! `/gateways/:id`: one gateway's live state and history, its sensors with
//! "Take reading" (admins) and the reading's progress, its readings, and for the
//! reading chosen in the URL (`?reading=ID`) the waveform and spectrum per axis.

use crate::components::alarms::RecentAlarms;
use crate::components::plots::{Plots, TrendChart};
use crate::components::{percent_text, DataTable, StateBadge};
use crate::event_stream::{clock, duration_words, follow_batches, Link, LinkBanner};
use crate::server_fns::live::{gateway_readings, gateway_view, reading_plots, GatewayPageData, TakeReading};
use crate::server_fns::machines::{sensor_trend, DEFAULT_RANGE};
use domain::live::{GatewayHealth, GatewayLive, ReadingProgress, ReadingStage, ReadingSummary};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_params_map, use_query_map};
use std::collections::HashMap;
use uuid::Uuid;

#[component]
pub fn GatewayDetailPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<Uuid>().ok());
    let data = Resource::new(id, |id| async move {
        match id {
            Some(id) => gateway_view(id).await,
            None => Err(domain::AppError::gateway_not_found()),
        }
    });
    view! {
        <Suspense fallback=|| view! { <p>"Loading gateway…"</p> }>
            {move || {
                data.get()
                    .map(|result| match result {
                        Ok(page) => view! { <GatewayDetail page /> }.into_any(),
                        Err(err) => {
                            view! {
                                <div class="error-card" role="alert">
                                    <h1>"Gateway unavailable"</h1>
                                    <p>{err.message}</p>
                                    <A href="/gateways">"Back to gateways"</A>
                                </div>
                            }
                                .into_any()
                        }
                    })
            }}
        </Suspense>
    }
}

/// What this page reads of a stream frame (its factory's): the gateways' records and
/// the reading steps.
#[derive(serde::Deserialize)]
struct DetailFrame {
    #[serde(default)]
    gateways: Vec<GatewayLive>,
    #[serde(default)]
    readings: Vec<ReadingProgress>,
}

#[component]
fn GatewayDetail(page: GatewayPageData) -> impl IntoView {
    let gateway_id = page.gateway.id;
    let live = RwSignal::new(page.live.clone());
    let link = RwSignal::new(Link::Connecting);
    let progress = RwSignal::new(HashMap::<u64, ReadingProgress>::new());
    // Moves when a reading of this gateway is asked for or ends: the list is read again,
    // so a new reading shows up (and can be plotted) without a reload.
    let readings_changed = RwSignal::new(0u32);
    let (as_of, factory_id) = (page.as_of, page.gateway.factory_id);
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            let url = format!("/api/events?coalesce=true&factory_id={factory_id}&last_event_id={as_of}");
            follow_batches(url, link, move |frame: DetailFrame| {
                if let Some(record) = frame.gateways.into_iter().rev().find(|g| g.id == gateway_id) {
                    live.set(Some(record));
                }
                for reading in frame.readings.into_iter().filter(|r| r.gateway == gateway_id) {
                    if reading.stage != ReadingStage::Started {
                        readings_changed.update(|n| *n += 1);
                    }
                    progress.update(|p| {
                        p.insert(reading.serial, reading);
                    });
                }
            });
        }
    });
    let first_readings = page.readings.data.clone();
    let readings = Resource::new(
        move || readings_changed.get(),
        move |changed| {
            let first = first_readings.clone();
            async move {
                match changed {
                    0 => Ok(first),
                    _ => gateway_readings(gateway_id).await.map(|page| page.data),
                }
            }
        },
    );
    let now = clock();
    let take = ServerAction::<TakeReading>::new();
    let take_error = move || take.value().get().and_then(Result::err).map(|e| e.message);
    let query = use_query_map();
    let selected = move || query.read().get("reading").and_then(|r| r.parse::<Uuid>().ok());
    let plots = Resource::new(selected, |reading| async move {
        match reading {
            Some(id) => reading_plots(id, 1200).await.map(Some),
            None => Ok(None),
        }
    });
    // The sensor whose trend is shown (`?trend=SERIAL`): velocity over 30 days, its
    // points opening their readings below.
    let trend_serial = move || query.read().get("trend").and_then(|s| s.parse::<u64>().ok());
    // The first trend ends when the page's data was read (the same on the server and in
    // the browser); once a reading has ended, at the present.
    let rendered_at = page.rendered_at.to_rfc3339();
    let trend = Resource::new(
        move || (trend_serial(), readings_changed.get()),
        move |(serial, changed)| {
            let now = (changed == 0).then(|| rendered_at.clone());
            async move {
                match serial {
                    Some(serial) => sensor_trend(serial, "velocity_rms".into(), DEFAULT_RANGE.into(), None, None, now)
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            }
        },
    );
    let g = page.gateway.clone();
    let can_take = page.can_take_readings;

    let state_line = move || {
        let now = now.get();
        match live.get() {
            None => view! { <span class="badge state-disabled">"Not connected"</span> }.into_any(),
            Some(l) => {
                let since = duration_words((now - l.since).num_seconds());
                let retry = l
                    .next_attempt_at
                    .map(|t| format!(", next retry in {}", duration_words((t - now).num_seconds())))
                    .unwrap_or_default();
                view! {
                    <StateBadge state=l.state />
                    <span class="muted">{format!(" for {since}{retry}")}</span>
                    {l.last_error.map(|e| view! { <p class="error-text">{e}</p> })}
                }
                .into_any()
            }
        }
    };

    let sensors = page.sensors.clone();
    let sensor_rows = move || {
        sensors
            .iter()
            .cloned()
            .map(|s| {
                let serial = s.serial;
                let stage = move || {
                    progress.with(|p| {
                        p.get(&serial).map(|r| match r.stage {
                            ReadingStage::Requested => "requested…".to_owned(),
                            ReadingStage::Started => "started…".to_owned(),
                            ReadingStage::Finished => "received ✓ (in the readings below)".to_owned(),
                            ReadingStage::Failed | ReadingStage::Skipped => {
                                format!("{}: {}", r.stage.as_str(), r.error.clone().unwrap_or_default())
                            }
                        })
                    })
                };
                view! {
                    <tr data-serial=serial>
                        <td class="strong">{serial}</td>
                        <td>{s.part_number.unwrap_or_else(|| "—".into())}</td>
                        <td class="num">{s.read_rate.map(|r| format!("{r} Hz")).unwrap_or_else(|| "—".into())}</td>
                        <td class="num">{s.samples.map(|n| n.to_string()).unwrap_or_else(|| "—".into())}</td>
                        <td>{if s.connected { "yes" } else { "no" }}</td>
                        <td class="hide-narrow">{s.last_seen_at.format("%Y-%m-%d %H:%M").to_string()}</td>
                        <td><A href=format!("/gateways/{gateway_id}?trend={serial}")>"Trend"</A></td>
                        <td>
                            {can_take
                                .then(|| {
                                    view! {
                                        <ActionForm action=take attr:class="inline-form">
                                            <input type="hidden" name="gateway" value=gateway_id.to_string() />
                                            <input type="hidden" name="serial" value=serial />
                                            <button type="submit" disabled=!s.connected>"Take reading"</button>
                                        </ActionForm>
                                    }
                                })}
                            <span class="reading-progress" role="status">{stage}</span>
                        </td>
                    </tr>
                }
            })
            .collect_view()
    };

    view! {
        <header class="page-header">
            <p class="muted">
                <A href="/gateways">"Gateways"</A>
                " / "
                {page.factory_name.clone()}
            </p>
            <h1>{g.name.clone()}</h1>
            <p class="subtitle">{format!("{} · {} · {}", g.gateway_id, g.url, g.model.clone().unwrap_or_default())}</p>
        </header>
        <LinkBanner link />
        <RecentAlarms alarms=page.alarms.clone() all=format!("/alarms?gateway_id={gateway_id}") />
        <section class="card" aria-label="Live state">
            <h2>"Connection"</h2>
            {state_line}
        </section>
        <HealthCard health=page.health.clone() />
        <section class="card" aria-label="Sensors">
            <h2>"Sensors"</h2>
            {move || take_error().map(|m| view! { <p class="form-error" role="alert">{m}</p> })}
            <DataTable
                label="Sensors"
                columns=vec![
                    ("Serial", ""),
                    ("Part number", ""),
                    ("Rate", "num"),
                    ("Samples", "num"),
                    ("Connected", ""),
                    ("Last seen", "hide-narrow"),
                    ("Trend", ""),
                    ("Reading", ""),
                ]
            >
                {sensor_rows}
            </DataTable>
        </section>
        <Transition fallback=|| ()>
            {move || {
                trend
                    .get()
                    .map(|result| match result {
                        Ok(Some(trend)) => {
                            let serial = trend.serial;
                            let href_of = move |reading: Uuid| format!("/gateways/{gateway_id}?trend={serial}&reading={reading}");
                            view! {
                                <section class="card" aria-label="Trend">
                                    <h2>{format!("Sensor {serial}: last 30 days")}</h2>
                                    <TrendChart trend label=format!("Sensor {serial}") href_of />
                                </section>
                            }
                                .into_any()
                        }
                        Ok(None) => ().into_any(),
                        Err(err) => view! { <p class="form-error" role="alert">{err.message}</p> }.into_any(),
                    })
            }}
        </Transition>
        <section class="card" aria-label="Readings">
            <h2>"Readings"</h2>
            <Transition fallback=|| ()>
                {move || readings.get().map(|result| match result {
                    Ok(list) => readings_table(list, gateway_id).into_any(),
                    Err(err) => view! { <p class="form-error" role="alert">{err.message}</p> }.into_any(),
                })}
            </Transition>
        </section>
        <Transition fallback=|| ()>
            {move || {
                plots
                    .get()
                    .map(|result| match result {
                        Ok(Some(plots)) => view! { <Plots plots /> }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(err) => view! { <p class="form-error" role="alert">{err.message}</p> }.into_any(),
                    })
            }}
        </Transition>
        <section class="card" aria-label="Connection history">
            <h2>"History"</h2>
            <DataTable label="Connection history" columns=vec![("When", ""), ("Event", ""), ("Detail", "")]>
                {page
                            .events
                            .data
                            .iter()
                            .map(|e| {
                                view! {
                                    <tr>
                                        <td>{e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()}</td>
                                        <td>{e.kind.clone()}</td>
                                        <td>{e.message.clone().unwrap_or_default()}</td>
                                    </tr>
                                }
                            })
                            .collect_view()}
            </DataTable>
        </section>
    }
}

fn readings_table(readings: Vec<ReadingSummary>, gateway: Uuid) -> impl IntoView {
    if readings.is_empty() {
        return view! { <p class="muted">"No readings yet."</p> }.into_any();
    }
    let rows = readings
        .into_iter()
        .map(|r| {
            let rms = r
                .statistics
                .map(|s| format!("{:.3} / {:.3} / {:.3}", s.x.rms, s.y.rms, s.z.rms))
                .unwrap_or_else(|| "—".into());
            let href = format!("/gateways/{gateway}?reading={}", r.id);
            view! {
                <tr>
                    <td>{r.requested_at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                    <td>{r.serial}</td>
                    <td>{r.status.as_str()}{r.error.map(|e| format!(": {e}"))}</td>
                    <td class="num">{r.temperature.map(|t| format!("{t:.1} °C")).unwrap_or_else(|| "—".into())}</td>
                    <td class="num">{rms}</td>
                    <td>
                        {(r.status == ReadingStage::Finished).then(|| view! { <A href=href>"Plot"</A> })}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <DataTable
            label="Readings"
            columns=vec![
                ("Requested (UTC)", ""),
                ("Sensor", ""),
                ("Status", ""),
                ("Temperature", "num"),
                ("RMS X / Y / Z (g)", "num"),
                ("", ""),
            ]
        >
            {rows}
        </DataTable>
    }
    .into_any()
}

lazy_page!(GatewayDetailRoute, GatewayDetailPage);

/// Uptime over 24 h / 7 d / 30 d, disconnections, and the last 24 hours as a strip of
/// states (each segment as wide as its share of the day).
#[component]
fn HealthCard(health: GatewayHealth) -> impl IntoView {
    let percent = percent_text;
    let rows = [
        ("24 h", health.uptime_24h, health.disconnections_24h),
        ("7 d", health.uptime_7d, health.disconnections_7d),
        ("30 d", health.uptime_30d, health.disconnections_30d),
    ]
    .into_iter()
    .map(|(window, uptime, losses)| {
        view! {
            <tr>
                <th scope="row">{window}</th>
                <td class="num">{percent(uptime)}</td>
                <td class="num">{losses}</td>
            </tr>
        }
    })
    .collect_view();
    let day = health
        .timeline
        .first()
        .zip(health.timeline.last())
        .map(|(first, last)| (last.to - first.from).num_seconds().max(1) as f64);
    let online_share = percent(health.uptime_24h);
    let segments = health
        .timeline
        .iter()
        .map(|segment| {
            let width = day.map_or(0.0, |day| {
                (segment.to - segment.from).num_seconds() as f64 * 100.0 / day
            });
            let title = format!(
                "{} {}–{} UTC",
                segment.state.as_str(),
                segment.from.format("%H:%M"),
                segment.to.format("%H:%M")
            );
            view! {
                <span
                    class=format!("segment timeline-{}", segment.state.as_str())
                    style=format!("width: {width:.3}%")
                    title=title
                    data-state=segment.state.as_str()
                ></span>
            }
        })
        .collect_view();
    view! {
        <section class="card" aria-labelledby="health-title">
            <h2 id="health-title">"Health"</h2>
            <table class="data health" aria-label="Uptime">
                <thead>
                    <tr>
                        <th scope="col">"Window"</th>
                        <th scope="col" class="num">"Uptime"</th>
                        <th scope="col" class="num">"Disconnections"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            <div class="timeline" role="img" aria-label=format!("Last 24 hours: online {online_share}")>
                {segments}
            </div>
            <div class="timeline-scale muted"><span>"24 h ago"</span><span>"now"</span></div>
        </section>
    }
}
