//! What server functions need from the server: the store, provided as context by
//! the HTTP layer for every request, the signed-in user and the role checks.

use domain::error::ErrorCode;
use domain::{AppError, User};
use leptos::prelude::use_context;
use std::net::IpAddr;
use store::Store;
use tower_sessions::Session;

pub fn store() -> Result<Store, AppError> {
    use_context::<Store>().ok_or_else(|| {
        tracing::error!("server function ran without a Store in context");
        AppError::internal()
    })
}

/// Gives this response a fresh script nonce and the Content-Security-Policy that
/// allows exactly our scripts: the hydration script (by nonce), our own JS and
/// wasm (`'self'`, `'wasm-unsafe-eval'`), nothing inline otherwise.
pub fn provide_content_security_policy() {
    use leptos::nonce::{provide_nonce, use_nonce};
    provide_nonce();
    let Some(nonce) = use_nonce() else { return };
    // The dev auto-reload socket (cargo leptos watch) is allowed in debug builds only.
    let connect = if cfg!(debug_assertions) {
        "'self' ws://127.0.0.1:3001 ws://localhost:3001"
    } else {
        "'self'"
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' 'nonce-{nonce}'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src {connect}; \
         object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
    );
    if let (Some(response), Ok(value)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::HeaderValue::from_str(&policy),
    ) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// This request's session (the session layer puts it in the request).
pub async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>().await.map_err(|err| {
        tracing::error!(?err, "request without a session layer");
        AppError::internal()
    })
}

/// The signed-in user, if any.
pub async fn current_user() -> Result<Option<User>, AppError> {
    let store = store()?;
    store.user_of_session(&session().await?).await
}

/// The signed-in user, or `UNAUTHORIZED`. Every server function starts with
/// this or [`require_admin`].
pub async fn require_user() -> Result<User, AppError> {
    let user = current_user().await?.ok_or_else(|| {
        with_status(AppError::new(
            ErrorCode::Unauthorized,
            "Your session has ended. Sign in again.",
        ))
    })?;
    if user.must_change_password {
        return Err(with_status(AppError::password_change_required()));
    }
    Ok(user)
}

/// Gives the HTTP response the error's status (401, 403…), so that a direct
/// call of a server function is answered as the REST API would be.
fn with_status(err: AppError) -> AppError {
    if let (Some(response), Ok(status)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(err.status()),
    ) {
        response.set_status(status);
    }
    err
}

/// The signed-in administrator, or `UNAUTHORIZED` / `FORBIDDEN`.
pub async fn require_admin() -> Result<User, AppError> {
    let user = require_user().await?;
    user.role.check_write().map_err(with_status)?;
    Ok(user)
}

/// Whether this request is a plain HTML form post (no JavaScript), which sees
/// a redirect instead of the server function's JSON answer.
pub fn is_plain_form_post() -> bool {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.headers.get(http::header::ACCEPT).cloned())
        .and_then(|accept| accept.to_str().ok().map(|a| a.contains("text/html")))
        .unwrap_or(false)
}

/// The client's IP address (the socket peer; no proxy headers are trusted).
pub fn client_ip() -> Option<IpAddr> {
    use_context::<http::request::Parts>().and_then(|parts| {
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
    })
}

/// Every management action's answer. The answer to a plain form post (no JavaScript), which cannot show a server
/// function's JSON: back to the form's `page`, with the error's message as
/// `?error=` when it failed (the page shows it). Form posts from the hydrated
/// app and direct calls get the result as it is.
pub fn answer_form<T>(page: &str, result: Result<T, AppError>) -> Result<T, AppError> {
    answer_form_keeping(page, page, &[], result)
}

/// Like [`answer_form`], for a form someone typed into: a refused plain form post
/// goes back to `retry` (the form's own URL) with the error and the fields as they
/// were typed (`kept`, never a password), so the form comes back filled in and
/// nothing is lost. [`crate::components::submitted_value`] reads them back.
pub fn answer_form_keeping<T>(
    page: &str,
    retry: &str,
    kept: &[(&str, String)],
    result: Result<T, AppError>,
) -> Result<T, AppError> {
    // Direct callers see the error's own status (400, 403, 404, 409…), not 500.
    let result = result.map_err(with_status);
    if is_plain_form_post() {
        match &result {
            Ok(_) => leptos_axum::redirect(page),
            Err(err) => leptos_axum::redirect(&refused_form_location(retry, &[("error", &err.message)], kept)),
        }
    }
    result
}

/// Where a refused plain form post goes back to: `retry` with `params` and the fields as
/// typed (`kept`, `form.<name>=`), bound to this browser by a fresh random value both in
/// the URL and in a short-lived cookie. The page shows the error and fills the form in
/// only when the two match, so a crafted link can do neither.
pub fn refused_form_location(retry: &str, params: &[(&str, &str)], kept: &[(&str, String)]) -> String {
    use crate::components::{REFUSED_FORM_COOKIE, SUBMITTED_PREFIX};
    use domain::links::encode_query_value;
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let secure = use_context::<SecureCookies>().is_some_and(|secure| secure.0);
    let cookie = format!(
        "{REFUSED_FORM_COOKIE}={nonce}; Path=/; Max-Age=300; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    if let (Some(response), Ok(cookie)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::HeaderValue::from_str(&cookie),
    ) {
        response.append_header(http::header::SET_COOKIE, cookie);
    }
    let mut url = retry.to_owned();
    for (name, value) in params {
        let separator = if url.contains('?') { '&' } else { '?' };
        url.push_str(&format!("{separator}{name}={}", encode_query_value(value)));
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    url.push_str(&format!("{separator}{SUBMITTED_PREFIX}nonce={nonce}"));
    for (name, value) in kept {
        url.push_str(&format!("&{SUBMITTED_PREFIX}{name}={}", encode_query_value(value)));
    }
    url
}

/// Whether the site's cookies are `Secure` (served over HTTPS), as context for server
/// functions that set a cookie of their own.
#[derive(Clone, Copy, Debug, Default)]
pub struct SecureCookies(pub bool);
