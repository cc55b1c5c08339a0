//! Per-partition batches and the batch marker that makes retried inserts idempotent.
//!
//! A batch covers a contiguous offset range `[first, last]` of one partition. Before inserting
//! it, the ingester records the range in ClickHouse (`ingest_batches`); the insert carries the
//! deduplication token `<topic>:<partition>:<first>-<last>`; afterwards it commits `last + 1` to
//! Kafka. Whoever consumes the partition next (this process after a crash, or another instance
//! after a rebalance) finds the committed offset equal to the marker's `first` and rebuilds
//! exactly the same range, so a retried insert has the same token and ClickHouse drops it as a
//! duplicate. See adr/0004-ingester-exactly-once.md.

use std::time::Instant;

use crate::map::Rows;

/// The ClickHouse `insert_deduplication_token` of a batch.
pub fn dedup_token(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}:{partition}:{first}-{last}")
}

/// Rows of one partition's offset range, not yet inserted.
#[derive(Debug)]
pub struct Batch {
    pub first: i64,
    pub last: i64,
    pub rows: Rows,
    /// Collector receipt times (ns) of the batch's messages, for the latency histogram.
    pub received_at_ns: Vec<u64>,
    /// Bytes of the Kafka messages in the batch (a proxy for its memory).
    pub bytes: usize,
    pub opened: Instant,
}

impl Batch {
    pub fn new(offset: i64) -> Self {
        Self {
            first: offset,
            last: offset,
            rows: Rows::default(),
            received_at_ns: Vec::new(),
            bytes: 0,
            opened: Instant::now(),
        }
    }
}

/// When a batch is full.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_age: std::time::Duration,
}

/// What the ingester knows about one assigned partition.
#[derive(Debug, Default)]
pub struct Partition {
    pub batch: Option<Batch>,
    /// Set when a batch marker starts at the committed offset: the first batch must end
    /// exactly at this offset.
    pub replay_until: Option<i64>,
    /// The committed offset when the partition was opened: anything below it is already
    /// stored and is skipped, even if the consumer's fetch position started earlier (seen
    /// with tansu after a rebalance that followed a crash).
    pub committed: i64,
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
    pub fn flushable(&self, limits: &Limits) -> bool {
        match (&self.batch, self.replay_until) {
            (Some(b), None) => {
                b.rows.items() >= limits.max_rows
                    || b.bytes >= limits.max_bytes
                    || b.opened.elapsed() >= limits.max_age
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn token_names_the_range() {
        assert_eq!(dedup_token("t", 2, 10, 99), "t:2:10-99");
    }

    #[test]
    fn replay_ends_exactly_at_the_pending_offset() {
        let mut p = Partition {
            replay_until: Some(12),
            ..Partition::default()
        };
        assert!(!p.push(10).1);
        assert!(
            !p.flushable(&Limits {
                max_rows: 1,
                max_bytes: 1,
                max_age: Duration::ZERO
            }),
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
            replay_until: Some(5),
            ..Partition::default()
        };
        assert!(!p.push(8).1);
        assert_eq!(p.replay_until, None);
        assert!(p.flushable(&Limits {
            max_rows: 1_000,
            max_bytes: 1 << 30,
            max_age: Duration::ZERO
        }));
    }
}
