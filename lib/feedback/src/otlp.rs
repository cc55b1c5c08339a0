//! Feedback and signals carried by OTLP: span events (read by the ingester) and log records
//! (received by the collector) named
//!
//! - `gen_ai.evaluation.result` (OpenTelemetry GenAI semantic conventions):
//!   `gen_ai.evaluation.name`, `gen_ai.evaluation.score.value`, `gen_ai.evaluation.score.label`,
//!   `gen_ai.evaluation.explanation` -> feedback (source `model` unless
//!   `flywheel.feedback.source` says otherwise);
//! - `flywheel.feedback`: the JSON API's feedback fields as `flywheel.feedback.<field>`
//!   attributes (`name`, `value`, `value_type`, `comment`, `source`, `id`, `conversation_id`,
//!   `user_id`);
//! - `flywheel.signal`: the JSON API's signal fields as `flywheel.signal.<field>` attributes
//!   (`type`, `id`, `source`, `tokens_received`, `ms_since_start`, `edit_ratio`, `edited_text`,
//!   `text`, `turn_count`, `discarded_trace_id`, `discarded_span_id`, `conversation_id`,
//!   `user_id`).
//!
//! Every other attribute is kept in the item's `attributes`. Trace and span ids, conversation,
//! user and time come from the context (the span or the log record) unless the event names
//! its own conversation or user. Items go through the same validation as the JSON API (errors
//! name the attribute). Without an explicit id the id is deterministic
//! (`otlp:<trace>:<span>:<time>:<index>`), so a re-delivered span or log record is the same
//! item.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use serde_json::Value;

use crate::api::{parse_value, FeedbackInput, ItemError, SignalInput, Validator};
use crate::pb;

/// OpenTelemetry GenAI evaluation event.
pub const EVENT_EVALUATION_RESULT: &str = "gen_ai.evaluation.result";
/// Flywheel feedback event.
pub const EVENT_FEEDBACK: &str = "flywheel.feedback";
/// Flywheel signal event.
pub const EVENT_SIGNAL: &str = "flywheel.signal";

const FEEDBACK_PREFIX: &str = "flywheel.feedback.";
const SIGNAL_PREFIX: &str = "flywheel.signal.";

/// Where an event sits.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    /// Hex trace id of the span or log record, or empty.
    pub trace_id: String,
    /// Hex span id, or empty.
    pub span_id: String,
    /// Conversation and user of the enclosing span, when known.
    pub conversation_id: String,
    pub user_id: String,
    /// Event (or log record) time; 0 means unknown (the receive time is used).
    pub time_unix_nano: i64,
    /// Position of the event in its span (or of the record in its request).
    pub index: usize,
    pub origin: pb::Origin,
}

/// A converted event.
#[derive(Debug, Clone, PartialEq)]
pub enum OtlpItem {
    Feedback(pb::Feedback),
    Signal(pb::Signal),
}

/// Whether `name` is an event this module converts.
pub fn is_feedback_event(name: &str) -> bool {
    matches!(
        name,
        EVENT_EVALUATION_RESULT | EVENT_FEEDBACK | EVENT_SIGNAL
    )
}

/// Converts an event named `name` with `attributes`; `None` when it is not a feedback or signal
/// event. Errors name the attribute at fault; `index` in them is `ctx.index`.
pub fn from_event(
    name: &str,
    attributes: &[KeyValue],
    ctx: &EventContext,
    validator: &Validator<'_>,
) -> Option<Result<OtlpItem, ItemError>> {
    let converted = match name {
        EVENT_EVALUATION_RESULT => evaluation(attributes, ctx, validator).map(OtlpItem::Feedback),
        EVENT_FEEDBACK => feedback(attributes, ctx, validator).map(OtlpItem::Feedback),
        EVENT_SIGNAL => signal(attributes, ctx, validator).map(OtlpItem::Signal),
        _ => return None,
    };
    Some(converted)
}

/// Attributes split into the recognised fields (by suffix) and the rest.
struct Split {
    fields: BTreeMap<String, Value>,
    rest: BTreeMap<String, Value>,
}

fn split(attributes: &[KeyValue], prefix: &str, renames: &[(&str, &str)]) -> Split {
    let mut fields = BTreeMap::new();
    let mut rest = BTreeMap::new();
    for kv in attributes {
        let value = json_value(kv.value.as_ref());
        let renamed = renames.iter().find(|(from, _)| *from == kv.key);
        if let Some((_, to)) = renamed {
            fields.insert((*to).to_string(), value);
        } else if let Some(field) = kv.key.strip_prefix(prefix) {
            fields.insert(field.to_string(), value);
        } else if !value.is_null() {
            // Attributes without a value (or a NaN) carry nothing worth refusing the item for.
            rest.insert(kv.key.clone(), value);
        }
    }
    Split { fields, rest }
}

fn json_value(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(any_value::Value::BytesValue(b)) => Value::String(hex::encode(b)),
        // Arrays and maps: kept as JSON text.
        Some(any_value::Value::ArrayValue(a)) => Value::String(
            Value::Array(a.values.iter().map(|v| json_value(Some(v))).collect()).to_string(),
        ),
        Some(any_value::Value::KvlistValue(kv)) => Value::String(
            Value::Object(
                kv.values
                    .iter()
                    .map(|kv| (kv.key.clone(), json_value(kv.value.as_ref())))
                    .collect(),
            )
            .to_string(),
        ),
        // A string-table index (profiles) cannot be resolved here.
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::Null,
    }
}

