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
    /// Topic of `flywheel.v1.Feedback` messages (written to `feedback`).
    pub feedback_topic: String,
    /// Topic of `flywheel.v1.Signal` messages (written to `signals`).
    pub signals_topic: String,
    /// Where undecodable messages of every consumed topic are copied (with their source topic,
    /// partition, offset and error).
    pub dead_letter_topic: String,
    /// A partition's batch is inserted when it holds this many items (spans, feedback, signals)...
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
    /// Derive implicit signals (`source = heuristic`) from `llm_calls` periodically
    /// (docs/SIGNALS.md). Several instances may all derive: ids are deterministic.
    pub derive_signals: bool,
    /// Seconds between two derivation runs.
    pub derive_interval_s: u64,
    /// Each run looks at calls that started this many seconds ago or later (must exceed
    /// `conversation_idle_s`; late spans are caught as long as they arrive within it).
    pub derive_lookback_s: u64,
    /// Two calls of one conversation with the same input within this many seconds: the
    /// earlier answer was regenerated.
    pub regenerate_window_s: u64,
    /// A conversation without a call for this many seconds has ended.
    pub conversation_idle_s: u64,
    /// Seconds between two retention runs (also one at start-up): rows older than
    /// `clickhouse.ttl_days` are deleted from the embedded DuckDB store (ClickHouse's tables
    /// expire them by their TTL). Nothing runs when `clickhouse.ttl_days` is empty.
    pub expire_interval_s: u64,
    /// Fault injection for tests only: abort the process right after the N-th successful
    /// insert, before its offsets are committed (0 = never).
    pub test_crash_after_inserts: u64,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            group_id: "flywheel-ingester".to_string(),
            spans_topic: flywheel_core::wire::TOPIC_SPANS.to_string(),
            feedback_topic: flywheel_core::wire::TOPIC_FEEDBACK.to_string(),
            signals_topic: flywheel_core::wire::TOPIC_SIGNALS.to_string(),
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
            derive_signals: true,
            derive_interval_s: 60,
            derive_lookback_s: 3 * 3600,
            regenerate_window_s: 300,
            conversation_idle_s: 1800,
            expire_interval_s: 3600,
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
        let topics = [&self.spans_topic, &self.feedback_topic, &self.signals_topic];
        if topics.iter().any(|t| t.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "ingester.feedback_topic",
                "spans_topic, feedback_topic and signals_topic must not be empty",
            ));
        }
        if topics.contains(&&self.dead_letter_topic) {
            return Err(ConfigError::invalid(
                "ingester.dead_letter_topic",
                "must differ from the spans, feedback and signals topics",
            ));
        }
        if topics[0] == topics[1] || topics[0] == topics[2] || topics[1] == topics[2] {
            return Err(ConfigError::invalid(
                "ingester.signals_topic",
                "spans_topic, feedback_topic and signals_topic must all differ",
            ));
        }
        if self.derive_signals {
            if self.derive_interval_s == 0 || self.regenerate_window_s == 0 {
                return Err(ConfigError::invalid(
                    "ingester.derive_interval_s",
                    "derive_interval_s and regenerate_window_s must be positive",
                ));
            }
            if self.derive_lookback_s <= self.conversation_idle_s {
                return Err(ConfigError::invalid(
                    "ingester.derive_lookback_s",
                    "must exceed conversation_idle_s (an ended conversation must still be in view)",
                ));
            }
        }
        if self.expire_interval_s == 0 || self.expire_interval_s > 7 * 86_400 {
            return Err(ConfigError::invalid(
                "ingester.expire_interval_s",
                "must be between 1 and 604800 (a week)",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn field(config: &IngesterConfig) -> Option<String> {
        match config.validate() {
            Err(ConfigError::Invalid { field, .. }) => Some(field),
            Err(e) => panic!("{e}"),
            Ok(()) => None,
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(field(&IngesterConfig::default()), None);
    }

    #[test]
    fn topics_must_all_differ() {
        let mut c = IngesterConfig {
            feedback_topic: IngesterConfig::default().spans_topic,
            ..IngesterConfig::default()
        };
        assert_eq!(field(&c).as_deref(), Some("ingester.signals_topic"));
        c.feedback_topic = c.dead_letter_topic.clone();
        assert_eq!(field(&c).as_deref(), Some("ingester.dead_letter_topic"));
    }

    #[test]
    fn expire_interval_must_be_positive_and_at_most_a_week() {
        let mut c = IngesterConfig {
            expire_interval_s: 0,
            ..IngesterConfig::default()
        };
        assert_eq!(field(&c).as_deref(), Some("ingester.expire_interval_s"));
        c.expire_interval_s = 7 * 86_400 + 1;
        assert_eq!(field(&c).as_deref(), Some("ingester.expire_interval_s"));
        c.expire_interval_s = 7 * 86_400;
        assert_eq!(field(&c), None);
        c.expire_interval_s = 1;
        assert_eq!(field(&c), None);
    }

    #[test]
    fn lookback_must_cover_the_idle_time_when_deriving() {
        let mut c = IngesterConfig {
            derive_lookback_s: 600,
            conversation_idle_s: 1800,
            ..IngesterConfig::default()
        };
        assert_eq!(field(&c).as_deref(), Some("ingester.derive_lookback_s"));
        c.derive_signals = false;
        assert_eq!(field(&c), None);
    }
}
