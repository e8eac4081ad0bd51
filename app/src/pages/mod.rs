/// Makes page component `$page` (no props) the lazily loaded route `$route`: with
/// `cargo leptos build --split`, the page's wasm is a separate file the browser
/// fetches on the first visit (see `App`'s routes).
macro_rules! lazy_page {
    ($route:ident, $page:ident) => {
        pub struct $route;

        #[leptos_router::lazy_route]
        impl leptos_router::LazyRoute for $route {
            fn data() -> Self {
                Self
            }

            fn view(_this: Self) -> AnyView {
                $crate::pages::mark_page_hydrated();
                view! { <$page /> }.into_any()
            }
        }
    };
}

pub mod account;
pub mod alarm_settings;
pub mod alarms;
pub mod factories;
pub mod gateway_detail;
pub mod gateways;
pub mod login;
pub mod machine_detail;
pub mod machines;
pub mod status;
pub mod tokens;
pub mod users;

use domain::error::ErrorCode;
use domain::AppError;
use leptos::prelude::*;
use leptos_router::components::A;

/// Tells the layout (and the browser tests) that the page's own code has taken
/// over: after the first frame, once its suspended parts, whose data came with the
/// HTML, have hydrated too.
pub fn mark_page_hydrated() {
    let Some(crate::PageHydrated(flag)) = use_context::<crate::PageHydrated>() else {
        return;
    };
    Effect::new(move |_| {
        request_animation_frame(move || {
            flag.try_set(true);
        })
    });
    on_cleanup(move || {
        flag.try_set(false);
    });
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <section class="not-found">
            <h1>"404"</h1>
            <p>"Page not found."</p>
            <A href="/factories">"Back to factories"</A>
        </section>
    }
}

/// A failed load: the server's message, with the HTTP status it stands for
/// (so a viewer opening an admin page gets a real 403), and a way to sign in
/// again when the session has ended.
pub fn load_error(what: &'static str, err: AppError) -> AnyView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        if let Ok(status) = http::StatusCode::from_u16(err.status()) {
            response.set_status(status);
        }
    }
    let sign_in = (err.code == ErrorCode::Unauthorized).then(|| view! { <a href="/login">"Sign in"</a> });
    view! {
        <div class="error-card" role="alert">
            <h2>{format!("Could not load {what}")}</h2>
            <p>{err.message}</p>
            {sign_in}
        </div>
    }
    .into_any()
}

/// A value from the current URL's query string.
pub fn query_value(name: &'static str) -> Memo<Option<String>> {
    let query = leptos_router::hooks::use_query_map();
    Memo::new(move |_| query.read().get(name).filter(|v| !v.is_empty()))
}

/// The `page` query parameter as an offset (pages count from 1).
pub fn page_offset(page: Option<String>) -> u64 {
    let page = page.and_then(|p| p.parse::<u64>().ok()).unwrap_or(1).max(1);
    (page - 1) * u64::from(domain::page::DEFAULT_LIMIT)
}
