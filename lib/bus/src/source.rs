//! The consuming side of the durable log: [`Source`] (a consumer group's view of some topics),
//! [`Delivery`] (one message read), [`Bus`] (what a service is given to make its sources and
//! publishers).
//!
//! The seam is as narrow as [`crate::Publisher`]: receive the next message, commit next offsets
//! per (topic, partition), read a partition's committed offset, and learn assignment changes.
//! Implementations: [`crate::KafkaSource`] (rdkafka, a consumer group that rebalances) and
//! `flywheel_wal::WalSource` (the in-process log: every partition of the subscribed topics is
//! assigned once, to the one subscription of its group).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{KafkaConfig, Publisher};

/// One message as received: borrowed from the source where it can be (Kafka hands out
/// librdkafka's buffer, so a message is decoded without a copy).
pub trait Delivery {
    fn topic(&self) -> &str;
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    /// The partitioning key (empty when there is none).
    fn key(&self) -> &[u8];
    /// The payload (empty when there is none).
    fn payload(&self) -> &[u8];
    /// Value of the first header called `name`, if present.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// Partitions given to or taken from this consumer, as `(topic, partition)`. Either way, any
/// in-memory state about them is stale: the committed offset is the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Why a source (or publisher) could not be created, or a receive or commit failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// From another log (the wal).
    #[error("{0}")]
    Log(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The bus cannot serve what was asked of it.
    #[error("{0}")]
    Unsupported(String),
}

/// When offsets are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitPolicy {
    /// Only by [`Source::commit`] (and [`Source::commit_received`]).
    Manual,
    /// Also, every `interval`, the position after every message received so far.
    Auto { interval: Duration },
}

/// Called with `(topic, partition, messages behind the partition's end)` from time to time.
pub type LagHook = Arc<dyn Fn(&str, i32, i64) + Send + Sync>;

/// What a consumer subscribes to, and how.
#[derive(Clone)]
pub struct SourceSpec {
    /// Consumer group: its committed offsets are where a new source starts (else the earliest
    /// retained message).
    pub group: String,
    pub topics: Vec<String>,
    pub commit: CommitPolicy,
    /// How long a dead member keeps its partitions (Kafka; the wal has one member per group).
    pub session_timeout_ms: u32,
    /// Extra client settings for Kafka (librdkafka names); other buses ignore them.
    pub kafka_properties: Vec<(String, String)>,
    /// Consumer lag reporting, if wanted.
    pub lag: Option<LagHook>,
}

impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSpec")
            .field("group", &self.group)
            .field("topics", &self.topics)
            .field("commit", &self.commit)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("kafka_properties", &self.kafka_properties)
            .field("lag", &self.lag.is_some())
            .finish()
    }
}

impl SourceSpec {
    /// A spec with manual commits, Kafka's default session timeout and no extras.
    pub fn new(group: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group: group.into(),
            topics,
            commit: CommitPolicy::Manual,
            session_timeout_ms: 30_000,
            kafka_properties: Vec::new(),
            lag: None,
        }
    }
}

/// A consumer group member's view of some topics. Messages of one partition arrive in offset
/// order. Every method takes `&mut self`: a source belongs to one loop.
pub trait Source: Send + 'static {
    type Message<'a>: Delivery + Send
    where
        Self: 'a;

    /// The next message, waiting as long as it takes. Cancel-safe: a receive dropped before it
    /// resolves loses no message.
    fn recv(&mut self) -> impl Future<Output = Result<Self::Message<'_>, BusError>> + Send;

    /// Durably records that the group consumed `partition` of `topic` up to `next_offset`
    /// (exclusive); resolves once stored.
    fn commit(
        &mut self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// The group's committed offset of a partition (`None`: nothing committed yet).
    fn committed(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Option<i64>, BusError>> + Send;

    /// Commits the position after every message received so far (what
    /// [`CommitPolicy::Auto`] does periodically), e.g. when stopping.
    fn commit_received(&mut self) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Assignment changes since the last call, oldest first.
    fn take_changes(&mut self) -> Vec<AssignmentChange>;
}

/// What a service is handed to reach the log: it makes the service's sources and publishers.
pub trait Bus: Send + Sync {
    type Source: Source;
    type Publisher: Publisher;

    /// Subscribes a consumer.
    fn source(&self, spec: SourceSpec) -> Result<Self::Source, BusError>;

    /// A publisher; `topics` are created if missing where the bus needs that (Kafka, with
    /// `kafka.create_topics`); background work stops on `shutdown`.
    fn publisher(
        &self,
        topics: Vec<String>,
        shutdown: CancellationToken,
    ) -> Result<Self::Publisher, BusError>;

    /// The Kafka settings when this bus is Kafka, for Kafka-only features.
    fn kafka(&self) -> Option<&KafkaConfig> {
        None
    }

    /// Registers the bus's own metrics (an embedded log's appends, fsyncs, refusals) in the
    /// process registry; a client of a remote broker has none.
    fn register_metrics(&self, _registry: &prometheus::Registry) -> prometheus::Result<()> {
        Ok(())
    }
}
