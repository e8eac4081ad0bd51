//! `/login`: the only page open to signed-out visitors.

use super::query_value;
use crate::components::{FormError, TextField};
use crate::server_fns::auth::{SignIn, FAILED_CREDENTIALS, FAILED_THROTTLED, THROTTLED_MESSAGE};
use domain::error::ErrorCode;
use domain::inventory::EMAIL_MAX;
use domain::AppError;
use leptos::form::ActionForm;
use leptos::prelude::*;

#[component]
pub fn LoginPage() -> impl IntoView {
    let sign_in = ServerAction::<SignIn>::new();
    let next = query_value("next");
    // Without JavaScript a failed sign-in comes back as `?failed=…`.
    let failed = query_value("failed");
    let error = Signal::derive(move || {
        sign_in.value().get().and_then(Result::err).or_else(|| {
            failed.get().map(|reason| {
                let message = match reason.as_str() {
                    FAILED_THROTTLED => THROTTLED_MESSAGE,
                    FAILED_CREDENTIALS => domain::auth::SIGN_IN_FAILED,
                    _ => "Sign-in failed. Try again.",
                };
                AppError::new(ErrorCode::Unauthorized, message)
            })
        })
    });

    view! {
        <section class="card login">
            <h1>"Sign in"</h1>
            <p class="subtitle">"Use the account an administrator gave you."</p>
            <ActionForm action=sign_in attr:class="form single" attr:aria-label="Sign in">
                <TextField label="Email" name="email" input_type="email" required=true max_length=EMAIL_MAX error />
                <TextField
                    label="Password"
                    name="password"
                    input_type="password"
                    required=true
                    max_length=domain::auth::USER_PASSWORD_MAX
                    error
                />
                <input type="hidden" name="next" value=move || next.get().unwrap_or_else(|| "/".into()) />
                <FormError error />
                <button type="submit" class="primary" disabled=move || sign_in.pending().get()>
                    {move || if sign_in.pending().get() { "Signing in…" } else { "Sign in" }}
                </button>
            </ActionForm>
        </section>
    }
}

lazy_page!(LoginRoute, LoginPage);
