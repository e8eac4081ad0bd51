//! Browser-facing protections for every response: the security headers of the
//! predecessor's helmet set, a locked-down CSP for non-HTML responses (pages set
//! their own, with a script nonce), and CORS for the configured origins only.

use axum::extract::Request;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

const HEADERS: &[(&str, &str)] = &[
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("origin-agent-cluster", "?1"),
    ("referrer-policy", "no-referrer"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("x-content-type-options", "nosniff"),
    ("x-dns-prefetch-control", "off"),
    ("x-download-options", "noopen"),
    ("x-frame-options", "SAMEORIGIN"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
];

/// Which cross-origin callers the API accepts (`CORS_ORIGINS`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// Same origin only: no CORS headers at all (the default).
    #[default]
    None,
    /// `*`: any origin, never with credentials.
    Any,
    /// These origins, with credentials.
    List(Vec<HeaderValue>),
}

/// The CSP of every response that does not set its own (pages set theirs, with a nonce).
const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The security headers, each added where the response has none of its own; and
/// `no-store` for pages and API answers (HTML, JSON, text): they may show what only a
/// signed-in user may see, while site files (scripts, wasm, styles, images) may be cached.
/// One layer for all of them: each layer costs every request a boxed service clone and a
/// future of its own (twelve header layers were a tenth of a cached read's CPU).
async fn security_headers(mut response: Response) -> Response {
    static DEFAULTS: std::sync::LazyLock<Vec<(HeaderName, HeaderValue)>> = std::sync::LazyLock::new(|| {
        std::iter::once((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DEFAULT_CSP)))
            .chain(
                HEADERS
                    .iter()
                    .map(|(name, value)| (HeaderName::from_static(name), HeaderValue::from_static(value))),
            )
            .collect()
    });
    let document = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            ["text/html", "application/json", "text/plain", "text/event-stream"]
                .iter()
                .any(|d| t.starts_with(d))
        });
    let headers = response.headers_mut();
    if document {
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    for (name, value) in DEFAULTS.iter() {
        headers.entry(name).or_insert_with(|| value.clone());
    }
    response
}

pub fn with_security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>, cors: &CorsOrigins) -> Router<S> {
    let router = router.layer(axum::middleware::map_response(security_headers));
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let base = || {
        CorsLayer::new()
            .allow_methods(methods.clone())
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600))
    };
    match cors {
        CorsOrigins::None => router,
        CorsOrigins::Any => router.layer(base().allow_origin(AllowOrigin::any())),
        CorsOrigins::List(origins) => router.layer(
            base()
                .allow_origin(AllowOrigin::list(origins.clone()))
                .allow_credentials(true),
        ),
    }
}

/// CSRF defence for the browser session: a state-changing request (anything but
/// GET, HEAD, OPTIONS) that carries the session cookie and no Bearer token must
/// come from this site, as the browser reports it in `Sec-Fetch-Site` or, for
/// browsers without it, `Origin` (compared with `Host`). Scripts using a token
/// are not subject to it: a browser never attaches a token on its own.
pub async fn require_same_origin(req: Request, next: Next) -> Response {
    if is_cross_site_with_cookie(&req) {
        tracing::warn!(path = %req.uri().path(), "refused a cross-site request carrying the session cookie");
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"error": {
                "code": "FORBIDDEN",
                "message": "Cross-site request refused",
                "statusCode": 403,
            }})),
        )
            .into_response();
    }
    next.run(req).await
}

/// The sign-in server function's URL.
const SIGN_IN_PATH: &str = "/rpc/sign_in";

fn is_cross_site_with_cookie(req: &Request) -> bool {
    let headers = req.headers();
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || headers.contains_key(header::AUTHORIZATION)
    {
        return false;
    }
    let has_session_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|pair| {
            let pair = pair.trim_start();
            [crate::sessions::SESSION_COOKIE, crate::sessions::SECURE_SESSION_COOKIE]
                .iter()
                .any(|name| pair.strip_prefix(name).is_some_and(|rest| rest.starts_with('=')))
        });
    // Signing in is checked without a cookie too: another site must not be able
    // to sign a visitor in to an account of its choosing (login CSRF).
    if !has_session_cookie && req.uri().path() != SIGN_IN_PATH {
        return false;
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // Neither header: not a browser acting on another site's behalf.
        None => false,
        Some(origin) => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            origin_host.is_none() || origin_host != host
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(method: Method, headers: &[(&str, &str)]) -> Request {
        request_to("/rpc/delete_factory", method, headers)
    }

    fn request_to(path: &str, method: Method, headers: &[(&str, &str)]) -> Request {
        let mut builder = axum::http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    const COOKIE: (&str, &str) = ("cookie", "theme=dark; fm_session=abc");
    const HOST: (&str, &str) = ("host", "127.0.0.1:3000");

    #[test]
    fn cross_site_posts_with_the_cookie_are_refused() {
        assert!(is_cross_site_with_cookie(&request(
            Method::POST,
            &[COOKIE, HOST, ("sec-fetch-site", "cross-site")]
        )));
        assert!(is_cross_site_with_cookie(&request(
            Method::POST,
            &[COOKIE, HOST, ("sec-fetch-site", "same-site")]
        )));
        assert!(is_cross_site_with_cookie(&request(
            Method::DELETE,
            &[COOKIE, HOST, ("origin", "https://evil.example")]
        )));
        assert!(is_cross_site_with_cookie(&request(
            Method::POST,
            &[COOKIE, HOST, ("origin", "null")]
        )));
    }

    #[test]
    fn the_secure_cookie_name_is_guarded_too() {
        let secure = ("cookie", "__Host-fm_session=abc");
        assert!(is_cross_site_with_cookie(&request(
            Method::POST,
            &[secure, HOST, ("sec-fetch-site", "cross-site")]
        )));
        let lookalike = ("cookie", "fm_session_theme=dark");
        assert!(!is_cross_site_with_cookie(&request(
            Method::POST,
            &[lookalike, HOST, ("sec-fetch-site", "cross-site")]
        )));
    }

    #[test]
    fn same_site_reads_and_token_calls_pass() {
        assert!(!is_cross_site_with_cookie(&request(
            Method::POST,
            &[COOKIE, HOST, ("sec-fetch-site", "same-origin")]
        )));
        assert!(!is_cross_site_with_cookie(&request(
            Method::POST,
            &[COOKIE, HOST, ("origin", "http://127.0.0.1:3000")]
        )));
        assert!(!is_cross_site_with_cookie(&request(
            Method::GET,
            &[COOKIE, HOST, ("sec-fetch-site", "cross-site")]
        )));
        assert!(!is_cross_site_with_cookie(&request(
            Method::POST,
            &[
                COOKIE,
                HOST,
                ("origin", "https://evil.example"),
                ("authorization", "Bearer x")
            ]
        )));
        assert!(!is_cross_site_with_cookie(&request(
            Method::POST,
            &[HOST, ("origin", "https://evil.example")]
        )));
    }

    #[test]
    fn signing_in_from_another_site_is_refused_even_without_a_cookie() {
        assert!(is_cross_site_with_cookie(&request_to(
            "/rpc/sign_in",
            Method::POST,
            &[HOST, ("sec-fetch-site", "cross-site")]
        )));
        assert!(!is_cross_site_with_cookie(&request_to(
            "/rpc/sign_in",
            Method::POST,
            &[HOST, ("sec-fetch-site", "same-origin")]
        )));
    }
}
