//! The browser side of live updates: an `EventSource` on `/api/events` that
//! keeps a list of gateway records current, and reports its own link state.
//! On the server (first render) nothing is opened; the page shows the snapshot.

use domain::live::{GatewayLive, LiveEvent};
use leptos::prelude::*;

/// The stream's state, shown as a banner while it is not `Live`.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Live,
    Down,
}

/// Applies one stream event to the list of records.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn apply(gateways: &mut Vec<GatewayLive>, event: LiveEvent) {
    match event {
        LiveEvent::Snapshot { gateways: all } => *gateways = all,
        LiveEvent::Gateway { gateway } => match gateways.iter_mut().find(|g| g.id == gateway.id) {
            Some(existing) => *existing = gateway,
            None => gateways.push(gateway),
        },
        LiveEvent::Removed { id, .. } => gateways.retain(|g| g.id != id),
        LiveEvent::Reading { .. } => {}
    }
}

/// Opens the stream (browser only) and keeps `gateways` and `link` current;
/// `on_reading` is called with reading progress events.
pub fn follow(
    gateways: RwSignal<Vec<GatewayLive>>,
    link: RwSignal<Link>,
    on_reading: impl Fn(domain::live::ReadingProgress) + 'static,
) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::prelude::*;
        use web_sys::{EventSource, MessageEvent};

        let Ok(source) = EventSource::new("/api/events") else {
            link.set(Link::Down);
            return;
        };
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            let Some(text) = message.data().as_string() else { return };
            let Ok(event) = serde_json::from_str::<LiveEvent>(&text) else {
                return;
            };
            link.set(Link::Live);
            match event {
                LiveEvent::Reading { reading } => on_reading(reading),
                other => gateways.update(|all| apply(all, other)),
            }
        });
        for name in ["snapshot", "gateway", "removed", "reading"] {
            let _ = source.add_event_listener_with_callback(name, on_message.as_ref().unchecked_ref());
        }
        let on_open = Closure::<dyn FnMut()>::new(move || link.set(Link::Live));
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        // The browser reconnects by itself (with Last-Event-ID); until then, say so.
        let on_error = Closure::<dyn FnMut()>::new(move || link.set(Link::Down));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let kept = StoredValue::new_local((source, on_message, on_open, on_error));
        on_cleanup(move || kept.with_value(|(source, ..)| source.close()));
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (gateways, link, on_reading);
    }
}

/// Opens the coalesced stream (browser only) from the stream position `as_of`, and
/// hands each frame to `on_batch`; keeps `link` current.
pub fn follow_batches(as_of: u64, link: RwSignal<Link>, on_batch: impl Fn(domain::live::LiveBatch) + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::prelude::*;
        use web_sys::{EventSource, MessageEvent};

        let url = format!("/api/events?coalesce=true&last_event_id={as_of}");
        let Ok(source) = EventSource::new(&url) else {
            link.set(Link::Down);
            return;
        };
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            let Some(text) = message.data().as_string() else { return };
            let Ok(batch) = serde_json::from_str::<domain::live::LiveBatch>(&text) else {
                return;
            };
            link.set(Link::Live);
            on_batch(batch);
        });
        let _ = source.add_event_listener_with_callback("batch", on_message.as_ref().unchecked_ref());
        // The browser reconnects by itself, sending the last batch's id; until then, say so.
        let on_error = Closure::<dyn FnMut()>::new(move || link.set(Link::Down));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let kept = StoredValue::new_local((source, on_message, on_error));
        on_cleanup(move || kept.with_value(|(source, ..)| source.close()));
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (as_of, link, on_batch);
    }
}

/// "5 s", "3 min", "2 h", "4 d": how long from `earlier` to `now`.
pub fn duration_words(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// A clock for relative times: ticks every second in the browser.
pub fn clock() -> RwSignal<chrono::DateTime<chrono::Utc>> {
    let now = RwSignal::new(chrono::Utc::now());
    #[cfg(feature = "hydrate")]
    {
        if let Ok(handle) =
            set_interval_with_handle(move || now.set(chrono::Utc::now()), std::time::Duration::from_secs(1))
        {
            on_cleanup(move || handle.clear());
        }
    }
    now
}
