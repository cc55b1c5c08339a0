//! Scale-out by re-keying (adr/0008), on when `detector.keyed_topic` is set. Kafka only:
//! stage 2 relies on consumer-group rebalancing, which the in-process wal does not have
//! ([`crate::DetectorConfig::check_bus`]).
//!
//! Stage 1 (every instance, group `detector.group_id` on the raw topics): calls, and feedback
//! and signals once attributed, become small [`SliEvent`]s produced to the keyed topic with
//! the SLI key as the message key, so one key's events land in one partition. Stage 2 (group
//! `<group_id>.keyed` on the keyed topic) feeds the engine: each key is owned by exactly one
//! instance, whose windows and alerts are exact and global.
//!
//! Stage 2 never commits: after every (re)assignment it replays its partitions from the
//! earliest retained offset (retain the keyed topic for the longest alerting window), with
//! wide lateness, and evaluates nothing until caught up (two seconds without a message
//! produced before the assignment). Firing alerts are parked and restored only by the instance
//! that evaluates their series again. The loop's keyed stages are here too ([`Loop::forward`],
//! [`Loop::keyed_message`], [`Loop::keyed_ready`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flywheel_bus::{Publisher, Record};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::consumer::{now_ms, Loop};
use crate::metrics::Metrics;
use crate::sli::{CallEvent, FeedbackValue};
use crate::SliKey;

/// One event for the SLIs of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SliEvent {
    Call {
        key: Key,
        ts_ms: i64,
        error: bool,
        duration_ms: f64,
        ttft_ms: Option<f64>,
        tpot_ms: Option<f64>,
        #[serde(default)]
        cost_usd: Option<f64>,
        #[serde(default)]
        tokens: Option<u64>,
        /// The end user, for per-user spend policies (absent: none).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        user: String,
    },
    Feedback {
        key: Key,
        ts_ms: i64,
        name: String,
        boolean: Option<bool>,
        number: Option<f64>,
        label: Option<String>,
    },
    Signal {
        key: Key,
        ts_ms: i64,
        signal_type: String,
    },
}

/// [`SliKey`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
}

impl From<&SliKey> for Key {
    fn from(k: &SliKey) -> Self {
        Self {
            project: k.project.clone(),
            service: k.service.clone(),
            model: k.model.clone(),
            operation: k.operation.clone(),
        }
    }
}

impl From<Key> for SliKey {
    fn from(k: Key) -> Self {
        Self {
            project: k.project,
            service: k.service,
            model: k.model,
            operation: k.operation,
        }
    }
}

impl SliEvent {
    pub fn call(key: &SliKey, user: &str, ts_ms: i64, e: &CallEvent) -> Self {
        Self::Call {
            key: key.into(),
            user: user.to_string(),
            ts_ms,
            error: e.error,
            duration_ms: e.duration_ms,
            ttft_ms: e.ttft_ms,
            tpot_ms: e.tpot_ms,
            cost_usd: e.cost_usd,
            tokens: e.tokens,
        }
    }

    fn key(&self) -> &Key {
        match self {
            Self::Call { key, .. } | Self::Feedback { key, .. } | Self::Signal { key, .. } => key,
        }
    }

    /// The message key: one SLI key, one partition.
    pub fn message_key(&self) -> Vec<u8> {
        let k = self.key();
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            k.project, k.service, k.model, k.operation
        )
        .into_bytes()
    }
}

/// Produces SLI events in order, batching what queued up while the previous batch was being
/// delivered. The loop only `try_send`s; a full queue is counted as dropped.
pub fn forwarder<P: Publisher>(
    publisher: P,
    topic: String,
    capacity: usize,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> (
    mpsc::Sender<SliEvent>,
    impl std::future::Future<Output = ()>,
) {
    let (tx, mut rx) = mpsc::channel::<SliEvent>(capacity);
    let task = async move {
        loop {
            let first = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                () = shutdown.cancelled() => return,
            };
            let mut batch = vec![first];
            while let Ok(e) = rx.try_recv() {
                batch.push(e);
                if batch.len() >= 10_000 {
                    break;
                }
            }
            let records: Vec<Record> = batch
                .iter()
                .filter_map(|e| {
                    Some(Record {
                        key: e.message_key(),
                        payload: serde_json::to_vec(e).ok()?,
                    })
                })
                .collect();
            let n = records.len() as u64;
            // Retried until delivered or shut down: stage 2 must see every event.
            loop {
                match publisher.publish(&topic, &[], records.clone()).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot produce SLI events, retrying");
                        metrics.retries.with_label_values(&["keyed_topic"]).inc();
                        tokio::select! {
                            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                            () = shutdown.cancelled() => return,
                        }
                    }
                }
            }
            metrics
                .notifications
                .with_label_values(&["keyed_topic", "sent"])
                .inc_by(n);
        }
    };
    (tx, task)
}

