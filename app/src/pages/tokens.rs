//! `/tokens` (administrators): API tokens for scripts. A new token's secret is
//! shown once, right after it is created.

use super::load_error;
use crate::components::{DataTable, FormError, RoleSelect, TextField, Toast, UrlError};
use crate::server_fns::users::{list_tokens, CreateToken, RevokeToken, TokenItem};
use domain::inventory::NAME_MAX;
use leptos::form::ActionForm;
use leptos::prelude::*;

#[component]
pub fn TokensPage() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let changes = RwSignal::new(0u32);
    let toast = RwSignal::new(None::<Result<String, String>>);
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get() {
            changes.update(|n| *n += 1);
        }
    });
    Effect::new(move |_| match revoke.value().get() {
        Some(Ok(())) => {
            changes.update(|n| *n += 1);
            toast.set(Some(Ok(
                "Token revoked; scripts using it are refused within 10 seconds.".into(),
            )));
        }
        Some(Err(err)) => toast.set(Some(Err(err.message))),
        None => {}
    });
    let tokens = Resource::new(move || changes.get(), |_| list_tokens());
    let error = Signal::derive(move || create.value().get().and_then(Result::err));
    let created = move || {
        create.value().get().and_then(Result::ok).map(|created| {
            view! {
                <div class="secret" role="status">
                    <p>{format!("Token “{}” created. Copy it now: it will not be shown again.", created.token.name)}</p>
                    <code class="token-secret">{created.secret}</code>
                </div>
            }
        })
    };

    view! {
        <header class="page-header">
            <h1>"API tokens"</h1>
            <p class="subtitle">"For scripts: send Authorization: Bearer <token> to /api"</p>
        </header>
        <Toast message=toast />
        <UrlError />
        <Transition fallback=|| view! { <p>"Loading tokens…"</p> }>
            {move || tokens.get().map(|result| match result {
                Ok(tokens) => view! {
                    <section class="card">
                        <h2>"Create a token"</h2>
                        <ActionForm action=create attr:class="form" attr:aria-label="Create token">
                            <TextField label="Token name" name="name" placeholder="e.g. nightly export" required=true max_length=NAME_MAX error />
                            <RoleSelect />
                            <FormError error />
                            <button type="submit" class="primary">"Create token"</button>
                        </ActionForm>
                        {created}
                    </section>
                    <section class="card">{token_table(tokens, revoke)}</section>
                }
                .into_any(),
                Err(err) => load_error("tokens", err),
            })}
        </Transition>
    }
}

fn token_table(tokens: Vec<TokenItem>, revoke: ServerAction<RevokeToken>) -> AnyView {
    if tokens.is_empty() {
        return view! { <div class="empty"><h2>"No tokens yet"</h2></div> }.into_any();
    }
    let rows = tokens
        .into_iter()
        .map(|token| {
            let when = |at: Option<chrono::DateTime<chrono::Utc>>| {
                at.map_or_else(|| "Never".to_owned(), |at| at.format("%Y-%m-%d %H:%M").to_string())
            };
            let action = token.revoked_at.is_none().then(|| {
                view! {
                    <details class="confirm">
                        <summary>"Revoke"</summary>
                        <div class="confirm-box">
                            <p>{format!("Revoke “{}”? Scripts using it stop working.", token.name)}</p>
                            <ActionForm action=revoke>
                                <input type="hidden" name="id" value=token.id.to_string() />
                                <button type="submit" class="danger">"Revoke token"</button>
                            </ActionForm>
                        </div>
                    </details>
                }
            });
            view! {
                <tr>
                    <td class="strong">{token.name.clone()}</td>
                    <td>{token.role.to_string()}</td>
                    <td>{if token.revoked_at.is_some() { "Revoked" } else { "Active" }}</td>
                    <td class="hide-narrow">{when(Some(token.created_at))}</td>
                    <td class="hide-narrow">{when(token.last_used_at)}</td>
                    <td class="row-actions">{action}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <DataTable
            label="API tokens"
            columns=vec![
                ("Name", ""),
                ("Role", ""),
                ("Status", ""),
                ("Created", "hide-narrow"),
                ("Last used", "hide-narrow"),
                ("Actions", ""),
            ]
        >
            {rows}
        </DataTable>
    }
    .into_any()
}

lazy_page!(TokensRoute, TokensPage);
