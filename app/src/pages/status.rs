//! `/` (landing page): the fleet at a glance, as fast with 10,000 gateways as with
//! ten. The counts by state; then what needs attention (every enabled gateway not
//! online, those unseen the longest first); then each factory with its counts,
//! expanded on demand (the expanded ones are kept in the URL, `?open=id,id`, or
//! `?open=none`). With `?group=machine` the factories give way to the machines, the
//! worst off by ISO zone first, each point's latest velocity and whether it is heard.
//!
//! Live updates come from the coalesced event stream: each frame's gateways are
//! applied by key to the rows shown (a map from id to the row's signal), so a change
//! re-renders one row, never the list.

use super::load_error;
use crate::components::{DataTable, StateBadge};
use crate::event_stream::{clock, duration_words, follow_batches, Link, LinkBanner};
use crate::server_fns::live::{status_view, MachineStatus, StatusData, FACTORY_ROWS};
use chrono::{DateTime, Utc};
use domain::live::{ConnectionState, FactoryStatus, FleetStatus, GatewayLive, Instance, LiveBatch};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

#[component]
pub fn StatusPage() -> impl IntoView {
    let query = use_query_map();
    let open = Memo::new(move |_| query.read().get("open"));
    let group = Memo::new(move |_| query.read().get("group").filter(|g| g == "machine"));
    let data = Resource::new(
        move || (open.get(), group.get()),
        |(open, group)| status_view(open, group),
    );
    let link = RwSignal::new(Link::Connecting);
    // The rows on screen; replaced each time the view is loaded, fed by the stream.
    let shown: StoredValue<Option<LiveRows>> = StoredValue::new(None);
    Effect::new(move |opened: Option<bool>| {
        if opened == Some(true) {
            return true;
        }
        let Some(Ok(view)) = data.get() else { return false };
        let url = format!("/api/events?coalesce=true&last_event_id={}", view.as_of);
        follow_batches(url, link, move |batch: LiveBatch| {
            let resync = batch.resync;
            if let Some(rows) = shown.get_value() {
                rows.apply(batch);
            }
            if resync {
                data.refetch();
            }
        });
        true
    });
    view! {
        <header class="page-header">
            <h1>"Status"</h1>
            <p class="subtitle">"Live state of every gateway"</p>
            <nav class="group-by" aria-label="Group by">
                "Group by: "
                // Plain links: the router's would mark both current (same path).
                <a href="/" aria-current=move || group.get().is_none().then_some("page")>"Factory"</a>
                <a href="/?group=machine" aria-current=move || group.get().is_some().then_some("page")>"Machine"</a>
            </nav>
        </header>
        <LinkIndicator link />
        <Transition fallback=|| view! { <p>"Loading status…"</p> }>
            {move || {
                data.get()
                    .map(|result| match result {
                        Ok(view) => {
                            let rows = LiveRows::new(&view);
                            shown.set_value(Some(rows));
                            view! { <StatusBody view rows /> }.into_any()
                        }
                        Err(err) => load_error("the status", err),
                    })
            }}
        </Transition>
    }
}

/// The rows on screen, each behind its own signal, and the lists they sit in.
#[derive(Clone, Copy)]
struct LiveRows {
    records: StoredValue<HashMap<Uuid, ArcRwSignal<GatewayLive>>>,
    /// The attention list, in order, and who is in it (so membership is a lookup).
    attention: RwSignal<Vec<Uuid>>,
    in_attention: StoredValue<HashSet<Uuid>>,
    /// Expanded factory → its rows, in order.
    expanded: StoredValue<HashMap<Uuid, RwSignal<Vec<Uuid>>>>,
    summary: RwSignal<FleetStatus>,
}

