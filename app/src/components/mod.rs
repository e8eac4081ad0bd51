//! Small pieces shared by pages.

use domain::AppError;
use leptos::prelude::*;

/// A labelled text input with its inline validation message from the last
/// server answer. The input's `name` is the server function's argument name.
#[component]
pub fn TextField(
    label: &'static str,
    name: &'static str,
    #[prop(optional)] placeholder: &'static str,
    #[prop(optional)] value: &'static str,
    #[prop(optional)] required: bool,
    max_length: usize,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let id = format!("field-{name}");
    let message = move || {
        error
            .get()
            .and_then(|e| e.field_message(name).map(|m| format!("{label} {m}")))
    };
    let message_id = format!("{id}-error");
    view! {
        <div class="field">
            <label for=id.clone()>{label}</label>
            <input
                id=id
                type="text"
                name=name
                placeholder=placeholder
                value=value
                required=required
                maxlength=max_length
                aria-invalid=move || message().is_some().then_some("true")
                aria-describedby=message_id.clone()
            />
            <p class="field-error" id=message_id role="alert">
                {message}
            </p>
        </div>
    }
}

/// The server's message for a failed action, when it is not about one field.
#[component]
pub fn FormError(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        error
            .get()
            .filter(|e| e.details.is_empty())
            .map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })
    }
}
