//! The consume loop: Kafka -> per-partition batches -> ClickHouse -> offset commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flywheel_bus::{Headers, KafkaPublisher, Publisher, Record};
use flywheel_core::{wire, ProjectId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::batch::{dedup_token, Partition};
use crate::map::Mapper;
use crate::metrics::Metrics;
use crate::writer::Writer;
use crate::IngesterConfig;
use flywheel_schema::rows::IngestBatchRow;

/// Partition assignment changes, recorded by librdkafka's callback for the loop to apply.
#[derive(Debug)]
pub enum Change {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

pub struct IngestContext {
    topic: String,
    changes: Changes,
    metrics: Metrics,
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&id.to_string()])
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
            tpl.elements_for_topic(&self.topic)
                .iter()
                .map(|e| e.partition())
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

/// Creates the group consumer (manual commits, statistics for the lag gauge).
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
        .set("queued.max.messages.kbytes", "16384");
    let consumer: IngestConsumer = client.create_with_context(IngestContext {
        topic: config.spans_topic.clone(),
        changes: changes.clone(),
        metrics,
    })?;
    consumer.subscribe(&[&config.spans_topic])?;
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
    pub partitions: HashMap<i32, Partition>,
    /// Successful inserts so far (for the test fault point).
    pub inserts: u64,
}

/// A message's fields, copied out of librdkafka's buffer.
struct Incoming {
    partition: i32,
    offset: i64,
    /// Decoded straight from librdkafka's buffer; only an undecodable message is copied.
    decoded: Result<ExportTraceServiceRequest, Undecodable>,
    size: usize,
    project: ProjectId,
    received_at_ns: Option<u64>,
}

/// A message that is not an OTLP request, kept whole for the dead-letter topic.
struct Undecodable {
    error: String,
    key: Vec<u8>,
    payload: Vec<u8>,
}

