//! Event-time bucketed counters per key, with a watermark, bounded lateness and bounded memory.
//!
//! - Events carry their own time (ms since the Unix epoch). The store's **watermark** is the
//!   largest event time seen minus the allowed lateness; an event older than the watermark is
//!   refused as [`Outcome::Late`] (the caller counts it in a metric). Buckets that end before the
//!   watermark are closed: nothing can change them any more, so a sum that ends at the watermark
//!   is final and the same on every replay.
//! - Several resolutions (tiers) per key: by default 10 s buckets for windows up to 6 h, 5 min
//!   buckets up to 3 d, 1 h buckets up to 35 d (the SLO period, for the budget left). A window
//!   is summed from the finest tier that reaches back far enough, plus the finer tiers for its
//!   tail, so its end is as sharp as a short window's and only its start is rounded (down) to
//!   the coarser bucket. That costs about 3,800 cells per key instead of 300,000 at 10 s.
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

/// One resolution: buckets of `bucket`, serving windows (or the older part of windows) up to
/// `span`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tier {
    pub bucket: Dur,
    pub span: Dur,
}

impl Tier {
    pub const fn new(bucket: Dur, span: Dur) -> Self {
        Self { bucket, span }
    }
}

/// Tiers, lateness and the key cap of a [`WindowStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    /// From finest to coarsest; each bucket a multiple of the previous one, each span longer.
    /// The last span is the longest window (longer ones are clamped to it).
    pub tiers: Vec<Tier>,
    /// How far behind the newest event an event may be and still count.
    pub lateness: Dur,
    /// Most keys held at once.
    pub max_keys: usize,
}

