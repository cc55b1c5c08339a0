//! Event-time bucketed counters per key, with a watermark, bounded lateness and bounded memory.
//!
//! - Events carry their own time (ms since the Unix epoch). The store's **watermark** is the
//!   largest event time seen minus the allowed lateness; an event older than the watermark is
//!   refused as [`Outcome::Late`] (the caller counts it in a metric). Buckets that end before the
//!   watermark are closed: nothing can change them any more, so a sum that ends at the watermark
//!   is final and the same on every replay.
//! - Two resolutions per key: fine buckets (e.g. 10 s) for the short windows, coarse buckets
//!   (e.g. 5 min) for the long ones. A long window is summed from coarse buckets plus a fine
//!   tail, so its end is as sharp as a short window's and only its start is rounded (down) to a
//!   coarse bucket. With 10 s / 5 min buckets, 6 h fine and 3 d coarse retention a key costs
//!   about 3,100 cells instead of 27,000.
//! - Each ring stores **cumulative** cells, so a window is `cum(end) - cum(start)`: O(1) per
//!   window. Recording an event updates the cells from its bucket to the newest, which is
//!   bounded by the lateness (usually one cell). Buckets older than the longest window fall off
//!   the ring. The number of keys is capped; events of keys beyond the cap are refused as
//!   [`Outcome::Overflow`]. [`WindowStore::evict_idle`] drops keys with nothing in any window.
//! - [`WindowStore::merge`] adds another instance's partial aggregates: merging the stores of
//!   instances that each saw part of the events gives the sums of one instance that saw them
//!   all (for events that were not late for that one instance), property-tested below.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::ops::{Add, Sub};

use crate::slo::Dur;

/// What one bucket holds. Integer fields only, so that sums and merges are exact and
/// associative (cost is counted in micro-dollars).
pub trait Cell:
    Copy + Default + PartialEq + Debug + Add<Output = Self> + Sub<Output = Self>
{
}

/// Bad and total events of a ratio SLI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub bad: u64,
    pub total: u64,
}

impl Counts {
    pub fn new(bad: u64, total: u64) -> Self {
        Self { bad, total }
    }
    /// One event, bad or good.
    pub fn one(bad: bool) -> Self {
        Self::new(u64::from(bad), 1)
    }
    /// `bad / total`, `None` without events.
    pub fn ratio(self) -> Option<f64> {
        (self.total > 0).then(|| self.bad as f64 / self.total as f64)
    }
}

impl Add for Counts {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::new(self.bad + o.bad, self.total + o.total)
    }
}
impl Sub for Counts {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self::new(self.bad - o.bad, self.total - o.total)
    }
}
impl Cell for Counts {}

/// Bucket sizes, retention, lateness and the key cap of a [`WindowStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    /// Fine bucket width.
    pub bucket: Dur,
    /// Coarse bucket width, a multiple of `bucket`.
    pub coarse_bucket: Dur,
    /// Longest window summed from fine buckets alone.
    pub fine_span: Dur,
    /// Longest window of all (the longest alert window, or the longest spend lookback).
    pub max_window: Dur,
    /// How far behind the newest event an event may be and still count.
    pub lateness: Dur,
    /// Most keys held at once.
    pub max_keys: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            bucket: Dur::secs(10),
            coarse_bucket: Dur::mins(5),
            fine_span: Dur::hours(6),
            max_window: Dur::days(3),
            lateness: Dur::secs(30),
            max_keys: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WindowError {
    #[error("window config: {0}")]
    Config(&'static str),
    #[error("cannot merge stores with different window configs")]
    ConfigMismatch,
}

/// What [`WindowStore::record`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Counted,
    /// Older than the watermark: dropped.
    Late,
    /// A new key beyond `max_keys`: dropped.
    Overflow,
}

/// A ring of cumulative cells: `slots[b % len]` is the sum of everything up to bucket `b`.
#[derive(Debug, Clone)]
struct Ring<C> {
    slots: Vec<C>,
    /// Newest bucket index.
    head: i64,
    /// Cumulative cell just before the oldest retained bucket.
    base: C,
}

