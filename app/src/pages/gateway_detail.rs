//! `/gateways/:id`: one gateway's live state, events, sensors and readings.
//! Owned by the orchestrator work.

use leptos::prelude::*;

#[component]
pub fn GatewayDetailPage() -> impl IntoView {
    view! {
        <header class="page-header">
            <h1>"Gateway"</h1>
        </header>
    }
}
