//! The collector's request error: an [`ErrorCode`] plus a message safe to show the client.

use flywheel_bus::PublishError;
use flywheel_core::ErrorCode;

/// A refused request. `message` names what was wrong and never leaks internals.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct IngestError {
    pub code: ErrorCode,
    pub message: String,
}

impl IngestError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<PublishError> for IngestError {
    fn from(e: PublishError) -> Self {
        let code = match e {
            PublishError::Unavailable(_) => ErrorCode::Unavailable,
            PublishError::QueueFull => ErrorCode::QueueFull,
            PublishError::ShuttingDown => ErrorCode::ShuttingDown,
            // A record the broker refuses permanently is our configuration problem (we split
            // messages below kafka.max_message_bytes), not the client's.
            PublishError::Rejected(_) => ErrorCode::Internal,
        };
        let message = match code {
            ErrorCode::Internal => "the data could not be stored; see collector logs".to_string(),
            _ => format!("{e}; nothing from this request was acknowledged, retry later"),
        };
        Self { code, message }
    }
}
