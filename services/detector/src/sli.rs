//! From events to SLI counts, and from counts to an SLO's status.
//!
//! - [`call_counts`], [`feedback_counts`], [`signal_counts`]: what one call, feedback item or
//!   implicit signal adds to an SLI's [`Counts`] (or `None`: not this SLI's business).
//! - [`status`]: one SLO for one key from a [`WindowStore`]: every rule evaluated, the budget
//!   left over the SLO window and the SLI itself (what `GET /v1/slos` and the alert
//!   annotations show).
//!
//! Conventions: latency SLIs judge successful calls only (failures belong to availability,
//! and a fast error must not improve latency); a call without a TTFT (not streamed) got its
//! first token with the response, so its TTFT is its duration; a call without a TPOT (one
//! token, or not streamed) meets any TPOT objective. A signal adds a bad event without a total:
//! the total of a signal SLI is the calls, counted when they happen.

use std::hash::Hash;

use crate::burn::{budget_remaining, evaluate, RuleEval};
use crate::slo::{Dur, LatencyMetric, Negative, Sli, Slo};
use crate::window::{Counts, WindowStore};

/// What the detector needs to know about one model call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallEvent {
    pub error: bool,
    pub duration_ms: f64,
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    /// Priced by the shared price table; `None` for an unknown model or without token counts.
    pub cost_usd: Option<f64>,
    /// Input plus output tokens; `None` without token counts.
    pub tokens: Option<u64>,
}

impl CallEvent {
    /// The value of `m` by the conventions above (no TTFT: the duration; TPOT may be missing).
    pub fn metric(&self, m: LatencyMetric) -> Option<f64> {
        match m {
            LatencyMetric::Duration => Some(self.duration_ms),
            LatencyMetric::Ttft => Some(self.ttft_ms.unwrap_or(self.duration_ms)),
            LatencyMetric::Tpot => self.tpot_ms,
        }
    }
}

fn over(v: Option<f64>, threshold: Dur) -> bool {
    v.is_some_and(|v| v >= threshold.as_millis() as f64)
}

/// A call's contribution to `sli`.
pub fn call_counts(sli: &Sli, c: &CallEvent) -> Option<Counts> {
    match sli {
        Sli::Availability => Some(Counts::one(c.error)),
        Sli::Latency(_) if c.error => None,
        Sli::Latency(l) => match c.metric(l.metric) {
            Some(v) => Some(Counts::one(over(Some(v), l.threshold.value))),
            // Only TPOT can be missing: the call meets it.
            None => Some(Counts::one(false)),
        },
        Sli::Goodput(g) => {
            let slow = [
                (LatencyMetric::Duration, g.duration),
                (LatencyMetric::Ttft, g.ttft),
                (LatencyMetric::Tpot, g.tpot),
            ]
            .into_iter()
            .any(|(m, t)| t.is_some_and(|t| over(c.metric(m), t)));
            Some(Counts::one(c.error || slow))
        }
        Sli::Signal(_) => Some(Counts::new(0, 1)),
        Sli::NegativeFeedback(_) => None,
    }
}

/// A feedback value, as on the feedback topic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeedbackValue<'a> {
    Boolean(bool),
    Number(f64),
    Label(&'a str),
    Text,
}

/// A feedback item's contribution: only to a negative-feedback SLI of the same name, and only
/// when its value has the kind the SLI judges.
pub fn feedback_counts(sli: &Sli, name: &str, value: FeedbackValue<'_>) -> Option<Counts> {
    let Sli::NegativeFeedback(f) = sli else {
        return None;
    };
    if f.name.as_str() != name {
        return None;
    }
    let negative = match (&f.negative, value) {
        (Negative::Boolean(b), FeedbackValue::Boolean(v)) => v == *b,
        (Negative::Below(x), FeedbackValue::Number(v)) => v < *x,
        (Negative::Labels(ls), FeedbackValue::Label(v)) => ls.iter().any(|l| l == v),
        _ => return None,
    };
    Some(Counts::one(negative))
}

/// An implicit signal's contribution (`regenerate`, `stop`, ...): one bad event, no total.
pub fn signal_counts(sli: &Sli, signal_type: &str) -> Option<Counts> {
    match sli {
        Sli::Signal(s) if s.signal.as_str() == signal_type => Some(Counts::new(1, 0)),
        _ => None,
    }
}

/// One SLO for one key at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SloStatus {
    pub rules: Vec<RuleEval>,
    /// Counts over the SLO window.
    pub period: Counts,
    /// Good share over the SLO window; `None` without events.
    pub sli: Option<f64>,
    pub budget_remaining: f64,
}

