//! Browser sign-in on the server side: the session cookie and store, the guard
//! that sends signed-out visitors to /login, and the first administrator.

use crate::web::AppState;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::{Role, UserPassword};
use rand::distributions::{Alphanumeric, DistString};
use std::time::Duration;
use store::{PgSessionStore, Store};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The session cookie's name (the CSRF check looks for it).
pub const SESSION_COOKIE: &str = "fm_session";
/// Its name when it is `Secure`: the `__Host-` prefix makes browsers refuse it unless it
/// is Secure, for this host only (no Domain) and for the whole site, so a sibling
/// subdomain or a plain-HTTP page cannot plant or overwrite it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-fm_session";

/// The session cookie's name, by whether it is `Secure`.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}
/// A session unused this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 60 * 60);
/// A session ends this long after sign-in, however active.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The account `serve` creates when there is no user at all.
pub const INITIAL_ADMIN_EMAIL: &str = "admin@factory-monitor.local";

/// The cookie: HttpOnly, SameSite=Lax, `Secure` (and `__Host-` named) when
/// `COOKIE_SECURE` says the site is served over HTTPS (the default in production).
pub fn session_layer(store: Store, secure: bool) -> SessionManagerLayer<PgSessionStore> {
    let idle = tower_sessions::cookie::time::Duration::try_from(IDLE_TIMEOUT).expect("idle timeout fits");
    SessionManagerLayer::new(PgSessionStore::new(store, ABSOLUTE_TIMEOUT))
        .with_name(session_cookie_name(secure))
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(idle))
}

/// Paths a signed-out visitor may open: the sign-in page, the site's files, the
/// server functions (each checks the caller itself) and the API (its own auth).
fn is_public(path: &str) -> bool {
    path == "/login"
        || path == "/favicon.ico"
        || path == "/metrics"
        || ["/pkg/", "/rpc/", "/api/"]
            .iter()
            .any(|prefix| path.starts_with(prefix))
}

/// Sends signed-out visitors of a page to `/login?next=<the page>`.
pub async fn require_page_sign_in(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if is_public(path) || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let signed_in = match req.extensions().get::<Session>() {
        Some(session) => match state.store.user_of_session(session).await {
            // A one-time password leads to the account page, and nowhere else, until changed.
            Ok(Some(user)) if user.must_change_password && path != ACCOUNT_PAGE => {
                return (StatusCode::SEE_OTHER, [(header::LOCATION, ACCOUNT_PAGE)]).into_response();
            }
            Ok(user) => user.is_some(),
            Err(err) => {
                return (
                    StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    err.message,
                )
                    .into_response()
            }
        },
        None => false,
    };
    if signed_in {
        return next.run(req).await;
    }
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("/login?next={}", domain::links::encode_query_value(target));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// Where a user with a one-time password is sent.
pub const ACCOUNT_PAGE: &str = "/account";

/// When no user exists, creates the first administrator with `password` (or a
/// random one) and returns the password to print once. `None` when users exist.
/// A random password is a one-time password: it must be changed at first sign-in.
pub async fn ensure_initial_admin(store: &Store, password: Option<String>) -> anyhow::Result<Option<String>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let one_time = password.is_none();
    let password = password.unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::rngs::OsRng, 20));
    match store
        .create_user(INITIAL_ADMIN_EMAIL, &UserPassword::new(password.clone()), Role::Admin)
        .await
    {
        Ok(admin) => {
            if one_time {
                store.require_password_change(admin.id).await?;
            }
            Ok(Some(password))
        }
        // Instances started together: another one created it first.
        Err(_) if store.count_users().await? > 0 => Ok(None),
        Err(err) => Err(domain::AppError::from(err).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sign_in_page_and_machinery_are_public() {
        assert!(is_public("/login"));
        assert!(is_public("/pkg/factory-monitor.wasm"));
        assert!(is_public("/rpc/sign_in"));
        assert!(is_public("/api/factories"));
        assert!(!is_public("/"));
        assert!(!is_public("/users"));
        assert!(!is_public("/login/../users"));
        assert!(!is_public("/gateways/123"));
    }
}
