//! `/gateways`: the gateway table (factory and state filters, sort column and order,
//! and page in the URL; live states applied by key from the coalesced stream), bulk
//! actions on a selection for admins, the form that adds one or edits one
//! (`?edit=<id>`), and delete with a confirmation.

use super::{load_error, page_offset, query_value};
use crate::components::{percent_text, FormError, IdSelect, Pager, StateBadge, TextField, Toast, UrlError};
use crate::event_stream::{follow_batches, Link};
use crate::server_fns::factories::factory_names;
use crate::server_fns::gateways::{
    list_gateways, BulkGateways, CreateGateway, DeleteGateway, GatewayList, UpdateGateway,
};
use crate::use_current_user;
use domain::inventory::{
    EMAIL_MAX, FIRMWARE_MAX, GATEWAY_ID_MAX, MODEL_MAX, NAME_MAX, PASSWORD_MAX, TLS_PIN_INPUT_MAX, URL_MAX,
};
use domain::links::encode_query_value;
use domain::live::{BulkAction, ConnectionState};
use domain::{AppError, Gateway, GatewaySort};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_navigate;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

type Choices = Vec<(Uuid, String)>;

#[component]
pub fn GatewaysPage() -> impl IntoView {
    let user = use_current_user();
    let factory = query_value("factory");
    let state = query_value("state");
    let sort = query_value("sort");
    let order = query_value("order");
    let page = query_value("page");
    let edit = query_value("edit");
    let create = ServerAction::<CreateGateway>::new();
    let update = ServerAction::<UpdateGateway>::new();
    let delete = ServerAction::<DeleteGateway>::new();
    let bulk = ServerAction::<BulkGateways>::new();
    let changes = RwSignal::new(0u32);
    let toast = RwSignal::new(None::<Result<String, String>>);
    let factory_id = Memo::new(move |_| factory.get().and_then(|f| Uuid::parse_str(&f).ok()));
    // The list's parameters (without the page), ending in `&` when any is set.
    let list_query = move || {
        let mut query = String::new();
        if let Some(id) = factory_id.get() {
            query.push_str(&format!("factory={id}&"));
        }
        for (name, value) in [("state", state.get()), ("sort", sort.get()), ("order", order.get())] {
            if let Some(value) = value {
                query.push_str(&format!("{name}={}&", encode_query_value(&value)));
            }
        }
        query
    };
    let navigate = use_navigate();

    Effect::new(move |_| {
        if let Some(Ok(gateway)) = create.value().get() {
            changes.update(|n| *n += 1);
            toast.set(Some(Ok(format!("Gateway “{}” created.", gateway.name))));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(gateway)) = update.value().get() {
            changes.update(|n| *n += 1);
            toast.set(Some(Ok(format!("Gateway “{}” saved.", gateway.name))));
            navigate(&format!("/gateways?{}", list_query()), Default::default());
        }
    });
    Effect::new(move |_| match delete.value().get() {
        Some(Ok(name)) => {
            changes.update(|n| *n += 1);
            toast.set(Some(Ok(format!("Gateway “{name}” deleted."))));
        }
        Some(Err(err)) => toast.set(Some(Err(err.message))),
        None => {}
    });
    let selected = RwSignal::new(HashSet::<Uuid>::new());
    Effect::new(move |_| match bulk.value().get() {
        Some(Ok(outcome)) => {
            changes.update(|n| *n += 1);
            selected.set(HashSet::new());
            toast.set(Some(Ok(bulk_words(&outcome))));
        }
        Some(Err(err)) => toast.set(Some(Err(err.message))),
        None => {}
    });

    let gateways = Resource::new(
        move || {
            (
                factory_id.get(),
                page.get(),
                changes.get(),
                state.get(),
                sort.get(),
                order.get(),
            )
        },
        |(factory, page, _, state, sort, order)| list_gateways(factory, page_offset(page), state, sort, order),
    );
    // Live states from the coalesced stream (browser only), applied to the listed rows
    // by id; the stream opens once, when the first list is in.
    let live_states: StoredValue<LiveStates> = StoredValue::new(HashMap::new());
    let link = RwSignal::new(Link::Connecting);
    Effect::new(move |opened: Option<bool>| {
        if opened == Some(true) {
            return true;
        }
        let Some(Ok(list)) = gateways.get() else { return false };
        let url = format!("/api/events?coalesce=true&last_event_id={}", list.as_of);
        follow_batches(url, link, move |batch: StateFrame| {
            // Filtered by state, the list follows too: a listed gateway that leaves the
            // state, or another that enters it, brings the page again.
            let filter = state.get_untracked();
            let factory = factory_id.get_untracked();
            let mut membership_changed = false;
            live_states.with_value(|rows| {
                for gateway in &batch.gateways {
                    let listed = rows.get(&gateway.id);
                    if let Some(row) = listed {
                        row.set(Some(gateway.state));
                    }
                    let in_view = factory.is_none_or(|f| f == gateway.factory_id);
                    if let Some(filter) = filter.as_deref().filter(|_| in_view) {
                        membership_changed |= listed.is_some() != (gateway.state.as_str() == filter);
                    }
                }
            });
            if batch.resync || membership_changed {
                gateways.refetch();
            }
        });
        true
    });
    let choices = Resource::new(move || changes.get(), |_| factory_names());
    let create_error = Signal::derive(move || create.value().get().and_then(Result::err));
    let update_error = Signal::derive(move || update.value().get().and_then(Result::err));

    // The form: edit the gateway named by `?edit=` (it is on the listed page),
    // otherwise add one. Only administrators see it.
    let form = move || {
        if !user.is_admin() {
            return Some(().into_any());
        }
        let choices = match choices.get()? {
            Ok(choices) => choices,
            Err(err) => return Some(load_error("factories", err)),
        };
        let editing = edit.get().and_then(|id| Uuid::parse_str(&id).ok()).and_then(|id| {
            gateways
                .get()
                .and_then(Result::ok)
                .and_then(|list| list.page.data.into_iter().find(|item| item.gateway.id == id))
        });
        Some(match editing {
            Some(item) => edit_form(item.gateway, choices, update, update_error, list_query()),
            None => create_form(choices, factory_id.get_untracked(), create, create_error),
        })
    };

    view! {
        <header class="page-header">
            <h1>"Gateways"</h1>
            <p class="subtitle">"Manage gateway connections"</p>
        </header>
        <Toast message=toast />
        <UrlError />
        <Transition fallback=|| ()>{form}</Transition>
        <section class="card">
            <Transition fallback=|| ()>
                {move || {
                    let selected = factory_id.get();
                    let _ = (state.get(), sort.get(), order.get());
                    choices
                        .get()
                        .and_then(Result::ok)
                        .map(|choices| view! {
                            <Form method="GET" action="/gateways" attr:class="search" attr:role="search">
                                <label for="gateway-factory-filter">"Factory"</label>
                                <select id="gateway-factory-filter" name="factory">
                                    <option value="" selected=selected.is_none()>"All factories"</option>
                                    {choices
                                        .into_iter()
                                        .map(|(id, name)| view! {
                                            <option value=id.to_string() selected=selected == Some(id)>{name}</option>
                                        })
                                        .collect_view()}
                                </select>
                                <label for="gateway-state-filter">"State"</label>
                                <select id="gateway-state-filter" name="state">
                                    <option value="" selected=state.get_untracked().is_none()>"Any state"</option>
                                    {ConnectionState::ALL
                                        .into_iter()
                                        .map(|s| view! {
                                            <option value=s.as_str() selected=state.get_untracked().as_deref() == Some(s.as_str())>
                                                {s.label()}
                                            </option>
                                        })
                                        .collect_view()}
                                </select>
                                {sort.get_untracked().map(|sort| view! { <input type="hidden" name="sort" value=sort /> })}
                                {order.get_untracked().map(|order| view! { <input type="hidden" name="order" value=order /> })}
                                <button type="submit">"Filter"</button>
                                {(selected.is_some() || state.get_untracked().is_some())
                                    .then(|| view! { <A href="/gateways">"Clear filters"</A> })}
                            </Form>
                        })
                }}
            </Transition>
            <Transition fallback=|| view! { <p>"Loading gateways…"</p> }>
                {move || {
                    let admin = user.is_admin();
                    let table = TableContext {
                        admin,
                        delete,
                        bulk,
                        selected,
                        list_query: list_query(),
                        sort: sort.get().as_deref().and_then(GatewaySort::parse).unwrap_or_default(),
                        descending: order.get().as_deref() == Some("desc"),
                        live_states,
                    };
                    gateways.get().map(|result| gateway_table(result, table))
                }}
            </Transition>
        </section>
    }
}

