//! The detector loop: the log (spans, feedback, signals; a [`flywheel_bus::Source`], Kafka or
//! the wal) -> [`Engine`] -> every evaluation
//! interval a tick whose alert changes go to the senders and the alert history, and whose SLO
//! views go to the HTTP snapshot. Feedback and signals that memory cannot attribute wait in a
//! bounded queue for a batched ClickHouse lookup (at most one in flight, at most one every
//! `lookup_interval_ms`).

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use flywheel_bus::{Delivery, Source};
use flywheel_feedback::pb;
use flywheel_schema::rows::AlertRow;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alert::Alert;
use crate::engine::{Engine, Outgoing, SloView, Tally};
use crate::join::Subject;
use crate::keyed::{Keyed, SliEvent};
use crate::metrics::Metrics;
use crate::sender::Senders;
use crate::sli::FeedbackValue;
use crate::{history, DetectorConfig, SliKey};

/// What `GET /v1/slos` and `GET /v1/alerts` read, replaced after every tick.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub end_ms: Option<i64>,
    pub views: Vec<SloView>,
    pub cost_views: Vec<crate::cost::series::CostView>,
    pub latency_views: Vec<crate::latency::LatencyView>,
    pub firing: Vec<Alert>,
    pub recent: Vec<Outgoing>,
}

pub type SharedSnapshot = Arc<RwLock<Snapshot>>;

/// A feedback item or signal, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Feedback { name: String, value: Value },
    Signal { signal_type: String },
}

/// A feedback value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Boolean(bool),
    Number(f64),
    Label(String),
    Text,
}

/// An item waiting for its call's key.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub project: String,
    pub subject: Subject,
    pub ts_ms: i64,
    pub item: Item,
}

impl Pending {
    fn kind(&self) -> &'static str {
        match self.item {
            Item::Feedback { .. } => "feedback",
            Item::Signal { .. } => "signal",
        }
    }
}

pub struct Loop {
    pub cfg: DetectorConfig,
    pub engine: Engine,
    pub store: history::Store,
    /// Messages received before this (ns) are already in the rebuilt history.
    pub cut_ns: i64,
    pub senders: Senders,
    pub history: mpsc::Sender<Vec<AlertRow>>,
    pub snapshot: SharedSnapshot,
    pub metrics: Metrics,
    pub pending: VecDeque<Pending>,
    pub keyed: Option<Keyed>,
    /// Prices calls for the cost SLIs (shared with the ingester).
    pub prices: flywheel_pricing::PriceTable,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn header<'a, M: Delivery + ?Sized>(m: &'a M, name: &str) -> Option<&'a str> {
    std::str::from_utf8(m.header(name)?).ok()
}

fn subject(s: Option<&pb::Subject>) -> Subject {
    s.map(|s| Subject {
        trace_id: s.trace_id.to_ascii_lowercase(),
        span_id: s.span_id.to_ascii_lowercase(),
        conversation_id: s.conversation_id.clone(),
    })
    .unwrap_or_default()
}

fn item_time(time_unix_nano: i64, received_ns: Option<i64>) -> i64 {
    if time_unix_nano > 0 {
        time_unix_nano / 1_000_000
    } else {
        received_ns.map_or_else(now_ms, |r| r / 1_000_000)
    }
}

/// A `flywheel.v1.Feedback` message as an item waiting for its call's key; `None` when it does
/// not decode.
pub fn feedback_item(project: String, payload: &[u8], received_ns: Option<i64>) -> Option<Pending> {
    let f = pb::Feedback::decode(payload).ok()?;
    use pb::feedback_value::Kind;
    let value = match f.value.as_ref().and_then(|v| v.kind.as_ref()) {
        Some(Kind::Boolean(b)) => Value::Boolean(*b),
        Some(Kind::Number(n)) => Value::Number(*n),
        Some(Kind::Label(l)) => Value::Label(l.clone()),
        Some(Kind::Text(_)) | None => Value::Text,
    };
    Some(Pending {
        project,
        subject: subject(f.subject.as_ref()),
        ts_ms: item_time(f.time_unix_nano, received_ns),
        item: Item::Feedback {
            name: f.name.clone(),
            value,
        },
    })
}

/// A `flywheel.v1.Signal` message as an item waiting for its call's key; `None` when it does
/// not decode. A regenerate names the answer it discarded: that call is the bad one.
pub fn signal_item(project: String, payload: &[u8], received_ns: Option<i64>) -> Option<Pending> {
    let s = pb::Signal::decode(payload).ok()?;
    let subject = match s.discarded.as_ref().filter(|d| !d.trace_id.is_empty()) {
        Some(d) => Subject {
            trace_id: d.trace_id.to_ascii_lowercase(),
            span_id: d.span_id.to_ascii_lowercase(),
            conversation_id: String::new(),
        },
        None => subject(s.subject.as_ref()),
    };
    Some(Pending {
        project,
        subject,
        ts_ms: item_time(s.time_unix_nano, received_ns),
        item: Item::Signal {
            signal_type: flywheel_feedback::names::signal_type(&s),
        },
    })
}

