//! `/factories`: the factory table and the form that adds one.

use crate::api::factories::{list_factories, CreateFactory, FactoryListItem};
use crate::components::{FormError, TextField};
use domain::inventory::{LOCATION_MAX, NAME_MAX, TIMEZONE_MAX};
use domain::{AppError, Page};
use leptos::form::ActionForm;
use leptos::prelude::*;

#[component]
pub fn FactoriesPage() -> impl IntoView {
    let create = ServerAction::<CreateFactory>::new();
    // Reloads the list after every successful create.
    let factories = Resource::new(move || create.version().get(), |_| list_factories(0, None));
    let error = Signal::derive(move || create.value().get().and_then(Result::err));
    let created = move || {
        create
            .value()
            .get()
            .and_then(Result::ok)
            .map(|f| view! { <p class="notice" role="status">{format!("Factory “{}” created.", f.name)}</p> })
    };

    view! {
        <header class="page-header">
            <h1>"Factories"</h1>
            <p class="subtitle">"Manage your factory locations"</p>
        </header>
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
            {created}
        </section>
        <section class="card">
            <Transition fallback=|| view! { <p>"Loading factories…"</p> }>
                {move || factories.get().map(factory_table)}
            </Transition>
        </section>
    }
}

fn factory_table(result: Result<Page<FactoryListItem>, AppError>) -> AnyView {
    let page = match result {
        Ok(page) => page,
        Err(err) => {
            return view! {
                <div class="error-card" role="alert">
                    <h2>"Could not load factories"</h2>
                    <p>{err.message}</p>
                </div>
            }
            .into_any()
        }
    };
    let total = page.pagination.total;
    if page.data.is_empty() {
        return view! {
            <div class="empty">
                <h2>"No factories yet"</h2>
                <p>"Create your first factory to get started."</p>
            </div>
        }
        .into_any();
    }
    let rows = page
        .data
        .into_iter()
        .map(|item| {
            let f = item.factory;
            view! {
                <tr>
                    <td class="strong">{f.name}</td>
                    <td>{f.location.unwrap_or_else(|| "—".into())}</td>
                    <td>{f.timezone}</td>
                    <td class="num">{item.gateway_count}</td>
                    <td class="hide-narrow">{f.created_at.format("%Y-%m-%d").to_string()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <h2>{format!("{total} {}", if total == 1 { "factory" } else { "factories" })}</h2>
        <div class="table-scroll">
            <table class="data" aria-label="Factories">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Location"</th>
                        <th scope="col">"Time zone"</th>
                        <th scope="col" class="num">"Gateways"</th>
                        <th scope="col" class="hide-narrow">"Created"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