/// What the certificate pin field is for, shown while it is empty.
const PIN_PLACEHOLDER: &str = "wss:// with a self-signed certificate: its SHA-256 (ab:cd:…)";

fn create_form(
    choices: Choices,
    factory: Option<Uuid>,
    create: ServerAction<CreateGateway>,
    error: Signal<Option<AppError>>,
) -> AnyView {
    view! {
        <section class="card">
            <h2>"Add a gateway"</h2>
            <ActionForm action=create attr:class="form" attr:aria-label="Add gateway">
                <IdSelect blank="Choose a factory" label="Factory" name="factory_id" choices selected=factory.unwrap_or_default() error />
                <TextField label="Gateway ID" name="gateway_id" placeholder="e.g., GW-001" required=true max_length=GATEWAY_ID_MAX error />
                <TextField label="Gateway name" name="name" placeholder="Enter gateway name" required=true max_length=NAME_MAX error />
                <TextField label="Gateway URL" name="url" placeholder="ws://192.168.1.100:5000" required=true max_length=URL_MAX error />
                <TextField label="Email" name="email" input_type="email" placeholder="admin@gateway.local" required=true max_length=EMAIL_MAX error />
                <TextField label="Password" name="password" input_type="password" required=true max_length=PASSWORD_MAX error />
                <TextField label="Model" name="model" placeholder="e.g., CTC-W100" max_length=MODEL_MAX error />
                <TextField label="Firmware version" name="firmware_version" placeholder="e.g., 2.1.0" max_length=FIRMWARE_MAX error />
                <TextField label="Certificate pin" name="tls_pin" placeholder=PIN_PLACEHOLDER max_length=TLS_PIN_INPUT_MAX error />
                <FormError error />
                <button type="submit" class="primary" disabled=move || create.pending().get()>
                    {move || if create.pending().get() { "Saving…" } else { "Add gateway" }}
                </button>
            </ActionForm>
        </section>
    }
    .into_any()
}

