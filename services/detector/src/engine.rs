//! The detector's state, without I/O: every SLO's event-time windows per SLI key, the join map
//! and the alert tracker. The consumer loop ([`crate::consumer`]) feeds it calls, feedback and
//! signals and calls [`Engine::tick`] every evaluation interval; what comes out goes to the
//! senders, the alert history and the HTTP snapshot.
//!
//! Clock: windows and the alert tracker run on event time (a call's end: when its outcome is
//! known and its span exported). A tick evaluates SLO windows ending at the store's **open
//! end**, the end of the 1 s bucket holding the newest event, so every event seen so far
//! counts at once: detection waits for no watermark (adr/0008, "Detection latency"). Late
//! events (within the lateness) still land in their bucket and count from the next tick on.
//! While a topic is being replayed (keyed mode after a rebalance) ticks use the closed end (the
//! watermark rounded down to a bucket) instead, so a half-replayed window decides nothing.
//! Cost policies and latency quantiles judge closed buckets: their per-interval statistics
//! need complete intervals.
//!
//! When no event at all has arrived for `idle_advance` of wall time, event time follows the
//! wall clock minus `idle_advance`, so windows keep moving when traffic stops (alerts resolve,
//! firing ones are re-sent); a consumer that is catching up keeps receiving events and is never
//! pushed ahead of them. Only Alertmanager's `endsAt` of firing alerts uses the wall clock (it
//! is Alertmanager's clock that expires them).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;

use crate::alert::{self, Alert, Evidence, Fingerprint, Notify, Observation, Tracker};
use crate::burn::RuleEval;
use crate::cost::series::{CostState, CostView};
use crate::join::{Joins, Subject};
use crate::latency::{Latency, LatencyView};
use crate::sli::{self, FeedbackValue};
use crate::slo::{CostPolicy, Dur, Severity, Slo};
use crate::window::{Counts, Outcome, WindowConfig, WindowError, WindowStore};
use crate::SliKey;

/// A series: one SLO (index into the file) for one key.
pub type SeriesKey = (usize, SliKey);

/// An alert change to deliver and record, with the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub notify: Notify,
    /// New firing or resolved (webhooks and Slack hear only these; Alertmanager hears re-sends
    /// too).
    pub announce: bool,
    pub slo: String,
    pub severity: Severity,
    pub long_burn: Option<f64>,
    pub short_burn: Option<f64>,
    pub sli: Option<f64>,
    pub budget_remaining: f64,
    /// Event time of the evaluation.
    pub event_ms: i64,
}

impl Outgoing {
    pub fn alert(&self) -> &Alert {
        match &self.notify {
            Notify::Firing(a) | Notify::Resolved(a) => a,
        }
    }
}

/// One rule of an SLO for one key, as `GET /v1/slos` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleView {
    pub severity: &'static str,
    pub long_window: String,
    pub short_window: String,
    pub burn_rate_threshold: f64,
    pub long_burn_rate: Option<f64>,
    pub short_burn_rate: Option<f64>,
    pub long_events: u64,
    pub short_events: u64,
    pub breaching: bool,
}

/// One SLO for one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloView {
    pub slo: String,
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
    pub objective: f64,
    pub window: String,
    /// Good share over the SLO window (`null` without events).
    pub sli: Option<f64>,
    pub events: u64,
    pub bad_events: u64,
    pub budget_remaining: f64,
    pub rules: Vec<RuleView>,
}

/// What one tick produced.
#[derive(Debug, Default)]
pub struct Tick {
    /// Event time the windows ended at (`None` before any event).
    pub end_ms: Option<i64>,
    pub outgoing: Vec<Outgoing>,
    pub views: Vec<SloView>,
    pub cost_views: Vec<CostView>,
    pub latency_views: Vec<LatencyView>,
}

/// Engine settings besides the SLOs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub window: WindowConfig,
    pub resend_interval: Dur,
    pub join_capacity: usize,
    pub idle_advance_ms: i64,
    pub api_url: String,
}

pub struct Engine {
    slos: Vec<Slo>,
    store: WindowStore<SeriesKey>,
    tracker: Tracker,
    joins: Joins,
    cost: CostState,
    latency: Latency,
    announced: HashSet<Fingerprint>,
    /// Firing alerts from history or from before a rebalance, restored into the tracker when
    /// their series is next evaluated here (so only their owner keeps them).
    dormant: HashMap<Fingerprint, (Alert, i64)>,
    cfg: EngineConfig,
    /// Resolved alerts kept for `GET /v1/alerts`.
    pub recent: VecDeque<Outgoing>,
    ticks: u64,
    /// Events recorded (counted or not) since start, and that count with the wall clock when
    /// a tick first saw it: idleness for `idle_advance_ms`.
    events: u64,
    last_progress: Option<(u64, i64)>,
    replaying: bool,
    last_tick_event_ms: Option<i64>,
}