impl Loop {
    /// Consumes `source` (the raw topics; offsets committed automatically, and once more on
    /// the way out) until `shutdown`.
    pub async fn run<S: Source>(mut self, mut source: S, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.evaluation_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let (lookup_tx, mut lookup_rx) = mpsc::channel(1);
        let mut lookup_in_flight = false;
        let mut last_lookup = Instant::now();
        let lookup_every = Duration::from_millis(self.cfg.lookup_interval_ms);
        let keyed = self.keyed.as_ref().map(|k| k.consumer.clone());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                m = source.recv() => match m {
                    Ok(m) => {
                        self.message(&m);
                        self.evaluate_if_event_time_moved();
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "receive error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                m = async {
                    match &keyed {
                        Some(c) => c.recv().await,
                        None => std::future::pending().await,
                    }
                } => match m {
                    Ok(m) => {
                        self.keyed_message(&m);
                        self.evaluate_if_event_time_moved();
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "kafka receive error (keyed topic)");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = tick.tick() => {
                    if self.keyed_ready() {
                        self.evaluate();
                    }
                    if !lookup_in_flight && !self.pending.is_empty() && last_lookup.elapsed() >= lookup_every {
                        lookup_in_flight = true;
                        last_lookup = Instant::now();
                        let n = self.pending.len().min(self.cfg.lookup_batch);
                        let batch: Vec<Pending> = self.pending.drain(..n).collect();
                        let (store, tx) = (self.store.clone(), lookup_tx.clone());
                        tokio::spawn(async move {
                            let subjects: Vec<Subject> = batch.iter().map(|p| p.subject.clone()).collect();
                            let r = history::lookup_keys(store.as_ref(), &subjects).await;
                            let _ = tx.send((batch, r)).await;
                        });
                    }
                }
                Some((batch, result)) = lookup_rx.recv() => {
                    lookup_in_flight = false;
                    self.looked_up(batch, result);
                }
            }
            // No state is kept per partition: reassignments need nothing.
            source.take_changes();
        }
        if let Err(e) = source.commit_received().await {
            tracing::debug!(error = %e, "final offset commit failed");
        }
    }

    pub(crate) fn count(&self, kind: &str, t: Tally) {
        let ev = &self.metrics.events;
        let outcome = if t.counted > 0 {
            "counted"
        } else if t.late > 0 {
            "late"
        } else if t.overflow > 0 {
            "overflow"
        } else {
            "unselected"
        };
        ev.with_label_values(&[kind, outcome]).inc();
    }

    fn message<M: Delivery + ?Sized>(&mut self, m: &M) {
        let received_ns = header(m, flywheel_core::wire::HEADER_RECEIVED_AT_NS)
            .and_then(|v| v.parse::<i64>().ok());
        let project = header(m, flywheel_core::wire::HEADER_PROJECT)
            .filter(|p| !p.is_empty())
            .unwrap_or("default")
            .to_string();
        let payload = m.payload();
        let topic = m.topic();
        let kind = if topic == self.cfg.spans_topic {
            "call"
        } else if topic == self.cfg.feedback_topic {
            "feedback"
        } else {
            "signal"
        };
        if received_ns.is_some_and(|r| r < self.cut_ns) {
            self.metrics
                .events
                .with_label_values(&[kind, "in_history"])
                .inc();
            return;
        }
        let undecodable = || self.metrics.undecodable.with_label_values(&[kind]).inc();
        match kind {
            "call" => {
                let Ok(req) = ExportTraceServiceRequest::decode(payload) else {
                    undecodable();
                    return;
                };
                for c in crate::extract::calls(&project, &req, &self.prices) {
                    if self.keyed.is_some() {
                        self.engine.remember_call(&c);
                        self.forward(SliEvent::call(&c.key, &c.user, c.ts_ms, &c.event), "call");
                    } else {
                        let t = self.engine.call(&c);
                        self.count("call", t);
                    }
                }
            }
            "feedback" => match feedback_item(project, payload, received_ns) {
                Some(p) => self.item(p),
                None => undecodable(),
            },
            _ => match signal_item(project, payload, received_ns) {
                Some(p) => self.item(p),
                None => undecodable(),
            },
        }
    }

    /// Counts an item whose key is known; else queues it for a lookup (bounded).
    pub fn item(&mut self, p: Pending) {
        let key = self
            .engine
            .resolve(&p.subject)
            .filter(|k| k.project == p.project);
        match key {
            Some(k) => self.apply(&k, &p),
            None if p.subject.is_empty() || self.pending.len() >= self.cfg.lookup_queue => {
                self.metrics
                    .unattributed
                    .with_label_values(&[p.kind()])
                    .inc();
            }
            None => self.pending.push_back(p),
        }
    }

