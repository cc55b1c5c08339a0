//! Errors of the log.

use std::path::PathBuf;

use crate::format::DecodeError;

/// What went wrong opening, reading or committing.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("invalid wal config `{field}`: {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record in the middle of the log (not a torn tail, which is truncated on open) is bad.
    #[error("corrupt record in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: DecodeError,
    },
    /// The directory holds something the log did not write (a bad name, a bad metadata file).
    #[error("unexpected content in {path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    #[error("topic `{topic}` has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("invalid topic or group name `{0}` (use 1 to 200 of [A-Za-z0-9._-], not `.` or `..`)")]
    InvalidName(String),
    /// Only one subscription per consumer group at a time (one process, one consumer).
    #[error("consumer group `{0}` already has a subscription")]
    GroupBusy(String),
    /// A write or fsync failed earlier: the log refuses further appends until reopened.
    #[error("the wal failed and must be reopened: {0}")]
    Failed(String),
}

impl WalError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { path, source }
    }
}

/// Topic and group names become file names: keep them to a safe alphabet.
pub(crate) fn check_name(name: &str) -> Result<(), WalError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(WalError::InvalidName(name.to_string()))
    }
}