impl<C: Cell> Ring<C> {
    fn new(len: usize, head: i64) -> Self {
        Self {
            slots: vec![C::default(); len],
            head,
            base: C::default(),
        }
    }
    fn len(&self) -> i64 {
        self.slots.len() as i64
    }
    fn idx(&self, b: i64) -> usize {
        b.rem_euclid(self.len()) as usize
    }
    /// Cumulative cell through bucket `b`; older than the ring: `base` (clamped).
    fn cum(&self, b: i64) -> C {
        if b >= self.head {
            self.slots[self.idx(self.head)]
        } else if b <= self.head - self.len() {
            self.base
        } else {
            self.slots[self.idx(b)]
        }
    }
    fn advance(&mut self, to: i64) {
        if to <= self.head {
            return;
        }
        let top = self.slots[self.idx(self.head)];
        if to - self.head >= self.len() {
            self.base = top;
            self.slots.fill(top);
        } else {
            for b in self.head + 1..=to {
                let i = self.idx(b);
                self.base = self.slots[i];
                self.slots[i] = top;
            }
        }
        self.head = to;
    }
    /// Adds `c` to bucket `b`, which must be retained.
    fn add(&mut self, b: i64, c: C) {
        self.advance(b);
        debug_assert!(b > self.head - self.len());
        for x in b..=self.head {
            let i = self.idx(x);
            self.slots[i] = self.slots[i] + c;
        }
    }
    /// Adds everything `o` holds within this ring's retention.
    fn merge(&mut self, o: &Self) {
        self.advance(o.head);
        let from = self.head - self.len();
        let zero = o.cum(from);
        for b in from + 1..=self.head {
            let i = self.idx(b);
            self.slots[i] = self.slots[i] + (o.cum(b) - zero);
        }
    }
}

#[derive(Debug, Clone)]
struct Series<C> {
    fine: Ring<C>,
    coarse: Ring<C>,
}

/// Per-key bucketed cells; see the module doc.
#[derive(Debug, Clone)]
pub struct WindowStore<K, C = Counts> {
    cfg: WindowConfig,
    fine_ms: i64,
    coarse_ms: i64,
    fine_len: usize,
    coarse_len: usize,
    max_ts: Option<i64>,
    series: HashMap<K, Series<C>>,
    late: u64,
    overflow: u64,
}

impl<K: Hash + Eq + Clone, C: Cell> WindowStore<K, C> {
    pub fn new(cfg: WindowConfig) -> Result<Self, WindowError> {
        let f = cfg.bucket.as_millis() as i64;
        let c = cfg.coarse_bucket.as_millis() as i64;
        if f == 0 || c < f || c % f != 0 {
            return Err(WindowError::Config(
                "coarse_bucket must be a positive multiple of bucket",
            ));
        }
        if cfg.fine_span < cfg.coarse_bucket || cfg.max_window < cfg.fine_span {
            return Err(WindowError::Config(
                "need coarse_bucket <= fine_span <= max_window",
            ));
        }
        let late = cfg.lateness.as_millis() as i64;
        // Fine: the fine span, plus a coarse bucket (the tail of a long window), plus lateness.
        let fine_len = ((cfg.fine_span.as_millis() as i64 + c + late) / f + 2) as usize;
        let coarse_len = ((cfg.max_window.as_millis() as i64 + late) / c + 3) as usize;
        Ok(Self {
            fine_ms: f,
            coarse_ms: c,
            fine_len,
            coarse_len,
            cfg,
            max_ts: None,
            series: HashMap::new(),
            late: 0,
            overflow: 0,
        })
    }

    pub fn config(&self) -> &WindowConfig {
        &self.cfg
    }

    /// Largest event time seen minus the lateness; `None` before the first event.
    pub fn watermark(&self) -> Option<i64> {
        self.max_ts
            .map(|m| m - self.cfg.lateness.as_millis() as i64)
    }

