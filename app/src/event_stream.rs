//! The browser side of live updates: an `EventSource` on the coalesced stream
//! (`/api/events?coalesce=true`) from the position the page's data is as new as, and
//! the stream's link state. On the server (first render) nothing is opened.

use leptos::prelude::*;

/// The stream's state, shown as a banner while it is not `Live`.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Live,
    Down,
}

/// Opens the coalesced stream at `url` (browser only; `/api/events?coalesce=true&…`
/// with the `last_event_id` the page's data is as new as), hands each frame to
/// `on_batch`, and keeps `link` current. `Frame` is what the page reads
/// of a [`LiveBatch`](domain::live::LiveBatch) (the whole of it, or a lighter view: the
/// parts left out are skipped, and their decoding code stays out of the page's wasm).
pub fn follow_batches<Frame: serde::de::DeserializeOwned + 'static>(
    url: String,
    link: RwSignal<Link>,
    on_batch: impl Fn(Frame) + 'static,
) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::prelude::*;
        use web_sys::{EventSource, MessageEvent};

        let Ok(source) = EventSource::new(&url) else {
            link.set(Link::Down);
            return;
        };
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
            let Some(text) = message.data().as_string() else { return };
            let Ok(batch) = serde_json::from_str::<Frame>(&text) else {
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
        let _ = (url, link, on_batch);
    }
}

/// The banner shown while the stream is down (the browser reconnects by itself).
#[component]
pub fn LinkBanner(link: RwSignal<Link>) -> impl IntoView {
    move || {
        (link.get() == Link::Down).then(|| {
            view! { <div class="banner" role="status">"Live updates are interrupted; reconnecting…"</div> }
        })
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
