//! The consume loop: the log (spans, feedback and signals topics, through a
//! [`flywheel_bus::Source`]: Kafka or the wal) -> per-partition batches ->
//! ClickHouse -> offset commit. Every topic goes through the same machinery (markers, tokens
//! and commits are per topic and partition); only decoding differs ([`crate::message`]).

use std::collections::HashMap;
use std::time::Duration;

use flywheel_bus::{AssignmentChange, BusError, CommitPolicy, Publisher, Source, SourceSpec};
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

/// The consumer group on the spans, feedback and signals topics: manual commits, lag into the
/// lag gauge; with Kafka, a bounded prefetch and a long poll interval.
pub fn source_spec(config: &IngesterConfig, metrics: &Metrics) -> SourceSpec {
    let lag = metrics.consumer_lag.clone();
    SourceSpec {
        group: config.group_id.clone(),
        topics: Topics::new(config)
            .names()
            .into_iter()
            .map(str::to_string)
            .collect(),
        commit: CommitPolicy::Manual,
        session_timeout_ms: config.session_timeout_ms,
        kafka_properties: [
            // A ClickHouse outage stops polling while the batch is retried; keep the membership.
            ("max.poll.interval.ms", "600000"),
            // Bound the prefetch queue (per partition): batches are the memory that matters.
            ("queued.max.messages.kbytes", "16384"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        lag: Some(std::sync::Arc::new(
            move |topic: &str, partition: i32, n: i64| {
                lag.with_label_values(&[topic, &partition.to_string()])
                    .set(n);
            },
        )),
    }
}

/// The next message, decoded while still in the source's buffer. Cancel-safe, as
/// [`Source::recv`] is.
async fn next<S: Source>(source: &mut S, topics: &Topics) -> Result<Option<Incoming>, BusError> {
    let m = source.recv().await?;
    Ok(topics
        .kind(flywheel_bus::Delivery::topic(&m))
        .map(|kind| crate::message::incoming(&m, kind)))
}

/// The loop's state and collaborators.
pub struct Ingest<S, P> {
    pub config: IngesterConfig,
    pub source: S,
    pub writer: Writer,
    pub mapper: Mapper,
    pub dead_letters: P,
    pub metrics: Metrics,
    pub topics: Topics,
    pub partitions: HashMap<Key, Partition>,
    /// Successful inserts so far (for the test fault point).
    pub inserts: u64,
}

impl<S: Source, P: Publisher> Ingest<S, P> {
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
                message = next(&mut self.source, &self.topics) => match message {
                    Ok(None) => continue, // not subscribed (cannot happen)
                    Ok(Some(incoming)) => {
                        self.apply_changes();
                        self.handle(incoming, &shutdown).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consume error");
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
        for change in self.source.take_changes() {
            let (AssignmentChange::Assigned(ids) | AssignmentChange::Revoked(ids)) = change;
            // Either way, in-memory state for these partitions is stale: the committed offset
            // and its pending marker are the truth, read again on the next message.
            for (topic, partition) in ids {
                if let Some(kind) = self.topics.kind(&topic) {
                    self.partitions.remove(&(kind, partition));
                }
            }
        }
    }

    /// Reads the committed offset and the last batch marker of a newly seen partition.
    async fn open_partition(&mut self, key: Key, shutdown: &CancellationToken) -> Partition {
        let topic = self.topics.name(key.0).to_string();
        let (topic, partition) = (topic.as_str(), key.1);
        let committed = match self.source.committed(topic, partition).await {
            Ok(offset) => offset.unwrap_or(0),
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

    async fn commit(&mut self, key: Key, offset: i64) -> Result<(), BusError> {
        let topic = self.topics.name(key.0).to_string();
        self.source.commit(&topic, key.1, offset).await
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
        while let Err(e) = self.commit(key, batch.last + 1).await {
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
