//! Alerts: who is firing, and what to send.
//!
//! - [`Tracker`]: the state machine per fingerprint (pending -> firing -> resolved), fed one
//!   [`Observation`] per rule, key and evaluation. It deduplicates by fingerprint, re-sends
//!   firing alerts every `resend_interval` (Alertmanager forgets alerts whose `endsAt` passed),
//!   resolves through [`Hysteresis`], and can be restored after a restart so an incident that
//!   was already firing is not announced again.
//! - [`labels`], [`fingerprint`], [`describe`]: what an alert says.
//! - [`payload`]: the Alertmanager API v2 body, the Alertmanager webhook body and the Slack
//!   incoming-webhook body, as pure functions of [`Alert`]s.
//!
//! Delivery (HTTP, retries with back-off off the detection path) is not here.

pub mod payload;

use std::collections::{BTreeMap, HashMap};

use crate::burn::{Hysteresis, RuleEval};
use crate::slo::{AlertPolicy, Dur, LatencyMetric, Severity, Sli, Slo};
use crate::SliKey;

/// Label or annotation names to values, sorted.
pub type Labels = BTreeMap<String, String>;

/// `alertname` of SLO burn-rate alerts.
pub const ALERTNAME_SLO: &str = "FlywheelSLOBurnRate";

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the sorted names and values, each
/// followed by the separator byte 0xff (Prometheus `model.LabelSet.Fingerprint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

pub fn fingerprint(labels: &Labels) -> Fingerprint {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (k, v) in labels {
        add(k.as_bytes());
        add(&[0xff]);
        add(v.as_bytes());
        add(&[0xff]);
    }
    Fingerprint(h)
}

