//! The page and its assets, embedded in the binary (no build step, works offline): `GET /`
//! and `GET /status/{file}`. uPlot (MIT, `static/vendor/uplot/`) draws the charts.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Scripts and styles come from this server only; uPlot sets element styles from script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

const INDEX: &str = include_str!("../../static/index.html");

/// `(name, content type, bytes)` of every file under `/status/`.
const FILES: [(&str, &str, &str); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../../static/vendor/uplot/uPlot.min.css"),
    ),
];

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

pub async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => page(content_type, body),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_assets() {
        for (name, _, body) in FILES {
            assert!(!body.is_empty(), "{name}");
            if name != "uPlot.iife.min.js" {
                assert!(
                    !body.contains("http://") && !body.contains("https://"),
                    "{name} fetches from elsewhere"
                );
            }
        }
        for src in [
            "/status/app.js",
            "/status/app.css",
            "/status/uPlot.iife.min.js",
            "/status/uPlot.min.css",
        ] {
            assert!(INDEX.contains(src), "{src}");
        }
        assert!(!INDEX.contains("//cdn") && !INDEX.contains("https://"));
    }
}