impl LiveRows {
    fn new(view: &StatusData) -> Self {
        let mut records = HashMap::new();
        for g in view.attention.iter().chain(view.rows.iter().flat_map(|f| &f.gateways)) {
            records.entry(g.id).or_insert_with(|| ArcRwSignal::new(g.clone()));
        }
        let attention: Vec<Uuid> = view.attention.iter().map(|g| g.id).collect();
        Self {
            in_attention: StoredValue::new(attention.iter().copied().collect()),
            attention: RwSignal::new(attention),
            records: StoredValue::new(records),
            expanded: StoredValue::new(
                view.rows
                    .iter()
                    .map(|f| (f.factory_id, RwSignal::new(f.gateways.iter().map(|g| g.id).collect())))
                    .collect(),
            ),
            summary: RwSignal::new(view.summary.clone()),
        }
    }

    fn record(&self, id: Uuid) -> Option<ArcRwSignal<GatewayLive>> {
        self.records.with_value(|all| all.get(&id).cloned())
    }

    /// One frame of the stream: each gateway found by its id.
    fn apply(&self, batch: LiveBatch) {
        for gateway in batch.gateways {
            self.update(gateway);
        }
        for removed in batch.removed {
            self.leave_attention(removed.id);
            if let Some(list) = self.expanded.with_value(|e| e.get(&removed.factory_id).copied()) {
                list.update(|ids| ids.retain(|id| *id != removed.id));
            }
            self.records.update_value(|all| {
                all.remove(&removed.id);
            });
        }
        if let Some(summary) = batch.summary {
            self.summary.set(summary);
        }
    }

    fn update(&self, gateway: GatewayLive) {
        let id = gateway.id;
        let previous = self.record(id);
        let moved_from = previous
            .as_ref()
            .map(|r| r.with_untracked(|g| g.factory_id))
            .filter(|f| *f != gateway.factory_id);
        if let Some(old) = moved_from.and_then(|f| self.expanded.with_value(|e| e.get(&f).copied())) {
            old.update(|ids| ids.retain(|i| *i != id));
        }
        let mut shown = false;
        if gateway.state.needs_attention() {
            shown |= self.join_attention(id);
        } else {
            self.leave_attention(id);
        }
        if let Some(list) = self.expanded.with_value(|e| e.get(&gateway.factory_id).copied()) {
            shown = true;
            if previous.is_none() || moved_from.is_some() {
                list.update(|ids| {
                    if ids.len() < FACTORY_ROWS {
                        ids.push(id)
                    }
                });
            }
        }
        match previous {
            Some(record) => record.set(gateway),
            None if shown => self.records.update_value(|all| {
                all.insert(id, ArcRwSignal::new(gateway));
            }),
            None => {}
        }
    }

    /// Adds `id` at the end of the attention list (while it has room); whether it is in it.
    fn join_attention(&self, id: Uuid) -> bool {
        let mut added = false;
        let member = self.in_attention.try_update_value(|set| {
            if set.contains(&id) {
                true
            } else if set.len() < crate::server_fns::live::ATTENTION_SHOWN {
                set.insert(id);
                added = true;
                true
            } else {
                false
            }
        });
        if added {
            self.attention.update(|ids| ids.push(id));
        }
        member.unwrap_or(false)
    }

    fn leave_attention(&self, id: Uuid) {
        if self.in_attention.try_update_value(|set| set.remove(&id)) == Some(true) {
            self.attention.update(|ids| ids.retain(|i| *i != id));
        }
    }
}

#[component]
fn LinkIndicator(link: RwSignal<Link>) -> impl IntoView {
    view! {
        <LinkBanner link />
        <div class="live-indicator" data-link=move || match link.get() {
            Link::Live => "live",
            Link::Connecting => "connecting",
            Link::Down => "down",
        }>
            {move || match link.get() {
                Link::Live => "● Live",
                Link::Connecting => "○ Connecting…",
                Link::Down => "○ Offline",
            }}
        </div>
    }
}

