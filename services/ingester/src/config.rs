//! Ingester configuration (section `[ingester]`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use flywheel_config::{ConfigError, Validate};
use serde::Deserialize;

/// Consumer group, batching and mapping settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngesterConfig {
    /// Kafka consumer group; every ingester instance of one deployment shares it.
    pub group_id: String,
    /// Topic of OTLP span messages.
    pub spans_topic: String,
    /// Where undecodable messages are copied (with their partition, offset and error).
    pub dead_letter_topic: String,
    /// A partition's batch is inserted when it holds this many spans...
    pub batch_max_rows: usize,
    /// ...or holds this many bytes of messages...
    pub batch_max_bytes: usize,
    /// ...or when its oldest message is this old, whichever comes first.
    pub batch_max_age_ms: u64,
    /// Back-off after a failed insert, doubling up to `retry_max_ms`, with jitter.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Extra price table (TOML, same shape as the built-in one) whose entries override it.
    pub prices_file: Option<PathBuf>,
    /// Store prompt and completion content in `llm_calls` (compressed). Default for all projects.
    pub capture_content: bool,
    /// Per-project override of `capture_content`: `project = false`.
    pub capture_content_projects: BTreeMap<String, bool>,
    /// Kafka consumer session timeout: how long a crashed ingester keeps its partitions before
    /// the group hands them to another instance.
    pub session_timeout_ms: u32,
    /// Fault injection for tests only: abort the process right after the N-th successful
    /// insert, before its offsets are committed (0 = never).
    pub test_crash_after_inserts: u64,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            group_id: "flywheel-ingester".to_string(),
            spans_topic: flywheel_core::wire::TOPIC_SPANS.to_string(),
            dead_letter_topic: "flywheel.spans.dlq".to_string(),
            batch_max_rows: 20_000,
            batch_max_bytes: 32 * 1024 * 1024,
            batch_max_age_ms: 1_000,
            retry_initial_ms: 200,
            retry_max_ms: 10_000,
            prices_file: None,
            capture_content: true,
            capture_content_projects: BTreeMap::new(),
            session_timeout_ms: 30_000,
            test_crash_after_inserts: 0,
        }
    }
}

impl Validate for IngesterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.group_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "ingester.group_id",
                "must not be empty",
            ));
        }
        if self.spans_topic == self.dead_letter_topic {
            return Err(ConfigError::invalid(
                "ingester.dead_letter_topic",
                "must differ from ingester.spans_topic",
            ));
        }
        if self.batch_max_rows == 0 {
            return Err(ConfigError::invalid(
                "ingester.batch_max_rows",
                "must be positive",
            ));
        }
        if self.batch_max_age_ms == 0 {
            return Err(ConfigError::invalid(
                "ingester.batch_max_age_ms",
                "must be positive",
            ));
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(ConfigError::invalid(
                "ingester.retry_max_ms",
                "need 0 < retry_initial_ms <= retry_max_ms",
            ));
        }
        if let Some(path) = &self.prices_file {
            crate::pricing::PriceTable::load(Some(path))
                .map_err(|e| ConfigError::invalid("ingester.prices_file", e))?;
        }
        Ok(())
    }
}

impl IngesterConfig {
    /// Whether content is captured for `project`.
    pub fn captures_content(&self, project: &str) -> bool {
        self.capture_content_projects
            .get(project)
            .copied()
            .unwrap_or(self.capture_content)
    }
}
