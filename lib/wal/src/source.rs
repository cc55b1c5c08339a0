//! The wal behind the consumer seam of `flywheel-bus`: [`WalSource`] (a [`Source`] over one
//! [`Subscription`]) and [`WalBus`] (the [`Bus`] of a single process).
//!
//! A wal group has exactly one subscription, so there are no rebalances: every partition of
//! the subscribed topics is assigned once, when the source first sees it (at start, or when a
//! subscribed topic is created later), and nothing is ever revoked. Commits are durable group
//! commits ([`Subscription::commit`]); [`CommitPolicy::Auto`] commits the position after every
//! message received, at most once per interval, while receiving (before the next message is
//! handed out, or while waiting for one).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flywheel_bus::{
    AssignmentChange, Bus, BusError, CommitPolicy, Delivery, LagHook, Source, SourceSpec,
};
use tokio_util::sync::CancellationToken;

use crate::{Message, Subscription, Wal, WalError, WalPublisher};

/// Records read from the wal per poll.
const POLL_MAX: usize = 256;
/// How long one poll waits (`recv` polls again until a record arrives).
const POLL_WAIT: Duration = Duration::from_secs(1);
/// How often lag is reported, as librdkafka's statistics are.
const LAG_EVERY: Duration = Duration::from_secs(5);

impl From<WalError> for BusError {
    fn from(e: WalError) -> Self {
        BusError::Log(Box::new(e))
    }
}

impl Delivery for Message {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn partition(&self) -> i32 {
        self.partition
    }

    fn offset(&self) -> i64 {
        self.offset
    }

    fn key(&self) -> &[u8] {
        &self.key
    }

    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        Message::header(self, name)
    }
}

/// A consumer group's [`Source`] over the wal.
pub struct WalSource {
    subscription: Subscription,
    /// Read, not yet handed out.
    buffered: VecDeque<Message>,
    assigned: HashSet<(String, i32)>,
    changes: Vec<AssignmentChange>,
    /// Position after the last message handed out, per partition.
    received: HashMap<(String, i32), i64>,
    /// Positions in `received` not committed yet.
    uncommitted: bool,
    auto_commit: Option<Duration>,
    last_commit: Instant,
    lag: Option<LagHook>,
    last_lag: Option<Instant>,
}

impl std::fmt::Debug for WalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalSource")
            .field("group", &self.subscription.group())
            .field("assigned", &self.assigned)
            .field("buffered", &self.buffered.len())
            .field("auto_commit", &self.auto_commit)
            .finish_non_exhaustive()
    }
}

impl WalSource {
    /// Subscribes `spec.group` to `spec.topics` of `wal` (one source per group at a time).
    pub fn subscribe(wal: &Wal, spec: SourceSpec) -> Result<Self, WalError> {
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        let subscription = wal.subscribe(&spec.group, &topics)?;
        let mut source = Self {
            subscription,
            buffered: VecDeque::new(),
            assigned: HashSet::new(),
            changes: Vec::new(),
            received: HashMap::new(),
            uncommitted: false,
            auto_commit: match spec.commit {
                CommitPolicy::Manual => None,
                CommitPolicy::Auto { interval } => Some(interval),
            },
            last_commit: Instant::now(),
            lag: spec.lag,
            last_lag: None,
        };
        source.note_assignment();
        Ok(source)
    }

    /// Records the partitions seen for the first time as assigned.
    fn note_assignment(&mut self) {
        let new: Vec<(String, i32)> = self
            .subscription
            .assignment()
            .into_iter()
            .filter(|p| !self.assigned.contains(p))
            .collect();
        if new.is_empty() {
            return;
        }
        tracing::info!(partitions = ?new, group = self.subscription.group(), "wal partitions assigned");
        self.assigned.extend(new.iter().cloned());
        self.changes.push(AssignmentChange::Assigned(new));
    }

    fn report_lag(&mut self) {
        let Some(hook) = &self.lag else { return };
        if self.last_lag.is_some_and(|t| t.elapsed() < LAG_EVERY) {
            return;
        }
        self.last_lag = Some(Instant::now());
        for (topic, partition, lag) in self.subscription.lag() {
            hook(&topic, partition, lag);
        }
    }

    async fn commit_positions(&mut self) -> Result<(), BusError> {
        if !self.uncommitted {
            return Ok(());
        }
        let commits: Vec<(String, i32, i64)> = self
            .received
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect();
        self.subscription.commit_all(commits).await?;
        self.uncommitted = false;
        self.last_commit = Instant::now();
        Ok(())
    }
}

impl Source for WalSource {
    type Message<'a> = Message;

    async fn recv(&mut self) -> Result<Message, BusError> {
        loop {
            // Commit before taking a message out of the buffer: cancelled at this await,
            // nothing is lost. Also while idle, so the last positions do not wait for traffic.
            if self
                .auto_commit
                .is_some_and(|every| self.last_commit.elapsed() >= every)
            {
                self.commit_positions().await?;
            }
            if let Some(m) = self.buffered.pop_front() {
                self.received
                    .insert((m.topic.clone(), m.partition), m.offset + 1);
                self.uncommitted = true;
                return Ok(m);
            }
            let wait = self
                .auto_commit
                .map_or(POLL_WAIT, |every| every.min(POLL_WAIT));
            // Cancel-safe: `poll` returns records only when it resolves.
            let batch = self.subscription.poll(POLL_MAX, wait).await?;
            self.note_assignment();
            self.report_lag();
            self.buffered.extend(batch);
        }
    }

    async fn commit(
        &mut self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), BusError> {
        Ok(self
            .subscription
            .commit(topic, partition, next_offset)
            .await?)
    }

    async fn committed(&mut self, topic: &str, partition: i32) -> Result<Option<i64>, BusError> {
        Ok(self.subscription.committed(topic, partition))
    }

    async fn commit_received(&mut self) -> Result<(), BusError> {
        self.commit_positions().await
    }

    fn take_changes(&mut self) -> Vec<AssignmentChange> {
        std::mem::take(&mut self.changes)
    }
}

/// The [`Bus`] of a single process: sources and publishers over one [`Wal`].
#[derive(Debug, Clone)]
pub struct WalBus {
    wal: Arc<Wal>,
}

impl WalBus {
    pub fn new(wal: Arc<Wal>) -> Self {
        Self { wal }
    }

    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }
}

impl Bus for WalBus {
    type Source = WalSource;
    type Publisher = WalPublisher;

    fn source(&self, spec: SourceSpec) -> Result<WalSource, BusError> {
        Ok(WalSource::subscribe(&self.wal, spec)?)
    }

    fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        self.wal.metrics().register(registry)
    }

    /// Topics are created by their first record: nothing to do ahead.
    fn publisher(
        &self,
        _topics: Vec<String>,
        _shutdown: CancellationToken,
    ) -> Result<WalPublisher, BusError> {
        Ok(self.wal.publisher())
    }
}
