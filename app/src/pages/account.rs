//! `/account`: the signed-in user's own account; changing their password. A user who
//! signed in with a one-time password is sent here until they choose their own.

use crate::components::{FormError, TextField, Toast, UrlError};
use crate::server_fns::auth::ChangePassword;
use domain::auth::USER_PASSWORD_MAX;
use leptos::form::ActionForm;
use leptos::prelude::*;

#[component]
pub fn AccountPage() -> impl IntoView {
    let user = crate::use_current_user();
    let change = ServerAction::<ChangePassword>::new();
    let toast = RwSignal::new(None::<Result<String, String>>);
    let error = Signal::derive(move || change.value().get().and_then(Result::err));
    Effect::new(move |_| {
        if let Some(Ok(_)) = change.value().get() {
            toast.set(Some(
                Ok("Password changed. Your other sessions were signed out.".into()),
            ));
            // The navigation (and a one-time password's restrictions) follow the change.
            user.0.refetch();
        }
    });
    let details = move || {
        user.0.get().and_then(Result::ok).flatten().map(|user| {
            let must_change = user.must_change_password;
            view! {
                <dl class="facts">
                    <dt>"Email"</dt>
                    <dd>{user.email}</dd>
                    <dt>"Role"</dt>
                    <dd>{user.role.to_string()}</dd>
                </dl>
                {must_change.then(|| view! {
                    <p class="toast form-error" role="alert" data-testid="must-change-password">
                        "You signed in with a one-time password. Choose your own password to go on."
                    </p>
                })}
            }
        })
    };

    view! {
        <header class="page-header">
            <h1>"Account"</h1>
            <p class="subtitle">"Your sign-in details"</p>
        </header>
        <Toast message=toast />
        <UrlError />
        <section class="card">
            <Transition fallback=|| ()>{details}</Transition>
        </section>
        <section class="card">
            <h2>"Change password"</h2>
            <ActionForm action=change attr:class="form single" attr:aria-label="Change password">
                <TextField
                    label="Current password"
                    name="current_password"
                    input_type="password"
                    required=true
                    max_length=USER_PASSWORD_MAX
                    error
                />
                <TextField
                    label="New password"
                    name="new_password"
                    input_type="password"
                    required=true
                    max_length=USER_PASSWORD_MAX
                    error
                />
                <FormError error />
                <button type="submit" class="primary" disabled=move || change.pending().get()>
                    "Change password"
                </button>
            </ActionForm>
        </section>
    }
}

lazy_page!(AccountRoute, AccountPage);
