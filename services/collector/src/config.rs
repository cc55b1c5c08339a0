//! Collector configuration (section `[collector]`).

use std::net::SocketAddr;

use flywheel_config::{ConfigError, Validate};
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
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([0, 0, 0, 0], 4318)),
            grpc_listen: SocketAddr::from(([0, 0, 0, 0], 4317)),
            spans_topic: flywheel_core::wire::TOPIC_SPANS.to_string(),
            max_request_bytes: 64 * 1024 * 1024,
            max_in_flight_bytes: 256 * 1024 * 1024,
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
        Ok(())
    }
}
