//! Per-partition batches and the pending-range marker that makes retried inserts idempotent.
//!
//! A batch covers a contiguous offset range `[first, last]` of one partition. Before inserting
//! it, the ingester commits the partition's current offset (`first`) with the Kafka commit
//! metadata `flywheel:pending:<first>-<last>`; the insert carries the deduplication token
//! `<topic>:<partition>:<first>-<last>`; afterwards it commits `last + 1`. Whoever consumes the
//! partition next (this process after a crash, or another instance after a rebalance) reads the
//! marker and rebuilds exactly the same range, so a retried insert has the same token and
//! ClickHouse drops it as a duplicate. See adr/0004-ingester-exactly-once.md.

use std::time::Instant;

use flywheel_schema::rows::{LlmCallRow, OtelTraceRow};

const PENDING_PREFIX: &str = "flywheel:pending:";

/// Commit metadata announcing an insert of `[first, last]`.
pub fn pending_marker(first: i64, last: i64) -> String {
    format!("{PENDING_PREFIX}{first}-{last}")
}

/// Parses commit metadata written by [`pending_marker`].
pub fn parse_pending(metadata: &str) -> Option<(i64, i64)> {
    let (first, last) = metadata.strip_prefix(PENDING_PREFIX)?.split_once('-')?;
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last && first >= 0).then_some((first, last))
}

/// The ClickHouse `insert_deduplication_token` of a batch.
pub fn dedup_token(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}:{partition}:{first}-{last}")
}

/// Rows of one partition's offset range, not yet inserted.
#[derive(Debug)]
pub struct Batch {
    pub first: i64,
    pub last: i64,
    pub traces: Vec<OtelTraceRow>,
    pub calls: Vec<LlmCallRow>,
    /// Collector receipt times (ns) of the batch's messages, for the latency histogram.
    pub received_at_ns: Vec<u64>,
    pub opened: Instant,
}

impl Batch {
    pub fn new(offset: i64) -> Self {
        Self {
            first: offset,
            last: offset,
            traces: Vec::new(),
            calls: Vec::new(),
            received_at_ns: Vec::new(),
            opened: Instant::now(),
        }
    }
}

/// What the ingester knows about one assigned partition.
#[derive(Debug, Default)]
pub struct Partition {
    pub batch: Option<Batch>,
    /// Set when the committed metadata announced a pending range: the first batch must end
    /// exactly at this offset.
    pub replay_until: Option<i64>,
}

impl Partition {
    /// Adds a message at `offset`; returns true when the batch must be flushed now because it
    /// reached the end of a range being replayed.
    pub fn push(&mut self, offset: i64) -> (&mut Batch, bool) {
        if let Some(end) = self.replay_until {
            if offset > end {
                // The pending range was already passed (e.g. the messages expired): forget it.
                self.replay_until = None;
            }
        }
        let batch = self.batch.get_or_insert_with(|| Batch::new(offset));
        batch.last = offset;
        let replay_done = self.replay_until == Some(offset);
        (batch, replay_done)
    }

    /// Whether the open batch may be flushed by size or age (never in the middle of a replay).
    pub fn flushable(&self, max_rows: usize, max_age: std::time::Duration) -> bool {
        match (&self.batch, self.replay_until) {
            (Some(b), None) => b.traces.len() >= max_rows || b.opened.elapsed() >= max_age,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn marker_round_trip_and_rejects() {
        assert_eq!(parse_pending(&pending_marker(10, 99)), Some((10, 99)));
        assert_eq!(parse_pending(""), None);
        assert_eq!(parse_pending("flywheel:pending:9-3"), None);
        assert_eq!(parse_pending("flywheel:pending:x-3"), None);
        assert_eq!(parse_pending("other"), None);
        assert_eq!(dedup_token("t", 2, 10, 99), "t:2:10-99");
    }

    #[test]
    fn replay_ends_exactly_at_the_pending_offset() {
        let mut p = Partition {
            batch: None,
            replay_until: Some(12),
        };
        assert!(!p.push(10).1);
        assert!(
            !p.flushable(1, Duration::ZERO),
            "no size or age flush during replay"
        );
        assert!(!p.push(11).1);
        let (batch, done) = p.push(12);
        assert!(done);
        assert_eq!((batch.first, batch.last), (10, 12));
    }

    #[test]
    fn passed_replay_is_forgotten() {
        let mut p = Partition {
            batch: None,
            replay_until: Some(5),
        };
        assert!(!p.push(8).1);
        assert_eq!(p.replay_until, None);
        assert!(p.flushable(1_000, Duration::ZERO));
    }
}
