//! The web app: one Leptos crate compiled twice, for the server (`ssr`: renders
//! pages and runs server functions) and for the browser (`hydrate`: takes over the
//! server's HTML). Pages live in `pages/`, server functions in `api/`; code that
//! only the server may run is in `ssr` and nowhere else.

pub mod api;
mod components;
mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Redirect, Route, Router, Routes, A};
use leptos_router::{path, SsrMode};

/// The name cargo-leptos gives the site's JS, wasm and CSS files.
pub const OUTPUT_NAME: &str = "factory-monitor";

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    ssr::provide_content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Set once the browser has taken over, so tests (and people) can tell an
    // interactive page from server HTML.
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));

    view! {
        <Stylesheet id="leptos" href=format!("/pkg/{OUTPUT_NAME}.css") />
        <Title text="factory-monitor" />
        <Router>
            <div class="layout" data-hydrated=move || hydrated.get().then_some("true")>
                <header class="topbar">
                    <A href="/" attr:class="brand">
                        "factory-monitor"
                    </A>
                    <nav aria-label="Main">
                        <A href="/factories">"Factories"</A>
                    </nav>
                </header>
                <main class="content">
                    <Routes fallback=pages::NotFound>
                        <Route path=path!("/") view=|| view! { <Redirect path="/factories" /> } />
                        // Async: the HTML is sent once the data is loaded, so pages are complete
                        // without JavaScript (and for crawlers and screen readers).
                        <Route path=path!("/factories") view=pages::factories::FactoriesPage ssr=SsrMode::Async />
                    </Routes>
                </main>
            </div>
        </Router>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
