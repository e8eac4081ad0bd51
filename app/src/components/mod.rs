//! Small pieces shared by pages.

pub mod alarms;
pub mod plots;

use domain::AppError;
use leptos::prelude::*;

/// Where a refused plain form post (no JavaScript) puts the fields as they were
/// typed, in the URL it goes back to: `?form.name=…` (see `ssr::answer_form_keeping`).
pub const SUBMITTED_PREFIX: &str = "form.";

/// The cookie that binds the URL answering a refused plain form post to the browser
/// that posted the form: the URL carries the same random value as `form.nonce`.
pub const REFUSED_FORM_COOKIE: &str = "fm_refused_form";
const REFUSED_FORM_NONCE: &str = "form.nonce";

/// What was typed into field `name` of a form the server refused, when the page
/// is the answer to a plain form post; fields start from it instead of blank.
pub fn submitted_value(name: &str) -> Option<String> {
    let query = leptos_router::hooks::use_query_map().read_untracked();
    answers_refused_post(&query)
        .then(|| query.get(&format!("{SUBMITTED_PREFIX}{name}")))
        .flatten()
}

/// Whether this page answers a refused post made from this very browser: only then are
/// `?error=` and the `form.*` values shown. A crafted link can carry any text and any
/// field value (a gateway URL, say) but cannot set this site's cookie to match.
fn answers_refused_post(query: &leptos_router::params::ParamsMap) -> bool {
    let Some(nonce) = query.get(REFUSED_FORM_NONCE).filter(|n| !n.is_empty()) else {
        return false;
    };
    cookie(REFUSED_FORM_COOKIE).is_some_and(|cookie| cookie == nonce)
}

/// A cookie of the request (server) or of the document (browser): both see the same
/// one, so the server's HTML and the hydrated page agree.
fn cookie(name: &str) -> Option<String> {
    #[cfg(feature = "ssr")]
    let header = use_context::<http::request::Parts>().and_then(|parts| {
        let values: Vec<String> = parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok().map(str::to_owned))
            .collect();
        (!values.is_empty()).then(|| values.join("; "))
    });
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    let header = {
        use wasm_bindgen::JsCast;
        web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.dyn_into::<web_sys::HtmlDocument>().ok())
            .and_then(|document| document.cookie().ok())
    };
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let header: Option<String> = None;
    header?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// A labelled text input with its inline validation message from the last
