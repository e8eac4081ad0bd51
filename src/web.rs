//! The HTTP layer: the Leptos app (pages and server functions), static files,
//! and the REST API under `/api`.

use crate::api;
use crate::api::auth::TokenCache;
use crate::security::{require_same_origin, with_security_headers, CorsOrigins};
use crate::sessions::{require_page_sign_in, session_layer};
use app::{shell, App};
use axum::extract::FromRef;
use axum::middleware;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use orchestrator::Orchestrator;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use store::SignInThrottle;
use store::Store;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;

/// What every handler shares. Cheap to clone (one reference count): axum clones the
/// state for every extractor and middleware of every request, and cloning the parts
/// one by one (the Leptos options' strings, the store's handles) was a measurable
/// share of a cached read's CPU time.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

#[derive(Clone)]
pub struct Shared {
    pub store: Store,
    pub leptos: LeptosOptions,
    pub started: Instant,
    pub tokens: TokenCache,
    /// `COOKIE_SECURE`: mark the session cookie Secure (the site is served over HTTPS).
    pub cookie_secure: bool,
    pub sign_in_throttle: SignInThrottle,
    pub orchestrator: Orchestrator,
    /// `METRICS_PUBLIC`: serve `/metrics` without a token.
    pub metrics_public: bool,
    /// Caps on open `/api/events` streams.
    pub event_streams: Arc<crate::api::EventStreams>,
    /// How the alarm work runs (started with the server).
    pub alarms: crate::alarms::AlarmConfig,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Store, addr: SocketAddr, orchestrator: Orchestrator) -> Self {
        Self(Arc::new(Shared {
            store,
            leptos: leptos_options(addr),
            started: Instant::now(),
            tokens: TokenCache::default(),
            cookie_secure: false,
            sign_in_throttle: SignInThrottle::default(),
            orchestrator,
            metrics_public: false,
            event_streams: Arc::default(),
            alarms: Default::default(),
        }))
    }

    pub fn with_alarm_config(self, config: crate::alarms::AlarmConfig) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.alarms = config;
        Self(Arc::new(shared))
    }

    /// Other caps on open event streams (tests use small ones).
    pub fn with_event_streams(self, streams: crate::api::EventStreams) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.event_streams = Arc::new(streams);
        Self(Arc::new(shared))
    }

    pub fn with_metrics_public(self, public: bool) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.metrics_public = public;
        Self(Arc::new(shared))
    }

    pub fn with_cookie_secure(self, secure: bool) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.cookie_secure = secure;
        Self(Arc::new(shared))
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// Where the site's files are. Under `cargo leptos watch/serve` its `LEPTOS_*`
/// variables win; otherwise the defaults match the workspace's leptos metadata,
/// so `./target/release/factory-monitor serve` from the repository root works.
pub fn leptos_options(addr: SocketAddr) -> LeptosOptions {
    let from_env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    LeptosOptions::builder()
        .output_name(from_env("LEPTOS_OUTPUT_NAME", app::OUTPUT_NAME))
        .site_root(from_env("LEPTOS_SITE_ROOT", "target/site"))
        .site_pkg_dir(from_env("LEPTOS_SITE_PKG_DIR", "pkg"))
        .site_addr(addr)
        .reload_port(
            std::env::var("LEPTOS_RELOAD_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(3001),
        )
        .build()
}

pub fn router(state: AppState, cors: &CorsOrigins) -> Router {
    let routes = generate_route_list(App);
    let leptos = state.leptos.clone();
    let app = Router::new()
        .merge(api::router(state.clone()))
        .leptos_routes_with_context(&state, routes, app_context(&state), move || shell(leptos.clone()))
        // Site files (wasm, JS, CSS, public/) are served by tower-http, and anything
        // else gets the app's 404 page. Not leptos_axum's file handler: it looks up
        // ResponseOptions from whatever reactive owner is current on its thread, and
        // could take the headers (the CSP) of a page being rendered beside it.
        // `make run` builds with `--precompress`: a file's `.br` or `.gz` twin is sent as it
        // is when the browser accepts it; otherwise the compression layer below compresses it.
        .fallback_service(
            ServeDir::new(state.leptos.site_root.to_string())
                .precompressed_br()
                .precompressed_gzip()
                .fallback(not_found_page(&state)),
        )
        .with_state(state.clone())
        // Innermost first: the page guard needs the session, which the outermost
        // layer loads; cross-site requests are refused before anything runs.
        .layer(middleware::from_fn_with_state(state.clone(), require_page_sign_in))
        .layer(middleware::from_fn(require_same_origin))
        .layer(session_layer(state.store.clone(), state.cookie_secure))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        // Pages, JSON and site files as the client accepts (brotli, gzip); never event
        // streams (each event must leave at once) or answers already encoded.
        .layer(tower_http::compression::CompressionLayer::new());
    with_security_headers(app, cors)
}

/// The 404 page: the layout with "Page not found" (its server functions need the store).
fn not_found_page(state: &AppState) -> axum::routing::MethodRouter {
    let handler = leptos_axum::file_and_error_handler_with_context::<AppState, _>(app_context(state), shell);
    axum::routing::any(handler).with_state(state.clone())
}

/// What pages and server functions find in their context on every request.
fn app_context(state: &AppState) -> impl Fn() + Clone + Send + Sync + 'static {
    let store = state.store.clone();
    let throttle = state.sign_in_throttle.clone();
    let orchestrator = state.orchestrator.clone();
    let secure = app::ssr::SecureCookies(state.cookie_secure);
    move || {
        provide_context(store.clone());
        provide_context(throttle.clone());
        provide_context(orchestrator.clone());
        provide_context(secure);
    }
}

/// A client that has not sent a whole request head this long after connecting (or after
/// its previous response, on a kept-alive connection) is disconnected.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A request body that sends nothing for this long is given up (408): a client cannot hold
/// a request open by trickling, or stopping, its body.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// Connections open at once; beyond this, new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 10_000;
/// How long a stop waits for requests in flight (event streams never end by themselves).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves until `shutdown` completes, then finishes in-flight requests (for at most
/// [`SHUTDOWN_GRACE`]). Each connection gets [`HEADER_READ_TIMEOUT`] to send a request
/// head, and at most [`MAX_CONNECTIONS`] are open at once.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    cors: &CorsOrigins,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    // Hear changes made by other processes, so the store's read caches and the
    // token cache can be trusted.
    let change_listener = state.store.start_change_listener();
    let _alarm_work =
        crate::alarms::AlarmWork::start(state.store.clone(), state.orchestrator.clone(), state.alarms.clone());
    let app = router(state, cors);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors, say: wait a little rather than spin.
                Err(err) => {
                    tracing::warn!(%err, "accepting a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections; closed a new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer address is what sign-in throttling counts per client.
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                request
            });
        // No upgrades: the server speaks plain HTTP/1.1 (event streams are ordinary responses).
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::info!("closed the connections still open after the shutdown grace");
    }
    change_listener.abort();
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
