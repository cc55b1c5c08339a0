//! Detector configuration (section `[detector]`). Every field can be overridden as
//! `FLYWHEEL_DETECTOR__<FIELD>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flywheel_config::{ConfigError, Validate};
use serde::Deserialize;

/// Consumer group, SLO file, evaluation and delivery settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Kafka consumer group of the detector (not the ingester's: both read every message).
    pub group_id: String,
    /// Topic of OTLP span messages.
    pub spans_topic: String,
    /// Topic of `flywheel.v1.Feedback` messages.
    pub feedback_topic: String,
    /// Topic of `flywheel.v1.Signal` messages.
    pub signals_topic: String,
    /// Scale-out (adr/0008): when set, every instance re-keys calls and attributed items by
    /// SLI key into this topic (stage 1) and consumes it in group `<group_id>.keyed` (stage 2),
    /// so each key is evaluated by one instance. Retain it for the longest alerting window.
    /// Empty: one instance does everything (the default). Requires the Kafka bus: refused on
    /// the in-process wal ([`Self::check_bus`]).
    pub keyed_topic: String,
    /// The SLO file (YAML, `deploy/slos.example.yaml`). Required to run the detector; `flywheel
    /// all` runs the detector only when it is set.
    pub slo_file: Option<PathBuf>,
    /// Extra price table (TOML, the shape of `services/ingester/prices.toml`) overriding the
    /// built-in one; set it to the ingester's `prices_file` so live costs equal stored ones.
    pub prices_file: Option<PathBuf>,
    /// `GET /v1/slos` and `GET /v1/alerts`.
    pub listen: SocketAddr,
    /// How often every SLO is evaluated (ms).
    pub evaluation_interval_ms: u64,
    /// How far behind the newest event time an event may arrive and still count (ms).
    pub lateness_ms: u64,
    /// Most (SLO, key) series held; events of further keys are dropped and counted.
    pub max_keys: usize,
    /// Once no event at all has arrived for this long (ms of wall time), event time follows
    /// the wall clock minus this, so windows keep moving when traffic stops (alerts resolve,
    /// firing ones are re-sent). A consumer catching up keeps receiving events and is never
    /// pushed ahead of them. 0 disables it (pure event time).
    pub idle_advance_ms: u64,
    /// Recent calls remembered for attributing feedback and signals to their SLI key.
    pub join_capacity: usize,
    /// Feedback and signals not attributable from memory wait here for a store lookup.
    pub lookup_queue: usize,
    /// Batched store lookups of unattributed items run at most this often (ms).
    pub lookup_interval_ms: u64,
    /// Most ids in one lookup.
    pub lookup_batch: usize,
    /// On start-up, rebuild windows from the store (`llm_calls`, `feedback`, `signals`) over
    /// the longest window and restore firing alerts from `alerts` (adr/0008).
    pub rebuild_from_history: bool,
    /// Firing alerts are re-sent to Alertmanager this often (ms); each carries
    /// `endsAt = now + 4 x resend`, so Alertmanager resolves them if the detector dies.
    pub resend_interval_ms: u64,
    /// Alertmanager base URLs (`http://host:9093`); alerts go to `POST /api/v2/alerts`.
    pub alertmanager_urls: Vec<String>,
    /// URLs receiving the Alertmanager webhook JSON on new and resolved alerts.
    pub webhook_urls: Vec<String>,
    /// Slack incoming-webhook URLs, notified on new and resolved alerts.
    pub slack_webhook_urls: Vec<String>,
    /// Base URL of the Flywheel API, for the links to the affected calls.
    pub api_url: String,
    /// Notifications waiting per sender; beyond it they are dropped and counted.
    pub send_queue: usize,
    /// Delivery attempts per notification, backing off from `retry_initial_ms` to
    /// `retry_max_ms`.
    pub send_attempts: u32,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Timeout of one delivery request (ms).
    pub send_timeout_ms: u64,
    /// Kafka consumer session timeout (ms).
    pub session_timeout_ms: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            group_id: "flywheel-detector".to_string(),
            spans_topic: flywheel_core::wire::TOPIC_SPANS.to_string(),
            feedback_topic: flywheel_core::wire::TOPIC_FEEDBACK.to_string(),
            signals_topic: flywheel_core::wire::TOPIC_SIGNALS.to_string(),
            keyed_topic: String::new(),
            slo_file: None,
            prices_file: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            evaluation_interval_ms: 1_000,
            lateness_ms: 30_000,
            max_keys: 10_000,
            idle_advance_ms: 60_000,
            join_capacity: 200_000,
            lookup_queue: 10_000,
            lookup_interval_ms: 5_000,
            lookup_batch: 500,
            rebuild_from_history: true,
            resend_interval_ms: 60_000,
            alertmanager_urls: Vec::new(),
            webhook_urls: Vec::new(),
            slack_webhook_urls: Vec::new(),
            api_url: "http://localhost:8080".to_string(),
            send_queue: 1_000,
            send_attempts: 8,
            retry_initial_ms: 200,
            retry_max_ms: 30_000,
            send_timeout_ms: 10_000,
            session_timeout_ms: 30_000,
        }
    }
}

