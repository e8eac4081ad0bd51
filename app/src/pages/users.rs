//! `/users` (administrators): create users, change roles, disable, reset passwords.

use super::load_error;
use crate::components::{DataTable, FormError, RoleSelect, TextField, Toast, UrlError};
use crate::server_fns::users::{list_users, CreateUser, ResetUserPassword, SetUserDisabled, SetUserRole};
use domain::auth::USER_PASSWORD_MAX;
use domain::inventory::EMAIL_MAX;
use domain::{AppError, Role, User};
use leptos::form::ActionForm;
use leptos::prelude::*;

#[derive(Clone, Copy)]
struct Actions {
    role: ServerAction<SetUserRole>,
    disabled: ServerAction<SetUserDisabled>,
    reset: ServerAction<ResetUserPassword>,
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let actions = Actions {
        role: ServerAction::new(),
        disabled: ServerAction::new(),
        reset: ServerAction::new(),
    };
    let changes = RwSignal::new(0u32);
    let toast = RwSignal::new(None::<Result<String, String>>);
    let report = move |result: Option<Result<User, AppError>>, done: &'static str| match result {
        Some(Ok(user)) => {
            changes.update(|n| *n += 1);
            toast.set(Some(Ok(format!("{} {done}.", user.email))));
        }
        Some(Err(err)) => toast.set(Some(Err(err.message))),
        None => {}
    };
    Effect::new(move |_| {
        if let Some(Ok(user)) = create.value().get() {
            changes.update(|n| *n += 1);
            toast.set(Some(Ok(format!("User {} created.", user.email))));
        }
    });
    Effect::new(move |_| report(actions.role.value().get(), "now has a new role"));
    Effect::new(move |_| report(actions.disabled.value().get(), "updated"));
    Effect::new(move |_| report(actions.reset.value().get(), "has a new password and was signed out"));
    let users = Resource::new(move || changes.get(), |_| list_users());
    let error = Signal::derive(move || create.value().get().and_then(Result::err));

    view! {
        <header class="page-header">
            <h1>"Users"</h1>
            <p class="subtitle">"Who can sign in, and what they may do"</p>
        </header>
        <Toast message=toast />
        <UrlError />
        <Transition fallback=|| view! { <p>"Loading users…"</p> }>
            {move || users.get().map(|result| match result {
                Ok(users) => view! {
                    <section class="card">
                        <h2>"Add a user"</h2>
                        <ActionForm action=create attr:class="form" attr:aria-label="Add user">
                            <TextField label="Email" name="email" input_type="email" required=true max_length=EMAIL_MAX error />
                            <TextField label="Password" name="password" input_type="password" required=true max_length=USER_PASSWORD_MAX error />
                            <RoleSelect />
                            <FormError error />
                            <button type="submit" class="primary">"Add user"</button>
                        </ActionForm>
                    </section>
                    <section class="card">{user_table(users, actions)}</section>
                }
                .into_any(),
                Err(err) => load_error("users", err),
            })}
        </Transition>
    }
}

fn user_table(users: Vec<User>, actions: Actions) -> AnyView {
    let rows = users
        .into_iter()
        .map(|user| {
            let id = user.id;
            let disabled = user.disabled_at.is_some();
            let other_role = if user.role == Role::Admin { Role::Viewer } else { Role::Admin };
            view! {
                <tr>
                    <td class="strong">{user.email.clone()}</td>
                    <td>{user.role.to_string()}</td>
                    <td>{if disabled { "Disabled" } else { "Active" }}</td>
                    <td class="hide-narrow">{user.created_at.format("%Y-%m-%d").to_string()}</td>
                    <td class="row-actions">
                        <ActionForm action=actions.role>
                            <input type="hidden" name="id" value=id.to_string() />
                            <input type="hidden" name="role" value=other_role.as_str() />
                            <button type="submit">{format!("Make {other_role}")}</button>
                        </ActionForm>
                        <ActionForm action=actions.disabled>
                            <input type="hidden" name="id" value=id.to_string() />
                            <input type="hidden" name="disabled" value=(!disabled).to_string() />
                            <button type="submit" class=if disabled { "" } else { "danger" }>
                                {if disabled { "Enable" } else { "Disable" }}
                            </button>
                        </ActionForm>
                        <details class="confirm">
                            <summary>"Reset password"</summary>
                            <div class="confirm-box">
                                <ActionForm action=actions.reset attr:aria-label=format!("Reset password for {}", user.email)>
                                    <input type="hidden" name="id" value=id.to_string() />
                                    <label for=format!("reset-{id}")>"New password"</label>
                                    <input
                                        id=format!("reset-{id}")
                                        type="password"
                                        name="password"
                                        autocomplete="new-password"
                                        required=true
                                        maxlength=USER_PASSWORD_MAX
                                    />
                                    <button type="submit">"Set password"</button>
                                </ActionForm>
                            </div>
                        </details>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <DataTable
            label="Users"
            columns=vec![("Email", ""), ("Role", ""), ("Status", ""), ("Created", "hide-narrow"), ("Actions", "")]
        >
            {rows}
        </DataTable>
    }
    .into_any()
}

lazy_page!(UsersRoute, UsersPage);
