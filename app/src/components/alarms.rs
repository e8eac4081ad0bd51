//! An object's alarms (a gateway's, a machine's) as a short list of links.

use domain::alarms::Alarm;
use leptos::prelude::*;
use leptos_router::components::A;

/// The alarms of the thing the page shows, open ones first, with a link to them all.
#[component]
pub fn RecentAlarms(
    alarms: Vec<Alarm>,
    /// `/alarms?…` filtered to the page's object.
    all: String,
) -> impl IntoView {
    let items = if alarms.is_empty() {
        view! { <p class="muted">"No alarms."</p> }.into_any()
    } else {
        let items = alarms
            .into_iter()
            .map(|alarm| {
                let severity = alarm.severity.as_str();
                view! {
                    <li>
                        <span class=format!("badge severity-{severity}")>{severity}</span>" "
                        <span class=format!("badge alarm-{}", alarm.state.as_str())>{alarm.state.label()}</span>" "
                        <A href=format!("/alarms/{}", alarm.id)>{alarm.message}</A>
                    </li>
                }
            })
            .collect_view();
        view! { <ul class="recent-alarms">{items}</ul> }.into_any()
    };
    view! {
        <section class="card" aria-label="Alarms">
            <h2>"Alarms"</h2>
            {items}
            <A href=all>"All of its alarms"</A>
        </section>
    }
}