/// The labels of an SLO alert: `alertname`, `slo`, `project`, `service`, `model`,
/// `operation` (keys differing only by operation must not share a fingerprint), `severity`.
pub fn labels(slo: &str, key: &SliKey, severity: Severity) -> Labels {
    [
        ("alertname", ALERTNAME_SLO),
        ("slo", slo),
        ("project", key.project.as_str()),
        ("service", key.service.as_str()),
        ("model", key.model.as_str()),
        ("operation", key.operation.as_str()),
        ("severity", severity.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Numbers behind an SLO alert, for its annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence<'a> {
    pub eval: &'a RuleEval,
    /// Share of the error budget left over the SLO window.
    pub budget_remaining: f64,
    /// `(from_ms, to_ms)` of the long window, for the query.
    pub range_ms: (i64, i64),
    /// Base URL of the Flywheel API, for the link to the affected calls.
    pub api_url: &'a str,
}

fn pct(x: f64) -> String {
    format!("{}%", (x * 1000.0).round() / 10.0)
}

fn burn(b: Option<f64>) -> String {
    b.map_or_else(|| "no traffic".to_string(), |b| format!("{:.1}x", b))
}

/// `summary`, `description` and `query` annotations, and the generator URL (the affected
/// calls in the Flywheel API).
pub fn describe(slo: &Slo, key: &SliKey, ev: &Evidence<'_>) -> (Labels, String) {
    let w = &ev.eval.window;
    let summary = format!(
        "{}: error budget burning {} over {} and {} over {} (threshold {}x) for {}/{}",
        slo.name.value,
        burn(ev.eval.long_burn),
        w.long,
        burn(ev.eval.short_burn),
        w.short,
        w.burn_rate,
        key.project,
        key.model,
    );
    let good = ev
        .eval
        .short
        .ratio()
        .map_or_else(|| "no traffic".into(), |r| pct(1.0 - r));
    let description = format!(
        "SLO {name} ({objective} good {sli} over {window}) for project={p} service={s} model={m} \
         operation={o}: burn rate {lb} over {long} and {sb} over {short} (threshold {f}x); SLI \
         {good} good over {short} ({bad} bad of {total}); error budget remaining {budget} of {window}.{desc}",
        name = slo.name.value,
        objective = slo.objective,
        sli = sli_text(&slo.sli),
        window = slo.window.value,
        p = key.project,
        s = key.service,
        m = key.model,
        o = key.operation,
        lb = burn(ev.eval.long_burn),
        long = w.long,
        sb = burn(ev.eval.short_burn),
        short = w.short,
        f = w.burn_rate,
        bad = ev.eval.short.bad,
        total = ev.eval.short.total,
        budget = pct(ev.budget_remaining),
        desc = if slo.description.is_empty() { String::new() } else { format!(" {}", slo.description) },
    );
    let url = calls_url(ev.api_url, key, ev.range_ms);
    let mut a = Labels::new();
    a.insert("summary".into(), summary);
    a.insert("description".into(), description);
    a.insert("query".into(), calls_query(&slo.sli, key, ev.range_ms));
    a.insert("calls_url".into(), url.clone());
    (a, url)
}

fn sli_text(sli: &Sli) -> String {
    match sli {
        Sli::Availability => "calls without error".into(),
        Sli::Latency(l) => format!("calls with {} < {}", l.metric.as_str(), l.threshold.value),
        Sli::NegativeFeedback(f) => format!("`{}` feedback that is not negative", f.name.value),
        Sli::Signal(s) => format!("calls without a `{}` signal", s.signal.as_str()),
        Sli::Goodput(g) => {
            let mut parts = vec!["without error".to_string()];
            for (m, d) in [("duration", g.duration), ("ttft", g.ttft), ("tpot", g.tpot)] {
                if let Some(d) = d {
                    parts.push(format!("{m} < {d}"));
                }
            }
            format!("calls ({})", parts.join(", "))
        }
    }
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn latency_bad(metric: LatencyMetric, d: Dur) -> String {
    let ms = d.as_millis();
    match metric {
        LatencyMetric::Duration => format!("duration_ns >= {}", ms * 1_000_000),
        LatencyMetric::Ttft => format!("ttft_ms >= {ms}"),
        LatencyMetric::Tpot => format!("tpot_ms >= {ms}"),
    }
}

/// A ClickHouse query for the bad calls of the key over the range (all of its calls for
/// feedback and signal SLIs, which live in other tables).
pub fn calls_query(sli: &Sli, key: &SliKey, (from, to): (i64, i64)) -> String {
    let bad = match sli {
        Sli::Availability => Some("status_code = 'Error'".to_string()),
        Sli::Latency(l) => Some(latency_bad(l.metric, l.threshold.value)),
        Sli::Goodput(g) => {
            let mut c = vec!["status_code = 'Error'".to_string()];
            for (m, d) in [
                (LatencyMetric::Duration, g.duration),
                (LatencyMetric::Ttft, g.ttft),
                (LatencyMetric::Tpot, g.tpot),
            ] {
                if let Some(d) = d {
                    c.push(latency_bad(m, d));
                }
            }
            Some(format!("({})", c.join(" OR ")))
        }
        Sli::NegativeFeedback(_) | Sli::Signal(_) => None,
    };
    let mut q = format!(
        "SELECT timestamp, trace_id, span_id, model, status_code, ttft_ms, tpot_ms, duration_ns FROM llm_calls \
         WHERE project = {} AND service = {} AND model = {} AND operation = {} \
         AND timestamp >= fromUnixTimestamp64Milli({from}) AND timestamp < fromUnixTimestamp64Milli({to})",
        sql_str(&key.project),
        sql_str(&key.service),
        sql_str(&key.model),
        sql_str(&key.operation),
    );
    if let Some(b) = bad {
        q.push_str(" AND ");
        q.push_str(&b);
    }
    q.push_str(" ORDER BY timestamp DESC LIMIT 100");
    q
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The affected calls in the Flywheel API (`GET /v1/calls`, a later issue).
pub fn calls_url(api_url: &str, key: &SliKey, (from, to): (i64, i64)) -> String {
    format!(
        "{}/v1/calls?project={}&service={}&model={}&operation={}&from_ms={from}&to_ms={to}",
        api_url.trim_end_matches('/'),
        url_escape(&key.project),
        url_escape(&key.service),
        url_escape(&key.model),
        url_escape(&key.operation),
    )
}

/// One alert as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub fingerprint: Fingerprint,
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at_ms: i64,
    /// Set when resolved.
    pub ends_at_ms: Option<i64>,
    pub generator_url: String,
}

/// What the tracker wants sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Notify {
    /// New, or re-sent while it stays firing.
    Firing(Alert),
    Resolved(Alert),
}

/// One evaluation of one rule for one key.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub labels: Labels,
    pub annotations: Labels,
    pub generator_url: String,
    pub breaching: bool,
    /// Short-window burn rate (for hysteresis) and the rule's factor.
    pub short_burn: Option<f64>,
    pub factor: f64,
    pub policy: &'a AlertPolicy,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Pending,
    Firing { last_sent_ms: i64 },
}

#[derive(Debug, Clone)]
struct Entry {
    alert: Alert,
    phase: Phase,
    hysteresis: Hysteresis,
    last_seen_ms: i64,
}

/// Alert states by fingerprint; see the module doc.
#[derive(Debug, Clone)]
pub struct Tracker {
    resend_interval_ms: i64,
    entries: HashMap<Fingerprint, Entry>,
}

impl Tracker {
    pub fn new(resend_interval: Dur) -> Self {
        Self {
            resend_interval_ms: resend_interval.as_millis() as i64,
            entries: HashMap::new(),
        }
    }

    /// Fingerprints currently firing.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.entries
            .values()
            .filter(|e| matches!(e.phase, Phase::Firing { .. }))
            .map(|e| &e.alert)
    }

    /// Re-creates a firing alert after a restart (from the alert history): no notification
    /// until `resend_interval` after `last_sent_ms`, and no new `startsAt`.
    pub fn restore(&mut self, alert: Alert, last_sent_ms: i64) {
        self.entries.insert(
            alert.fingerprint,
            Entry {
                phase: Phase::Firing { last_sent_ms },
                hysteresis: Hysteresis::default(),
                last_seen_ms: last_sent_ms,
                alert,
            },
        );
    }

    /// Feeds one evaluation; returns what to send, if anything.
    pub fn observe(&mut self, now_ms: i64, obs: Observation<'_>) -> Option<Notify> {
        let fp = fingerprint(&obs.labels);
        let pending_for = obs.policy.pending_for.as_millis() as i64;
        let Some(e) = self.entries.get_mut(&fp) else {
            if !obs.breaching {
                return None;
            }
            let alert = Alert {
                fingerprint: fp,
                labels: obs.labels,
                annotations: obs.annotations,
                starts_at_ms: now_ms,
                ends_at_ms: None,
                generator_url: obs.generator_url,
            };
            let fire = pending_for == 0;
            self.entries.insert(
                fp,
                Entry {
                    phase: if fire {
                        Phase::Firing {
                            last_sent_ms: now_ms,
                        }
                    } else {
                        Phase::Pending
                    },
                    alert: alert.clone(),
                    hysteresis: Hysteresis::default(),
                    last_seen_ms: now_ms,
                },
            );
            return fire.then_some(Notify::Firing(alert));
        };
        e.last_seen_ms = now_ms;
        e.alert.annotations = obs.annotations;
        e.alert.generator_url = obs.generator_url;
        match e.phase {
            Phase::Pending if !obs.breaching => {
                self.entries.remove(&fp);
                None
            }
            Phase::Pending => {
                if now_ms - e.alert.starts_at_ms < pending_for {
                    return None;
                }
                e.phase = Phase::Firing {
                    last_sent_ms: now_ms,
                };
                Some(Notify::Firing(e.alert.clone()))
            }
            Phase::Firing { last_sent_ms } => {
                if e.hysteresis
                    .resolve(now_ms, obs.short_burn, obs.factor, obs.policy)
                {
                    let mut a = self.entries.remove(&fp)?.alert;
                    a.ends_at_ms = Some(now_ms);
                    return Some(Notify::Resolved(a));
                }
                if now_ms - last_sent_ms >= self.resend_interval_ms {
                    e.phase = Phase::Firing {
                        last_sent_ms: now_ms,
                    };
                    return Some(Notify::Firing(e.alert.clone()));
                }
                None
            }
        }
    }

    /// Resolves alerts not observed for `silence` (their key was evicted or its SLO removed).
    pub fn resolve_stale(&mut self, now_ms: i64, silence: Dur) -> Vec<Notify> {
        let limit = silence.as_millis() as i64;
        let stale: Vec<Fingerprint> = self
            .entries
            .iter()
            .filter(|(_, e)| now_ms - e.last_seen_ms >= limit)
            .map(|(fp, _)| *fp)
            .collect();
        stale
            .into_iter()
            .filter_map(|fp| {
                let e = self.entries.remove(&fp)?;
                let Phase::Firing { .. } = e.phase else {
                    return None;
                };
                let mut a = e.alert;
                a.ends_at_ms = Some(now_ms);
                Some(Notify::Resolved(a))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