    pub fn apply(&mut self, key: &SliKey, p: &Pending) {
        if self.keyed.is_some() {
            let e = match &p.item {
                Item::Feedback { name, value } => SliEvent::Feedback {
                    key: key.into(),
                    ts_ms: p.ts_ms,
                    name: name.clone(),
                    boolean: match value {
                        Value::Boolean(b) => Some(*b),
                        _ => None,
                    },
                    number: match value {
                        Value::Number(n) => Some(*n),
                        _ => None,
                    },
                    label: match value {
                        Value::Label(l) => Some(l.clone()),
                        _ => None,
                    },
                },
                Item::Signal { signal_type } => SliEvent::Signal {
                    key: key.into(),
                    ts_ms: p.ts_ms,
                    signal_type: signal_type.clone(),
                },
            };
            self.forward(e, p.kind());
            return;
        }
        let t = match &p.item {
            Item::Feedback { name, value } => {
                let v = match value {
                    Value::Boolean(b) => FeedbackValue::Boolean(*b),
                    Value::Number(n) => FeedbackValue::Number(*n),
                    Value::Label(l) => FeedbackValue::Label(l),
                    Value::Text => FeedbackValue::Text,
                };
                self.engine.feedback(key, p.ts_ms, name, v)
            }
            Item::Signal { signal_type } => self.engine.signal(key, p.ts_ms, signal_type),
        };
        self.count(p.kind(), t);
    }

    fn looked_up(
        &mut self,
        batch: Vec<Pending>,
        result: Result<Vec<(Subject, SliKey)>, flywheel_store::StoreError>,
    ) {
        match result {
            Ok(found) => {
                for (s, k) in &found {
                    self.engine.remember(k, s);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lookup of unattributed items failed");
                self.metrics
                    .history_errors
                    .with_label_values(&["lookup"])
                    .inc();
            }
        }
        for p in batch {
            match self
                .engine
                .resolve(&p.subject)
                .filter(|k| k.project == p.project)
            {
                Some(k) => self.apply(&k, &p),
                None => self
                    .metrics
                    .unattributed
                    .with_label_values(&[p.kind()])
                    .inc(),
            }
        }
    }

    /// Evaluates as soon as event time has moved one evaluation interval since the last
    /// evaluation, besides the wall-clock ticks: on a simulated clock (a backfill, loadgen
    /// `--speedup`) event time runs faster than the wall and every interval is still judged.
    fn evaluate_if_event_time_moved(&mut self) {
        let (Some(now), Some(last)) = (self.engine.max_event_time(), self.engine.last_evaluated())
        else {
            return;
        };
        if now - last >= self.cfg.evaluation_interval_ms as i64 && self.keyed_ready() {
            self.evaluate();
        }
    }

    pub fn evaluate(&mut self) {
        let started = Instant::now();
        let wall = now_ms();
        let t = self.engine.tick(wall);
        self.metrics
            .evaluation
            .observe(started.elapsed().as_secs_f64());
        if let Some(end) = t.end_ms {
            self.metrics.watermark_lag.set((wall - end) as f64 / 1000.0);
        }
        self.senders.send(&t.outgoing);
        if !t.outgoing.is_empty() {
            let rows: Vec<AlertRow> = t
                .outgoing
                .iter()
                .map(|o| history::alert_row(o, wall))
                .collect();
            if self.history.try_send(rows).is_err() {
                self.metrics.dropped.with_label_values(&["history"]).inc();
            }
        }
        for o in &t.outgoing {
            tracing::info!(
                fingerprint = %o.alert().fingerprint,
                slo = %o.slo,
                state = if matches!(o.notify, crate::alert::Notify::Firing(_)) { "firing" } else { "resolved" },
                announce = o.announce,
                "alert"
            );
        }
        crate::http::export_gauges(&self.metrics, self.engine.slos(), &t.views);
        crate::http::export_cost_gauges(&self.metrics, &t.cost_views);
        crate::http::export_latency_gauges(&self.metrics, self.engine.slos(), &t.latency_views);
        let firing = self.engine.firing();
        for sev in ["page", "ticket"] {
            let n = firing
                .iter()
                .filter(|a| a.labels.get("severity").map(String::as_str) == Some(sev))
                .count();
            self.metrics.firing.with_label_values(&[sev]).set(n as i64);
        }
        self.metrics.series.set(self.engine.store_stats().0 as i64);
        let snapshot = Snapshot {
            end_ms: t.end_ms,
            views: t.views,
            cost_views: t.cost_views,
            latency_views: t.latency_views,
            firing,
            recent: self.engine.recent.iter().cloned().collect(),
        };
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }
}
