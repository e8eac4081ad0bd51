pub mod factories;
pub mod gateway_detail;
pub mod status;

use leptos::prelude::*;
use leptos_router::components::A;

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