fn default_id(ctx: &EventContext, time: i64) -> String {
    format!(
        "otlp:{}:{}:{}:{}",
        ctx.trace_id, ctx.span_id, time, ctx.index
    )
}

/// Renames errors from JSON field names to the attribute names the event used.
fn rename_field(mut e: ItemError, prefix: &str, renames: &[(&str, &str)]) -> ItemError {
    e.field = match renames.iter().find(|(_, to)| *to == e.field) {
        Some((from, _)) => (*from).to_string(),
        None if e.field.starts_with("attributes.") => e.field["attributes.".len()..].to_string(),
        None if e.field == "trace_id" || e.field == "span_id" => e.field,
        None => format!("{prefix}{}", e.field),
    };
    e
}

fn context_time(ctx: &EventContext, v: &Validator<'_>) -> i64 {
    if ctx.time_unix_nano > 0 {
        ctx.time_unix_nano
    } else {
        v.now_unix_nano
    }
}

/// The item as the JSON API would have received it: the event's fields, then the context's
/// ids, conversation, user and time where the event names none.
fn item_json(split: Split, ctx: &EventContext, time: i64) -> Value {
    let Split { mut fields, rest } = split;
    let mut set = |key: &str, value: Value| {
        fields.entry(key.to_string()).or_insert(value);
    };
    set("id", Value::from(default_id(ctx, time)));
    set("conversation_id", Value::from(ctx.conversation_id.clone()));
    set("user_id", Value::from(ctx.user_id.clone()));
    // Ids and time come from the span or record only.
    fields.insert("trace_id".into(), Value::from(ctx.trace_id.clone()));
    fields.insert("span_id".into(), Value::from(ctx.span_id.clone()));
    fields.insert("timestamp".into(), Value::from(time / 1_000_000));
    fields.insert(
        "attributes".into(),
        Value::Object(rest.into_iter().collect()),
    );
    Value::Object(fields.into_iter().collect())
}

/// Validates with the event's own time rather than a millisecond-rounded one.
fn with_time<T>(mut item: T, time: i64, set: impl FnOnce(&mut T, i64)) -> T {
    set(&mut item, time);
    item
}

fn evaluation(
    attributes: &[KeyValue],
    ctx: &EventContext,
    v: &Validator<'_>,
) -> Result<pb::Feedback, ItemError> {
    const RENAMES: &[(&str, &str)] = &[
        ("gen_ai.evaluation.name", "name"),
        ("gen_ai.evaluation.score.value", "value"),
        ("gen_ai.evaluation.score.label", "number_label"),
        ("gen_ai.evaluation.explanation", "comment"),
    ];
    let mut split = split(attributes, FEEDBACK_PREFIX, RENAMES);
    // A label without a score is the value itself.
    if !split.fields.contains_key("value") {
        if let Some(label) = split.fields.remove("number_label") {
            split.fields.insert("value".into(), label);
        }
    }
    if !split.fields.contains_key("value") {
        return Err(ItemError::new(
            ctx.index,
            "gen_ai.evaluation.score.value",
            "an evaluation result needs gen_ai.evaluation.score.value or gen_ai.evaluation.score.label",
        ));
    }
    feedback_item(split, ctx, v, pb::Source::Model, RENAMES)
}

fn feedback_item(
    split: Split,
    ctx: &EventContext,
    v: &Validator<'_>,
    default_source: pb::Source,
    renames: &[(&str, &str)],
) -> Result<pb::Feedback, ItemError> {
    let time = context_time(ctx, v);
    let input: FeedbackInput = parse_value(ctx.index, item_json(split, ctx, time))
        .map_err(|e| rename_field(e, FEEDBACK_PREFIX, renames))?;
    v.feedback_input(ctx.index, input, ctx.origin, default_source)
        .map(|f| with_time(f, time, |f, t| f.time_unix_nano = t))
        .map_err(|e| rename_field(e, FEEDBACK_PREFIX, renames))
}

fn feedback(
    attributes: &[KeyValue],
    ctx: &EventContext,
    v: &Validator<'_>,
) -> Result<pb::Feedback, ItemError> {
    let split = split(attributes, FEEDBACK_PREFIX, &[]);
    feedback_item(split, ctx, v, pb::Source::Api, &[])
}

fn signal(
    attributes: &[KeyValue],
    ctx: &EventContext,
    v: &Validator<'_>,
) -> Result<pb::Signal, ItemError> {
    let time = context_time(ctx, v);
    let json = item_json(split(attributes, SIGNAL_PREFIX, &[]), ctx, time);
    let input: SignalInput =
        parse_value(ctx.index, json).map_err(|e| rename_field(e, SIGNAL_PREFIX, &[]))?;
    v.signal_input(ctx.index, input, ctx.origin, pb::Source::Api)
        .map(|s| with_time(s, time, |s, t| s.time_unix_nano = t))
        .map_err(|e| rename_field(e, SIGNAL_PREFIX, &[]))
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;
