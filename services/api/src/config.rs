//! API configuration (section `[api]`).

use std::net::SocketAddr;

use flywheel_config::{ConfigError, Validate};
use serde::Deserialize;

/// Settings of the read API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address (`GET /v1/datasets/export`, `/healthz`, `/readyz`).
    pub listen: SocketAddr,
    /// Calls read per ClickHouse query of an export (memory and query size per page).
    pub export_page_size: u64,
    /// Exports running at once; more get 429 with `Retry-After`.
    pub max_concurrent_exports: usize,
    /// Base URL of the detector's API (`GET /v1/slos`, `/v1/alerts`), proxied by the status
    /// page (`/v1/status/slos`). Unset: `detector.listen` of the same configuration (loopback
    /// when it listens on every interface), which is where `flywheel all` runs it. `""`: no
    /// detector; the page says so.
    pub detector_url: Option<String>,
    /// Upper bound of one status-page request (each ClickHouse query, the detector proxy), ms.
    pub status_timeout_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            export_page_size: 2000,
            max_concurrent_exports: 4,
            detector_url: None,
            status_timeout_ms: 5_000,
        }
    }
}

impl ApiConfig {
    /// Fills an unset `detector_url` from the detector's listen address (loopback when it
    /// listens on every interface).
    pub fn resolve_detector_url(&mut self, detector_listen: SocketAddr) {
        if self.detector_url.is_none() {
            let mut addr = detector_listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            self.detector_url = Some(format!("http://{addr}"));
        }
    }
}

impl Validate for ApiConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100_000).contains(&self.export_page_size) {
            return Err(ConfigError::invalid(
                "api.export_page_size",
                "must be between 1 and 100000",
            ));
        }
        if self.max_concurrent_exports == 0 {
            return Err(ConfigError::invalid(
                "api.max_concurrent_exports",
                "must be at least 1",
            ));
        }
        if let Some(url) = self.detector_url.as_deref().filter(|u| !u.is_empty()) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "api.detector_url",
                    "must be an http:// or https:// URL, or empty for no detector",
                ));
            }
        }
        if !(100..=60_000).contains(&self.status_timeout_ms) {
            return Err(ConfigError::invalid(
                "api.status_timeout_ms",
                "must be between 100 and 60000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        ApiConfig::default().validate().unwrap();
        let e = ApiConfig {
            export_page_size: 0,
            ..ApiConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("api.export_page_size"), "{e}");
        let e = ApiConfig {
            max_concurrent_exports: 0,
            ..ApiConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("api.max_concurrent_exports"), "{e}");
        let e = ApiConfig {
            detector_url: Some("127.0.0.1:8081".into()),
            ..ApiConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("api.detector_url"), "{e}");
        let mut c = ApiConfig::default();
        c.resolve_detector_url(SocketAddr::from(([0, 0, 0, 0], 8081)));
        assert_eq!(c.detector_url.as_deref(), Some("http://127.0.0.1:8081"));
        c.resolve_detector_url(SocketAddr::from(([10, 0, 0, 1], 9000)));
        assert_eq!(c.detector_url.as_deref(), Some("http://127.0.0.1:8081"));
        for url in ["", "http://127.0.0.1:8081"] {
            ApiConfig {
                detector_url: Some(url.into()),
                ..ApiConfig::default()
            }
            .validate()
            .unwrap();
        }
    }
}
