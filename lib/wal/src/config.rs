//! Where the log lives and how it rolls, batches and forgets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::format::MAX_BODY_LEN;
use crate::WalError;

/// Configuration of a [`crate::Wal`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// Directory holding topics and consumer-group offsets (created if missing).
    pub dir: PathBuf,
    /// Partitions of a topic created on first publish (existing topics keep theirs).
    pub default_partitions: i32,
    /// Partitions of specific topics when they are created, overriding `default_partitions`.
    pub topic_partitions: BTreeMap<String, i32>,
    /// A partition's active segment is sealed and a new one started past this size.
    pub segment_bytes: u64,
    /// Largest encoded record accepted; larger ones are rejected (`PublishError::Rejected`).
    pub max_record_bytes: usize,
    /// `publish` calls waiting for the writer; past it `publish` fails with `QueueFull`.
    pub queue_capacity: usize,
    /// Bytes (keys and payloads) waiting for the writer; past it `publish` fails with `QueueFull`.
    pub queue_max_bytes: usize,
    /// The writer stops gathering a group commit at this many bytes.
    pub max_batch_bytes: usize,
    /// Sealed segments whose last write is older than this may be deleted (0: no age limit).
    pub retention_secs: u64,
    /// Oldest sealed segments may be deleted while a partition is larger than this (0: no limit).
    pub retention_bytes: u64,
    /// How often the writer applies retention while running.
    pub retention_check_secs: u64,
    /// Appends are refused (`Unavailable`: the collector answers 503 with Retry-After) while the
    /// file system of `dir` has less free space than this, and accepted again once the
    /// ingester has caught up and retention has freed segments; the log is never written to a
    /// full disk (a failed write stops it until reopened). 0: no check.
    pub min_free_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./flywheel-data/wal"),
            default_partitions: 3,
            topic_partitions: BTreeMap::new(),
            segment_bytes: 64 * 1024 * 1024,
            max_record_bytes: 8 * 1024 * 1024,
            queue_capacity: 4096,
            queue_max_bytes: 256 * 1024 * 1024,
            max_batch_bytes: 8 * 1024 * 1024,
            retention_secs: 7 * 24 * 3600,
            retention_bytes: 0,
            retention_check_secs: 60,
            min_free_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl WalConfig {
    /// A default configuration rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// Fails fast on values the log cannot work with.
    pub fn validate(&self) -> Result<(), WalError> {
        let invalid = |field: &'static str, reason: &'static str| {
            Err(WalError::InvalidConfig { field, reason })
        };
        if self.default_partitions < 1 {
            return invalid("default_partitions", "must be at least 1");
        }
        if self.topic_partitions.values().any(|p| *p < 1) {
            return invalid("topic_partitions", "must be at least 1");
        }
        if self.segment_bytes < 4096 {
            return invalid("segment_bytes", "must be at least 4096");
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > MAX_BODY_LEN {
            return invalid("max_record_bytes", "must be between 1 and 64 MiB");
        }
        if self.queue_capacity == 0 || self.queue_max_bytes == 0 || self.max_batch_bytes == 0 {
            return invalid("queue_capacity", "queue and batch bounds must be positive");
        }
        if self.retention_check_secs == 0 {
            return invalid("retention_check_secs", "must be at least 1");
        }
        Ok(())
    }
}
