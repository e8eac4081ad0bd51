//! Browser-facing protections for every response: the security headers of the
//! predecessor's helmet set, a locked-down CSP for non-HTML responses (pages set
//! their own, with a script nonce), and CORS for the configured origins only.

use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::Method;
use axum::Router;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

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

pub fn with_security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>, cors: &CorsOrigins) -> Router<S> {
    let mut router = router.layer(SetResponseHeaderLayer::if_not_present(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ));
    for (name, value) in HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
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