fn edit_form(
    gateway: Gateway,
    choices: Choices,
    update: ServerAction<UpdateGateway>,
    error: Signal<Option<AppError>>,
    list_query: String,
) -> AnyView {
    // A blank password field must send nothing, so the stored password stays:
    // once the browser has taken over, the field has no `name` (and so is not
    // submitted) while it is empty. The server's HTML names it, so the form
    // works without JavaScript too; the server treats an empty value as "keep".
    let password = RwSignal::new(String::new());
    let interactive = RwSignal::new(false);
    Effect::new(move |_| interactive.set(true));
    let password_name = move || (!interactive.get() || !password.get().is_empty()).then_some("password");
    view! {
        <section class="card">
            <h2>{format!("Edit “{}”", gateway.name)}</h2>
            <ActionForm action=update attr:class="form" attr:aria-label="Edit gateway">
                <input type="hidden" name="id" value=gateway.id.to_string() />
                <IdSelect blank="Choose a factory" label="Factory" name="factory_id" choices selected=gateway.factory_id error />
                <TextField label="Gateway ID" name="gateway_id" value=gateway.gateway_id required=true max_length=GATEWAY_ID_MAX error />
                <TextField label="Gateway name" name="name" value=gateway.name required=true max_length=NAME_MAX error />
                <TextField label="Gateway URL" name="url" value=gateway.url required=true max_length=URL_MAX error />
                <TextField label="Email" name="email" input_type="email" value=gateway.email required=true max_length=EMAIL_MAX error />
                <div class="field">
                    <label for="field-password">"Password"</label>
                    <input
                        id="field-password"
                        type="password"
                        name=password_name
                        autocomplete="new-password"
                        placeholder="Leave blank to keep current password"
                        maxlength=PASSWORD_MAX
                        on:input=move |ev| password.set(event_target_value(&ev))
                    />
                </div>
                <TextField label="Model" name="model" value=gateway.model.unwrap_or_default() max_length=MODEL_MAX error />
                <TextField label="Firmware version" name="firmware_version" value=gateway.firmware_version.unwrap_or_default() max_length=FIRMWARE_MAX error />
                <TextField label="Certificate pin" name="tls_pin" value=gateway.tls_pin.unwrap_or_default() placeholder=PIN_PLACEHOLDER max_length=TLS_PIN_INPUT_MAX error />
                <FormError error />
                <div class="actions">
                    <button type="submit" class="primary" disabled=move || update.pending().get()>
                        {move || if update.pending().get() { "Saving…" } else { "Save changes" }}
                    </button>
                    <A href=format!("/gateways?{list_query}")>"Cancel"</A>
                </div>
            </ActionForm>
        </section>
    }
    .into_any()
}

/// What the table reads of a stream frame: each changed gateway's id and state.
#[derive(serde::Deserialize)]
struct StateFrame {
    #[serde(default)]
    gateways: Vec<GatewayState>,
    #[serde(default)]
    resync: bool,
}

