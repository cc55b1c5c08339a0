//! Alerts: who is firing, and what to send.
//!
//! - [`Tracker`]: the state machine per fingerprint (pending -> firing -> resolved), fed one
//!   [`Observation`] per rule, key and evaluation. It deduplicates by fingerprint, re-sends
//!   firing alerts every `resend_interval` (Alertmanager forgets alerts whose `endsAt` passed),
//!   resolves through [`Hysteresis`], and can be restored after a restart so an incident that
//!   was already firing is not announced again.
//! - [`labels`], [`fingerprint`], [`describe`] (and the cost variants): what an alert says.
//! - [`payload`]: the Alertmanager API v2 body, the Alertmanager webhook body and the Slack
//!   incoming-webhook body, as pure functions of [`Alert`]s.
//!
//! Delivery (HTTP, retries with back-off off the detection path) is not here.

pub mod payload;
mod text;

use std::collections::{BTreeMap, HashMap};

pub use text::{calls_query, calls_url, describe, describe_change, describe_spend, Evidence};

use crate::burn::Hysteresis;
use crate::slo::{AlertPolicy, Dur, Severity};
use crate::SliKey;

/// Label or annotation names to values, sorted.
pub type Labels = BTreeMap<String, String>;

/// `alertname` of SLO burn-rate alerts.
pub const ALERTNAME_SLO: &str = "FlywheelSLOBurnRate";
/// `alertname` of spend-rate alerts.
pub const ALERTNAME_SPEND: &str = "FlywheelCostSpendRate";
/// `alertname` of cost / tokens per call change alerts.
pub const ALERTNAME_COST_CHANGE: &str = "FlywheelCostChange";

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
    labels_named(ALERTNAME_SLO, slo, key, severity)
}

/// The same labels with another `alertname` (cost alerts put the policy name in `slo`, so one
/// routing tree serves both).
pub fn labels_named(alertname: &str, slo: &str, key: &SliKey, severity: Severity) -> Labels {
    [
        ("alertname", alertname),
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

    /// Removes every alert, returning the firing ones with the time they were last sent (to
    /// restore whichever this instance still owns after a rebalance). Pending ones are dropped.
    pub fn take_firing(&mut self) -> Vec<(Alert, i64)> {
        self.entries
            .drain()
            .filter_map(|(_, e)| match e.phase {
                Phase::Firing { last_sent_ms } => Some((e.alert, last_sent_ms)),
                Phase::Pending => None,
            })
            .collect()
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
