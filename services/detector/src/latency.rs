//! Latency quantiles per SLI key: every successful call's duration, TTFT and TPOT go into
//! DDSketches ([`crate::sketch`], one per minute in a ring of an hour, per key and metric) by
//! the SLIs' conventions ([`CallEvent::metric`]: no TTFT is the duration, TPOT may be
//! missing); [`Latency::views`] gives p50 / p90 / p99 over the last [`WINDOW`] for
//! `GET /v1/slos` (`latency`). Failed calls are left out, as in the latency SLIs.
//!
//! Quantiles are over whole minutes, so views are recomputed only when a minute closes.

use serde::Serialize;

use crate::sketch::{LatencySketches, Quantiles, SketchConfig};
use crate::sli::CallEvent;
use crate::slo::{Dur, LatencyMetric};
use crate::SliKey;

/// The window quantiles are shown over.
pub const WINDOW: Dur = Dur::mins(5);

const METRICS: [LatencyMetric; 3] = [
    LatencyMetric::Duration,
    LatencyMetric::Ttft,
    LatencyMetric::Tpot,
];

/// Quantiles (ms) of one key over [`WINDOW`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyView {
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
    pub window: String,
    pub duration_ms: Option<Quantiles>,
    pub ttft_ms: Option<Quantiles>,
    pub tpot_ms: Option<Quantiles>,
}

#[derive(Debug)]
pub struct Latency {
    sketches: LatencySketches<(SliKey, LatencyMetric)>,
    interval_ms: i64,
    /// The minute the views were computed for, and the views.
    cached: Option<(i64, Vec<LatencyView>)>,
}

impl Latency {
    /// At most `max_keys` SLI keys (three sketch rings each).
    pub fn new(max_keys: usize) -> Self {
        let cfg = SketchConfig {
            max_keys: max_keys.saturating_mul(METRICS.len()),
            ..SketchConfig::default()
        };
        Self {
            interval_ms: cfg.interval.as_millis() as i64,
            sketches: LatencySketches::new(cfg),
            cached: None,
        }
    }

    pub fn record(&mut self, key: &SliKey, ts_ms: i64, e: &CallEvent) {
        if e.error {
            return;
        }
        for m in METRICS {
            if let Some(v) = e.metric(m) {
                self.sketches.record(&(key.clone(), m), ts_ms, v);
            }
        }
    }

    /// Values refused for the key cap, and as older than the ring.
    pub fn dropped(&self) -> (u64, u64) {
        self.sketches.dropped()
    }

    /// Quantiles of every key over the [`WINDOW`] of whole minutes before `end_ms`, sorted
    /// by key; keys without calls in the window are left out.
    pub fn views(&mut self, end_ms: i64) -> Vec<LatencyView> {
        let minute = end_ms.div_euclid(self.interval_ms);
        if let Some((m, v)) = &self.cached {
            if *m == minute {
                return v.clone();
            }
        }
        let mut keys: Vec<&SliKey> = self.sketches.keys().map(|(k, _)| k).collect();
        keys.sort();
        keys.dedup();
        let q = |k: &SliKey, m| self.sketches.quantiles(&(k.clone(), m), end_ms, WINDOW);
        let views: Vec<LatencyView> = keys
            .into_iter()
            .filter_map(|k| {
                let duration_ms = q(k, LatencyMetric::Duration)?;
                Some(LatencyView {
                    project: k.project.clone(),
                    service: k.service.clone(),
                    model: k.model.clone(),
                    operation: k.operation.clone(),
                    window: WINDOW.to_string(),
                    duration_ms: Some(duration_ms),
                    ttft_ms: q(k, LatencyMetric::Ttft),
                    tpot_ms: q(k, LatencyMetric::Tpot),
                })
            })
            .collect();
        self.cached = Some((minute, views.clone()));
        views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(error: bool, duration_ms: f64, ttft_ms: Option<f64>) -> CallEvent {
        CallEvent {
            error,
            duration_ms,
            ttft_ms,
            tpot_ms: None,
            cost_usd: None,
            tokens: None,
        }
    }

    #[test]
    fn quantiles_per_key_over_whole_minutes() {
        let key = SliKey {
            project: "p".into(),
            model: "m".into(),
            ..SliKey::default()
        };
        let mut l = Latency::new(10);
        // 100 calls of 1..=100 ms in the first minute; TTFT only on half of them.
        for i in 1..=100 {
            let ttft = (i % 2 == 0).then_some(5.0);
            l.record(&key, 1_000 + i, &call(false, i as f64, ttft));
        }
        // A failed call is not latency.
        l.record(&key, 2_000, &call(true, 10_000.0, None));
        assert!(l.views(59_000).is_empty(), "the minute is not closed yet");
        let v = l.views(60_000);
        assert_eq!(v.len(), 1);
        let d = v[0].duration_ms.unwrap();
        assert_eq!(d.count, 100);
        // Within DDSketch's 1% relative error of the exact ranks.
        for (got, want) in [(d.p50, 50.0), (d.p90, 90.0), (d.p99, 99.0)] {
            assert!((got - want).abs() <= want * 0.02, "{got} vs {want}");
        }
        // TTFT: 50 calls at 5 ms, and 50 without one, whose TTFT is their (odd) duration.
        let t = v[0].ttft_ms.unwrap();
        assert_eq!(t.count, 100);
        assert!((t.p50 - 5.0).abs() <= 0.1, "{t:?}");
        assert!(v[0].tpot_ms.is_none());
        // Five minutes later the window is empty again.
        assert!(l.views(6 * 60_000 + 1).is_empty());
    }
}
