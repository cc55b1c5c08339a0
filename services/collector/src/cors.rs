//! CORS for browser clients (`collector.cors_allowed_origins`): preflight answered for the
//! configured origins, with the headers a feedback widget sends (`authorization`, `x-api-key`,
//! `content-type`, `content-encoding`) and `retry-after` exposed so that it can back off.
//! Browsers carry public keys (`auth.public_keys`), which may only write feedback and signals.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The CORS layer for `origins`, or `None` when no origin is configured (no CORS answers).
/// Origins were validated with the configuration.
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                HeaderName::from_static("x-api-key"),
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
            ])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(3600)),
    )
}