    /// Largest event time seen.
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_ts
    }

    /// Moves event time forward without an event (e.g. from a partition's idle heartbeat).
    pub fn advance_to(&mut self, ts_ms: i64) {
        self.max_ts = Some(self.max_ts.map_or(ts_ms, |m| m.max(ts_ms)));
    }

    /// Counts `cell` for `key` at event time `ts_ms`.
    pub fn record(&mut self, key: &K, ts_ms: i64, cell: C) -> Outcome {
        if self.watermark().is_some_and(|w| ts_ms < w) {
            self.late += 1;
            return Outcome::Late;
        }
        if !self.series.contains_key(key) && self.series.len() >= self.cfg.max_keys {
            self.overflow += 1;
            return Outcome::Overflow;
        }
        self.advance_to(ts_ms);
        let (f, c) = (
            ts_ms.div_euclid(self.fine_ms),
            ts_ms.div_euclid(self.coarse_ms),
        );
        let (fl, cl) = (self.fine_len, self.coarse_len);
        let s = self.series.entry(key.clone()).or_insert_with(|| Series {
            fine: Ring::new(fl, f),
            coarse: Ring::new(cl, c),
        });
        s.fine.add(f, cell);
        s.coarse.add(c, cell);
        Outcome::Counted
    }

    /// Events refused as late, and as over the key cap, since creation.
    pub fn dropped(&self) -> (u64, u64) {
        (self.late, self.overflow)
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.series.keys()
    }

    /// The watermark rounded down to a fine bucket: where closed buckets end.
    pub fn closed_end(&self) -> Option<i64> {
        self.watermark()
            .map(|w| w.div_euclid(self.fine_ms) * self.fine_ms)
    }

    /// The span `[start, end)` in ms that [`WindowStore::sum`] covers for a window of `len`
    /// ending at `end_ms` (rounded down to a fine bucket).
    pub fn span(&self, end_ms: i64, len: Dur) -> (i64, i64) {
        let e = end_ms.div_euclid(self.fine_ms);
        let len_ms = (len.as_millis() as i64).min(self.cfg.max_window.as_millis() as i64);
        let n = (len_ms / self.fine_ms).max(1);
        if len_ms <= self.cfg.fine_span.as_millis() as i64 {
            ((e - n) * self.fine_ms, e * self.fine_ms)
        } else {
            let start = ((e - n) * self.fine_ms).div_euclid(self.coarse_ms) * self.coarse_ms;
            (start, e * self.fine_ms)
        }
    }

    /// Sum of `key`'s cells over the window of `len` ending at `end_ms` (see [`Self::span`]).
    /// Windows longer than `max_window` are clamped to it.
    pub fn sum(&self, key: &K, end_ms: i64, len: Dur) -> C {
        let Some(s) = self.series.get(key) else {
            return C::default();
        };
        let (start, end) = self.span(end_ms, len);
        let (e, k) = (end / self.fine_ms, self.coarse_ms / self.fine_ms);
        if end - start <= self.cfg.fine_span.as_millis() as i64 {
            let from = start / self.fine_ms;
            return s.fine.cum(e - 1) - s.fine.cum(from - 1);
        }
        // Coarse buckets [start, split) and fine buckets [split, end).
        let split_c = end.div_euclid(self.coarse_ms);
        let start_c = start.div_euclid(self.coarse_ms);
        let head = s.coarse.cum(split_c - 1) - s.coarse.cum(start_c - 1);
        let tail = s.fine.cum(e - 1) - s.fine.cum(split_c * k - 1);
        head + tail
    }

    /// Sum over the window of `len` ending at the watermark (closed buckets only: final).
    pub fn sum_closed(&self, key: &K, len: Dur) -> C {
        self.closed_end()
            .map_or_else(C::default, |e| self.sum(key, e, len))
    }

    /// Drops keys with nothing inside the longest window any more.
    pub fn evict_idle(&mut self) -> usize {
        let Some(max) = self.max_ts else { return 0 };
        let horizon =
            (max - self.cfg.max_window.as_millis() as i64 - self.cfg.lateness.as_millis() as i64)
                .div_euclid(self.coarse_ms);
        let before = self.series.len();
        self.series.retain(|_, s| s.coarse.head >= horizon);
        before - self.series.len()
    }

    /// Adds another instance's partial aggregates (same config) into this one.
    pub fn merge(&mut self, other: &Self) -> Result<(), WindowError> {
        if self.cfg != other.cfg {
            return Err(WindowError::ConfigMismatch);
        }
        if let Some(t) = other.max_ts {
            self.advance_to(t);
        }
        for (k, o) in &other.series {
            let room = self.series.len() < self.cfg.max_keys;
            match self.series.get_mut(k) {
                Some(s) => {
                    s.fine.merge(&o.fine);
                    s.coarse.merge(&o.coarse);
                }
                None if room => {
                    self.series.insert(k.clone(), o.clone());
                }
                None => self.overflow += 1,
            }
        }
        self.late += other.late;
        Ok(())
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
