//! The JSON model of `POST /v1/feedback` and `POST /v1/signals`, validated item by item into
//! the protobuf contract.
//!
//! A request body is one item, a JSON array of items, or `{"items": [...]}` ([`split_batch`]).
//! Each item is checked on its own ([`Validator`]): a bad item yields an [`ItemError`] naming
//! its index and the field at fault, and never affects the other items.
//!
//! Field reference (both kinds): `id` (idempotency key, generated when absent), `trace_id`
//! (32 hex), `span_id` (16 hex, needs `trace_id`), `conversation_id`, `user_id` (at least one
//! of `trace_id` and `conversation_id`), `source` (`human`, `model`, `api` (default),
//! `heuristic`), `timestamp` (RFC 3339 string or Unix milliseconds; default: receive time),
//! `attributes` (string, number or boolean values). Feedback adds `name`, `value` (number,
//! boolean or string), `value_type` (`number`, `boolean`, `label` (default for strings),
//! `text`), `comment`. Signals add `type` and the fields of that type (see [`SignalInput`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::pb;
use crate::validate::{self, ValueType};

pub use crate::validate::{FeedbackDefinition, Limits};

/// Why one item was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemError {
    /// Position of the item in the request (0 for a single item).
    pub index: usize,
    /// The field at fault, as named in the request (`trace_id`, `attributes.plan`, ...).
    pub field: String,
    pub message: String,
}

impl ItemError {
    pub(crate) fn new(index: usize, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            index,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "item {}: {}: {}", self.index, self.field, self.message)
    }
}

/// Why a request body could not be split into items at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    Malformed(String),
    #[error("the request has {count} items; at most {max} are accepted per request")]
    TooManyItems { count: usize, max: usize },
}

/// Splits a body into its items: one JSON object, a JSON array of objects, or
/// `{"items": [...]}`. Items are returned unparsed so that each fails on its own.
pub fn split_batch(body: &[u8], max_items: usize) -> Result<Vec<&RawValue>, BatchError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let items: Vec<&RawValue> = match first {
        Some(b'[') => serde_json::from_slice(body)
            .map_err(|e| BatchError::Malformed(format!("invalid JSON array: {e}")))?,
        Some(b'{') => {
            let object: BTreeMap<&str, &RawValue> = serde_json::from_slice(body)
                .map_err(|e| BatchError::Malformed(format!("invalid JSON object: {e}")))?;
            match object.get("items") {
                Some(items) if object.len() == 1 => serde_json::from_str(items.get())
                    .map_err(|e| BatchError::Malformed(format!("`items` must be an array: {e}")))?,
                _ => {
                    let whole: &RawValue = serde_json::from_slice(body)
                        .map_err(|e| BatchError::Malformed(format!("invalid JSON: {e}")))?;
                    vec![whole]
                }
            }
        }
        _ => {
            return Err(BatchError::Malformed(
                "the body must be a JSON object, an array of objects or {\"items\": [...]}".into(),
            ))
        }
    };
    if items.len() > max_items {
        return Err(BatchError::TooManyItems {
            count: items.len(),
            max: max_items,
        });
    }
    if items.is_empty() {
        return Err(BatchError::Malformed("the request has no items".into()));
    }
    Ok(items)
}

/// Moves the [`Common`] fields out of a [`FeedbackInput`] or a [`SignalInput`].
macro_rules! common_of {
    ($input:ident) => {
        Common {
            id: $input.id,
            trace_id: $input.trace_id,
            span_id: $input.span_id,
            conversation_id: $input.conversation_id,
            user_id: $input.user_id,
            source: $input.source,
            timestamp: $input.timestamp,
            attributes: $input.attributes,
        }
    };
}

/// Fields shared by feedback and signals.
#[derive(Debug, Default)]
pub struct Common {
    pub id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub conversation_id: Option<String>,
    pub user_id: Option<String>,
    pub source: Option<String>,
    pub timestamp: Option<Value>,
    pub attributes: Option<BTreeMap<String, Value>>,
}

/// A feedback item as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackInput {
    pub id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub conversation_id: Option<String>,
    pub user_id: Option<String>,
    pub source: Option<String>,
    pub timestamp: Option<Value>,
    pub attributes: Option<BTreeMap<String, Value>>,
    pub name: Option<String>,
    pub value: Option<Value>,
    pub value_type: Option<String>,
    /// A label accompanying a numeric value (OTel `gen_ai.evaluation.score.label`).
    pub number_label: Option<String>,
    pub comment: Option<String>,
}

