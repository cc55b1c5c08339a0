//! Reading the wal back: [`Subscription`] (a consumer group's position over some topics, with
//! durable commits) and [`Message`].
//!
//! One subscription per group at a time: the wal serves one process, and a group's offsets are
//! its own (no rebalancing). Reads do small, bounded file reads on the calling task (mostly
//! served from the page cache); waiting for new records does not poll, it awaits the writer's
//! notification.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::segment::Cursor;
use crate::{Shared, WalError};

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    /// The headers of the `publish` call that stored this record, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
    /// Append time (the writer's clock), milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Message {
    /// Value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A consumer group's view of some topics: every partition of each, read in offset order per
/// partition, round-robin across partitions. Starts from the group's committed offsets (or the
/// log start), picks up subscribed topics created later, and stores commits durably.
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    group: String,
    topics: Vec<String>,
    cursors: Vec<Cursor>,
    topics_seen: u64,
    next_cursor: usize,
    appended: watch::Receiver<u64>,
}

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, group: String, topics: Vec<String>) -> Self {
        let appended = shared.appended.subscribe();
        let mut s = Self {
            shared,
            group,
            topics,
            cursors: Vec::new(),
            topics_seen: u64::MAX,
            next_cursor: 0,
            appended,
        };
        s.refresh_topics();
        s
    }

    /// Adds cursors for subscribed topics that exist now and had none.
    fn refresh_topics(&mut self) {
        let generation = self.shared.topics_generation.load(Ordering::SeqCst);
        if generation == self.topics_seen {
            return;
        }
        self.topics_seen = generation;
        for name in &self.topics {
            if self.cursors.iter().any(|c| &c.partition.topic == name) {
                continue;
            }
            let Some(topic) = self.shared.topic(name) else {
                continue;
            };
            for partition in &topic.partitions {
                let start = self
                    .shared
                    .groups()
                    .committed(&self.group, name, partition.id)
                    .unwrap_or_else(|| partition.bounds().0);
                self.cursors.push(Cursor::new(partition.clone(), start));
            }
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The partitions read so far, as `(topic, partition)`.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.cursors
            .iter()
            .map(|c| (c.partition.topic.clone(), c.partition.id))
            .collect()
    }

    /// Offset of the next record this subscription returns from a partition.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.cursor(topic, partition).map(|c| c.next_offset)
    }

    fn cursor(&self, topic: &str, partition: i32) -> Option<&Cursor> {
        self.cursors
            .iter()
            .find(|c| c.partition.topic == topic && c.partition.id == partition)
    }

    /// Reads from `offset` next in a partition (replay). An offset before the log start reads
    /// from the log start. Frames do not resynchronise inside a segment, so reading past a
    /// corrupt record ([`WalError::Corrupt`]) resumes at the next segment's base offset (its
    /// file name).
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), WalError> {
        self.refresh_topics();
        let cursor = self
            .cursors
            .iter_mut()
            .find(|c| c.partition.topic == topic && c.partition.id == partition)
            .ok_or_else(|| WalError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })?;
        cursor.seek(offset.max(0));
        Ok(())
    }

    /// Up to `max` records available now, without waiting.
    pub fn try_poll(&mut self, max: usize) -> Result<Vec<Message>, WalError> {
        self.refresh_topics();
        let mut out = Vec::new();
        let n = self.cursors.len();
        let mut records = Vec::new();
        for i in 0..n {
            if out.len() >= max {
                break;
            }
            let index = (self.next_cursor + i) % n;
            let cursor = &mut self.cursors[index];
            records.clear();
            if let Err(e) = cursor.read(max - out.len(), &mut records) {
                // Return what was read; the failing cursor reports again on the next poll.
                if out.is_empty() {
                    return Err(e);
                }
                break;
            }
            let (topic, partition) = (&cursor.partition.topic, cursor.partition.id);
            out.extend(records.drain(..).map(|r| Message {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                key: r.key,
                headers: r.headers,
                payload: r.payload,
                timestamp_ms: r.timestamp_ms,
            }));
        }
        if n > 0 {
            self.next_cursor = (self.next_cursor + 1) % n;
        }
        Ok(out)
    }

    /// Up to `max` records, waiting up to `timeout` for the first one. Empty on timeout.
    pub async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Message>, WalError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Mark the current generation seen before reading, so that an append after the read
            // wakes the wait below.
            self.appended.borrow_and_update();
            let out = self.try_poll(max.max(1))?;
            if !out.is_empty() {
                return Ok(out);
            }
            match tokio::time::timeout_at(deadline, self.appended.changed()).await {
                Ok(Ok(())) => continue,
                // Timed out, or the wal is gone (cannot happen while `shared` lives).
                Ok(Err(_)) | Err(_) => return Ok(Vec::new()),
            }
        }
    }

    /// The next record, waiting as long as it takes.
    pub async fn next(&mut self) -> Result<Message, WalError> {
        loop {
            self.appended.borrow_and_update();
            if let Some(m) = self.try_poll(1)?.pop() {
                return Ok(m);
            }
            if self.appended.changed().await.is_err() {
                // The sender lives in `shared`, which this subscription holds: unreachable, but
                // never spin.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The group's committed offset for a partition.
    pub fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        self.shared
            .groups()
            .committed(&self.group, topic, partition)
    }

    /// Durably records that the group has consumed a partition up to `next_offset` (exclusive):
    /// a subscription of this group opened later starts there. Runs the file writes and fsyncs
    /// on the blocking pool.
    pub async fn commit(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), WalError> {
        let (shared, group) = (self.shared.clone(), self.group.clone());
        let commit = vec![(topic.to_string(), partition, next_offset)];
        tokio::task::spawn_blocking(move || shared.commit(&group, &commit))
            .await
            .map_err(|e| WalError::Failed(format!("commit task failed: {e}")))?
    }

    /// [`Self::commit`] for several partitions at once (one file write), on the blocking pool.
    pub async fn commit_all(&self, commits: Vec<(String, i32, i64)>) -> Result<(), WalError> {
        if commits.is_empty() {
            return Ok(());
        }
        let (shared, group) = (self.shared.clone(), self.group.clone());
        tokio::task::spawn_blocking(move || shared.commit(&group, &commits))
            .await
            .map_err(|e| WalError::Failed(format!("commit task failed: {e}")))?
    }

    /// Records behind each partition's end, from this subscription's read position, as
    /// `(topic, partition, lag)`.
    pub fn lag(&self) -> Vec<(String, i32, i64)> {
        self.cursors
            .iter()
            .map(|c| {
                let end = c.partition.bounds().1;
                (
                    c.partition.topic.clone(),
                    c.partition.id,
                    (end - c.next_offset).max(0),
                )
            })
            .collect()
    }

    /// [`Self::commit`] for several partitions at once (one file write), blocking the thread.
    pub fn commit_blocking(&self, commits: &[(String, i32, i64)]) -> Result<(), WalError> {
        self.shared.commit(&self.group, commits)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared
            .active_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.group);
    }
}
