//! Collector configuration (section `[collector]`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use flywheel_config::{ConfigError, Validate};
use flywheel_core::ProjectId;
use serde::Deserialize;

/// Settings of the OTLP receivers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// OTLP/HTTP listen address (`POST /v1/traces`).
    pub http_listen: SocketAddr,
    /// OTLP/gRPC listen address (`TraceService/Export`).
    pub grpc_listen: SocketAddr,
    /// Kafka topic for spans.
    pub spans_topic: String,
    /// Largest accepted request body, measured after decompression.
    pub max_request_bytes: usize,
    /// Budget of request bytes being published at once; beyond it requests get 429 and
    /// `RESOURCE_EXHAUSTED` with a retry hint instead of queueing without bound.
    pub max_in_flight_bytes: usize,
    /// API keys.
    pub auth: AuthConfig,
}

/// API-key authentication. Keys map to the project the data belongs to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// When true, requests without a known key are refused with 401 / `UNAUTHENTICATED`.
    /// When false, data without a key goes to the `default` project (a known key still selects
    /// its project).
    pub required: bool,
    /// `key = "project-id"` pairs, sent as `Authorization: Bearer <key>` or `x-api-key: <key>`.
    pub keys: BTreeMap<String, String>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([0, 0, 0, 0], 4318)),
            grpc_listen: SocketAddr::from(([0, 0, 0, 0], 4317)),
            spans_topic: flywheel_core::wire::TOPIC_SPANS.to_string(),
            max_request_bytes: 64 * 1024 * 1024,
            max_in_flight_bytes: 256 * 1024 * 1024,
            auth: AuthConfig::default(),
        }
    }
}

impl Validate for CollectorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.spans_topic.trim().is_empty() {
            return Err(ConfigError::invalid(
                "collector.spans_topic",
                "must not be empty",
            ));
        }
        if self.max_request_bytes < 1024 {
            return Err(ConfigError::invalid(
                "collector.max_request_bytes",
                "must be at least 1024",
            ));
        }
        if self.max_in_flight_bytes < self.max_request_bytes {
            return Err(ConfigError::invalid(
                "collector.max_in_flight_bytes",
                "must be at least collector.max_request_bytes",
            ));
        }
        if self.auth.required && self.auth.keys.is_empty() {
            return Err(ConfigError::invalid(
                "collector.auth.keys",
                "must name at least one key when collector.auth.required is true",
            ));
        }
        for (key, project) in &self.auth.keys {
            if key.len() < 8 {
                return Err(ConfigError::invalid(
                    "collector.auth.keys",
                    "keys must be at least 8 characters",
                ));
            }
            ProjectId::new(project).map_err(|m| ConfigError::invalid("collector.auth.keys", m))?;
        }
        Ok(())
    }
}