/// A signal as sent. Type-specific fields: `discarded_trace_id`, `discarded_span_id`
/// (regenerate; default: the item's own ids), `tokens_received`, `ms_since_start` (stop),
/// `edit_ratio` (0..=1), `edited_text` (edit: at least one of them), `text` (rephrase),
/// `turn_count` (conversation_end, required).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalInput {
    pub id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub conversation_id: Option<String>,
    pub user_id: Option<String>,
    pub source: Option<String>,
    pub timestamp: Option<Value>,
    pub attributes: Option<BTreeMap<String, Value>>,
    #[serde(rename = "type")]
    pub signal_type: Option<String>,
    pub discarded_trace_id: Option<String>,
    pub discarded_span_id: Option<String>,
    pub tokens_received: Option<u64>,
    pub ms_since_start: Option<f64>,
    pub edit_ratio: Option<f64>,
    pub edited_text: Option<String>,
    pub text: Option<String>,
    pub turn_count: Option<u32>,
}

/// Validates items for one project.
#[derive(Debug, Clone, Copy)]
pub struct Validator<'a> {
    pub limits: &'a Limits,
    /// The project's feedback definitions (name -> definition), if it has any.
    pub definitions: Option<&'a BTreeMap<String, FeedbackDefinition>>,
    /// Receive time: the default timestamp and the reference for "in the future".
    pub now_unix_nano: i64,
}

impl Validator<'_> {
    /// Parses and validates a feedback item.
    pub fn feedback(&self, index: usize, raw: &RawValue) -> Result<pb::Feedback, ItemError> {
        let input: FeedbackInput = parse(index, raw)?;
        self.feedback_input(index, input, pb::Origin::Api, pb::Source::Api)
    }

    /// Parses and validates a signal.
    pub fn signal(&self, index: usize, raw: &RawValue) -> Result<pb::Signal, ItemError> {
        let input: SignalInput = parse(index, raw)?;
        self.signal_input(index, input, pb::Origin::Api, pb::Source::Api)
    }

    /// Validates an already parsed feedback item.
    pub fn feedback_input(
        &self,
        index: usize,
        input: FeedbackInput,
        origin: pb::Origin,
        default_source: pb::Source,
    ) -> Result<pb::Feedback, ItemError> {
        let err = |field: &str, message: String| ItemError::new(index, field, message);
        let checked = validate::common(self, index, common_of!(input), default_source)?;
        let name = input
            .name
            .ok_or_else(|| err("name", "required (e.g. \"thumbs\", \"helpfulness\")".into()))?;
        validate::name(&name).map_err(|m| err("name", m))?;
        let definition = self.definitions.and_then(|d| d.get(&name));
        let value = input
            .value
            .ok_or_else(|| err("value", "required: a number, a boolean or a string".into()))?;
        let declared = match input.value_type.as_deref() {
            None => None,
            Some(t) => Some(ValueType::parse(t).map_err(|m| err("value_type", m))?),
        };
        let value = validate::feedback_value(self.limits, &value, declared, definition)
            .map_err(|(field, m)| err(field, m))?;
        let number_label = input.number_label.unwrap_or_default();
        validate::max_bytes(&number_label, self.limits.max_label_bytes)
            .map_err(|m| err("value", m))?;
        let comment = input.comment.unwrap_or_default();
        validate::max_bytes(&comment, self.limits.max_text_bytes).map_err(|m| err("comment", m))?;
        Ok(pb::Feedback {
            id: checked.id,
            subject: Some(checked.subject),
            name,
            value: Some(pb::FeedbackValue {
                kind: Some(value),
                number_label,
            }),
            comment,
            source: checked.source as i32,
            time_unix_nano: checked.time_unix_nano,
            attributes: checked.attributes,
            origin: origin as i32,
        })
    }

    /// Validates an already parsed signal.
    pub fn signal_input(
        &self,
        index: usize,
        input: SignalInput,
        origin: pb::Origin,
        default_source: pb::Source,
    ) -> Result<pb::Signal, ItemError> {
        let err = |field: &str, message: String| ItemError::new(index, field, message);
        let checked = validate::common(self, index, common_of!(input), default_source)?;
        let type_name = input.signal_type.ok_or_else(|| {
            err(
                "type",
                format!("required: one of {}", validate::SIGNAL_TYPES.join(", ")),
            )
        })?;
        let (signal_type, custom_name) =
            validate::signal_type(&type_name).map_err(|m| err("type", m))?;
        use pb::SignalType as T;
        let only = |field: &str, present: bool, allowed: T| -> Result<(), ItemError> {
            if present && signal_type != allowed {
                return Err(err(
                    field,
                    format!(
                        "only allowed with type \"{}\"",
                        validate::signal_type_name(allowed)
                    ),
                ));
            }
            Ok(())
        };
        only(
            "discarded_trace_id",
            input.discarded_trace_id.is_some(),
            T::Regenerate,
        )?;
        only(
            "discarded_span_id",
            input.discarded_span_id.is_some(),
            T::Regenerate,
        )?;
        only("tokens_received", input.tokens_received.is_some(), T::Stop)?;
        only("ms_since_start", input.ms_since_start.is_some(), T::Stop)?;
        only("edit_ratio", input.edit_ratio.is_some(), T::Edit)?;
        only("edited_text", input.edited_text.is_some(), T::Edit)?;
        only("text", input.text.is_some(), T::Rephrase)?;
        only("turn_count", input.turn_count.is_some(), T::ConversationEnd)?;

        let subject = checked.subject;
        let discarded = if signal_type == T::Regenerate {
            let trace_id = match input.discarded_trace_id {
                Some(t) => validate::trace_id(&t).map_err(|m| err("discarded_trace_id", m))?,
                None => subject.trace_id.clone(),
            };
            let span_id = match input.discarded_span_id {
                Some(s) => validate::span_id(&s).map_err(|m| err("discarded_span_id", m))?,
                None if trace_id == subject.trace_id => subject.span_id.clone(),
                None => String::new(),
            };
            if trace_id.is_empty() {
                return Err(err(
                    "discarded_trace_id",
                    "a regenerate signal names the discarded answer: set trace_id (and span_id) or discarded_trace_id".into(),
                ));
            }
            Some(pb::SpanRef { trace_id, span_id })
        } else {
            None
        };
        if let Some(ms) = input.ms_since_start {
            if !ms.is_finite() || ms < 0.0 {
                return Err(err("ms_since_start", "must be a finite number >= 0".into()));
            }
        }
        if let Some(r) = input.edit_ratio {
            if !(0.0..=1.0).contains(&r) {
                return Err(err(
                    "edit_ratio",
                    format!("must be between 0 and 1, got {r}"),
                ));
            }
        }
        if signal_type == T::Edit && input.edit_ratio.is_none() && input.edited_text.is_none() {
            return Err(err(
                "edit_ratio",
                "an edit signal needs edit_ratio or edited_text".into(),
            ));
        }
        if signal_type == T::ConversationEnd && input.turn_count.is_none() {
            return Err(err(
                "turn_count",
                "required for type \"conversation_end\"".into(),
            ));
        }
        let edited_text = input.edited_text.unwrap_or_default();
        validate::max_bytes(&edited_text, self.limits.max_text_bytes)
            .map_err(|m| err("edited_text", m))?;
        let text = input.text.unwrap_or_default();
        validate::max_bytes(&text, self.limits.max_text_bytes).map_err(|m| err("text", m))?;
        Ok(pb::Signal {
            id: checked.id,
            subject: Some(subject),
            r#type: signal_type as i32,
            custom_name,
            source: checked.source as i32,
            time_unix_nano: checked.time_unix_nano,
            attributes: checked.attributes,
            origin: origin as i32,
            discarded,
            tokens_received: input.tokens_received,
            ms_since_start: input.ms_since_start,
            edit_ratio: input.edit_ratio,
            edited_text,
            text,
            turn_count: input.turn_count,
        })
    }
}

