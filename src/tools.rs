//! Operator and benchmark tools that read Flywheel's topics.

use std::time::Duration;

use anyhow::Context;
use flywheel_bus::{inspect, KafkaConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// Prints what a span topic holds as `key=value` pairs: the message count from the partition
/// offsets (cheap), and with `decode` also the span count and the first and last message
/// timestamps (reads every message).
pub fn topic_stats(kafka: &KafkaConfig, topic: &str, decode: bool) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(30);
    let counts = inspect::message_counts(kafka, topic, timeout)
        .with_context(|| format!("cannot read the offsets of topic {topic}"))?;
    let messages: i64 = counts.iter().map(|(_, n)| n).sum();
    print!(
        "topic={topic} partitions={} messages={messages}",
        counts.len()
    );
    if !decode {
        println!();
        return Ok(());
    }
    let all = inspect::read_all(kafka, topic, timeout)
        .with_context(|| format!("cannot read topic {topic}"))?;
    let mut spans = 0u64;
    let mut undecodable = 0usize;
    for m in &all {
        match ExportTraceServiceRequest::decode(m.payload.as_slice()) {
            Ok(r) => spans += flywheel_collector::spans::count_spans(&r),
            Err(_) => undecodable += 1,
        }
    }
    let first = all.iter().filter_map(|m| m.timestamp_ms).min();
    let last = all.iter().filter_map(|m| m.timestamp_ms).max();
    println!(
        " spans={spans} undecodable={undecodable} first_ts_ms={} last_ts_ms={}",
        first.unwrap_or(0),
        last.unwrap_or(0)
    );
    Ok(())
}