#[component]
fn StatusBody(view: StatusData, rows: LiveRows) -> impl IntoView {
    let now = clock();
    let summary = rows.summary;
    let count = move |state: ConnectionState| summary.with(|s| s.states.get(state.as_str()).copied().unwrap_or(0));
    let attention_total = move || {
        ConnectionState::ALL
            .into_iter()
            .filter(|s| s.needs_attention())
            .map(count)
            .sum::<u64>()
    };
    let summary_items = ConnectionState::ALL
        .into_iter()
        .map(|state| {
            view! {
                <li class=format!("summary-item state-{}", state.as_str())>
                    <span class="summary-count">{move || count(state)}</span>
                    <span class="summary-label">{state.label()}</span>
                </li>
            }
        })
        .collect_view();
    view! {
        <ul class="summary" aria-label="Gateways by state">
            {summary_items}
        </ul>
        <section class="card attention" aria-labelledby="attention-title">
            <h2 id="attention-title">"Needs attention " <span class="muted">{move || format!("({})", attention_total())}</span></h2>
            <AttentionList rows now attention_total />
        </section>
        {match view.machines {
            Some(machines) => view! { <MachinesByCondition machines /> }.into_any(),
            None => view! {
                <Factories factories=view.factories open=view.open totals=view.rows.iter().map(|f| (f.factory_id, f.total)).collect() rows now />
            }.into_any(),
        }}
        <InstancesSection instances=view.instances />
    }
    .into_any()
}

#[component]
fn AttentionList(
    rows: LiveRows,
    now: RwSignal<DateTime<Utc>>,
    attention_total: impl Fn() -> u64 + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let shown = move || rows.attention.with(Vec::len) as u64;
    view! {
        <Show
            when=move || !rows.attention.with(Vec::is_empty)
            fallback=|| view! { <p class="empty">"Every enabled gateway is online."</p> }
        >
            <StatusTable label="Gateways needing attention" ids=rows.attention rows now />
        </Show>
        {move || {
            (attention_total() > shown())
                .then(|| {
                    view! {
                        <p class="muted">
                            {format!("Showing {} of {}, those unseen the longest. ", shown(), attention_total())}
                            <A href="/gateways">"All gateways"</A>
                        </p>
                    }
                })
        }}
    }
}