/// Deserializes one item, naming the field at fault.
fn parse<T: serde::de::DeserializeOwned>(index: usize, raw: &RawValue) -> Result<T, ItemError> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| item_error(index, e))
}

/// Deserializes one item given as a JSON value, naming the field at fault.
pub(crate) fn parse_value<T: serde::de::DeserializeOwned>(
    index: usize,
    value: Value,
) -> Result<T, ItemError> {
    serde_path_to_error::deserialize(value).map_err(|e| item_error(index, e))
}

fn item_error(index: usize, e: serde_path_to_error::Error<serde_json::Error>) -> ItemError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = inner.to_string();
    // serde names unknown and missing fields in the message, not the path.
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string);
    let field = match (named, path.as_str()) {
        (Some(f), "." | "") => f,
        (Some(f), p) if p == f || p.ends_with(&format!(".{f}")) => p.to_string(),
        (Some(f), p) => format!("{p}.{f}"),
        (None, "." | "") => "(item)".to_string(),
        (None, p) => p.to_string(),
    };
    let message = if inner.is_data() || inner.is_syntax() || inner.is_eof() {
        // Drop serde's " at line 1 column 17": the item is already identified.
        message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string()
    } else {
        message
    };
    ItemError::new(index, field, message)
}

/// The Kafka record key of an item: its trace, else its conversation, else its id, so that
/// every item about one trace lands in one partition.
pub fn record_key(subject: Option<&pb::Subject>, id: &str) -> String {
    match subject {
        Some(s) if !s.trace_id.is_empty() => s.trace_id.clone(),
        Some(s) if !s.conversation_id.is_empty() => s.conversation_id.clone(),
        _ => id.to_string(),
    }
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
