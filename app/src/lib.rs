//! The web app: one Leptos crate compiled twice, for the server (`ssr`: renders
//! pages and runs server functions) and for the browser (`hydrate`: takes over the
//! server's HTML). Pages live in `pages/`, server functions in `server_fns/`; code that
//! only the server may run is in `ssr` and nowhere else.

// Large page views are deeply nested types; the wasm build needs a deeper limit.
#![recursion_limit = "256"]

mod components;
mod event_stream;
mod pages;
pub mod server_fns;
#[cfg(feature = "ssr")]
pub mod ssr;

use domain::{AppError, User};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::hooks::use_location;
use leptos_router::{path, Lazy, SsrMode};
use server_fns::auth::{get_current_user, SignOut};

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
    view! {
        <Stylesheet id="leptos" href=format!("/pkg/{OUTPUT_NAME}.css") />
        <Title text="factory-monitor" />
        <Router>
            <Layout />
        </Router>
    }
}

/// The signed-in user (or `None` on /login), loaded once per navigation so that
/// the navigation and the pages' admin controls follow sign-in, sign-out and
/// role changes. Pages read it to hide what a viewer may not do; the server
/// refuses those actions anyway.
#[derive(Clone, Copy)]
pub struct CurrentUser(pub Resource<Result<Option<User>, AppError>>);

impl CurrentUser {
    /// Whether the signed-in user is an administrator (false while unknown).
    pub fn is_admin(self) -> bool {
        self.0
            .get()
            .and_then(Result::ok)
            .flatten()
            .is_some_and(|user| user.is_admin())
    }
}

/// Moved by pages that hear of alarm changes on the event stream: the navigation's
/// count of active alarms is read again.
#[derive(Clone, Copy)]
pub struct AlarmsChanged(pub RwSignal<u32>);

/// Set by the current route once its own (lazily loaded) wasm has taken over its
/// HTML; the layout's flag alone is set before a lazy page's code has arrived, when
/// a click still posts a plain form.
#[derive(Clone, Copy)]
pub struct PageHydrated(pub RwSignal<bool>);

pub fn use_current_user() -> CurrentUser {
    expect_context::<CurrentUser>()
}

#[component]
fn Layout() -> impl IntoView {
    // Set once the browser has taken over, so tests (and people) can tell an
    // interactive page from server HTML.
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));
    let location = use_location();
    let user = Resource::new(move || location.pathname.get(), |_| get_current_user());
    provide_context(CurrentUser(user));
    let alarms_changed = RwSignal::new(0u32);
    provide_context(AlarmsChanged(alarms_changed));
    let page_hydrated = RwSignal::new(false);
    provide_context(PageHydrated(page_hydrated));
    let alarm_counts = Resource::new(
        move || (location.pathname.get(), alarms_changed.get()),
        |_| server_fns::alarms::open_alarm_counts(),
    );
    let sign_out = ServerAction::<SignOut>::new();

    let account = move || {
        user.get().and_then(Result::ok).flatten().map(|user| {
            let admin = user.is_admin();
            view! {
                <nav aria-label="Main">
                    <A href="/" exact=true>"Status"</A>
                    <A href="/factories">"Factories"</A>
                    <A href="/gateways">"Gateways"</A>
                    <A href="/machines">"Machines"</A>
                    <A href="/alarms">
                        "Alarms"
                        {move || {
                            let active = alarm_counts.get().and_then(Result::ok).map_or(0, |c| c.active);
                            (active > 0).then(|| view! {
                                <span class="nav-count" aria-label=format!("{active} active")>{active}</span>
                            })
                        }}
                    </A>
                    <A href="/alarm-rules">"Alarm rules"</A>
                    {admin.then(|| view! {
                        <A href="/notification-channels">"Channels"</A>
                        <A href="/users">"Users"</A>
                        <A href="/tokens">"API tokens"</A>
                    })}
                </nav>
                <div class="account">
                    <A href="/account" attr:class="account-email" attr:title="Your account">{user.email}</A>
                    <span class="account-role">{user.role.to_string()}</span>
                    <ActionForm action=sign_out attr:class="sign-out">
                        <button type="submit">"Sign out"</button>
                    </ActionForm>
                </div>
            }
        })
    };

    view! {
        <div
            class="layout"
            data-hydrated=move || hydrated.get().then_some("true")
            data-page-hydrated=move || page_hydrated.get().then_some("true")
        >
            <header class="topbar">
                <A href="/" attr:class="brand">
                    "factory-monitor"
                </A>
                <Transition fallback=|| ()>{account}</Transition>
            </header>
            <main class="content">
                // Async: the HTML is sent once the data is loaded, so pages are complete
                // without JavaScript (and for crawlers and screen readers). The server
                // sends signed-out visitors of every page but /login to /login.
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/") view={Lazy::<pages::status::StatusRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/login") view={Lazy::<pages::login::LoginRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/factories") view={Lazy::<pages::factories::FactoriesRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/gateways") view={Lazy::<pages::gateways::GatewaysRoute>::new()} ssr=SsrMode::Async />
                    <Route
                        path=path!("/gateways/:id")
                        view={Lazy::<pages::gateway_detail::GatewayDetailRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/machines") view={Lazy::<pages::machines::MachinesRoute>::new()} ssr=SsrMode::Async />
                    <Route
                        path=path!("/machines/:id")
                        view={Lazy::<pages::machine_detail::MachineDetailRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/alarms") view={Lazy::<pages::alarms::AlarmsRoute>::new()} ssr=SsrMode::Async />
                    <Route
                        path=path!("/alarms/:id")
                        view={Lazy::<pages::alarms::AlarmDetailRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/alarm-rules") view={Lazy::<pages::alarm_settings::RulesRoute>::new()} ssr=SsrMode::Async />
                    <Route
                        path=path!("/notification-channels")
                        view={Lazy::<pages::alarm_settings::ChannelsRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=path!("/users") view={Lazy::<pages::users::UsersRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/account") view={Lazy::<pages::account::AccountRoute>::new()} ssr=SsrMode::Async />
                    <Route path=path!("/tokens") view={Lazy::<pages::tokens::TokensRoute>::new()} ssr=SsrMode::Async />
                </Routes>
            </main>
        </div>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Lazy routes: each page's wasm is loaded before its HTML is hydrated.
    leptos::mount::hydrate_lazy(App);
}
