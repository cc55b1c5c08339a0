//! Latency quantiles per key from mergeable DDSketches (`sketches-ddsketch`, relative error
//! 1% by default): a ring of one sketch per interval (default 1 min x 60), merged on demand
//! into the quantiles of any window up to the ring's span. Mergeable across instances like
//! the counters of [`crate::window`], and bounded the same way: a key cap and a fixed ring.

use std::collections::HashMap;
use std::hash::Hash;

use sketches_ddsketch::{Config, DDSketch};

use crate::slo::Dur;
use crate::window::Outcome;

#[derive(Debug, Clone, PartialEq)]
pub struct SketchConfig {
    /// Relative accuracy of quantiles (0.01: within 1% of the true value).
    pub alpha: f64,
    /// One sketch per interval ...
    pub interval: Dur,
    /// ... and this many intervals per key.
    pub intervals: usize,
    pub max_keys: usize,
}

impl Default for SketchConfig {
    fn default() -> Self {
        Self {
            alpha: 0.01,
            interval: Dur::mins(1),
            intervals: 60,
            max_keys: 10_000,
        }
    }
}

struct Slot {
    interval: i64,
    sketch: DDSketch,
}

impl Clone for Slot {
    fn clone(&self) -> Self {
        Self {
            interval: self.interval,
            sketch: self.sketch.clone(),
        }
    }
}

/// Per-key rings of sketches.
#[derive(Clone)]
pub struct LatencySketches<K> {
    cfg: SketchConfig,
    dd: Config,
    interval_ms: i64,
    keys: HashMap<K, Vec<Option<Slot>>>,
    overflow: u64,
    too_old: u64,
}

