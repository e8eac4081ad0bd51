//! `/factories`: the factory table (search and page in the URL), the form that
//! adds one or edits one (`?edit=<id>`), and delete with a confirmation.

use super::{load_error, page_offset, query_value};
use crate::components::{DataTable, FormError, Pager, TextField, Toast, UrlError};
use crate::server_fns::factories::{
    get_factory, list_factories, CreateFactory, DeleteFactory, FactoryListItem, UpdateFactory,
};
use crate::use_current_user;
use domain::inventory::{LOCATION_MAX, NAME_MAX, TIMEZONE_MAX};
use domain::links::encode_query_value;
use domain::{AppError, Factory, Page};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_navigate;
use uuid::Uuid;

fn gateways_phrase(count: i64) -> String {
    match count {
        0 => "no gateways".to_owned(),
        1 => "its 1 gateway".to_owned(),
        n => format!("its {n} gateways"),
    }
}

#[component]
pub fn FactoriesPage() -> impl IntoView {
    let user = use_current_user();
    let search = query_value("q");
    let page = query_value("page");
    let edit = query_value("edit");
    let create = ServerAction::<CreateFactory>::new();
    let update = ServerAction::<UpdateFactory>::new();
    let delete = ServerAction::<DeleteFactory>::new();
    // Bumped by successful changes only: a failed submit must not re-render
    // (and so empty) the form the person is correcting.
    let changes = RwSignal::new(0u32);
    let toast = RwSignal::new(None::<Result<String, String>>);
    // The list's URL with its search and page, for links that keep them.
    let list_query = move || {
        let mut query = String::new();
        if let Some(q) = search.get() {
            query.push_str(&format!("q={}&", encode_query_value(&q)));
        }
        query
    };
    let navigate = use_navigate();

    Effect::new(move |_| {
        if let Some(Ok(factory)) = create.value().get() {
            changes.update(|n| *n += 1);
            toast.set(Some(Ok(format!("Factory “{}” created.", factory.name))));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(factory)) = update.value().get() {
            changes.update(|n| *n += 1);
            toast.set(Some(Ok(format!("Factory “{}” saved.", factory.name))));
            navigate(&format!("/factories?{}", list_query()), Default::default());
        }
    });
    Effect::new(move |_| match delete.value().get() {
        Some(Ok(deleted)) => {
            changes.update(|n| *n += 1);
            let gateways = match deleted.gateways_deleted {
                0 => String::new(),
                1 => " and its 1 gateway".to_owned(),
                n => format!(" and its {n} gateways"),
            };
            toast.set(Some(Ok(format!("Factory “{}”{gateways} deleted.", deleted.name))));
        }
        Some(Err(err)) => toast.set(Some(Err(err.message))),
        None => {}
    });

    let factories = Resource::new(
        move || (search.get(), page.get(), changes.get()),
        |(search, page, _)| list_factories(page_offset(page), search),
    );
    let editing = Resource::new(
        move || edit.get(),
        |id| async move {
            match id.as_deref().map(Uuid::parse_str) {
                Some(Ok(id)) => get_factory(id).await.map(Some),
                Some(Err(_)) => Err(AppError::factory_not_found()),
                None => Ok(None),
            }
        },
    );
    let create_error = Signal::derive(move || create.value().get().and_then(Result::err));
    let update_error = Signal::derive(move || update.value().get().and_then(Result::err));

    let form = move || {
        let admin = user.is_admin();
        editing.get().map(|result| match result {
            Ok(Some(factory)) if admin => edit_form(factory, update, update_error, list_query()),
            Ok(_) if admin => create_form(create, create_error),
            Ok(_) => ().into_any(),
            Err(err) => load_error("the factory", err),
        })
    };

    view! {
        <header class="page-header">
            <h1>"Factories"</h1>
            <p class="subtitle">"Manage your factory locations"</p>
        </header>
        <Toast message=toast />
        <UrlError />
        <Transition fallback=|| ()>{form}</Transition>
        <section class="card">
            <Form method="GET" action="/factories" attr:class="search" attr:role="search">
                <label for="factory-search">"Search factories"</label>
                <input
                    id="factory-search"
                    type="search"
                    name="q"
                    placeholder="Part of a name"
                    value=move || search.get().unwrap_or_default()
                />
                <button type="submit">"Search"</button>
            </Form>
            <Transition fallback=|| view! { <p>"Loading factories…"</p> }>
                {move || {
                    let admin = user.is_admin();
                    factories.get().map(|result| factory_table(result, admin, delete, list_query()))
                }}
            </Transition>
        </section>
    }
}