/// Stage 2's consumer context: raises `reassigned` on every assignment.
pub struct KeyedContext {
    pub reassigned: Arc<AtomicBool>,
}

impl ClientContext for KeyedContext {}

impl ConsumerContext for KeyedContext {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "keyed topic assigned: replaying");
            self.reassigned.store(true, Ordering::SeqCst);
        }
    }
}

pub type KeyedConsumer = StreamConsumer<KeyedContext>;

/// Stage 2's consumer: no commits, from the earliest retained offset.
pub fn consumer(
    kafka: &flywheel_bus::KafkaConfig,
    group_id: &str,
    topic: &str,
    session_timeout_ms: u32,
) -> Result<(KeyedConsumer, Arc<AtomicBool>), rdkafka::error::KafkaError> {
    use rdkafka::consumer::Consumer as _;
    let reassigned = Arc::new(AtomicBool::new(false));
    let mut client = flywheel_bus::client_config(kafka);
    client
        .set("group.id", format!("{group_id}.keyed"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_timeout_ms.to_string())
        .set("topic.metadata.refresh.interval.ms", "10000");
    let c: KeyedConsumer = client.create_with_context(KeyedContext {
        reassigned: reassigned.clone(),
    })?;
    c.subscribe(&[topic])?;
    Ok((c, reassigned))
}

/// Scale-out state (`detector.keyed_topic`), see the module doc.
pub struct Keyed {
    pub forward: mpsc::Sender<SliEvent>,
    pub consumer: Arc<KeyedConsumer>,
    pub reassigned: Arc<AtomicBool>,
    /// Replaying after an assignment: nothing is evaluated.
    pub replaying: bool,
    pub assigned_at_ms: i64,
    /// When the last message produced before the assignment (backlog) arrived.
    pub last_backlog: Instant,
    /// Firing alerts from the history table, loading since the last assignment: parked once
    /// they arrive, before anything is evaluated (a key taken over from a dead instance keeps
    /// its alert instead of paging again).
    pub history: Option<(tokio::sync::oneshot::Receiver<FiringAlerts>, Instant)>,
}

/// Firing alerts and when each was last sent, from `history::firing`.
pub type FiringAlerts = Result<Vec<(crate::alert::Alert, i64)>, flywheel_store::StoreError>;

/// How long evaluation waits for the firing alerts of the history table after an assignment.
const HISTORY_WAIT: Duration = Duration::from_secs(30);

/// The keyed stages of the loop.
impl Loop {
    /// Stage 1: queues an SLI event for the keyed topic.
    pub(crate) fn forward(&mut self, e: SliEvent, kind: &str) {
        let Some(k) = &self.keyed else { return };
        let outcome = if k.forward.try_send(e).is_ok() {
            "forwarded"
        } else {
            self.metrics
                .dropped
                .with_label_values(&["keyed_topic"])
                .inc();
            return;
        };
        self.metrics
            .events
            .with_label_values(&[kind, outcome])
            .inc();
    }

    /// Applies a pending reassignment of the keyed topic: forget the windows, replay.
    pub(crate) fn check_reassigned(&mut self) {
        let Some(k) = self.keyed.as_mut() else { return };
        if !k.reassigned.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.engine.reset() {
            tracing::error!(error = %e, "cannot reset the window store");
        }
        self.engine.set_replaying(true);
        k.replaying = true;
        k.assigned_at_ms = now_ms();
        k.last_backlog = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store = self.store.clone();
        tokio::spawn(async move {
            let _ = tx.send(crate::history::firing(store.as_ref()).await);
        });
        k.history = Some((rx, Instant::now()));
    }

    /// Parks the firing alerts of the history table once loaded; `false` while still waiting.
    fn history_loaded(&mut self) -> bool {
        let Some(k) = self.keyed.as_mut() else {
            return true;
        };
        let Some((rx, since)) = k.history.as_mut() else {
            return true;
        };
        let waited = since.elapsed();
        let firing = match rx.try_recv() {
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) if waited < HISTORY_WAIT => {
                return false;
            }
            Ok(Ok(firing)) => Some(firing),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot load firing alerts after an assignment");
                None
            }
            Err(_) => {
                tracing::warn!("firing alerts not loaded in time after an assignment");
                None
            }
        };
        k.history = None;
        let Some(firing) = firing else {
            self.metrics
                .history_errors
                .with_label_values(&["firing_after_assignment"])
                .inc();
            return true;
        };
        let mine: std::collections::HashSet<_> =
            self.engine.firing().iter().map(|a| a.fingerprint).collect();
        for (alert, last_sent_ms) in firing {
            if !mine.contains(&alert.fingerprint) {
                self.engine.park(alert, last_sent_ms);
            }
        }
        true
    }

    /// Whether evaluation may run: always without the keyed topic; with it, once the replay
    /// after the last assignment caught up: two seconds without a message produced before the
    /// assignment (librdkafka fetches every assigned partition at once, so the backlog arrives
    /// interleaved until it is drained).
    pub(crate) fn keyed_ready(&mut self) -> bool {
        self.check_reassigned();
        let Some(k) = self.keyed.as_mut() else {
            return true;
        };
        if k.replaying && k.last_backlog.elapsed() >= Duration::from_secs(2) {
            if !self.history_loaded() {
                return false;
            }
            let Some(k) = self.keyed.as_mut() else {
                return true;
            };
            k.replaying = false;
            self.engine.set_replaying(false);
            tracing::info!("keyed topic replayed: evaluating");
            return true;
        }
        !k.replaying
    }

    /// Stage 2: an SLI event of a key this instance owns.
    pub(crate) fn keyed_message(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        self.check_reassigned();
        if let Some(k) = self.keyed.as_mut() {
            if m.timestamp()
                .to_millis()
                .is_none_or(|t| t < k.assigned_at_ms)
            {
                k.last_backlog = Instant::now();
            }
        }
        let Ok(e) = serde_json::from_slice::<SliEvent>(m.payload().unwrap_or_default()) else {
            self.metrics.undecodable.with_label_values(&["keyed"]).inc();
            return;
        };
        let (kind, t) = match e {
            SliEvent::Call {
                key,
                ts_ms,
                error,
                duration_ms,
                ttft_ms,
                tpot_ms,
                cost_usd,
                tokens,
                user,
            } => {
                let ev = crate::sli::CallEvent {
                    error,
                    duration_ms,
                    ttft_ms,
                    tpot_ms,
                    cost_usd,
                    tokens,
                };
                (
                    "call",
                    self.engine.record_call(&key.into(), &user, ts_ms, &ev),
                )
            }
            SliEvent::Feedback {
                key,
                ts_ms,
                name,
                boolean,
                number,
                label,
            } => {
                let v = match (boolean, number, label.as_deref()) {
                    (Some(b), _, _) => FeedbackValue::Boolean(b),
                    (_, Some(n), _) => FeedbackValue::Number(n),
                    (_, _, Some(l)) => FeedbackValue::Label(l),
                    _ => FeedbackValue::Text,
                };
                (
                    "feedback",
                    self.engine.feedback(&key.into(), ts_ms, &name, v),
                )
            }
            SliEvent::Signal {
                key,
                ts_ms,
                signal_type,
            } => (
                "signal",
                self.engine.signal(&key.into(), ts_ms, &signal_type),
            ),
        };
        self.count(kind, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_share_a_key() {
        let key = SliKey {
            project: "p".into(),
            service: "s".into(),
            model: "m".into(),
            operation: "chat".into(),
        };
        let call = SliEvent::call(
            &key,
            "u-1",
            5,
            &CallEvent {
                error: true,
                duration_ms: 1.5,
                ttft_ms: None,
                tpot_ms: Some(2.0),
                cost_usd: Some(0.25),
                tokens: Some(1200),
            },
        );
        let back: SliEvent = serde_json::from_slice(&serde_json::to_vec(&call).unwrap()).unwrap();
        assert_eq!(back, call);
        let signal = SliEvent::Signal {
            key: (&key).into(),
            ts_ms: 9,
            signal_type: "regenerate".into(),
        };
        assert_eq!(signal.message_key(), call.message_key());
    }
}