/// How the events of one call, feedback item or signal were counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub counted: u64,
    pub late: u64,
    pub overflow: u64,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Counted => self.counted += 1,
            Outcome::Late => self.late += 1,
            Outcome::Overflow => self.overflow += 1,
        }
    }
}

const RECENT: usize = 200;

impl Engine {
    pub fn new(slos: Vec<Slo>, cfg: EngineConfig) -> Result<Self, WindowError> {
        Ok(Self {
            store: WindowStore::new(cfg.window.clone())?,
            tracker: Tracker::new(cfg.resend_interval),
            joins: Joins::new(cfg.join_capacity),
            cost: CostState::default(),
            latency: Latency::new(cfg.window.max_keys),
            announced: HashSet::new(),
            dormant: HashMap::new(),
            recent: VecDeque::new(),
            ticks: 0,
            events: 0,
            last_progress: None,
            replaying: false,
            last_tick_event_ms: None,
            slos,
            cfg,
        })
    }

    /// Evaluates these cost policies too (spend projections and change detection).
    pub fn with_cost_policies(mut self, policies: Vec<CostPolicy>) -> Self {
        self.cost = CostState::new(policies, self.cfg.window.max_keys);
        self
    }

    /// The cost policies' series (start-up seeds spend series with period-to-date spend).
    pub fn cost_mut(&mut self) -> &mut CostState {
        &mut self.cost
    }

    pub fn slos(&self) -> &[Slo] {
        &self.slos
    }

    /// Counts a model call for every SLO that selects its key, and remembers it for joins.
    pub fn call(&mut self, c: &crate::extract::Call) -> Tally {
        self.remember_call(c);
        self.record_call(&c.key, &c.user, c.ts_ms, &c.event)
    }

    /// Remembers a call for joins only (stage 1 of the keyed mode counts elsewhere).
    pub fn remember_call(&mut self, c: &crate::extract::Call) {
        self.joins
            .remember(&c.key, &c.trace_id, &c.span_id, &c.conversation_id);
    }

    /// Counts a call's outcome for every SLO that selects `key` (and its cost for the cost
    /// policies, per-user ones by `user`).
    pub fn record_call(
        &mut self,
        key: &SliKey,
        user: &str,
        ts_ms: i64,
        event: &sli::CallEvent,
    ) -> Tally {
        let t = self.record_each(key, ts_ms, |s| sli::call_counts(s, event));
        self.latency.record(key, ts_ms, event);
        if !self.cost.is_empty() {
            if self.store.watermark().is_some_and(|w| ts_ms < w) {
                self.cost.late += 1;
            } else {
                // Cost policies move event time even when no SLO selects the key.
                self.store.advance_to(ts_ms);
                self.cost.record(key, user, ts_ms, event);
            }
        }
        t
    }

    /// Keeps a firing alert aside until its series is evaluated here (see `dormant`).
    pub fn park(&mut self, alert: Alert, last_sent_ms: i64) {
        self.dormant
            .insert(alert.fingerprint, (alert, last_sent_ms));
    }

    /// Forgets every window (a rebalance: the owned keys are replayed); firing alerts are
    /// parked until their series shows up again.
    pub fn reset(&mut self) -> Result<(), WindowError> {
        self.store = WindowStore::new(self.cfg.window.clone())?;
        self.cost.reset();
        self.latency = Latency::new(self.cfg.window.max_keys);
        for (a, last_sent) in self.tracker.take_firing() {
            self.park(a, last_sent);
        }
        Ok(())
    }

    /// While replaying a topic, accept events as late as the finest tier allows; then back
    /// to the configured lateness.
    pub fn set_replaying(&mut self, on: bool) {
        self.replaying = on;
        let lateness = if on {
            self.cfg.window.max_window()
        } else {
            self.cfg.window.lateness
        };
        self.store.set_lateness(lateness);
    }

    /// The key of the call a feedback item or signal is about, from recent calls.
    pub fn resolve(&self, s: &Subject) -> Option<SliKey> {
        self.joins.resolve(s).cloned()
    }

    /// Remembers a call's key learnt elsewhere (a store lookup).
    pub fn remember(&mut self, key: &SliKey, s: &Subject) {
        self.joins
            .remember(key, &s.trace_id, &s.span_id, &s.conversation_id);
    }

