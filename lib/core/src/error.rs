//! One error code, two transports.
//!
//! Every rejection the services make is classified once as an [`ErrorCode`]; the HTTP status,
//! the gRPC status code, whether the client may retry and the metric `reason` label all derive
//! from it, so the OTLP/HTTP and OTLP/gRPC receivers can never disagree.

/// Why a request (or part of it) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The body could not be decoded (bad protobuf, bad JSON, truncated or invalid gzip).
    Malformed,
    /// An individual item (span, feedback item) is invalid; the rest of the request is kept.
    InvalidItem,
    /// The body is larger than the configured limit, measured after decompression.
    TooLarge,
    /// The `Content-Type` is not one the endpoint accepts.
    UnsupportedMediaType,
    /// The `Content-Encoding` is not one the endpoint accepts.
    UnsupportedEncoding,
    /// Authentication is required and the key is missing or unknown.
    Unauthenticated,
    /// The key is valid but may not do this.
    PermissionDenied,
    /// The configured in-flight byte budget is used up: back off and retry.
    InFlightLimit,
    /// The producer's local queue is full: back off and retry.
    QueueFull,
    /// The broker is unreachable or did not confirm delivery in time: retry later.
    Unavailable,
    /// The service is shutting down.
    ShuttingDown,
    /// A bug or an unexpected failure on our side.
    Internal,
}

impl ErrorCode {
    /// HTTP status code for this error.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Malformed | Self::InvalidItem => 400,
            Self::Unauthenticated => 401,
            Self::PermissionDenied => 403,
            Self::TooLarge => 413,
            Self::UnsupportedMediaType | Self::UnsupportedEncoding => 415,
            Self::InFlightLimit | Self::QueueFull => 429,
            Self::Unavailable | Self::ShuttingDown => 503,
            Self::Internal => 500,
        }
    }

    /// gRPC status code (numeric, as in `google.rpc.Code`).
    pub fn grpc_code(self) -> i32 {
        match self {
            Self::Malformed | Self::InvalidItem | Self::UnsupportedMediaType => 3, // INVALID_ARGUMENT
            Self::UnsupportedEncoding => 12,                                       // UNIMPLEMENTED
            Self::TooLarge | Self::InFlightLimit | Self::QueueFull => 8, // RESOURCE_EXHAUSTED
            Self::Unauthenticated => 16,                                 // UNAUTHENTICATED
            Self::PermissionDenied => 7,                                 // PERMISSION_DENIED
            Self::Unavailable | Self::ShuttingDown => 14,                // UNAVAILABLE
            Self::Internal => 13,                                        // INTERNAL
        }
    }

    /// Whether a client should retry the same request later (OTLP retryable responses).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::InFlightLimit | Self::QueueFull | Self::Unavailable | Self::ShuttingDown
        )
    }

    /// Seconds to put in `Retry-After` for retryable errors.
    pub fn retry_after_secs(self) -> Option<u32> {
        match self {
            Self::InFlightLimit | Self::QueueFull => Some(1),
            Self::Unavailable | Self::ShuttingDown => Some(5),
            _ => None,
        }
    }

    /// The bounded `reason` label used in rejection metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::InvalidItem => "invalid_item",
            Self::TooLarge => "too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::InFlightLimit => "in_flight_limit",
            Self::QueueFull => "queue_full",
            Self::Unavailable => "unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Internal => "internal",
        }
    }

    /// Every code, for pre-registering metric label values.
    pub const ALL: [ErrorCode; 12] = [
        Self::Malformed,
        Self::InvalidItem,
        Self::TooLarge,
        Self::UnsupportedMediaType,
        Self::UnsupportedEncoding,
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::InFlightLimit,
        Self::QueueFull,
        Self::Unavailable,
        Self::ShuttingDown,
        Self::Internal,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes_are_exactly_those_with_retry_after() {
        for code in ErrorCode::ALL {
            assert_eq!(
                code.retryable(),
                code.retry_after_secs().is_some(),
                "{code:?}"
            );
            if code.retryable() {
                assert!(matches!(code.http_status(), 429 | 503), "{code:?}");
                assert!(matches!(code.grpc_code(), 8 | 14), "{code:?}");
            }
        }
    }

    #[test]
    fn reasons_are_unique() {
        let mut reasons: Vec<_> = ErrorCode::ALL.iter().map(|c| c.reason()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), ErrorCode::ALL.len());
    }
}
