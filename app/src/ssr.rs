//! What server functions need from the server: the store, provided as context by
//! the HTTP layer for every request.

use domain::AppError;
use leptos::prelude::use_context;
use store::Store;

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
