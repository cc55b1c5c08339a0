//! Retention: whole sealed segments are deleted, oldest first, once every known consumer group
//! has committed past them and they are older than `retention_secs` (by the file's last write)
//! or the partition is larger than `retention_bytes`. The active segment is never deleted.
//! With no group known at all, age and size alone decide. Under disk pressure (less free space
//! than `min_free_bytes`) every segment all groups have consumed goes, however young, and
//! nothing goes while no group is known (nothing is known to be consumed).

use std::time::{Duration, SystemTime};

use crate::{Shared, WalError};

/// What one retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

pub(crate) fn enforce(shared: &Shared, pressure: bool) -> Result<RetentionReport, WalError> {
    let _one_at_a_time = shared
        .retention_lock
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let config = &shared.config;
    let mut report = RetentionReport::default();
    if config.retention_secs == 0 && config.retention_bytes == 0 && !pressure {
        return Ok(report);
    }
    let max_age = Duration::from_secs(config.retention_secs);
    let now = SystemTime::now();
    for partition in shared.all_partitions() {
        let consumed = match shared
            .groups()
            .min_committed(&partition.topic, partition.id)
        {
            Some(offset) => offset,
            None if pressure => i64::MIN,
            None => i64::MAX,
        };
        loop {
            // Decide on the oldest segment under the lock, delete the file outside it.
            let victim = {
                let mut view = partition.view();
                if view.segments.len() < 2 {
                    break;
                }
                let (oldest, next) = (view.segments[0], view.segments[1]);
                if next.base > consumed {
                    break;
                }
                let total: u64 = view.segments.iter().map(|s| s.len).sum();
                let too_big = config.retention_bytes > 0 && total > config.retention_bytes;
                let path = partition.path(oldest.base);
                let too_old = config.retention_secs > 0
                    && std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| now.duration_since(t).ok())
                        .is_some_and(|age| age > max_age);
                if !(too_big || too_old || pressure) {
                    break;
                }
                view.segments.remove(0);
                (path, oldest.len)
            };
            std::fs::remove_file(&victim.0).map_err(WalError::io(&victim.0))?;
            tracing::info!(path = %victim.0.display(), "wal segment deleted by retention");
            shared.metrics.segments_deleted.inc();
            report.segments_deleted += 1;
            report.bytes_deleted += victim.1;
        }
        if report.segments_deleted > 0 {
            crate::segment::sync_dir(&partition.dir)?;
        }
    }
    Ok(report)
}
