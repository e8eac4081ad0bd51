//! `/` (landing page): the live status of every gateway, grouped by factory,
//! updated from the event stream without reloads. Filters (factory, state,
//! search) live in the URL, so a filtered view can be bookmarked and survives
//! reloads.

use crate::api::live::{fleet_view, FleetData};
use crate::components::StateBadge;
use crate::live::{clock, duration_words, follow, Link};
use domain::live::{ConnectionState, GatewayLive};
use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_query_map;
use uuid::Uuid;

#[component]
pub fn StatusPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| fleet_view());
    view! {
        <header class="page-header">
            <h1>"Status"</h1>
            <p class="subtitle">"Live state of every gateway"</p>
        </header>
        <Suspense fallback=|| view! { <p>"Loading status…"</p> }>
            {move || {
                data.get()
                    .map(|result| match result {
                        Ok(view) => view! { <LiveFleet initial=view /> }.into_any(),
                        Err(err) => {
                            view! {
                                <div class="error-card" role="alert">
                                    <h2>"Could not load the status"</h2>
                                    <p>{err.message}</p>
                                </div>
                            }
                                .into_any()
                        }
                    })
            }}
        </Suspense>
    }
}

#[component]
fn LiveFleet(initial: FleetData) -> impl IntoView {
    let gateways = RwSignal::new(initial.gateways);
    let link = RwSignal::new(Link::Connecting);
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            follow(gateways, link, |_| {});
        }
    });
    let now = clock();
    let factories = initial.factories;
    let instances = initial.instances;
    let query = use_query_map();
    let factory_filter = move || query.read().get("factory").and_then(|f| f.parse::<Uuid>().ok());
    let state_filter = move || query.read().get("state").and_then(|s| ConnectionState::parse(&s));
    let search = move || query.read().get("q").unwrap_or_default().trim().to_lowercase();

    let in_factory = Memo::new(move |_| {
        let factory = factory_filter();
        gateways.with(|all| {
            all.iter()
                .filter(|g| factory.is_none_or(|f| g.factory_id == f))
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    let visible = Memo::new(move |_| {
        let state = state_filter();
        let text = search();
        in_factory.with(|all| {
            all.iter()
                .filter(|g| state.is_none_or(|s| g.state == s))
                .filter(|g| {
                    text.is_empty()
                        || g.name.to_lowercase().contains(&text)
                        || g.gateway_id.to_lowercase().contains(&text)
                })
                .cloned()
                .collect::<Vec<_>>()
        })
    });

    let factory_options = factories.clone();
    let summary = move || {
        ConnectionState::ALL
            .into_iter()
            .map(|state| {
                let count = in_factory.with(|all| all.iter().filter(|g| g.state == state).count());
                view! {
                    <li class=format!("summary-item state-{}", state.as_str())>
                        <span class="summary-count">{count}</span>
                        <span class="summary-label">{state.label()}</span>
                    </li>
                }
            })
            .collect_view()
    };

    let groups = move || {
        let shown = visible.get();
        let now = now.get();
        if shown.is_empty() {
            return view! { <p class="empty">"No gateways match."</p> }.into_any();
        }
        factories
            .iter()
            .filter_map(|(factory_id, factory_name)| {
                let mut rows: Vec<GatewayLive> =
                    shown.iter().filter(|g| g.factory_id == *factory_id).cloned().collect();
                if rows.is_empty() {
                    return None;
                }
                rows.sort_by(|a, b| a.name.cmp(&b.name));
                Some(view! {
                    <section class="card factory-group" aria-label=factory_name.clone()>
                        <h2>{factory_name.clone()}</h2>
                        <div class="table-scroll">
                            <table class="data status-table">
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
                                    {rows.into_iter().map(|g| status_row(g, now)).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    </section>
                })
            })
            .collect_view()
            .into_any()
    };

    view! {
        {move || {
            (link.get() == Link::Down)
                .then(|| {
                    view! {
                        <div class="banner" role="status">
                            "Live updates are interrupted; reconnecting…"
                        </div>
                    }
                })
        }}
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
        <ul class="summary" aria-label="Gateways by state">
            {summary}
        </ul>
        <Form method="GET" action="" attr:class="filters" attr:aria-label="Filter gateways">
            <div class="field">
                <label for="filter-factory">"Factory"</label>
                <select id="filter-factory" name="factory">
                    <option value="" selected=move || factory_filter().is_none()>"All factories"</option>
                    {factory_options
                        .into_iter()
                        .map(|(id, name)| {
                            view! {
                                <option value=id.to_string() selected=move || factory_filter() == Some(id)>
                                    {name}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
            </div>
            <div class="field">
                <label for="filter-state">"State"</label>
                <select id="filter-state" name="state">
                    <option value="" selected=move || state_filter().is_none()>"All states"</option>
                    {ConnectionState::ALL
                        .into_iter()
                        .map(|s| {
                            view! {
                                <option value=s.as_str() selected=move || state_filter() == Some(s)>
                                    {s.label()}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
            </div>
            <div class="field">
                <label for="filter-q">"Search"</label>
                <input id="filter-q" type="search" name="q" placeholder="Name or gateway id" prop:value=search />
            </div>
            <button type="submit">"Apply"</button>
        </Form>
        {groups}
        <InstancesSection instances />
    }
}

/// The server instances sharing the fleet and how many gateways each holds (admins).
#[component]
fn InstancesSection(instances: Vec<domain::live::Instance>) -> impl IntoView {
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

fn status_row(g: GatewayLive, now: chrono::DateTime<chrono::Utc>) -> impl IntoView {
    let since = (now - g.since).num_seconds();
    let when = match g.state {
        ConnectionState::Online => format!("online for {}", duration_words(since)),
        ConnectionState::Backoff | ConnectionState::AuthFailed => match g.next_attempt_at {
            Some(next) => format!(
                "down for {}, next retry in {}",
                duration_words(since),
                duration_words((next - now).num_seconds())
            ),
            None => format!("down for {}", duration_words(since)),
        },
        ConnectionState::Disconnected => format!("down for {}", duration_words(since)),
        _ => format!("for {}", duration_words(since)),
    };
    let last_seen = g
        .last_seen_at
        .map(|t| format!("{} ago", duration_words((now - t).num_seconds())))
        .unwrap_or_else(|| "never".into());
    let href = format!("/gateways/{}", g.id);
    let code = g.gateway_id.clone();
    view! {
        <tr data-gateway=code data-state=g.state.as_str()>
            <td>
                <StateBadge state=g.state />
            </td>
            <td>
                <A href=href>{g.name}</A>
                <div class="muted">{g.gateway_id}</div>
            </td>
            <td>{when}</td>
            <td class="hide-narrow">{last_seen}</td>
            <td class="error-text">{g.last_error.unwrap_or_default()}</td>
        </tr>
    }
}

lazy_page!(StatusRoute, StatusPage);