/// A table of live rows, in the order of `ids`.
#[component]
fn StatusTable(
    #[prop(into)] label: String,
    ids: RwSignal<Vec<Uuid>>,
    rows: LiveRows,
    now: RwSignal<DateTime<Utc>>,
) -> impl IntoView {
    view! {
        <div class="table-scroll">
            <table class="data status-table" aria-label=label>
                <thead>
                    <tr>
                        <th scope="col">"State"</th>
                        <th scope="col">"Gateway"</th>
                        <th scope="col">"Since"</th>
                        <th scope="col" class="hide-narrow">"Last seen"</th>
                        <th scope="col">"Last error"</th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=move || ids.get()
                        key=|id| *id
                        children=move |id| rows.record(id).map(|record| view! { <StatusRow record now /> })
                    />
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

/// One gateway's row: static where the record cannot change, reactive where it can.
#[component]
fn StatusRow(record: ArcRwSignal<GatewayLive>, now: RwSignal<DateTime<Utc>>) -> impl IntoView {
    let (id, code) = record.with_untracked(|g| (g.id, g.gateway_id.clone()));
    let row_code = code.clone();
    let state = {
        let record = record.clone();
        Signal::derive(move || record.with(|g| g.state))
    };
    let name = {
        let record = record.clone();
        move || record.with(|g| g.name.clone())
    };
    let when = {
        let record = record.clone();
        move || record.with(|g| since_words(g, now.get()))
    };
    let last_seen = {
        let record = record.clone();
        move || {
            record
                .with(|g| g.last_seen_at)
                .map(|t| format!("{} ago", duration_words((now.get() - t).num_seconds())))
                .unwrap_or_else(|| "never".into())
        }
    };
    let since = {
        let record = record.clone();
        move || record.with(|g| g.since.to_rfc3339())
    };
    let last_error = move || record.with(|g| g.last_error.clone().unwrap_or_default());
    // `data-since` (when the state began) lets a test time a change from server to screen.
    view! {
        <tr data-gateway=row_code data-state=move || state.get().as_str() data-since=since>
            <td>
                <StateBadge state />
            </td>
            <td>
                // A plain link (the router still takes its clicks): cheaper to render, row by row.
                <a href=format!("/gateways/{id}")>{name}</a>
                <div class="muted">{code}</div>
            </td>
            <td>{when}</td>
            <td class="hide-narrow">{last_seen}</td>
            <td class="error-text">{last_error}</td>
        </tr>
    }
    .into_any()
}

fn since_words(g: &GatewayLive, now: DateTime<Utc>) -> String {
    let since = duration_words((now - g.since).num_seconds());
    match g.state {
        ConnectionState::Online => format!("online for {since}"),
        ConnectionState::Backoff | ConnectionState::AuthFailed => match g.next_attempt_at {
            Some(next) => format!(
                "down for {since}, next retry in {}",
                duration_words((next - now).num_seconds())
            ),
            None => format!("down for {since}"),
        },
        ConnectionState::Disconnected => format!("down for {since}"),
        _ => format!("for {since}"),
    }
}

/// Every factory with its counts by state; the expanded ones with their rows.
#[component]
fn Factories(
    factories: Vec<(Uuid, String)>,
    open: Vec<Uuid>,
    /// Expanded factory → how many gateways it has.
    totals: HashMap<Uuid, u64>,
    rows: LiveRows,
    now: RwSignal<DateTime<Utc>>,
) -> impl IntoView {
    let by_factory = Memo::new(move |_| {
        rows.summary.with(|s| {
            s.factories
                .iter()
                .map(|f| (f.factory_id, f.clone()))
                .collect::<HashMap<Uuid, FactoryStatus>>()
        })
    });
    let groups = factories
        .into_iter()
        .map(|(factory_id, name)| {
            let counts = move |pick: fn(&FactoryStatus) -> u64| {
                by_factory.with(|all| all.get(&factory_id).map(pick).unwrap_or(0))
            };
            let is_open = open.contains(&factory_id);
            let toggled: Vec<Uuid> = if is_open {
                open.iter().copied().filter(|f| *f != factory_id).collect()
            } else {
                open.iter().copied().chain([factory_id]).collect()
            };
            // `none` rather than an empty value, which the router reads as no parameter.
            let href = if toggled.is_empty() {
                "/?open=none".to_owned()
            } else {
                format!("/?open={}", toggled.iter().map(Uuid::to_string).collect::<Vec<_>>().join(","))
            };
            let listed = rows.expanded.with_value(|e| e.get(&factory_id).copied()).filter(|_| is_open);
            let total = totals.get(&factory_id).copied().unwrap_or(0);
            let table_label = format!("Gateways of {name}");
            let link_text = format!("{} {name}", if is_open { "▾" } else { "▸" });
            view! {
                <section class="card factory-group" aria-label=name data-factory=factory_id.to_string()>
                    <div class="factory-heading">
                        <h3>
                            <A href=href attr:aria-expanded=is_open.to_string()>
                                {link_text}
                            </A>
                        </h3>
                        <ul class="factory-counts">
                            <li>{move || counts(|f| f.total)} " gateways"</li>
                            <li class="state-online">{move || counts(|f| state_count(f, |s| s == ConnectionState::Online))} " online"</li>
                            <li class="state-attention">{move || counts(|f| state_count(f, ConnectionState::needs_attention))} " need attention"</li>
                            <li class="state-disabled">{move || counts(|f| state_count(f, |s| s == ConnectionState::Disabled))} " disabled"</li>
                        </ul>
                    </div>
                    {listed.map(|ids| {
                        view! {
                            <StatusTable label=table_label ids rows now />
                            {(total > FACTORY_ROWS as u64).then(|| view! {
                                <p class="muted">
                                    {format!("Showing {FACTORY_ROWS} of {total}. ")}
                                    <A href=format!("/gateways?factory={factory_id}")>"All of this factory's gateways"</A>
                                </p>
                            })}
                        }
                    })}
                </section>
            }
            .into_any()
        })
        .collect_view();
    view! {
        <section class="factories" aria-labelledby="factories-title">
            <h2 id="factories-title">"Factories"</h2>
            {groups}
        </section>
    }
}

fn state_count(factory: &FactoryStatus, wanted: impl Fn(ConnectionState) -> bool) -> u64 {
    ConnectionState::ALL
        .into_iter()
        .filter(|s| wanted(*s))
        .map(|s| factory.states.get(s.as_str()).copied().unwrap_or(0))
        .sum()
}

/// The server instances sharing the fleet and how many gateways each holds (admins).
#[component]
fn InstancesSection(instances: Vec<Instance>) -> impl IntoView {
    (!instances.is_empty()).then(|| {
        view! {
            <section class="instances" aria-labelledby="instances-title">
                <h2 id="instances-title">"Instances"</h2>
                <table class="data-table">
                    <thead>
                        <tr>
                            <th scope="col">"Address"</th>
                            <th scope="col">"Started"</th>
                            <th scope="col">"Last heartbeat"</th>
                            <th scope="col">"Gateways"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {instances
                            .into_iter()
                            .map(|i| {
                                view! {
                                    <tr data-instance=i.id.to_string()>
                                        <td>{i.address}</td>
                                        <td>{i.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()}</td>
                                        <td>{i.last_heartbeat_at.format("%H:%M:%S UTC").to_string()}</td>
                                        <td>{i.gateways}</td>
                                    </tr>
                                }
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </section>
        }
    })
}

lazy_page!(StatusRoute, StatusPage);

/// The machines, the worst off first: each point's latest velocity against the
/// machine's ISO zones, and whether its sensor is heard.
#[component]
fn MachinesByCondition(machines: Vec<MachineStatus>) -> impl IntoView {
    if machines.is_empty() {
        return view! {
            <section class="card"><p class="muted">"No machines yet: add them on the Machines page."</p></section>
        }
        .into_any();
    }
    const ZONE_NAMES: [&str; 4] = ["A", "B", "C", "D"];
    let rows = machines
        .into_iter()
        .map(|m| {
            let worst = m.worst_zone();
            let zone = usize::try_from(worst).ok().map(|z| {
                view! { <span class=format!("badge zone-badge zone-{}", ZONE_NAMES[z].to_lowercase())>{format!("Zone {}", ZONE_NAMES[z])}</span> }
            });
            let points = m
                .points
                .iter()
                .map(|p| {
                    let velocity = p
                        .velocity
                        .map(|(v, at)| format!("{v:.2} mm/s at {}", at.format("%Y-%m-%d %H:%M")))
                        .unwrap_or_else(|| "no reading yet".into());
                    let heard = match &p.gateway {
                        Some((_, name, ConnectionState::Online)) if p.connected => format!("via {name}"),
                        Some((_, name, ConnectionState::Online)) => format!("sensor disconnected from {name}"),
                        Some((_, name, state)) => format!("not heard: {name} is {}", state.label().to_lowercase()),
                        None => "not heard: no gateway has reported it".into(),
                    };
                    view! { <li>{format!("{}: {velocity} ({heard})", p.name)}</li> }
                })
                .collect_view();
            view! {
                <tr data-machine=m.id.to_string()>
                    <td class="strong"><A href=format!("/machines/{}", m.id)>{m.name}</A></td>
                    <td>{zone}</td>
                    <td class="hide-narrow">{m.factory_name}</td>
                    <td><ul class="point-list">{points}</ul></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card" aria-labelledby="machines-title">
            <h2 id="machines-title">"Machines"</h2>
            <DataTable label="Machines by condition" columns=vec![("Machine", ""), ("Zone", ""), ("Factory", "hide-narrow"), ("Points", "")]>
                {rows}
            </DataTable>
        </section>
    }
    .into_any()
}
