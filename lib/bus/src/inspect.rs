//! Reading a whole topic back, for tests, benchmarks and operators (`flywheel topic-stats`).
//!
//! Not used on any hot path: it assigns every partition from the beginning, without a consumer
//! group, and stops at the high watermarks observed when it started.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::KafkaConfig;

/// One message as stored on the topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Kafka message timestamp (producer create time), ms since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl TopicMessage {
    /// Value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

fn consumer(config: &KafkaConfig) -> Result<BaseConsumer, KafkaError> {
    crate::kafka::client_config(config)
        .set("group.id", "flywheel-inspect")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
}

/// [`watermarks_once`], retried a few times: a broker that just restarted may drop the first
/// connections.
fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let mut attempt = 0;
    loop {
        match watermarks_once(consumer, topic, timeout) {
            Ok(w) => return Ok(w),
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "retrying topic metadata");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `(partition, low, high)` watermarks of every partition of `topic`.
fn watermarks_once(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut out = Vec::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            out.push((p.id(), low, high));
        }
    }
    Ok(out)
}

/// Number of messages in each partition of `topic`, from its offsets (no message is read).
pub fn message_counts(
    config: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64)>, KafkaError> {
    let consumer = consumer(config)?;
    Ok(watermarks(&consumer, topic, timeout)?
        .into_iter()
        .map(|(p, low, high)| (p, high - low))
        .collect())
}

/// Reads every message of `topic` present when called. Blocking. Fails if they cannot all be
/// read within `timeout` (at least 30 s).
pub fn read_all(
    config: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<TopicMessage>, KafkaError> {
    let consumer = consumer(config)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0i64;
    let mut ends = Vec::new();
    for (partition, low, high) in watermarks(&consumer, topic, timeout)? {
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
            remaining += high - low;
            ends.push((partition, high));
        }
    }
    let mut out = Vec::with_capacity(usize::try_from(remaining).unwrap_or(0));
    if remaining == 0 {
        return Ok(out);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + timeout.max(Duration::from_secs(30));
    while (out.len() as i64) < remaining && Instant::now() < deadline {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = result?;
        let end = ends
            .iter()
            .find(|(p, _)| *p == m.partition())
            .map_or(0, |(_, h)| *h);
        if m.offset() >= end {
            continue;
        }
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(TopicMessage {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().unwrap_or_default().to_vec(),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
        });
    }
    if (out.len() as i64) < remaining {
        return Err(KafkaError::Global(
            rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
        ));
    }
    Ok(out)
}