impl DetectorConfig {
    pub fn evaluation_interval(&self) -> Duration {
        Duration::from_millis(self.evaluation_interval_ms)
    }

    /// What the bus must offer: `keyed_topic` (scale-out) needs Kafka consumer groups and
    /// is refused on the in-process wal.
    pub fn check_bus(&self, kafka: bool) -> Result<(), ConfigError> {
        if !kafka && !self.keyed_topic.is_empty() {
            return Err(ConfigError::invalid(
                "detector.keyed_topic",
                "requires the Kafka bus (scale-out rebalances keys across instances); leave it empty when running on the wal",
            ));
        }
        Ok(())
    }
}

impl Validate for DetectorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = ConfigError::invalid;
        if self.group_id.trim().is_empty() {
            return Err(invalid("detector.group_id", "must not be empty"));
        }
        let topics = [&self.spans_topic, &self.feedback_topic, &self.signals_topic];
        if topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "detector.spans_topic",
                "spans_topic, feedback_topic and signals_topic must not be empty",
            ));
        }
        if topics.contains(&&self.keyed_topic) {
            return Err(invalid(
                "detector.keyed_topic",
                "must differ from the spans, feedback and signals topics",
            ));
        }
        if topics[0] == topics[1] || topics[0] == topics[2] || topics[1] == topics[2] {
            return Err(invalid(
                "detector.signals_topic",
                "spans_topic, feedback_topic and signals_topic must all differ",
            ));
        }
        for (field, v) in [
            (
                "detector.evaluation_interval_ms",
                self.evaluation_interval_ms,
            ),
            ("detector.resend_interval_ms", self.resend_interval_ms),
            ("detector.lookup_interval_ms", self.lookup_interval_ms),
            ("detector.retry_initial_ms", self.retry_initial_ms),
            ("detector.send_timeout_ms", self.send_timeout_ms),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be positive"));
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(invalid(
                "detector.retry_max_ms",
                "must be at least retry_initial_ms",
            ));
        }
        for (field, v) in [
            ("detector.max_keys", self.max_keys),
            ("detector.join_capacity", self.join_capacity),
            ("detector.send_queue", self.send_queue),
            ("detector.lookup_batch", self.lookup_batch),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be positive"));
            }
        }
        if let Some(path) = &self.prices_file {
            if let Err(e) = flywheel_pricing::PriceTable::load(Some(path)) {
                return Err(invalid("detector.prices_file", &e));
            }
        }
        if self.send_attempts == 0 {
            return Err(invalid("detector.send_attempts", "must be at least 1"));
        }
        for (field, urls) in [
            ("detector.alertmanager_urls", &self.alertmanager_urls),
            ("detector.webhook_urls", &self.webhook_urls),
            ("detector.slack_webhook_urls", &self.slack_webhook_urls),
        ] {
            if let Some(u) = urls
                .iter()
                .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
            {
                return Err(invalid(field, &format!("{u:?} is not an http(s) URL")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        DetectorConfig::default().validate().unwrap();
        let c = DetectorConfig {
            webhook_urls: vec!["ftp://x".into()],
            ..DetectorConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("detector.webhook_urls"));
        let c = DetectorConfig {
            feedback_topic: flywheel_core::wire::TOPIC_SPANS.into(),
            ..DetectorConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
