//! `/gateways`: the gateway table (factory filter and page in the URL), the
//! form that adds one or edits one (`?edit=<id>`), and delete with a confirmation.

use super::{load_error, page_offset, query_value};
use crate::api::factories::factory_names;
use crate::api::gateways::{list_gateways, CreateGateway, DeleteGateway, GatewayListItem, UpdateGateway};
use crate::components::{DataTable, FactorySelect, FormError, Pager, StateBadge, TextField, Toast, UrlError};
use crate::live::{follow, Link};
use crate::use_current_user;
use domain::inventory::{
    EMAIL_MAX, FIRMWARE_MAX, GATEWAY_ID_MAX, MODEL_MAX, NAME_MAX, PASSWORD_MAX, TLS_PIN_INPUT_MAX, URL_MAX,
};
use domain::live::GatewayLive;
use domain::{AppError, Gateway, Page};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_navigate;
use uuid::Uuid;

type Choices = Vec<(Uuid, String)>;

#[component]
pub fn GatewaysPage() -> impl IntoView {
    let user = use_current_user();
    let factory = query_value("factory");
    let page = query_value("page");
    let edit = query_value("edit");
    let create = ServerAction::<CreateGateway>::new();
    let update = ServerAction::<UpdateGateway>::new();
    let delete = ServerAction::<DeleteGateway>::new();
    let changes = RwSignal::new(0u32);
    let toast = RwSignal::new(None::<Result<String, String>>);
    let factory_id = Memo::new(move |_| factory.get().and_then(|f| Uuid::parse_str(&f).ok()));
    let list_query = move || factory_id.get().map(|id| format!("factory={id}&")).unwrap_or_default();
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

    // Live states from the event stream (browser only), over the table's rows.
    let live = RwSignal::new(Vec::<GatewayLive>::new());
    let link = RwSignal::new(Link::Connecting);
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            follow(live, link, |_| {});
        }
    });

    let gateways = Resource::new(
        move || (factory_id.get(), page.get(), changes.get()),
        |(factory, page, _)| list_gateways(factory, page_offset(page)),
    );
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
                .and_then(|page| page.data.into_iter().find(|item| item.gateway.id == id))
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
                    choices
                        .get()
                        .and_then(Result::ok)
                        .map(|choices| view! {
                            <Form method="GET" action="/gateways" attr:class="search" attr:role="search">
                                <label for="gateway-factory-filter">"Filter by factory"</label>
                                <select id="gateway-factory-filter" name="factory">
                                    <option value="" selected=selected.is_none()>"All factories"</option>
                                    {choices
                                        .into_iter()
                                        .map(|(id, name)| view! {
                                            <option value=id.to_string() selected=selected == Some(id)>{name}</option>
                                        })
                                        .collect_view()}
                                </select>
                                <button type="submit">"Filter"</button>
                                {selected.map(|_| view! { <A href="/gateways">"Clear filter"</A> })}
                            </Form>
                        })
                }}
            </Transition>
            <Transition fallback=|| view! { <p>"Loading gateways…"</p> }>
                {move || {
                    let admin = user.is_admin();
                    gateways.get().map(|result| gateway_table(result, admin, delete, list_query(), live))
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
                <FactorySelect label="Factory" name="factory_id" choices selected=factory.unwrap_or_default() error />
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
                <FactorySelect label="Factory" name="factory_id" choices selected=gateway.factory_id error />
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

fn gateway_table(
    result: Result<Page<GatewayListItem>, AppError>,
    admin: bool,
    delete: ServerAction<DeleteGateway>,
    list_query: String,
    live: RwSignal<Vec<GatewayLive>>,
) -> AnyView {
    let page = match result {
        Ok(page) => page,
        Err(err) => return load_error("gateways", err),
    };
    let total = page.pagination.total;
    let filtered = !list_query.is_empty();
    if page.data.is_empty() {
        return view! {
            <div class="empty">
                {if filtered {
                    view! {
                        <h2>"No gateways for this factory"</h2>
                        <p>"Try selecting a different factory or clearing the filter."</p>
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
    let pagination = page.pagination;
    let rows = page
        .data
        .into_iter()
        .map(|item| {
            let g = item.gateway;
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
            view! {
                <tr>
                    <td>{item.factory_name}</td>
                    <td class="mono">{g.gateway_id}</td>
                    <td class="strong"><A href=format!("/gateways/{}", g.id)>{g.name}</A></td>
                    <td class="mono hide-narrow">{g.url}</td>
                    <td>
                        {move || {
                            // The stream's latest word, else the state at page load (so the
                            // first render is the same on the server and in the browser).
                            let id = g.id;
                            let state = live.with(|all| all.iter().find(|l| l.id == id).map(|l| l.state));
                            match state.or(item.state) {
                                Some(state) => view! { <StateBadge state /> }.into_any(),
                                None => "—".into_any(),
                            }
                        }}
                    </td>
                    <td class="hide-narrow">{last_seen}</td>
                    <td class="hide-narrow">{g.model.unwrap_or_else(|| "—".into())}</td>
                    <td class="hide-narrow">{g.firmware_version.unwrap_or_else(|| "—".into())}</td>
                    {actions}
                </tr>
            }
        })
        .collect_view();
    let mut columns = vec![
        ("Factory", ""),
        ("Gateway ID", ""),
        ("Name", ""),
        ("URL", "hide-narrow"),
        ("State", ""),
        ("Last seen", "hide-narrow"),
        ("Model", "hide-narrow"),
        ("Firmware", "hide-narrow"),
    ];
    if admin {
        columns.push(("Actions", ""));
    }
    view! {
        <h2>{format!("{total} {}", if total == 1 { "gateway" } else { "gateways" })}</h2>
        <DataTable label="Gateways" columns>
            {rows}
        </DataTable>
        <Pager pagination base=format!("/gateways?{list_query}") />
    }
    .into_any()
}

lazy_page!(GatewaysRoute, GatewaysPage);
