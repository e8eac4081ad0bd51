//! `/` (landing page): live status of every gateway. Owned by the orchestrator
//! work; filled in when the live event stream exists.

use leptos::prelude::*;

#[component]
pub fn StatusPage() -> impl IntoView {
    view! {
        <header class="page-header">
            <h1>"Status"</h1>
            <p class="subtitle">"Live state of every gateway"</p>
        </header>
    }
}
