//! The feedback and signals contract.
//!
//! - [`pb`]: protobuf types generated from `proto/flywheel/v1/feedback.proto`, the messages on
//!   the `flywheel.feedback` and `flywheel.signals` topics.

/// Generated from `proto/flywheel/v1/feedback.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/flywheel.v1.rs"));
}
