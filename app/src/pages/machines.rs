//! `/machines`: the machines of every factory or of one (`?factory_id=`), and the
//! form that adds one (admins); each opens its page with trends.

use super::{load_error, page_offset, query_value};
use crate::components::{DataTable, FormError, IdSelect, Pager, TextField, UrlError};
use crate::server_fns::factories::factory_names;
use crate::server_fns::machines::{list_machines, CreateMachine};
use crate::use_current_user;
use domain::machines::{Machine, AREA_MAX, CRITICALITY_MAX, MACHINE_KINDS};
use domain::{AppError, Page};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_navigate;
use uuid::Uuid;

#[component]
pub fn MachinesPage() -> impl IntoView {
    let user = use_current_user();
    let factory = query_value("factory_id");
    let page = query_value("page");
    let create = ServerAction::<CreateMachine>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(machine)) = create.value().get() {
            navigate(&format!("/machines/{}", machine.id), Default::default());
        }
    });
    let factories = Resource::new(|| (), |_| factory_names());
    let machines = Resource::new(
        move || (factory.get(), page.get()),
        |(factory, page)| async move {
            let factory = match factory.as_deref().map(Uuid::parse_str) {
                Some(Ok(id)) => Some(id),
                Some(Err(_)) => return Err(AppError::factory_not_found()),
                None => None,
            };
            list_machines(factory, page_offset(page)).await
        },
    );
    let create_error = Signal::derive(move || create.value().get().and_then(Result::err));
    let chosen = move || factory.get().and_then(|id| id.parse::<Uuid>().ok());

    let filter_and_form = move || {
        factories.get().map(|result| match result {
            Ok(names) => {
                let selected = chosen();
                let options = names
                    .iter()
                    .map(|(id, name)| {
                        view! { <option value=id.to_string() selected=selected == Some(*id)>{name.clone()}</option> }
                    })
                    .collect_view();
                let form = user
                    .is_admin()
                    .then(|| create_form(create, create_error, names.clone(), selected));
                view! {
                    {form}
                    <Form method="GET" action="/machines" attr:class="search" attr:role="search">
                        <label for="machine-factory">"Factory"</label>
                        <select id="machine-factory" name="factory_id">
                            <option value="" selected=selected.is_none()>"All factories"</option>
                            {options}
                        </select>
                        <button type="submit">"Show"</button>
                    </Form>
                }
                .into_any()
            }
            Err(err) => load_error("factories", err),
        })
    };

    view! {
        <header class="page-header">
            <h1>"Machines"</h1>
            <p class="subtitle">"The equipment your sensors measure, and how its vibration moves"</p>
        </header>
        <UrlError />
        <Transition fallback=|| ()>{filter_and_form}</Transition>
        <section class="card">
            <Transition fallback=|| view! { <p>"Loading machines…"</p> }>
                {move || {
                    let names = factories.get().and_then(Result::ok).unwrap_or_default();
                    let base = match chosen() {
                        Some(id) => format!("/machines?factory_id={id}&"),
                        None => "/machines?".to_owned(),
                    };
                    machines.get().map(|result| machine_table(result, &names, user.is_admin(), base))
                }}
            </Transition>
        </section>
    }
}