/// server answer. The input's `name` is the server function's argument name.
#[component]
pub fn TextField(
    label: &'static str,
    name: &'static str,
    #[prop(optional)] placeholder: &'static str,
    #[prop(optional, into)] value: String,
    #[prop(optional)] required: bool,
    /// `text` unless given (`email`, `password`, `url`).
    #[prop(optional)]
    input_type: Option<&'static str>,
    /// The `id` prefix when one page has several forms with the same field names.
    #[prop(optional)]
    form: &'static str,
    max_length: usize,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let id = format!("field-{form}{name}");
    let message = move || {
        error
            .get()
            .and_then(|e| e.field_message(name).map(|m| format!("{label} {m}")))
    };
    let message_id = format!("{id}-error");
    // A password is never sent back, and never taken from a URL.
    let value = match input_type {
        Some("password") => value,
        _ => submitted_value(name).unwrap_or(value),
    };
    view! {
        <div class="field">
            <label for=id.clone()>{label}</label>
            <input
                id=id
                type=input_type.unwrap_or("text")
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

/// A gateway's connection state as a coloured label; `data-state` carries the
/// machine-readable value (tests and user styles select on it).
#[component]
pub fn StateBadge(#[prop(into)] state: Signal<domain::live::ConnectionState>) -> impl IntoView {
    view! {
        <span class=move || format!("badge state-{}", state.get().as_str()) data-state=move || state.get().as_str()>
            {move || state.get().label()}
        </span>
    }
}

/// A column heading of a [`DataTable`]: its text and class (`num` aligns numbers
/// right, `hide-narrow` hides the column on phones; empty for neither).
pub type Column = (&'static str, &'static str);

/// A data table inside its horizontal scroller; the children are the body's rows.
#[component]
pub fn DataTable(
    /// The accessible name (tests and screen readers find the table by it).
    #[prop(optional)]
    label: Option<&'static str>,
    columns: Vec<Column>,
    children: Children,
) -> impl IntoView {
    let headings = columns
        .into_iter()
        .map(|(text, class)| view! { <th scope="col" class=(!class.is_empty()).then_some(class)>{text}</th> })
        .collect_view();
    view! {
        <div class="table-scroll">
            <table class="data" aria-label=label>
                <thead>
                    <tr>{headings}</tr>
                </thead>
                <tbody>{children()}</tbody>
            </table>
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

/// Previous / next links for a paged list, keeping the page's other query
/// parameters (`base` is the path with them, ending in `?` or `&`).
#[component]
pub fn Pager(pagination: domain::Pagination, #[prop(into)] base: String) -> impl IntoView {
    let limit = u64::from(pagination.limit);
    let offset = pagination.offset;
    let total = pagination.total;
    let page = offset / limit.max(1) + 1;
    let pages = total.div_ceil(limit.max(1)).max(1);
    let previous = (page > 1).then(|| format!("{base}page={}", page - 1));
    let next = (page < pages).then(|| format!("{base}page={}", page + 1));
    view! {
        <nav class="pager" aria-label="Pages">
            {previous.map(|href| view! { <a href=href rel="prev">"← Previous"</a> })}
            <span>{format!("Page {page} of {pages}")}</span>
            {next.map(|href| view! { <a href=href rel="next">"Next →"</a> })}
        </nav>
    }
}

/// A notice (success) or alert (failure) carrying the server's message.
#[component]
pub fn Toast(#[prop(into)] message: Signal<Option<Result<String, String>>>) -> impl IntoView {
    move || {
        message.get().map(|result| match result {
            Ok(text) => view! { <p class="toast notice" role="status">{text}</p> }.into_any(),
            Err(text) => view! { <p class="toast form-error" role="alert">{text}</p> }.into_any(),
        })
    }
}

/// A labelled `<select>` of named things (factories, machines) by id, with its
/// inline validation message.
#[component]
pub fn IdSelect(
    label: &'static str,
    name: &'static str,
    choices: Vec<(uuid::Uuid, String)>,
    #[prop(optional)] selected: Option<uuid::Uuid>,
    #[prop(optional)] form: &'static str,
    /// Blank allowed (meaning all of them, or none).
    #[prop(optional)]
    optional: bool,
    /// The blank choice's text.
    #[prop(default = "Choose one")]
    blank: &'static str,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let id = format!("field-{form}{name}");
    let message_id = format!("{id}-error");
    let message = move || {
        error
            .get()
            .and_then(|e| e.field_message(name).map(|m| format!("{label} {m}")))
    };
    let selected = submitted_value(name).and_then(|id| id.parse().ok()).or(selected);
    let options = choices
        .into_iter()
        .map(|(value, text)| {
            view! { <option value=value.to_string() selected=selected == Some(value)>{text}</option> }
        })
        .collect_view();
    view! {
        <div class="field">
            <label for=id.clone()>{label}</label>
            <select
                id=id
                name=name
                required=!optional
                aria-invalid=move || message().is_some().then_some("true")
                aria-describedby=message_id.clone()
            >
                <option value="" selected=selected.is_none()>{blank}</option>
                {options}
            </select>
            <p class="field-error" id=message_id role="alert">
                {message}
            </p>
        </div>
    }
}

/// A labelled role `<select>` (viewer first: the safer default).
#[component]
pub fn RoleSelect(
    #[prop(optional)] selected: Option<domain::Role>,
    #[prop(optional)] form: &'static str,
    #[prop(optional)] label: Option<&'static str>,
) -> impl IntoView {
    let id = format!("field-{form}role");
    let selected = selected
        .or_else(|| submitted_value("role").and_then(|role| role.parse().ok()))
        .unwrap_or(domain::Role::Viewer);
    view! {
        <div class="field">
            <label for=id.clone()>{label.unwrap_or("Role")}</label>
            <select id=id name="role">
                <option value="viewer" selected=selected == domain::Role::Viewer>"Viewer (read only)"</option>
                <option value="admin" selected=selected == domain::Role::Admin>"Admin"</option>
            </select>
        </div>
    }
}

/// The message of a failed form post that came back as `?error=` (without
/// JavaScript the page cannot receive the server function's answer).
/// Shown only when this browser made that post (see `answers_refused_post`): a link
/// cannot put words of its own on the page.
#[component]
pub fn UrlError() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    move || {
        let query = query.read();
        answers_refused_post(&query)
            .then(|| query.get("error"))
            .flatten()
            .filter(|message| !message.is_empty())
            .map(|message| view! { <p class="toast form-error" role="alert">{message}</p> })
    }
}

/// "97.3 %" (one decimal), or "—" for none. Formatted with integers: the float
/// formatter would add tens of KB to a page's wasm that shows no other float.
pub fn percent_text(value: Option<f64>) -> String {
    match value {
        Some(p) if p.is_finite() => {
            let tenths = (p.clamp(0.0, 100.0) * 10.0).round() as u64;
            format!("{}.{} %", tenths / 10, tenths % 10)
        }
        _ => "—".to_owned(),
    }
}

#[cfg(test)]
mod percent_tests {
    #[test]
    fn percent_text_rounds_to_one_decimal() {
        assert_eq!(super::percent_text(Some(96.428_571)), "96.4 %");
        assert_eq!(super::percent_text(Some(99.96)), "100.0 %");
        assert_eq!(super::percent_text(Some(0.04)), "0.0 %");
        assert_eq!(super::percent_text(None), "—");
    }
}
