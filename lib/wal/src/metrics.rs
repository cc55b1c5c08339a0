//! Every metric the wal exports, by name, in one place.

use prometheus::{exponential_buckets, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

pub const RECORDS_APPENDED: &str = "flywheel_wal_records_appended_total";
pub const BYTES_APPENDED: &str = "flywheel_wal_bytes_appended_total";
pub const FSYNCS: &str = "flywheel_wal_fsyncs_total";
pub const GROUP_COMMITS: &str = "flywheel_wal_group_commits_total";
pub const GROUP_COMMIT_RECORDS: &str = "flywheel_wal_group_commit_records";
pub const QUEUE_FULL: &str = "flywheel_wal_queue_full_total";
pub const QUEUE_DEPTH: &str = "flywheel_wal_queue_depth";
pub const TRUNCATED_BYTES: &str = "flywheel_wal_recovery_truncated_bytes_total";
pub const SEGMENTS_DELETED: &str = "flywheel_wal_segments_deleted_total";
pub const DISK_FULL: &str = "flywheel_wal_disk_full_refusals_total";

/// The wal's metric handles. Created unregistered by [`crate::Wal::open`]; register them with
/// [`Metrics::register`].
#[derive(Clone)]
pub struct Metrics {
    /// Records acknowledged (fsynced).
    pub records_appended: IntCounter,
    /// Frame bytes acknowledged (fsynced).
    pub bytes_appended: IntCounter,
    /// `fdatasync` calls on segment files.
    pub fsyncs: IntCounter,
    /// Group commits (one write + fsync round covering many `publish` calls).
    pub group_commits: IntCounter,
    /// Records per group commit.
    pub group_commit_records: Histogram,
    /// `publish` calls refused because the queue was full.
    pub queue_full: IntCounter,
    /// Records handed to the writer and not yet acknowledged.
    pub queue_depth: IntGauge,
    /// Bytes removed from corrupt or torn tails on open.
    pub truncated_bytes: IntCounter,
    /// Segments deleted by retention.
    pub segments_deleted: IntCounter,
    /// `publish` calls refused because the disk had less than `min_free_bytes` free.
    pub disk_full: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric())
        };
        let buckets = exponential_buckets(1.0, 2.0, 14).unwrap_or_default(); // 1 .. 8192
        Self {
            records_appended: counter(RECORDS_APPENDED, "Records appended and fsynced."),
            bytes_appended: counter(BYTES_APPENDED, "Frame bytes appended and fsynced."),
            fsyncs: counter(FSYNCS, "fdatasync calls on wal segment files."),
            group_commits: counter(GROUP_COMMITS, "Group commits (one write and fsync round)."),
            group_commit_records: Histogram::with_opts(
                HistogramOpts::new(GROUP_COMMIT_RECORDS, "Records per group commit.")
                    .buckets(buckets),
            )
            .unwrap_or_else(|_| unreachable_metric()),
            queue_full: counter(
                QUEUE_FULL,
                "Publish calls refused because the queue was full.",
            ),
            queue_depth: IntGauge::new(
                QUEUE_DEPTH,
                "Records handed to the wal writer and not yet acknowledged.",
            )
            .unwrap_or_else(|_| unreachable_metric()),
            truncated_bytes: counter(
                TRUNCATED_BYTES,
                "Bytes removed from corrupt or torn segment tails on open.",
            ),
            segments_deleted: counter(SEGMENTS_DELETED, "Segments deleted by retention."),
            disk_full: counter(
                DISK_FULL,
                "Publish calls refused because the disk had less than min_free_bytes free.",
            ),
        }
    }

    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.records_appended.clone()))?;
        registry.register(Box::new(self.bytes_appended.clone()))?;
        registry.register(Box::new(self.fsyncs.clone()))?;
        registry.register(Box::new(self.group_commits.clone()))?;
        registry.register(Box::new(self.group_commit_records.clone()))?;
        registry.register(Box::new(self.queue_full.clone()))?;
        registry.register(Box::new(self.queue_depth.clone()))?;
        registry.register(Box::new(self.truncated_bytes.clone()))?;
        registry.register(Box::new(self.segments_deleted.clone()))?;
        registry.register(Box::new(self.disk_full.clone()))?;
        Ok(())
    }
}

/// Metric construction only fails on invalid names or help texts, which are constants here.
fn unreachable_metric() -> ! {
    unreachable!("metric names and help texts above are valid")
}