fn create_form(
    create: ServerAction<CreateMachine>,
    error: Signal<Option<AppError>>,
    factories: Vec<(Uuid, String)>,
    selected: Option<Uuid>,
) -> AnyView {
    let kind = crate::components::submitted_value("kind").unwrap_or_else(|| "motor".into());
    let group = crate::components::submitted_value("iso_group").unwrap_or_default();
    let kinds = MACHINE_KINDS
        .iter()
        .map(|k| view! { <option value=*k selected=kind == *k>{*k}</option> })
        .collect_view();
    let groups = [
        ("", "Not set"),
        ("1", "1: large machines, rigid"),
        ("2", "2: medium machines, rigid"),
        ("3", "3: large machines, flexible"),
        ("4", "4: medium machines, flexible"),
    ]
    .into_iter()
    .map(|(value, text)| view! { <option value=value selected=group == value>{text}</option> })
    .collect_view();
    let field_message = move |name: &'static str, label: &'static str| {
        move || {
            error
                .get()
                .and_then(|e| e.field_message(name).map(|m| format!("{label} {m}")))
        }
    };
    view! {
        <section class="card">
            <h2>"Add a machine"</h2>
            <ActionForm action=create attr:class="form" attr:aria-label="Add machine">
                <IdSelect blank="Choose a factory" label="Factory" name="factory_id" choices=factories selected=selected.unwrap_or_default() error />
                <TextField label="Machine name" name="name" placeholder="e.g. Cooling water pump 2" required=true max_length=domain::NAME_MAX error />
                <div class="field">
                    <label for="field-kind">"Kind"</label>
                    <select id="field-kind" name="kind">{kinds}</select>
                    <p class="field-error" role="alert">{field_message("kind", "Kind")}</p>
                </div>
                <TextField label="Rated speed (RPM)" name="rpm" placeholder="e.g. 1780" max_length=12 error />
                <div class="field">
                    <label for="field-iso_group">"ISO 20816 machine group"</label>
                    <select id="field-iso_group" name="iso_group">{groups}</select>
                    <p class="field-error" role="alert">{field_message("iso_group", "Group")}</p>
                </div>
                <TextField label="Criticality" name="criticality" placeholder="e.g. high" max_length=CRITICALITY_MAX error />
                <TextField label="Area" name="area" placeholder="e.g. Pump house" max_length=AREA_MAX error />
                <FormError error />
                <button type="submit" class="primary" disabled=move || create.pending().get()>
                    {move || if create.pending().get() { "Saving…" } else { "Add machine" }}
                </button>
            </ActionForm>
        </section>
    }
    .into_any()
}

fn machine_table(
    result: Result<Page<Machine>, AppError>,
    factories: &[(Uuid, String)],
    admin: bool,
    base: String,
) -> AnyView {
    let page = match result {
        Ok(page) => page,
        Err(err) => return load_error("machines", err),
    };
    if page.data.is_empty() {
        return view! {
            <div class="empty">
                <h2>"No machines yet"</h2>
                <p>{if admin { "Add a machine, then put its sensors on it." } else { "An administrator adds machines." }}</p>
            </div>
        }
        .into_any();
    }
    let total = page.pagination.total;
    let rows = page
        .data
        .into_iter()
        .map(|m| {
            let factory = factories
                .iter()
                .find(|(id, _)| *id == m.factory_id)
                .map(|(_, name)| name.clone())
                .unwrap_or_default();
            view! {
                <tr>
                    <td class="strong"><A href=format!("/machines/{}", m.id)>{m.name}</A></td>
                    <td>{m.kind}</td>
                    <td>{factory}</td>
                    <td class="hide-narrow">{m.area.unwrap_or_else(|| "—".into())}</td>
                    <td class="num hide-narrow">{m.rpm.map(|r| format!("{r:.0}")).unwrap_or_else(|| "—".into())}</td>
                    <td class="num hide-narrow">{m.iso_group.map(|g| g.to_string()).unwrap_or_else(|| "—".into())}</td>
                    <td class="num">{m.points.len()}</td>
                </tr>
            }
        })
        .collect_view();
    let pagination = page.pagination;
    view! {
        <h2>{format!("{total} {}", if total == 1 { "machine" } else { "machines" })}</h2>
        <DataTable
            label="Machines"
            columns=vec![
                ("Name", ""),
                ("Kind", ""),
                ("Factory", ""),
                ("Area", "hide-narrow"),
                ("RPM", "num hide-narrow"),
                ("ISO group", "num hide-narrow"),
                ("Points", "num"),
            ]
        >
            {rows}
        </DataTable>
        <Pager pagination base />
    }
    .into_any()
}

lazy_page!(MachinesRoute, MachinesPage);
