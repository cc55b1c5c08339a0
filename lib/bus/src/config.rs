//! Kafka client configuration (section `[kafka]`).

use std::collections::BTreeMap;

use flywheel_config::{ConfigError, Validate};
use serde::Deserialize;

/// Producer compression codec.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Connection and producer settings shared by every service that talks to Kafka.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma separated.
    pub brokers: String,
    /// `client.id` reported to the broker.
    pub client_id: String,
    /// Producer compression (`lz4`, `zstd` or `none`).
    pub compression: Compression,
    /// How long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// Delivery must be confirmed within this time or the request fails as unavailable.
    pub message_timeout_ms: u32,
    /// Largest message the producer sends; receivers split larger payloads.
    pub max_message_bytes: usize,
    /// Bound of the producer's local queue, in messages.
    pub queue_max_messages: u32,
    /// Bound of the producer's local queue, in KiB.
    pub queue_max_kbytes: u32,
    /// How long `publish` waits for room in a full local queue before failing.
    pub queue_full_wait_ms: u64,
    /// Create missing topics at start-up (with `topic_partitions` and `topic_replication`).
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub topic_replication: i32,
    /// Interval of the broker reachability probe that drives readiness.
    pub health_interval_ms: u64,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.mechanism`), passed as is.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_string(),
            client_id: "flywheel".to_string(),
            compression: Compression::Lz4,
            linger_ms: 20,
            message_timeout_ms: 10_000,
            max_message_bytes: 1_000_000,
            queue_max_messages: 1_000_000,
            queue_max_kbytes: 1_048_576,
            queue_full_wait_ms: 500,
            create_topics: true,
            topic_partitions: 3,
            topic_replication: 1,
            health_interval_ms: 1_000,
            properties: BTreeMap::new(),
        }
    }
}

impl Validate for KafkaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::invalid("kafka.brokers", "must not be empty"));
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::invalid(
                "kafka.max_message_bytes",
                "must be at least 1024",
            ));
        }
        if self.message_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "kafka.message_timeout_ms",
                "must be positive",
            ));
        }
        if self.topic_partitions < 1 || self.topic_replication < 1 {
            return Err(ConfigError::invalid(
                "kafka.topic_partitions",
                "partitions and replication must be at least 1",
            ));
        }
        Ok(())
    }
}
