//! The feedback and signals contract.
//!
//! - [`pb`]: protobuf types generated from `proto/flywheel/v1/feedback.proto`, the messages on
//!   the `flywheel.feedback` and `flywheel.signals` topics.
//! - [`api`]: the JSON model of `POST /v1/feedback` and `POST /v1/signals` and its item-by-item
//!   validation into [`pb`] messages.
//! - [`otlp`]: the same items carried by OTLP span events and log records.
//! - [`names`]: the strings stored in ClickHouse for enum values.

pub mod api;
pub mod otlp;
mod validate;

pub use validate::{
    signal_type, signal_type_name, span_id, trace_id, Definitions, FeedbackDefinition, Limits,
    ValueType, SIGNAL_TYPES,
};

/// Generated from `proto/flywheel/v1/feedback.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/flywheel.v1.rs"));
}

/// Stored names of enum values (the `source`, `origin`, `type`, `value_type` columns).
pub mod names {
    use crate::pb;

    pub fn source(s: pb::Source) -> &'static str {
        match s {
            pb::Source::Unspecified | pb::Source::Api => "api",
            pb::Source::Human => "human",
            pb::Source::Model => "model",
            pb::Source::Heuristic => "heuristic",
        }
    }

    pub fn origin(o: pb::Origin) -> &'static str {
        match o {
            pb::Origin::Unspecified | pb::Origin::Api => "api",
            pb::Origin::OtlpSpanEvent => "otlp_span_event",
            pb::Origin::OtlpLog => "otlp_log",
            pb::Origin::Derived => "derived",
        }
    }

    /// `regenerate`, ..., or `custom:<name>`.
    pub fn signal_type(s: &pb::Signal) -> String {
        match s.r#type() {
            pb::SignalType::Custom => format!("custom:{}", s.custom_name),
            t => crate::signal_type_name(t).to_string(),
        }
    }

    /// `number`, `boolean`, `label` or `text` (empty for a missing value).
    pub fn value_type(v: Option<&pb::FeedbackValue>) -> &'static str {
        use pb::feedback_value::Kind;
        match v.and_then(|v| v.kind.as_ref()) {
            Some(Kind::Number(_)) => "number",
            Some(Kind::Boolean(_)) => "boolean",
            Some(Kind::Label(_)) => "label",
            Some(Kind::Text(_)) => "text",
            None => "",
        }
    }
}
