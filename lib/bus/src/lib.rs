//! The durable log behind Flywheel's receivers.
//!
//! Receivers hand records to a [`Publisher`] and answer their client only when
//! [`Publisher::publish`] has returned `Ok`, which means every record is durably stored (for Kafka:
//! the broker's delivery report with `acks=all` on an idempotent producer). The trait is narrow on
//! purpose so that an in-process, disk-backed bus can stand in for Kafka in a single-process mode.
//!
//! - [`KafkaPublisher`]: the production implementation over `rdkafka`.
//! - [`KafkaConfig`]: broker address, compression, timeouts and queue bounds.
//! - [`Source`]: the consuming side, as narrow (receive, commit, committed offset, assignment
//!   changes), with [`Delivery`] (one message) and [`Bus`] (what a service gets to make its
//!   sources and publishers); [`KafkaSource`] and [`KafkaBus`] implement them over `rdkafka`
//!   (the wal's live in `flywheel-wal`).
//! - [`inspect`]: reading a topic back (tests, benchmarks, `flywheel topic-stats`).

mod config;
pub mod inspect;
mod kafka;
mod kafka_source;
mod source;

pub use config::{Compression, KafkaConfig};
pub use kafka::{client_config, KafkaPublisher};
pub use kafka_source::{KafkaBus, KafkaSource};
pub use source::{
    AssignmentChange, Bus, BusError, CommitPolicy, Delivery, LagHook, Source, SourceSpec,
};

use std::future::Future;

/// One message for the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Partitioning key: records with the same key keep their order in one partition.
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Record {
    /// Bytes this record occupies in memory.
    pub fn size(&self) -> usize {
        self.key.len() + self.payload.len()
    }
}

/// Message headers, the same for every record of one `publish` call.
pub type Headers = [(&'static str, Vec<u8>)];

/// Why records were not (or not provably) stored. Every variant except [`Self::Rejected`] is
/// retryable by the client.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PublishError {
    /// No broker is reachable, or delivery was not confirmed in time.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// The producer's local queue stayed full.
    #[error("the producer queue is full")]
    QueueFull,
    /// The broker refused a record permanently (e.g. larger than the broker allows).
    #[error("the log rejected a record: {0}")]
    Rejected(String),
    /// The publisher is shutting down.
    #[error("the publisher is shutting down")]
    ShuttingDown,
}

/// Durable publishing of records to named topics.
pub trait Publisher: Clone + Send + Sync + 'static {
    /// Publishes `records` to `topic`, each with `headers`, and resolves once every one of them is durable, or with the
    /// first error. On error, some records may already be stored (at-least-once): clients retry
    /// and downstream consumers deduplicate.
    fn publish(
        &self,
        topic: &str,
        headers: &Headers,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Whether the log is believed reachable right now. When false, `publish` fails fast with
    /// [`PublishError::Unavailable`] instead of queueing.
    fn is_ready(&self) -> bool;

    /// Records handed over but not yet confirmed.
    fn queue_depth(&self) -> usize;
}