impl WindowConfig {
    pub fn max_window(&self) -> Dur {
        self.tiers.last().map(|t| t.span).unwrap_or_default()
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            tiers: vec![
                Tier::new(Dur::secs(1), Dur::mins(10)),
                Tier::new(Dur::secs(10), Dur::hours(6)),
                Tier::new(Dur::mins(5), Dur::days(3)),
                Tier::new(Dur::hours(1), Dur::days(35)),
            ],
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
    /// Adds `c` to bucket `b`. A bucket older than the ring only moves `base` (and every
    /// retained cumulative cell): sums over retained buckets stay exact.
    fn add(&mut self, b: i64, c: C) {
        self.advance(b);
        let oldest = self.head - self.len() + 1;
        if b < oldest {
            self.base = self.base + c;
        }
        for x in b.max(oldest)..=self.head {
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

/// Per-key bucketed cells; see the module doc.
#[derive(Debug, Clone)]
pub struct WindowStore<K, C = Counts> {
    cfg: WindowConfig,
    /// Bucket width (ms) and ring length of each tier.
    res: Vec<(i64, usize)>,
    max_ts: Option<i64>,
    series: HashMap<K, Vec<Ring<C>>>,
    late: u64,
    overflow: u64,
}

impl<K: Hash + Eq + Clone, C: Cell> WindowStore<K, C> {
    pub fn new(cfg: WindowConfig) -> Result<Self, WindowError> {
        let ms = |d: Dur| d.as_millis() as i64;
        let late = ms(cfg.lateness);
        let t = &cfg.tiers;
        if t.is_empty() || ms(t[0].bucket) == 0 {
            return Err(WindowError::Config(
                "needs at least one tier with a positive bucket",
            ));
        }
        for w in t.windows(2) {
            let (a, b) = (ms(w[0].bucket), ms(w[1].bucket));
            if b <= a || b % a != 0 || w[1].span <= w[0].span || w[0].span < w[1].bucket {
                return Err(WindowError::Config(
                    "each tier's bucket must be a multiple of the previous one, its span longer, \
                     and each span at least the next tier's bucket",
                ));
            }
        }
        let res = t
            .iter()
            .enumerate()
            .map(|(i, tier)| {
                let r = ms(tier.bucket);
                // The span, the tail up to the next tier's boundary, the lateness, slack.
                let next = t.get(i + 1).map_or(r, |n| ms(n.bucket));
                (r, ((ms(tier.span) + next + late) / r + 3) as usize)
            })
            .collect();
        Ok(Self {
            res,
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

    /// Cells held per key (the sum of the ring lengths).
    pub fn cells_per_key(&self) -> usize {
        self.res.iter().map(|r| r.1).sum()
    }

    /// Changes the allowed lateness (e.g. wide while replaying a topic whose partitions arrive
    /// interleaved, then back), at most the longest window. An event older than a tier's ring
    /// still counts in every window that covers it (see `Ring::add`); only windows *ending*
    /// before a ring's retention would be wrong, so evaluate at [`Self::open_end`] or a closed
    /// end within the finest tier's span.
    pub fn set_lateness(&mut self, lateness: Dur) {
        self.cfg.lateness = Dur(lateness.0.min(self.cfg.max_window().0));
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
        let res = &self.res;
        let rings = self.series.entry(key.clone()).or_insert_with(|| {
            res.iter()
                .map(|&(r, len)| Ring::new(len, ts_ms.div_euclid(r)))
                .collect()
        });
        for (ring, &(r, _)) in rings.iter_mut().zip(res) {
            ring.add(ts_ms.div_euclid(r), cell);
        }
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

    /// The end of the finest bucket holding the newest event: windows ending here include
    /// every event seen so far (the newest bucket may still grow, and late events may still
    /// land in earlier ones).
    pub fn open_end(&self) -> Option<i64> {
        let f = self.res[0].0;
        self.max_ts.map(|m| (m.div_euclid(f) + 1) * f)
    }

    /// The watermark rounded down to a finest bucket: where closed buckets end.
    pub fn closed_end(&self) -> Option<i64> {
        let f = self.res[0].0;
        self.watermark().map(|w| w.div_euclid(f) * f)
    }

    /// How a window of `len` ending at `end_ms` is summed: its start and `(tier, first
    /// bucket, last bucket + 1)` pieces, from the end backwards.
    fn plan(&self, end_ms: i64, len: Dur) -> (i64, Vec<(usize, i64, i64)>) {
        let f = self.res[0].0;
        let end = end_ms.div_euclid(f) * f;
        let len_ms = (len.as_millis() as i64).min(self.cfg.max_window().as_millis() as i64);
        let start = end - (len_ms / f).max(1) * f;
        let mut pieces = Vec::new();
        let mut cur = end;
        for (i, tier) in self.cfg.tiers.iter().enumerate() {
            let r = self.res[i].0;
            let last = i + 1 == self.res.len();
            if last || start >= cur - tier.span.as_millis() as i64 {
                let from = start.div_euclid(r) * r;
                pieces.push((i, from / r, cur / r));
                return (from, pieces);
            }
            // The tail [boundary of the next tier, cur) from this tier.
            let next = self.res[i + 1].0;
            let b = cur.div_euclid(next) * next;
            pieces.push((i, b / r, cur / r));
            cur = b;
        }
        (start, pieces)
    }

    /// The span `[start, end)` in ms that [`WindowStore::sum`] covers for a window of `len`
    /// ending at `end_ms`: the end rounded down to a finest bucket, the start rounded down to
    /// the bucket of the tier that reaches it.
    pub fn span(&self, end_ms: i64, len: Dur) -> (i64, i64) {
        let f = self.res[0].0;
        (self.plan(end_ms, len).0, end_ms.div_euclid(f) * f)
    }

    /// Sum of `key`'s cells over the window of `len` ending at `end_ms` (see [`Self::span`]).
    /// Windows longer than the last tier's span are clamped to it.
    pub fn sum(&self, key: &K, end_ms: i64, len: Dur) -> C {
        let Some(rings) = self.series.get(key) else {
            return C::default();
        };
        self.plan(end_ms, len)
            .1
            .into_iter()
            .fold(C::default(), |acc, (i, from, to)| {
                acc + (rings[i].cum(to - 1) - rings[i].cum(from - 1))
            })
    }

    /// Sum over the window of `len` ending at the watermark (closed buckets only: final).
    pub fn sum_closed(&self, key: &K, len: Dur) -> C {
        self.closed_end()
            .map_or_else(C::default, |e| self.sum(key, e, len))
    }

    /// Drops keys with nothing inside the longest window any more.
    pub fn evict_idle(&mut self) -> usize {
        let Some(max) = self.max_ts else { return 0 };
        let (r, _) = *self.res.last().expect("at least one tier");
        let horizon =
            (max - self.cfg.max_window().as_millis() as i64 - self.cfg.lateness.as_millis() as i64)
                .div_euclid(r);
        let before = self.series.len();
        self.series
            .retain(|_, rings| rings.last().is_some_and(|l| l.head >= horizon));
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
                Some(mine) => {
                    for (a, b) in mine.iter_mut().zip(o) {
                        a.merge(b);
                    }
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