    /// Counts a feedback item about a call of `key`.
    pub fn feedback(
        &mut self,
        key: &SliKey,
        ts_ms: i64,
        name: &str,
        value: FeedbackValue<'_>,
    ) -> Tally {
        self.record_each(key, ts_ms, |sli| sli::feedback_counts(sli, name, value))
    }

    /// Counts a signal about a call of `key`.
    pub fn signal(&mut self, key: &SliKey, ts_ms: i64, signal_type: &str) -> Tally {
        self.record_each(key, ts_ms, |sli| sli::signal_counts(sli, signal_type))
    }

    fn record_each(
        &mut self,
        key: &SliKey,
        ts_ms: i64,
        f: impl Fn(&crate::slo::Sli) -> Option<Counts>,
    ) -> Tally {
        self.events += 1;
        let mut t = Tally::default();
        for (i, slo) in self.slos.iter().enumerate() {
            if !slo.selector.matches(key) {
                continue;
            }
            if let Some(counts) = f(&slo.sli) {
                t.add(self.store.record(&(i, key.clone()), ts_ms, counts));
            }
        }
        t
    }

    /// Re-creates a firing alert from history after a restart (not announced again).
    pub fn restore(&mut self, alert: Alert, last_sent_ms: i64) {
        self.announced.insert(alert.fingerprint);
        self.tracker.restore(alert, last_sent_ms);
    }

    pub fn firing(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.tracker.firing().cloned().collect();
        v.sort_by_key(|a| a.fingerprint);
        v
    }

    /// Series held, and events dropped as late or over the key cap since start.
    pub fn store_stats(&self) -> (usize, u64, u64) {
        let (late, overflow) = self.store.dropped();
        let (sketch_overflow, sketch_late) = self.latency.dropped();
        (
            self.store.len(),
            late + self.cost.late + sketch_late,
            overflow + self.cost.overflow + sketch_overflow,
        )
    }

    pub fn watermark(&self) -> Option<i64> {
        self.store.watermark()
    }

    /// The newest event time seen.
    pub fn max_event_time(&self) -> Option<i64> {
        self.store.max_event_time()
    }

    /// The newest event time as of the last tick.
    pub fn last_evaluated(&self) -> Option<i64> {
        self.last_tick_event_ms
    }

