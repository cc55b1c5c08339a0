//! The consume loop: Kafka (spans, feedback and signals topics) -> per-partition batches ->
//! ClickHouse -> offset commit. Every topic goes through the same machinery (markers, tokens
//! and commits are per topic and partition); only decoding differs ([`crate::message`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flywheel_bus::KafkaPublisher;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::batch::{dedup_token, Partition};
use crate::map::Mapper;
use crate::message::{Content, Incoming, Kind, Topics};
use crate::metrics::Metrics;
use crate::writer::Writer;
use crate::IngesterConfig;
use flywheel_schema::rows::IngestBatchRow;

/// A partition of one of the consumed topics.
pub type Key = (Kind, i32);

/// Partition assignment changes, recorded by librdkafka's callback for the loop to apply.
#[derive(Debug)]
pub enum Change {
    Assigned(Vec<Key>),
    Revoked(Vec<Key>),
}

pub struct IngestContext {
    topics: Topics,
    changes: Changes,
    metrics: Metrics,
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        for name in self.topics.names() {
            let Some(topic) = statistics.topics.get(name) else {
                continue;
            };
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[name, &id.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let partitions = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .filter_map(|e| Some((self.topics.kind(e.topic())?, e.partition())))
                .collect::<Vec<_>>()
        };
        let change = match rebalance {
            Rebalance::Assign(tpl) => Change::Assigned(partitions(tpl)),
            Rebalance::Revoke(tpl) => Change::Revoked(partitions(tpl)),
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

pub type IngestConsumer = StreamConsumer<IngestContext>;

/// Assignment changes shared between librdkafka's callback and the loop.
pub type Changes = Arc<Mutex<Vec<Change>>>;

/// Creates the group consumer on the spans, feedback and signals topics (manual commits,
/// statistics for the lag gauge).
pub fn create_consumer(
    kafka: &flywheel_bus::KafkaConfig,
    config: &IngesterConfig,
    metrics: Metrics,
) -> Result<(IngestConsumer, Changes), KafkaError> {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let mut client = flywheel_bus::client_config(kafka);
    client
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        // A ClickHouse outage stops polling while the batch is retried; keep the membership.
        .set("max.poll.interval.ms", "600000")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        // Bound the prefetch queue (per partition): batches are the memory that matters.
        .set("queued.max.messages.kbytes", "16384")
        // A subscribed topic created after start-up (e.g. feedback, before any was sent) is
        // picked up within this time.
        .set("topic.metadata.refresh.interval.ms", "10000");
    let topics = Topics::new(config);
    let consumer: IngestConsumer = client.create_with_context(IngestContext {
        topics: topics.clone(),
        changes: changes.clone(),
        metrics,
    })?;
    consumer.subscribe(&topics.names())?;
    Ok((consumer, changes))
}

/// The loop's state and collaborators.
pub struct Ingest {
    pub config: IngesterConfig,
    pub consumer: IngestConsumer,
    pub changes: Changes,
    pub writer: Writer,
    pub mapper: Mapper,
    pub dead_letters: KafkaPublisher,
    pub metrics: Metrics,
    pub topics: Topics,
    pub partitions: HashMap<Key, Partition>,
    /// Successful inserts so far (for the test fault point).
    pub inserts: u64,
}

impl Ingest {
    /// Consumes until `shutdown`, then flushes complete batches and commits.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let max_age = Duration::from_millis(self.config.batch_max_age_ms);
        let limits = crate::batch::Limits {
            max_rows: self.config.batch_max_rows,
            max_bytes: self.config.batch_max_bytes,
            max_age,
        };
        let mut tick = tokio::time::interval(Duration::from_millis(100).min(max_age));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                message = self.consumer.recv() => match message {
                    Ok(m) => {
                        let Some(kind) = self.topics.kind(m.topic()) else {
                            continue; // not subscribed (cannot happen)
                        };
                        let incoming = crate::message::incoming(&m, kind);
                        drop(m);
                        self.apply_changes();
                        self.handle(incoming, &shutdown).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                _ = tick.tick() => {}
            }
            self.apply_changes();
            let due: Vec<Key> = self
                .partitions
                .iter()
                .filter(|(_, p)| p.flushable(&limits))
                .map(|(id, _)| *id)
                .collect();
            for key in due {
                self.flush(key, &shutdown).await;
            }
        }
        // Graceful shutdown: insert what is complete (not replays cut short), commit, leave.
        let open: Vec<Key> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.batch.is_some() && p.replay_until.is_none())
            .map(|(id, _)| *id)
            .collect();
        let no_cancel = CancellationToken::new();
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(deadline);
        for key in open {
            tokio::select! {
                _ = &mut deadline => { tracing::warn!("shutdown flush timed out; uncommitted batches will be replayed"); break; }
                _ = self.flush(key, &no_cancel) => {}
            }
        }
        tracing::info!("ingester stopped");
    }

    fn apply_changes(&mut self) {
        let changes: Vec<Change> =
            std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()));
        for change in changes {
            let (Change::Assigned(ids) | Change::Revoked(ids)) = change;
            // Either way, in-memory state for these partitions is stale: the committed offset
            // and its pending marker are the truth, read again on the next message.
            for id in ids {
                self.partitions.remove(&id);
            }
        }
    }

    /// Reads the committed offset and the last batch marker of a newly seen partition.
    async fn open_partition(&self, key: Key, shutdown: &CancellationToken) -> Partition {
        let (topic, partition) = (self.topics.name(key.0), key.1);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let committed = tokio::task::block_in_place(|| {
            self.consumer
                .committed_offsets(tpl, Duration::from_secs(10))
        });
        let committed = match committed {
            Ok(list) => match list.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            },
            Err(e) => {
                tracing::warn!(error = %e, topic, partition, "cannot read the committed offset");
                0
            }
        };
        // The marker must be read (ClickHouse may be down): retry until it is, or shutdown.
        let mut delay = Duration::from_millis(self.config.retry_initial_ms);
        let marker = loop {
            match crate::writer::last_marker(
                self.writer.store(),
                &self.config.group_id,
                topic,
                partition,
            )
            .await
            {
                Ok(m) => break m,
                Err(e) => {
                    tracing::warn!(error = %e, topic, partition, "cannot read the batch marker, will retry");
                    tokio::select! {
                        _ = shutdown.cancelled() => break None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_millis(self.config.retry_max_ms));
                }
            }
        };
        let replay_until = marker.and_then(|(first, last)| (first == committed).then_some(last));
        tracing::debug!(
            topic,
            partition,
            committed,
            ?marker,
            ?replay_until,
            "opened partition"
        );
        if let Some(end) = replay_until {
            tracing::info!(
                topic,
                partition,
                committed,
                end,
                "replaying an uncommitted batch with its original range"
            );
        }
        Partition {
            batch: None,
            replay_until,
            committed,
        }
    }

    async fn handle(&mut self, m: Incoming, shutdown: &CancellationToken) {
        let key = (m.kind, m.partition);
        if !self.partitions.contains_key(&key) {
            let state = self.open_partition(key, shutdown).await;
            self.partitions.insert(key, state);
        }
        if self
            .partitions
            .get(&key)
            .is_some_and(|p| m.offset < p.committed)
        {
            tracing::debug!(
                topic = self.topics.name(m.kind),
                partition = m.partition,
                offset = m.offset,
                "skipping an already committed offset"
            );
            return;
        }
        let received_at_ns = m
            .received_at_ns
            .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let rows = match m.content {
            Ok(Content::Spans(request)) => {
                Some(
                    self.mapper
                        .map(request, &m.project, received_at_ns, &self.metrics),
                )
            }
            Ok(Content::Rows(rows)) => Some(rows),
            Err(bad) => {
                let from = crate::dead_letter::Origin {
                    topic: self.topics.name(m.kind),
                    partition: m.partition,
                    offset: m.offset,
                    project: &m.project,
                };
                crate::dead_letter::send(
                    &self.dead_letters,
                    &self.config,
                    &self.metrics,
                    from,
                    bad,
                    shutdown,
                )
                .await;
                None
            }
        };
        let Some(state) = self.partitions.get_mut(&key) else {
            return;
        };
        let (batch, replay_done) = state.push(m.offset);
        batch.bytes += m.size;
        if let Some(rows) = rows {
            batch.rows.extend(rows);
            batch.received_at_ns.extend(m.received_at_ns);
        }
        if replay_done {
            self.flush(key, shutdown).await;
        }
    }

    fn commit(&self, key: Key, offset: i64) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(self.topics.name(key.0), key.1, Offset::Offset(offset))?;
        tokio::task::block_in_place(|| self.consumer.commit(&tpl, CommitMode::Sync))
    }

    /// Records the range, inserts it, commits past it.
    async fn flush(&mut self, key: Key, shutdown: &CancellationToken) {
        let partition = key.1;
        let Some(state) = self.partitions.get_mut(&key) else {
            return;
        };
        let Some(batch) = state.batch.take() else {
            return;
        };
        state.replay_until = Some(batch.last); // until committed, a crash replays this range
        let topic = self.topics.name(key.0).to_string();
        let marker = IngestBatchRow {
            consumer_group: self.config.group_id.clone(),
            topic: topic.clone(),
            partition,
            first_offset: batch.first,
            last_offset: batch.last,
        };
        let token = dedup_token(&topic, partition, batch.first, batch.last);
        if self
            .writer
            .insert(&marker, &token, &batch.rows, shutdown)
            .await
            .is_err()
        {
            return; // shutting down: the marker makes the next owner replay the range
        }
        self.inserts += 1;
        if self.inserts == self.config.test_crash_after_inserts {
            tracing::error!(
                partition,
                token,
                "test fault point: aborting after insert, before commit"
            );
            std::process::abort();
        }
        // Commit before anything else happens on this partition: a later batch's marker would
        // no longer start at the committed offset, and its replay would not be recognised.
        let mut delay = Duration::from_millis(self.config.retry_initial_ms);
        while let Err(e) = self.commit(key, batch.last + 1) {
            self.apply_changes();
            if !self.partitions.contains_key(&key) || shutdown.is_cancelled() {
                // Revoked or stopping: the next owner replays the range under the same token.
                tracing::warn!(error = %e, partition, "commit after insert failed; the range will be replayed and deduplicated");
                return;
            }
            tracing::warn!(error = %e, partition, "commit after insert failed, will retry");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(self.config.retry_max_ms));
        }
        if let Some(state) = self.partitions.get_mut(&key) {
            state.replay_until = None;
        }
        tracing::debug!(
            topic,
            partition,
            first = batch.first,
            last = batch.last,
            items = batch.rows.items(),
            "batch stored and committed"
        );
        self.metrics.batch_rows.observe(batch.rows.items() as f64);
        let now = u64::try_from(crate::message::now_ns()).unwrap_or(0);
        for at in batch.received_at_ns {
            self.metrics
                .event_to_stored
                .observe(now.saturating_sub(at) as f64 / 1e9);
        }
    }
}