fn create_form(create: ServerAction<CreateFactory>, error: Signal<Option<AppError>>) -> AnyView {
    view! {
        <section class="card">
            <h2>"Add a factory"</h2>
            <ActionForm action=create attr:class="form" attr:aria-label="Add factory">
                <TextField label="Factory name" name="name" placeholder="Enter factory name" required=true max_length=NAME_MAX error />
                <TextField label="Location" name="location" placeholder="Enter location" max_length=LOCATION_MAX error />
                <TextField label="Time zone" name="timezone" placeholder="UTC" value="UTC" required=true max_length=TIMEZONE_MAX error />
                <FormError error />
                <button type="submit" class="primary" disabled=move || create.pending().get()>
                    {move || if create.pending().get() { "Saving…" } else { "Add factory" }}
                </button>
            </ActionForm>
        </section>
    }
    .into_any()
}

fn edit_form(
    factory: Factory,
    update: ServerAction<UpdateFactory>,
    error: Signal<Option<AppError>>,
    list_query: String,
) -> AnyView {
    view! {
        <section class="card">
            <h2>{format!("Edit “{}”", factory.name)}</h2>
            <ActionForm action=update attr:class="form" attr:aria-label="Edit factory">
                <input type="hidden" name="id" value=factory.id.to_string() />
                <TextField label="Factory name" name="name" value=factory.name required=true max_length=NAME_MAX error />
                <TextField label="Location" name="location" value=factory.location.unwrap_or_default() max_length=LOCATION_MAX error />
                <TextField label="Time zone" name="timezone" value=factory.timezone required=true max_length=TIMEZONE_MAX error />
                <FormError error />
                <div class="actions">
                    <button type="submit" class="primary" disabled=move || update.pending().get()>
                        {move || if update.pending().get() { "Saving…" } else { "Save changes" }}
                    </button>
                    <A href=format!("/factories?{list_query}")>"Cancel"</A>
                </div>
            </ActionForm>
        </section>
    }
    .into_any()
}

fn factory_table(
    result: Result<Page<FactoryListItem>, AppError>,
    admin: bool,
    delete: ServerAction<DeleteFactory>,
    list_query: String,
) -> AnyView {
    let page = match result {
        Ok(page) => page,
        Err(err) => return load_error("factories", err),
    };
    let total = page.pagination.total;
    if page.data.is_empty() {
        return view! {
            <div class="empty">
                <h2>{if list_query.is_empty() { "No factories yet" } else { "No factories match this search" }}</h2>
                <p>{if admin { "Create your first factory to get started." } else { "An administrator adds factories." }}</p>
            </div>
        }
        .into_any();
    }
    let pagination = page.pagination;
    // Edit links keep the page the row is on.
    let page_number = pagination.offset / u64::from(pagination.limit.max(1)) + 1;
    let page_query = if page_number > 1 {
        format!("page={page_number}&")
    } else {
        String::new()
    };
    let rows = page
        .data
        .into_iter()
        .map(|item| {
            let f = item.factory;
            let actions = admin.then(|| {
                let confirm = format!(
                    "Delete “{}” and {}? This cannot be undone.",
                    f.name,
                    gateways_phrase(item.gateway_count)
                );
                view! {
                    <td class="row-actions">
                        <A href=format!("/factories?{list_query}{page_query}edit={}", f.id)>"Edit"</A>
                        <details class="confirm">
                            <summary>"Delete"</summary>
                            <div class="confirm-box">
                                <p>{confirm}</p>
                                <ActionForm action=delete>
                                    <input type="hidden" name="id" value=f.id.to_string() />
                                    <button type="submit" class="danger">"Delete factory"</button>
                                </ActionForm>
                            </div>
                        </details>
                    </td>
                }
            });
            view! {
                <tr>
                    <td class="strong">{f.name}</td>
                    <td>{f.location.unwrap_or_else(|| "—".into())}</td>
                    <td>{f.timezone}</td>
                    <td class="num">{item.gateway_count}</td>
                    <td><A href=format!("/machines?factory_id={}", f.id)>"Machines"</A></td>
                    <td class="hide-narrow">{f.created_at.format("%Y-%m-%d").to_string()}</td>
                    {actions}
                </tr>
            }
        })
        .collect_view();
    let mut columns = vec![
        ("Name", ""),
        ("Location", ""),
        ("Time zone", ""),
        ("Gateways", "num"),
        ("Machines", ""),
        ("Created", "hide-narrow"),
    ];
    if admin {
        columns.push(("Actions", ""));
    }
    view! {
        <h2>{format!("{total} {}", if total == 1 { "factory" } else { "factories" })}</h2>
        <DataTable label="Factories" columns>
            {rows}
        </DataTable>
        <Pager pagination base=format!("/factories?{list_query}") />
    }
    .into_any()
}

lazy_page!(FactoriesRoute, FactoriesPage);
