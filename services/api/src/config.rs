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
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            export_page_size: 2000,
            max_concurrent_exports: 4,
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
    }
}