    /// Evaluates every series at the closed end of event time.
    pub fn tick(&mut self, wall_ms: i64) -> Tick {
        self.advance_if_idle(wall_ms);
        self.last_tick_event_ms = self.store.max_event_time();
        self.ticks += 1;
        if self.ticks.is_multiple_of(600) {
            self.store.evict_idle();
        }
        let end = if self.replaying {
            self.store.closed_end()
        } else {
            self.store.open_end()
        };
        let (Some(end), Some(closed)) = (end, self.store.closed_end()) else {
            return Tick::default();
        };
        let mut out = Tick {
            end_ms: Some(end),
            ..Tick::default()
        };
        let mut keys: Vec<SeriesKey> = self.store.keys().cloned().collect();
        keys.sort();
        for series in keys {
            let slo = &self.slos[series.0];
            let st = sli::status(slo, &self.store, &series, end);
            let key = &series.1;
            for severity in [Severity::Page, Severity::Ticket] {
                let rules: Vec<&RuleEval> = st
                    .rules
                    .iter()
                    .filter(|r| r.window.severity == severity)
                    .collect();
                let Some(rep) = representative(&rules) else {
                    continue;
                };
                let ev = Evidence {
                    eval: rep,
                    budget_remaining: st.budget_remaining,
                    range_ms: self.store.span(end, rep.window.long),
                    api_url: &self.cfg.api_url,
                };
                let (annotations, url) = alert::describe(slo, key, &ev);
                let labels = alert::labels(&slo.name.value, key, severity);
                if let Some((a, last_sent)) = self.dormant.remove(&alert::fingerprint(&labels)) {
                    self.announced.insert(a.fingerprint);
                    self.tracker.restore(a, last_sent);
                }
                let obs = Observation {
                    labels,
                    annotations,
                    generator_url: url,
                    breaching: rules.iter().any(|r| r.breaching),
                    short_burn: rep.short_burn,
                    factor: rep.window.burn_rate,
                    policy: &slo.alerting,
                };
                if let Some(n) = self.tracker.observe(end, obs) {
                    out.outgoing.push(Outgoing {
                        announce: false,
                        notify: n,
                        slo: slo.name.value.clone(),
                        severity,
                        long_burn: rep.long_burn,
                        short_burn: rep.short_burn,
                        sli: st.sli,
                        budget_remaining: st.budget_remaining,
                        event_ms: end,
                    });
                }
            }
            out.views.push(view(slo, key, &st));
        }
        for c in self.cost.evaluate(closed) {
            if let Some((a, last_sent)) = self.dormant.remove(&alert::fingerprint(&c.labels)) {
                self.announced.insert(a.fingerprint);
                self.tracker.restore(a, last_sent);
            }
            let obs = Observation {
                labels: c.labels,
                annotations: c.annotations,
                generator_url: alert::calls_url(&self.cfg.api_url, &c.key, c.range_ms),
                breaching: c.breaching,
                short_burn: Some(c.score),
                factor: c.factor,
                policy: self.cost.alert_policy(),
            };
            if let Some(n) = self.tracker.observe(closed, obs) {
                out.outgoing.push(Outgoing {
                    announce: false,
                    notify: n,
                    slo: c.policy,
                    severity: c.severity,
                    long_burn: None,
                    short_burn: Some(c.score),
                    sli: Some(c.value),
                    budget_remaining: c.budget_remaining,
                    event_ms: closed,
                });
            }
            out.cost_views.push(c.view);
        }
        out.latency_views = self.latency.views(closed);
        // Series that disappeared (evicted) resolve after the longest window.
        for n in self
            .tracker
            .resolve_stale(end, self.cfg.window.max_window())
        {
            let a = match &n {
                Notify::Firing(a) | Notify::Resolved(a) => a,
            };
            out.outgoing.push(Outgoing {
                slo: a.labels.get("slo").cloned().unwrap_or_default(),
                severity: if a.labels.get("severity").map(String::as_str) == Some("ticket") {
                    Severity::Ticket
                } else {
                    Severity::Page
                },
                notify: n,
                announce: false,
                long_burn: None,
                short_burn: None,
                sli: None,
                budget_remaining: 1.0,
                event_ms: end,
            });
        }
        for o in &mut out.outgoing {
            let fp = o.alert().fingerprint;
            o.announce = match o.notify {
                Notify::Firing(_) => self.announced.insert(fp),
                Notify::Resolved(_) => {
                    self.announced.remove(&fp);
                    true
                }
            };
            if matches!(o.notify, Notify::Resolved(_)) {
                if self.recent.len() >= RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(o.clone());
            }
        }
        out
    }
}

impl Engine {
    /// After `idle_advance_ms` of wall time without a single event, event time follows the wall
    /// clock minus `idle_advance_ms`.
    fn advance_if_idle(&mut self, wall_ms: i64) {
        let since = match self.last_progress {
            Some((n, since)) if n == self.events => since,
            _ => {
                self.last_progress = Some((self.events, wall_ms));
                return;
            }
        };
        let idle = self.cfg.idle_advance_ms;
        if idle > 0 && self.store.max_event_time().is_some() && wall_ms - since >= idle {
            self.store.advance_to(wall_ms - idle);
        }
    }
}

/// The rule an alert of one severity reports: the first breaching one, else the one closest
/// to its threshold over the short window (its short burn rate drives the hysteresis).
fn representative<'a>(rules: &[&'a RuleEval]) -> Option<&'a RuleEval> {
    rules.iter().find(|r| r.breaching).copied().or_else(|| {
        rules.iter().copied().max_by(|a, b| {
            let r = |x: &RuleEval| {
                x.short_burn
                    .map_or(f64::NEG_INFINITY, |s| s / x.window.burn_rate)
            };
            r(a).total_cmp(&r(b))
        })
    })
}

fn view(slo: &Slo, key: &SliKey, st: &sli::SloStatus) -> SloView {
    SloView {
        slo: slo.name.value.clone(),
        project: key.project.clone(),
        service: key.service.clone(),
        model: key.model.clone(),
        operation: key.operation.clone(),
        objective: slo.objective.get(),
        window: slo.window.value.to_string(),
        sli: st.sli,
        events: st.period.total,
        bad_events: st.period.bad,
        budget_remaining: st.budget_remaining,
        rules: st
            .rules
            .iter()
            .map(|r| RuleView {
                severity: r.window.severity.as_str(),
                long_window: r.window.long.to_string(),
                short_window: r.window.short.to_string(),
                burn_rate_threshold: r.window.burn_rate,
                long_burn_rate: r.long_burn,
                short_burn_rate: r.short_burn,
                long_events: r.long.total,
                short_events: r.short.total,
                breaching: r.breaching,
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
