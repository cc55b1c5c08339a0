//! `flywheel.v1.Feedback` / `flywheel.v1.Signal` protobufs (from the feedback and signals
//! topics, or converted from OTLP span events) to `feedback` / `signals` rows.
//!
//! The collector validates what clients send; this side only refuses what cannot be stored
//! meaningfully (no id to deduplicate on, no value, no subject, no signal type). A refused item
//! is dead-lettered (topic messages) or counted (span events), never stored half.

use flywheel_feedback::names;
use flywheel_feedback::pb::{self, feedback_value::Kind, SignalType};
use flywheel_schema::rows::{FeedbackRow, SignalRow};

/// Why an item cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("invalid {0}: id is empty")]
    NoId(&'static str),
    #[error("invalid {0}: the subject names neither a trace_id nor a conversation_id")]
    NoSubject(&'static str),
    #[error("invalid feedback: value is missing")]
    NoValue,
    #[error("invalid feedback: name is empty")]
    NoName,
    #[error("invalid signal: type is unspecified")]
    NoType,
    #[error("invalid signal: custom type without custom_name")]
    NoCustomName,
}

/// Checks that a signal has a type (a custom one with a name): the stored name is
/// `names::signal_type`.
fn check_type(signal: &pb::Signal) -> Result<(), Invalid> {
    match signal.r#type() {
        SignalType::Unspecified => Err(Invalid::NoType),
        SignalType::Custom if signal.custom_name.trim().is_empty() => Err(Invalid::NoCustomName),
        _ => Ok(()),
    }
}

fn subject(s: Option<pb::Subject>, what: &'static str) -> Result<pb::Subject, Invalid> {
    let s = s.unwrap_or_default();
    if s.trace_id.is_empty() && s.conversation_id.is_empty() {
        return Err(Invalid::NoSubject(what));
    }
    Ok(s)
}

fn sorted(attributes: std::collections::HashMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<_> = attributes.into_iter().collect();
    v.sort();
    v
}

/// The item's own time, else the receive time.
fn timestamp(time_unix_nano: i64, received_at_ns: i64) -> i64 {
    if time_unix_nano > 0 {
        time_unix_nano
    } else {
        received_at_ns
    }
}

/// Maps one feedback item. `received_at_ns` is the collector's receive time (or the
/// ingester's clock when the message carried none).
pub fn feedback_row(
    f: pb::Feedback,
    project: &str,
    received_at_ns: i64,
) -> Result<FeedbackRow, Invalid> {
    if f.id.is_empty() {
        return Err(Invalid::NoId("feedback"));
    }
    if f.name.is_empty() {
        return Err(Invalid::NoName);
    }
    let (source, origin) = (names::source(f.source()), names::origin(f.origin()));
    let subject = subject(f.subject, "feedback")?;
    let value_type = names::value_type(f.value.as_ref());
    let value = f.value.unwrap_or_default();
    let mut row = FeedbackRow {
        id: f.id,
        project: project.to_string(),
        timestamp: timestamp(f.time_unix_nano, received_at_ns),
        trace_id: subject.trace_id,
        span_id: subject.span_id,
        conversation_id: subject.conversation_id,
        user_id: subject.user_id,
        name: f.name,
        comment: f.comment,
        source: source.to_string(),
        origin: origin.to_string(),
        attributes: sorted(f.attributes),
        received_at: received_at_ns,
        ..FeedbackRow::default()
    };
    match value.kind.ok_or(Invalid::NoValue)? {
        Kind::Number(n) => {
            row.score = Some(n);
            row.label = value.number_label;
        }
        Kind::Boolean(b) => row.score = Some(if b { 1.0 } else { 0.0 }),
        Kind::Label(l) => row.label = l,
        Kind::Text(t) => row.text = t,
    }
    row.value_type = value_type.to_string();
    Ok(row)
}

/// Maps one signal. Type-specific fields are kept as sent (the collector checks that they
/// belong to the type).
pub fn signal_row(s: pb::Signal, project: &str, received_at_ns: i64) -> Result<SignalRow, Invalid> {
    if s.id.is_empty() {
        return Err(Invalid::NoId("signal"));
    }
    check_type(&s)?;
    let signal_type = names::signal_type(&s);
    let (source, origin) = (names::source(s.source()), names::origin(s.origin()));
    let subject = subject(s.subject, "signal")?;
    let discarded = s.discarded.unwrap_or_default();
    Ok(SignalRow {
        id: s.id,
        project: project.to_string(),
        timestamp: timestamp(s.time_unix_nano, received_at_ns),
        trace_id: subject.trace_id,
        span_id: subject.span_id,
        conversation_id: subject.conversation_id,
        user_id: subject.user_id,
        signal_type,
        source: source.to_string(),
        origin: origin.to_string(),
        discarded_trace_id: discarded.trace_id,
        discarded_span_id: discarded.span_id,
        tokens_received: s.tokens_received,
        ms_since_start: s.ms_since_start,
        edit_ratio: s.edit_ratio,
        edited_text: s.edited_text,
        text: s.text,
        turn_count: s.turn_count,
        attributes: sorted(s.attributes),
        received_at: received_at_ns,
    })
}

#[cfg(test)]
#[path = "feedback_tests.rs"]
mod tests;