#[derive(serde::Deserialize)]
struct GatewayState {
    id: Uuid,
    factory_id: Uuid,
    state: ConnectionState,
}

/// Each listed gateway's live state, by id, as the stream last said.
type LiveStates = HashMap<Uuid, ArcRwSignal<Option<ConnectionState>>>;

/// What the table needs from the page around it.
struct TableContext {
    admin: bool,
    delete: ServerAction<DeleteGateway>,
    bulk: ServerAction<BulkGateways>,
    selected: RwSignal<HashSet<Uuid>>,
    list_query: String,
    sort: GatewaySort,
    descending: bool,
    live_states: StoredValue<LiveStates>,
}

/// "Connect: 12 done, 1 not (GW-7: Gateway not found)".
fn bulk_words(outcome: &domain::live::BulkOutcome) -> String {
    let action = match outcome.action {
        BulkAction::Enable => "Enable",
        BulkAction::Disable => "Disable",
        BulkAction::Connect => "Connect",
        BulkAction::Disconnect => "Disconnect",
    };
    let mut words = format!("{action}: {} done", outcome.done.len());
    if let Some(first) = outcome.failed.first() {
        words.push_str(&format!(", {} not ({})", outcome.failed.len(), first.message));
    }
    words
}

/// The table's columns: heading, class, and the sort key when the server sorts by it
/// (the factory name and the live state are not stored columns).
const COLUMNS: [(&str, &str, Option<GatewaySort>); 9] = [
    ("Factory", "", None),
    ("Gateway ID", "", Some(GatewaySort::GatewayId)),
    ("Name", "", Some(GatewaySort::Name)),
    ("URL", "hide-narrow", Some(GatewaySort::Url)),
    ("State", "", None),
    ("Uptime 24 h", "num hide-narrow", None),
    ("Last seen", "hide-narrow", Some(GatewaySort::LastSeenAt)),
    ("Model", "hide-narrow", Some(GatewaySort::Model)),
    ("Firmware", "hide-narrow", Some(GatewaySort::FirmwareVersion)),
];

