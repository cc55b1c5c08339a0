//! [`Source`] over a Kafka consumer group ([`KafkaSource`]) and [`KafkaBus`], the [`Bus`] of a
//! deployment with Kafka.
//!
//! Rebalances are recorded by librdkafka's callback and handed out by
//! [`Source::take_changes`]; librdkafka statistics (every 5 s, when a [`LagHook`] is given)
//! report each partition's consumer lag.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::source::{AssignmentChange, Bus, BusError, CommitPolicy, Delivery, LagHook, Source};
use crate::{KafkaConfig, KafkaPublisher, SourceSpec};

/// How long reading committed offsets may take.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

/// Consumer context: records rebalances, reports lag.
pub struct SourceContext {
    topics: Vec<String>,
    changes: Arc<Mutex<Vec<AssignmentChange>>>,
    lag: Option<LagHook>,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let Some(lag) = &self.lag else { return };
        for name in &self.topics {
            let Some(topic) = statistics.topics.get(name) else {
                continue;
            };
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    lag(name, *id, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .filter(|e| self.topics.iter().any(|t| t == e.topic()))
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect::<Vec<_>>()
        };
        let change = match rebalance {
            Rebalance::Assign(tpl) => AssignmentChange::Assigned(partitions(tpl)),
            Rebalance::Revoke(tpl) => AssignmentChange::Revoked(partitions(tpl)),
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        tracing::info!(?change, "partition assignment changed");
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
    }
}

/// A member of a Kafka consumer group (`auto.offset.reset=earliest`).
pub struct KafkaSource {
    consumer: StreamConsumer<SourceContext>,
    changes: Arc<Mutex<Vec<AssignmentChange>>>,
}

impl KafkaSource {
    /// Creates the consumer and subscribes it to `spec.topics`.
    pub fn subscribe(config: &KafkaConfig, spec: SourceSpec) -> Result<Self, BusError> {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let mut client = crate::client_config(config);
        client
            .set("group.id", &spec.group)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", spec.session_timeout_ms.to_string())
            // A subscribed topic created after start-up (e.g. feedback, before any was sent)
            // is picked up within this time.
            .set("topic.metadata.refresh.interval.ms", "10000");
        match spec.commit {
            CommitPolicy::Manual => client
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false"),
            CommitPolicy::Auto { interval } => client
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", interval.as_millis().to_string()),
        };
        if spec.lag.is_some() {
            client.set("statistics.interval.ms", "5000");
        }
        for (k, v) in &spec.kafka_properties {
            client.set(k, v);
        }
        let consumer: StreamConsumer<SourceContext> =
            client.create_with_context(SourceContext {
                topics: spec.topics.clone(),
                changes: changes.clone(),
                lag: spec.lag,
            })?;
        let names: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        Ok(Self { consumer, changes })
    }
}

impl Delivery for BorrowedMessage<'_> {
    fn topic(&self) -> &str {
        rdkafka::Message::topic(self)
    }

    fn partition(&self) -> i32 {
        rdkafka::Message::partition(self)
    }

    fn offset(&self) -> i64 {
        rdkafka::Message::offset(self)
    }

    fn key(&self) -> &[u8] {
        rdkafka::Message::key(self).unwrap_or_default()
    }

    fn payload(&self) -> &[u8] {
        rdkafka::Message::payload(self).unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        let headers = self.headers()?;
        headers.iter().find(|h| h.key == name).and_then(|h| h.value)
    }
}

impl Source for KafkaSource {
    type Message<'a> = BorrowedMessage<'a>;

    async fn recv(&mut self) -> Result<BorrowedMessage<'_>, BusError> {
        Ok(self.consumer.recv().await?)
    }

    async fn commit(
        &mut self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), BusError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(next_offset))?;
        tokio::task::block_in_place(|| self.consumer.commit(&tpl, CommitMode::Sync))?;
        Ok(())
    }

    async fn committed(&mut self, topic: &str, partition: i32) -> Result<Option<i64>, BusError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let list = tokio::task::block_in_place(|| {
            self.consumer.committed_offsets(tpl, COMMITTED_TIMEOUT)
        })?;
        Ok(
            match list.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
    }

    async fn commit_received(&mut self) -> Result<(), BusError> {
        tokio::task::block_in_place(|| self.consumer.commit_consumer_state(CommitMode::Sync))?;
        Ok(())
    }

    fn take_changes(&mut self) -> Vec<AssignmentChange> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The [`Bus`] over Kafka: [`KafkaSource`]s and [`KafkaPublisher`]s on one cluster.
#[derive(Debug, Clone)]
pub struct KafkaBus {
    config: KafkaConfig,
}

impl KafkaBus {
    pub fn new(config: KafkaConfig) -> Self {
        Self { config }
    }
}

impl Bus for KafkaBus {
    type Source = KafkaSource;
    type Publisher = KafkaPublisher;

    fn source(&self, spec: SourceSpec) -> Result<KafkaSource, BusError> {
        KafkaSource::subscribe(&self.config, spec)
    }

    fn publisher(
        &self,
        topics: Vec<String>,
        shutdown: CancellationToken,
    ) -> Result<KafkaPublisher, BusError> {
        Ok(KafkaPublisher::start(&self.config, topics, shutdown)?)
    }

    fn kafka(&self) -> Option<&KafkaConfig> {
        Some(&self.config)
    }
}