impl<K> std::fmt::Debug for LatencySketches<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySketches")
            .field("cfg", &self.cfg)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Quantiles of a window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl<K: Hash + Eq + Clone> LatencySketches<K> {
    pub fn new(cfg: SketchConfig) -> Self {
        Self {
            dd: Config::new(cfg.alpha, 2048, 1e-9),
            interval_ms: (cfg.interval.as_millis() as i64).max(1),
            cfg,
            keys: HashMap::new(),
            overflow: 0,
            too_old: 0,
        }
    }

    /// Adds one value (e.g. a TTFT in ms) at event time `ts_ms`. Values older than the ring
    /// held for the key are refused as [`Outcome::Late`].
    pub fn record(&mut self, key: &K, ts_ms: i64, value: f64) -> Outcome {
        if !self.keys.contains_key(key) && self.keys.len() >= self.cfg.max_keys {
            self.overflow += 1;
            return Outcome::Overflow;
        }
        let n = self.cfg.intervals.max(1);
        let ring = self
            .keys
            .entry(key.clone())
            .or_insert_with(|| (0..n).map(|_| None).collect());
        let i = ts_ms.div_euclid(self.interval_ms);
        let slot = &mut ring[i.rem_euclid(n as i64) as usize];
        match slot {
            Some(s) if s.interval == i => s.sketch.add(value),
            Some(s) if s.interval > i => {
                self.too_old += 1;
                return Outcome::Late;
            }
            _ => {
                let mut sketch = DDSketch::new(self.dd);
                sketch.add(value);
                *slot = Some(Slot {
                    interval: i,
                    sketch,
                });
            }
        }
        Outcome::Counted
    }

    /// Every key held.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.keys.keys()
    }

    /// Values refused for the key cap, and as older than the ring.
    pub fn dropped(&self) -> (u64, u64) {
        (self.overflow, self.too_old)
    }

    /// The merged sketch of the intervals in `[end_ms - window, end_ms)` (whole intervals).
    fn merged(&self, key: &K, end_ms: i64, window: Dur) -> Option<DDSketch> {
        let ring = self.keys.get(key)?;
        let end = end_ms.div_euclid(self.interval_ms);
        let n = (window.as_millis() as i64 / self.interval_ms).clamp(1, ring.len() as i64);
        let mut out = DDSketch::new(self.dd);
        for s in ring.iter().flatten() {
            if s.interval >= end - n && s.interval < end {
                out.merge(&s.sketch).ok()?;
            }
        }
        (out.count() > 0).then_some(out)
    }

    /// p50, p90 and p99 over the window; `None` without values.
    pub fn quantiles(&self, key: &K, end_ms: i64, window: Dur) -> Option<Quantiles> {
        let s = self.merged(key, end_ms, window)?;
        let q = |q: f64| s.quantile(q).ok().flatten().unwrap_or(f64::NAN);
        Some(Quantiles {
            count: s.count() as u64,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
        })
    }

    /// Adds another instance's sketches (same config).
    pub fn merge(&mut self, other: &Self) {
        for (k, ring) in &other.keys {
            for s in ring.iter().flatten() {
                if !self.keys.contains_key(k) && self.keys.len() >= self.cfg.max_keys {
                    self.overflow += 1;
                    break;
                }
                let n = self.cfg.intervals.max(1);
                let mine = self
                    .keys
                    .entry(k.clone())
                    .or_insert_with(|| (0..n).map(|_| None).collect());
                let slot = &mut mine[s.interval.rem_euclid(n as i64) as usize];
                match slot {
                    Some(m) if m.interval == s.interval => {
                        // Same config on both sides: merge cannot fail.
                        let _ = m.sketch.merge(&s.sketch);
                    }
                    Some(m) if m.interval > s.interval => {}
                    _ => *slot = Some(s.clone()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SketchConfig {
        SketchConfig {
            intervals: 10,
            ..SketchConfig::default()
        }
    }

    const MIN: i64 = 60_000;

    fn within(got: f64, want: f64, rel: f64) -> bool {
        (got - want).abs() <= rel * want
    }

    #[test]
    fn quantiles_are_within_the_relative_error() {
        let mut s: LatencySketches<&str> = LatencySketches::new(cfg());
        // 1..=1000 ms, one every 60 ms over the first minute.
        for v in 1..=1000 {
            s.record(&"k", (v - 1) * 60, v as f64);
        }
        let q = s.quantiles(&"k", MIN, Dur::mins(1)).unwrap();
        assert_eq!(q.count, 1000);
        assert!(
            within(q.p50, 500.0, 0.02) && within(q.p90, 900.0, 0.02) && within(q.p99, 990.0, 0.02),
            "{q:?}"
        );
        assert_eq!(s.quantiles(&"k", 3 * MIN, Dur::mins(1)), None);
        assert_eq!(s.quantiles(&"other", MIN, Dur::mins(1)), None);
    }

    #[test]
    fn windows_select_intervals_and_old_values_fall_off() {
        let mut s: LatencySketches<u8> = LatencySketches::new(cfg());
        // Minute 0: 100 ms; minute 1: 1000 ms.
        for i in 0..100 {
            s.record(&1, i, 100.0);
            s.record(&1, MIN + i, 1000.0);
        }
        let last = s.quantiles(&1, 2 * MIN, Dur::mins(1)).unwrap();
        assert!(within(last.p50, 1000.0, 0.02) && last.count == 100);
        let both = s.quantiles(&1, 2 * MIN, Dur::mins(2)).unwrap();
        assert_eq!(both.count, 200);
        // Minute 10 reuses minute 0's slot; minute 0 is gone.
        assert_eq!(s.record(&1, 10 * MIN, 5.0), Outcome::Counted);
        assert_eq!(s.record(&1, 5, 5.0), Outcome::Late);
        assert_eq!(s.quantiles(&1, 11 * MIN, Dur::mins(10)).unwrap().count, 101);
    }

    #[test]
    fn merging_two_instances_equals_one() {
        let (mut one, mut a, mut b) = (
            LatencySketches::<u8>::new(cfg()),
            LatencySketches::<u8>::new(cfg()),
            LatencySketches::<u8>::new(cfg()),
        );
        let mut rng = fastrand::Rng::with_seed(3);
        for i in 0..5000i64 {
            let (k, t, v) = (rng.u8(0..3), i * 100, rng.f64() * 2000.0 + 1.0);
            one.record(&k, t, v);
            if rng.bool() {
                a.record(&k, t, v)
            } else {
                b.record(&k, t, v)
            };
        }
        a.merge(&b);
        for k in 0..3u8 {
            for w in [Dur::mins(1), Dur::mins(5)] {
                // DDSketch merges bucket counts exactly: the quantiles are identical.
                assert_eq!(
                    a.quantiles(&k, 500 * 1000, w),
                    one.quantiles(&k, 500 * 1000, w),
                    "{k} {w}"
                );
            }
        }
    }

    #[test]
    fn keys_are_capped() {
        let mut s = LatencySketches::<u8>::new(SketchConfig {
            max_keys: 1,
            ..cfg()
        });
        assert_eq!(s.record(&1, 0, 1.0), Outcome::Counted);
        assert_eq!(s.record(&2, 0, 1.0), Outcome::Overflow);
        assert_eq!(s.dropped(), (1, 0));
    }
}