fn gateway_table(result: Result<GatewayList, AppError>, table: TableContext) -> AnyView {
    let TableContext {
        admin,
        delete,
        bulk,
        selected,
        list_query,
        sort,
        descending,
        live_states,
    } = table;
    let page = match result {
        Ok(list) => list.page,
        Err(err) => return load_error("gateways", err),
    };
    let total = page.pagination.total;
    let filtered = list_query.contains("factory=") || list_query.contains("state=");
    if page.data.is_empty() {
        return view! {
            <div class="empty">
                {if filtered {
                    view! {
                        <h2>"No gateways match"</h2>
                        <p>"Try another factory or state, or clear the filters."</p>
                    }
                    .into_any()
                } else {
                    view! {
                        <h2>"No gateways yet"</h2>
                        <p>{if admin { "Create your first gateway to get started." } else { "An administrator adds gateways." }}</p>
                    }
                    .into_any()
                }}
            </div>
        }
        .into_any();
    }
    live_states.set_value(
        page.data
            .iter()
            .map(|item| (item.gateway.id, ArcRwSignal::new(item.state)))
            .collect(),
    );
    let listed: Vec<Uuid> = page.data.iter().map(|item| item.gateway.id).collect();
    let pagination = page.pagination;
    // Sort links keep the filters and start again from the first page.
    let filters: String = list_query
        .split('&')
        .filter(|p| p.starts_with("factory=") || p.starts_with("state="))
        .map(|p| format!("{p}&"))
        .collect();
    let headings = COLUMNS
        .into_iter()
        .map(|(text, class, key)| {
            let class = (!class.is_empty()).then_some(class);
            match key {
                None => view! { <th scope="col" class=class>{text}</th> }.into_any(),
                Some(key) => {
                    let current = key == sort;
                    let next_desc = current && !descending;
                    let href = format!(
                        "/gateways?{filters}sort={}&order={}",
                        key.as_str(),
                        if next_desc { "desc" } else { "asc" }
                    );
                    let aria = match (current, descending) {
                        (false, _) => "none",
                        (true, false) => "ascending",
                        (true, true) => "descending",
                    };
                    let arrow = match (current, descending) {
                        (false, _) => "",
                        (true, false) => " ▲",
                        (true, true) => " ▼",
                    };
                    view! {
                        <th scope="col" class=class aria-sort=aria>
                            <A href=href>{text}{arrow}</A>
                        </th>
                    }
                    .into_any()
                }
            }
        })
        .collect_view();
    let all_listed = listed.clone();
    let select_all = admin.then(|| {
        let everyone = all_listed.clone();
        view! {
            <th scope="col">
                <input
                    type="checkbox"
                    aria-label="Select every gateway on this page"
                    prop:checked=move || selected.with(|s| everyone.iter().all(|id| s.contains(id)))
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        selected.update(|s| {
                            for id in &all_listed {
                                if on {
                                    s.insert(*id);
                                } else {
                                    s.remove(id);
                                }
                            }
                        });
                    }
                />
            </th>
        }
    });
    let rows = page
        .data
        .into_iter()
        .map(|item| {
            let g = item.gateway;
            let id = g.id;
            let pick = admin.then(|| {
                view! {
                    <td>
                        <input
                            type="checkbox"
                            aria-label=format!("Select {}", g.gateway_id)
                            prop:checked=move || selected.with(|s| s.contains(&id))
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                selected.update(|s| {
                                    if on {
                                        s.insert(id);
                                    } else {
                                        s.remove(&id);
                                    }
                                });
                            }
                        />
                    </td>
                }
            });
            let actions = admin.then(|| {
                let confirm = format!("Delete gateway “{}” ({})? This cannot be undone.", g.name, g.gateway_id);
                view! {
                    <td class="row-actions">
                        <A href=format!("/gateways?{list_query}edit={}", g.id)>"Edit"</A>
                        <details class="confirm">
                            <summary>"Delete"</summary>
                            <div class="confirm-box">
                                <p>{confirm}</p>
                                <ActionForm action=delete>
                                    <input type="hidden" name="id" value=g.id.to_string() />
                                    <button type="submit" class="danger">"Delete gateway"</button>
                                </ActionForm>
                            </div>
                        </details>
                    </td>
                }
            });
            let last_seen = g
                .last_seen_at
                .map_or_else(|| "Never".to_owned(), |at| at.format("%Y-%m-%d %H:%M UTC").to_string());
            // The stream's latest word, else the state at page load (so the first
            // render is the same on the server and in the browser).
            let live = live_states.with_value(|rows| rows.get(&id).cloned());
            let badge = move || match live.as_ref().and_then(|state| state.get()) {
                Some(state) => view! { <StateBadge state /> }.into_any(),
                None => "—".into_any(),
            };
            view! {
                <tr>
                    {pick}
                    <td>{item.factory_name}</td>
                    <td class="mono">{g.gateway_id}</td>
                    <td class="strong"><A href=format!("/gateways/{}", g.id)>{g.name}</A></td>
                    <td class="mono hide-narrow">{g.url}</td>
                    <td>{badge}</td>
                    <td class="num hide-narrow">{percent_text(item.uptime_24h)}</td>
                    <td class="hide-narrow">{last_seen}</td>
                    <td class="hide-narrow">{g.model.unwrap_or_else(|| "—".into())}</td>
                    <td class="hide-narrow">{g.firmware_version.unwrap_or_else(|| "—".into())}</td>
                    {actions}
                </tr>
            }
        })
        .collect_view();
    let bulk_bar = admin.then(|| {
        let count = move || selected.with(|s| s.len());
        let run = move |action: BulkAction| {
            let ids: Vec<Uuid> = selected.with(|s| s.iter().copied().collect());
            if !ids.is_empty() {
                bulk.dispatch(BulkGateways { action, ids });
            }
        };
        view! {
            <div class="bulk-bar" role="group" aria-label="Bulk actions">
                <span>{move || format!("{} selected", count())}</span>
                {[
                    (BulkAction::Enable, "Enable"),
                    (BulkAction::Disable, "Disable"),
                    (BulkAction::Connect, "Connect"),
                    (BulkAction::Disconnect, "Disconnect"),
                ]
                    .into_iter()
                    .map(|(action, label)| {
                        view! {
                            <button type="button" disabled=move || count() == 0 || bulk.pending().get() on:click=move |_| run(action)>
                                {label}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>
        }
    });
    view! {
        <h2>{format!("{total} {}", if total == 1 { "gateway" } else { "gateways" })}</h2>
        {bulk_bar}
        <div class="table-scroll">
            <table class="data" aria-label="Gateways">
                <thead>
                    <tr>
                        {select_all}
                        {headings}
                        {admin.then(|| view! { <th scope="col">"Actions"</th> })}
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        <Pager pagination base=format!("/gateways?{list_query}") />
    }
    .into_any()
}

lazy_page!(GatewaysRoute, GatewaysPage);