/// Evaluates `slo` for `key` over windows ending at `end_ms`.
pub fn status<K: Hash + Eq + Clone>(
    slo: &Slo,
    store: &WindowStore<K>,
    key: &K,
    end_ms: i64,
) -> SloStatus {
    let rules = evaluate(&slo.alerting, slo.objective, |d| store.sum(key, end_ms, d));
    let period = store.sum(key, end_ms, slo.window.value);
    SloStatus {
        rules,
        period,
        sli: period.ratio().map(|r| 1.0 - r.min(1.0)),
        budget_remaining: budget_remaining(period, slo.objective),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::parse;
    use crate::window::WindowConfig;

    const FILE: &str = "\
slos:
  - { name: avail, sli: availability, objective: 0.99, window: 30d }
  - name: ttft
    sli: { latency: { metric: ttft, threshold: 1.5s } }
    objective: 0.99
    window: 30d
  - name: tpot
    sli: { latency: { metric: tpot, threshold: 50ms } }
    objective: 0.99
    window: 30d
  - name: goodput
    sli: { goodput: { ttft: 2s, tpot: 50ms } }
    objective: 0.95
    window: 30d
  - name: thumbs
    sli: { negative_feedback: { name: thumbs, negative: { boolean: false } } }
    objective: 0.95
    window: 7d
  - name: stars
    sli: { negative_feedback: { name: stars, negative: { below: 3 } } }
    objective: 0.9
    window: 7d
  - name: regen
    sli: { signal: { signal: regenerate } }
    objective: 0.9
    window: 7d
";

    fn slis() -> Vec<Sli> {
        parse(FILE)
            .unwrap()
            .slos
            .into_iter()
            .map(|s| s.value.sli)
            .collect()
    }

    fn call(error: bool, duration_ms: f64, ttft: Option<f64>, tpot: Option<f64>) -> CallEvent {
        CallEvent {
            error,
            duration_ms,
            ttft_ms: ttft,
            tpot_ms: tpot,
            cost_usd: None,
            tokens: None,
        }
    }

    #[test]
    fn calls_by_sli() {
        let s = slis();
        let bad = Some(Counts::new(1, 1));
        let good = Some(Counts::new(0, 1));
        // Fast, streamed, fine.
        let ok = call(false, 3000.0, Some(400.0), Some(20.0));
        let got: Vec<_> = s.iter().map(|sli| call_counts(sli, &ok)).collect();
        assert_eq!(got, [good, good, good, good, None, None, good]);
        // An error: bad for availability and goodput, not a latency sample.
        let err = call(true, 100.0, None, None);
        let got: Vec<_> = s.iter().map(|sli| call_counts(sli, &err)).collect();
        assert_eq!(got, [bad, None, None, bad, None, None, good]);
        // Not streamed, 1.6 s: its TTFT is its duration (bad at 1.5 s, fine for goodput's 2 s);
        // no TPOT meets the TPOT objective.
        let plain = call(false, 1600.0, None, None);
        let got: Vec<_> = s.iter().map(|sli| call_counts(sli, &plain)).collect();
        assert_eq!(got, [good, bad, good, good, None, None, good]);
        // Exactly at the threshold is bad ("under 1.5 s" is strict); slow tokens fail goodput.
        let edge = call(false, 9000.0, Some(1500.0), Some(60.0));
        let got: Vec<_> = s.iter().map(|sli| call_counts(sli, &edge)).collect();
        assert_eq!(got, [good, bad, bad, bad, None, None, good]);
    }

    #[test]
    fn feedback_and_signals_by_sli() {
        let s = slis();
        let (thumbs, stars, regen) = (&s[4], &s[5], &s[6]);
        assert_eq!(
            feedback_counts(thumbs, "thumbs", FeedbackValue::Boolean(false)),
            Some(Counts::new(1, 1))
        );
        assert_eq!(
            feedback_counts(thumbs, "thumbs", FeedbackValue::Boolean(true)),
            Some(Counts::new(0, 1))
        );
        // Another name, or a value of another kind: not counted.
        assert_eq!(
            feedback_counts(thumbs, "stars", FeedbackValue::Boolean(false)),
            None
        );
        assert_eq!(
            feedback_counts(thumbs, "thumbs", FeedbackValue::Number(0.0)),
            None
        );
        assert_eq!(
            feedback_counts(stars, "stars", FeedbackValue::Number(2.0)),
            Some(Counts::new(1, 1))
        );
        assert_eq!(
            feedback_counts(stars, "stars", FeedbackValue::Number(3.0)),
            Some(Counts::new(0, 1))
        );
        assert_eq!(feedback_counts(&s[0], "thumbs", FeedbackValue::Text), None);
        assert_eq!(signal_counts(regen, "regenerate"), Some(Counts::new(1, 0)));
        assert_eq!(signal_counts(regen, "stop"), None);
        assert_eq!(signal_counts(thumbs, "regenerate"), None);
    }

    #[test]
    fn status_of_an_slo_by_hand() {
        let f = parse(FILE).unwrap();
        let slo = &f.slos[0]; // availability, 99%, 30 d
        let mut store: WindowStore<u8> = WindowStore::new(WindowConfig::default()).unwrap();
        // 10 days of one call a minute, all fine; then 10 minutes with every call failing.
        let minutes = 10 * 1440;
        for m in 0..minutes + 10 {
            store.record(&0, m * 60_000, Counts::one(m >= minutes));
        }
        let end = (minutes + 10) * 60_000;
        let st = status(slo, &store, &0, end);
        // 1 h: 10 bad of 60 = 0.1667 -> burn 16.7; 5 m: 5 of 5 -> 100: the page rule fires.
        assert!(st.rules[0].breaching);
        assert!((st.rules[0].long_burn.unwrap() - 100.0 / 6.0).abs() < 1e-9);
        // 6 h: 10 of 360 -> 2.78 < 6; 3 d: 10 of 4320 -> 0.23 < 1.
        assert!(!st.rules[1].breaching && !st.rules[2].breaching);
        // 30 d (only 10 days of traffic): 10 bad of 14410; budget 1% of 14410 = 144.1 bad, 10
        // spent: 1 - 10 / 144.1 = 0.9306 left; SLI 14400 / 14410 = 0.99931.
        assert_eq!(st.period, Counts::new(10, 14_410));
        assert!((st.budget_remaining - (1.0 - 10.0 / 144.1)).abs() < 1e-9);
        assert!((st.sli.unwrap() - 14_400.0 / 14_410.0).abs() < 1e-12);
        // A key without traffic: nothing burns, the whole budget is left.
        let quiet = status(slo, &store, &9, end);
        assert!(quiet
            .rules
            .iter()
            .all(|r| !r.breaching && r.long_burn.is_none()));
        assert_eq!((quiet.sli, quiet.budget_remaining), (None, 1.0));
    }
}
