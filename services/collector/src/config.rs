//! Collector configuration (section `[collector]`).

use std::net::SocketAddr;

use flywheel_config::{ConfigError, Validate};
use flywheel_core::ProjectId;
use flywheel_feedback::{Definitions, FeedbackDefinition, Limits, ValueType};
use serde::Deserialize;

/// Settings of the OTLP receivers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// OTLP/HTTP listen address (`POST /v1/traces`, `/v1/logs`, `/v1/feedback`, `/v1/signals`).
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
    /// Kafka topic for feedback items (`flywheel.v1.Feedback`).
    pub feedback_topic: String,
    /// Kafka topic for implicit signals (`flywheel.v1.Signal`).
    pub signals_topic: String,
    /// Browser origins allowed to call the HTTP endpoints (CORS), e.g.
    /// `["https://app.example.com"]`; `["*"]` allows any origin; empty (the default) answers
    /// no CORS request.
    pub cors_allowed_origins: Vec<String>,
    /// Limits on feedback and signal items (sizes, batch length, clock skew).
    pub feedback_limits: Limits,
    /// Optional declared feedback per project: `[collector.feedback_definitions.<project>.<name>]`
    /// with `type` and, as fits the type, `labels`, `min`, `max`. Items contradicting a
    /// definition are refused; names without a definition are accepted as sent.
    pub feedback_definitions: Definitions,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([0, 0, 0, 0], 4318)),
            grpc_listen: SocketAddr::from(([0, 0, 0, 0], 4317)),
            spans_topic: flywheel_core::wire::TOPIC_SPANS.to_string(),
            max_request_bytes: 64 * 1024 * 1024,
            max_in_flight_bytes: 256 * 1024 * 1024,
            feedback_topic: flywheel_core::wire::TOPIC_FEEDBACK.to_string(),
            signals_topic: flywheel_core::wire::TOPIC_SIGNALS.to_string(),
            cors_allowed_origins: Vec::new(),
            feedback_limits: Limits::default(),
            feedback_definitions: Definitions::new(),
        }
    }
}

impl Validate for CollectorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (field, topic) in [
            ("collector.spans_topic", &self.spans_topic),
            ("collector.feedback_topic", &self.feedback_topic),
            ("collector.signals_topic", &self.signals_topic),
        ] {
            if topic.trim().is_empty() {
                return Err(ConfigError::invalid(field, "must not be empty"));
            }
        }
        for origin in &self.cors_allowed_origins {
            check_origin(origin)
                .map_err(|m| ConfigError::invalid("collector.cors_allowed_origins", m))?;
        }
        for (project, definitions) in &self.feedback_definitions {
            let field = format!("collector.feedback_definitions.{project}");
            ProjectId::new(project).map_err(|m| ConfigError::invalid(&field, m))?;
            for (name, d) in definitions {
                check_definition(d)
                    .map_err(|(f, m)| ConfigError::invalid(format!("{field}.{name}.{f}"), m))?;
            }
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

/// A definition's fields fit its type: `labels` only for labels, `min` <= `max` only for
/// numbers.
fn check_definition(d: &FeedbackDefinition) -> Result<(), (&'static str, &'static str)> {
    if !d.labels.is_empty() && d.value_type != ValueType::Label {
        return Err(("labels", "only applies to type = \"label\""));
    }
    if (d.min.is_some() || d.max.is_some()) && d.value_type != ValueType::Number {
        return Err(("min", "min and max only apply to type = \"number\""));
    }
    if let (Some(min), Some(max)) = (d.min, d.max) {
        if min > max {
            return Err(("min", "must not be larger than max"));
        }
    }
    Ok(())
}

/// An allowed CORS origin: `*`, or `scheme://host[:port]` without a path.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} must start with http:// or https:// (or be \"*\")"))?;
    if rest.is_empty() || rest.contains('/') || !origin.is_ascii() || origin.contains(' ') {
        return Err(format!(
            "{origin:?} must be scheme://host[:port] with no path or trailing slash"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn origins() {
        for ok in ["*", "https://app.example.com", "http://localhost:3000"] {
            assert!(check_origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://",
            "ftp://x",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn definitions_are_checked() {
        let mut config = CollectorConfig::default();
        let d: FeedbackDefinition =
            serde_json::from_str(r#"{"type":"number","min":5,"max":1}"#).unwrap();
        config
            .feedback_definitions
            .entry("team-a".into())
            .or_default()
            .insert("helpfulness".into(), d);
        let e = config.validate().unwrap_err().to_string();
        assert!(
            e.contains("collector.feedback_definitions.team-a.helpfulness.min"),
            "{e}"
        );
        let mut config = CollectorConfig::default();
        config
            .feedback_definitions
            .insert("not a project".into(), BTreeMap::new());
        assert!(config.validate().is_err());
        let mut config = CollectorConfig::default();
        let d: FeedbackDefinition =
            serde_json::from_str(r#"{"type":"boolean","labels":["a"]}"#).unwrap();
        config
            .feedback_definitions
            .entry("p".into())
            .or_default()
            .insert("thumbs".into(), d);
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("p.thumbs.labels"), "{e}");
    }
}