fn header<'a, M: Message>(m: &'a M, name: &str) -> Option<&'a [u8]> {
    let headers = m.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value)
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
                        let payload = m.payload().unwrap_or_default();
                        let incoming = Incoming {
                            partition: m.partition(),
                            offset: m.offset(),
                            decoded: ExportTraceServiceRequest::decode(payload).map_err(|e| Undecodable {
                                error: e.to_string(),
                                key: m.key().unwrap_or_default().to_vec(),
                                payload: payload.to_vec(),
                            }),
                            size: payload.len(),
                            project: header(&m, wire::HEADER_PROJECT)
                                .and_then(|v| std::str::from_utf8(v).ok())
                                .and_then(|v| ProjectId::new(v).ok())
                                .unwrap_or_else(ProjectId::default_project),
                            received_at_ns: header(&m, wire::HEADER_RECEIVED_AT_NS)
                                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()),
                        };
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
            let due: Vec<i32> = self
                .partitions
                .iter()
                .filter(|(_, p)| p.flushable(&limits))
                .map(|(id, _)| *id)
                .collect();
            for partition in due {
                self.flush(partition, &shutdown).await;
            }
        }
        // Graceful shutdown: insert what is complete (not replays cut short), commit, leave.
        let open: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.batch.is_some() && p.replay_until.is_none())
            .map(|(id, _)| *id)
            .collect();
        let no_cancel = CancellationToken::new();
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(deadline);
        for partition in open {
            tokio::select! {
                _ = &mut deadline => { tracing::warn!("shutdown flush timed out; uncommitted batches will be replayed"); break; }
                _ = self.flush(partition, &no_cancel) => {}
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
    async fn open_partition(&self, partition: i32, shutdown: &CancellationToken) -> Partition {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.config.spans_topic, partition);
        let committed = tokio::task::block_in_place(|| {
            self.consumer
                .committed_offsets(tpl, Duration::from_secs(10))
        });
        let committed = match committed {
            Ok(list) => match list
                .find_partition(&self.config.spans_topic, partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            },
            Err(e) => {
                tracing::warn!(error = %e, partition, "cannot read the committed offset");
                0
            }
        };
        // The marker must be read (ClickHouse may be down): retry until it is, or shutdown.
        let mut delay = Duration::from_millis(self.config.retry_initial_ms);
        let marker = loop {
            match crate::writer::last_marker(
                self.writer.client(),
                &self.config.group_id,
                &self.config.spans_topic,
                partition,
            )
            .await
            {
                Ok(m) => break m,
                Err(e) => {
                    tracing::warn!(error = %e, partition, "cannot read the batch marker, will retry");
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
            partition,
            committed,
            ?marker,
            ?replay_until,
            "opened partition"
        );
        if let Some(end) = replay_until {
            tracing::info!(
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
        if !self.partitions.contains_key(&m.partition) {
            let state = self.open_partition(m.partition, shutdown).await;
            self.partitions.insert(m.partition, state);
        }
        if self
            .partitions
            .get(&m.partition)
            .is_some_and(|p| m.offset < p.committed)
        {
            tracing::debug!(
                partition = m.partition,
                offset = m.offset,
                "skipping an already committed offset"
            );
            return;
        }
        let received_at_ns = m
            .received_at_ns
            .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let rows = match m.decoded {
            Ok(request) => {
                Some(
                    self.mapper
                        .map(request, &m.project, received_at_ns, &self.metrics),
                )
            }
            Err(bad) => {
                self.dead_letter(m.partition, m.offset, &m.project, bad, shutdown)
                    .await;
                None
            }
        };
        let Some(state) = self.partitions.get_mut(&m.partition) else {
            return;
        };
        let (batch, replay_done) = state.push(m.offset);
        batch.bytes += m.size;
        if let Some(rows) = rows {
            batch.traces.extend(rows.traces);
            batch.calls.extend(rows.calls);
            batch.received_at_ns.extend(m.received_at_ns);
        }
        if replay_done {
            self.flush(m.partition, shutdown).await;
        }
    }

    /// Copies an undecodable message to the dead-letter topic (retrying until it is there, so
    /// that committing past it never loses it).
    async fn dead_letter(
        &self,
        partition: i32,
        offset: i64,
        project: &ProjectId,
        bad: Undecodable,
        shutdown: &CancellationToken,
    ) {
        tracing::error!(partition, offset, error = %bad.error, "undecodable span message, sending to dead letters");
        let headers: &Headers = &[
            (
                "flywheel.dlq.source_topic",
                self.config.spans_topic.clone().into_bytes(),
            ),
            ("flywheel.dlq.partition", partition.to_string().into_bytes()),
            ("flywheel.dlq.offset", offset.to_string().into_bytes()),
            ("flywheel.dlq.error", bad.error.into_bytes()),
            (wire::HEADER_PROJECT, project.as_str().as_bytes().to_vec()),
        ];
        let record = Record {
            key: bad.key,
            payload: bad.payload,
        };
        let mut delay = Duration::from_millis(self.config.retry_initial_ms);
        loop {
            match self
                .dead_letters
                .publish(
                    &self.config.dead_letter_topic,
                    headers,
                    vec![record.clone()],
                )
                .await
            {
                Ok(()) => {
                    self.metrics.dead_letters.inc();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write dead letter, will retry");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_millis(self.config.retry_max_ms));
                }
            }
        }
    }

    fn commit(&self, partition: i32, offset: i64) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.config.spans_topic, partition, Offset::Offset(offset))?;
        tokio::task::block_in_place(|| self.consumer.commit(&tpl, CommitMode::Sync))
    }

    /// Records the range, inserts it, commits past it.
    async fn flush(&mut self, partition: i32, shutdown: &CancellationToken) {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return;
        };
        let Some(batch) = state.batch.take() else {
            return;
        };
        state.replay_until = Some(batch.last); // until committed, a crash replays this range
        let topic = self.config.spans_topic.clone();
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
            .insert(&marker, &token, &batch.traces, &batch.calls, shutdown)
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
        while let Err(e) = self.commit(partition, batch.last + 1) {
            self.apply_changes();
            if !self.partitions.contains_key(&partition) || shutdown.is_cancelled() {
                // Revoked or stopping: the next owner replays the range under the same token.
                tracing::warn!(error = %e, partition, "commit after insert failed; the range will be replayed and deduplicated");
                return;
            }
            tracing::warn!(error = %e, partition, "commit after insert failed, will retry");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(self.config.retry_max_ms));
        }
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.replay_until = None;
        }
        tracing::debug!(
            partition,
            first = batch.first,
            last = batch.last,
            rows = batch.traces.len(),
            "batch stored and committed"
        );
        self.metrics.batch_rows.observe(batch.traces.len() as f64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        for at in batch.received_at_ns {
            self.metrics
                .event_to_stored
                .observe(now.saturating_sub(at) as f64 / 1e9);
        }
    }
}
