//! Operator and benchmark tools that read Flywheel's topics.

use std::time::Duration;

use anyhow::Context;
use flywheel_bus::{inspect, KafkaConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// Prints the number of messages and spans on a span topic, and the first and last message
/// timestamps (when the producer created them), as `key=value` pairs.
pub fn topic_stats(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<()> {
    let messages = inspect::read_all(kafka, topic, Duration::from_secs(10))
        .with_context(|| format!("cannot read topic {topic}"))?;
    let mut spans = 0usize;
    let mut undecodable = 0usize;
    for m in &messages {
        match ExportTraceServiceRequest::decode(m.payload.as_slice()) {
            Ok(r) => {
                spans += r
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len())
                    .sum::<usize>()
            }
            Err(_) => undecodable += 1,
        }
    }
    let first = messages.iter().filter_map(|m| m.timestamp_ms).min();
    let last = messages.iter().filter_map(|m| m.timestamp_ms).max();
    println!(
        "topic={topic} messages={} spans={spans} undecodable={undecodable} first_ts_ms={} last_ts_ms={}",
        messages.len(),
        first.unwrap_or(0),
        last.unwrap_or(0)
    );
    Ok(())
}
