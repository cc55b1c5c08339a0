//! Field rules shared by the JSON API and the OTLP conversion: ids, timestamps, sizes,
//! feedback values against optional per-project definitions, signal types.

use std::collections::BTreeMap;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::api::{Common, ItemError, Validator};
use crate::pb;

/// Size and time limits of items (section `[collector.feedback_limits]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Items per request.
    pub max_items: usize,
    /// Bytes of a free-text field (`comment`, text values, `edited_text`, `text`).
    pub max_text_bytes: usize,
    /// Bytes of a label value and of `conversation_id` / `user_id`.
    pub max_label_bytes: usize,
    /// Attributes per item.
    pub max_attributes: usize,
    /// Bytes of one attribute key plus its value.
    pub max_attribute_bytes: usize,
    /// A timestamp further than this in the future (receive time as reference) is refused.
    pub max_future_skew_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_items: 1000,
            max_text_bytes: 64 * 1024,
            max_label_bytes: 256,
            max_attributes: 64,
            max_attribute_bytes: 4096,
            max_future_skew_secs: 3600,
        }
    }
}

/// The type of a feedback value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    Number,
    Boolean,
    Label,
    Text,
}

impl ValueType {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "number" => Ok(Self::Number),
            "boolean" => Ok(Self::Boolean),
            "label" => Ok(Self::Label),
            "text" => Ok(Self::Text),
            other => Err(format!(
                "unknown value type {other:?}: use number, boolean, label or text"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Label => "label",
            Self::Text => "text",
        }
    }
}

/// A per-project declaration of what a feedback name carries; items contradicting it are
/// refused. Names without a definition accept any value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackDefinition {
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Allowed labels (type `label`); empty means any.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Inclusive range (type `number`).
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The fields every item has, checked.
pub(crate) struct Checked {
    pub id: String,
    pub subject: pb::Subject,
    pub source: pb::Source,
    pub time_unix_nano: i64,
    pub attributes: HashMap<String, String>,
}

const MAX_ID_BYTES: usize = 128;
/// 2000-01-01T00:00:00Z: anything earlier is a unit mistake (seconds for milliseconds).
const MIN_TIMESTAMP_NS: i64 = 946_684_800_000_000_000;

pub(crate) fn common(
    v: &Validator<'_>,
    index: usize,
    c: Common,
    default_source: pb::Source,
) -> Result<Checked, ItemError> {
    let err = |field: &str, message: String| ItemError::new(index, field, message);
    let id = match c.id {
        Some(id) => {
            check_id(&id).map_err(|m| err("id", m))?;
            id
        }
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let trace_id = match c.trace_id.as_deref() {
        None | Some("") => String::new(),
        Some(t) => trace_id(t).map_err(|m| err("trace_id", m))?,
    };
    let span_id = match c.span_id.as_deref() {
        None | Some("") => String::new(),
        Some(s) => span_id(s).map_err(|m| err("span_id", m))?,
    };
    if !span_id.is_empty() && trace_id.is_empty() {
        return Err(err("span_id", "needs trace_id".into()));
    }
    let conversation_id = c.conversation_id.unwrap_or_default();
    max_bytes(&conversation_id, v.limits.max_label_bytes).map_err(|m| err("conversation_id", m))?;
    let user_id = c.user_id.unwrap_or_default();
    max_bytes(&user_id, v.limits.max_label_bytes).map_err(|m| err("user_id", m))?;
    if trace_id.is_empty() && conversation_id.is_empty() {
        return Err(err(
            "trace_id",
            "an item is about a trace or a conversation: set trace_id or conversation_id".into(),
        ));
    }
    let source = match c.source.as_deref() {
        None => default_source,
        Some(s) => source(s).map_err(|m| err("source", m))?,
    };
    let time_unix_nano = match c.timestamp {
        None | Some(Value::Null) => v.now_unix_nano,
        Some(t) => timestamp(&t, v.now_unix_nano, v.limits).map_err(|m| err("timestamp", m))?,
    };
    let mut attributes = HashMap::new();
    let given = c.attributes.unwrap_or_default();
    if given.len() > v.limits.max_attributes {
        return Err(err(
            "attributes",
            format!(
                "{} attributes; at most {} are accepted",
                given.len(),
                v.limits.max_attributes
            ),
        ));
    }
    for (key, value) in given {
        let field = format!("attributes.{key}");
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(err(
                    &field,
                    "must be a string, a number or a boolean".into(),
                ))
            }
        };
        if key.is_empty() {
            return Err(err("attributes", "attribute keys must not be empty".into()));
        }
        if key.len() + value.len() > v.limits.max_attribute_bytes {
            return Err(err(
                &field,
                format!(
                    "key and value are {} bytes; at most {}",
                    key.len() + value.len(),
                    v.limits.max_attribute_bytes
                ),
            ));
        }
        attributes.insert(key, value);
    }
    Ok(Checked {
        id,
        subject: pb::Subject {
            trace_id,
            span_id,
            conversation_id,
            user_id,
        },
        source,
        time_unix_nano,
        attributes,
    })
}

/// Client ids: 1 to 128 characters among letters, digits and `.`, `_`, `:`, `-`.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(format!("must be 1 to {MAX_ID_BYTES} characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(format!(
            "invalid character {c:?}: use letters, digits, '.', '_', ':' or '-'"
        ));
    }
    Ok(())
}

fn hex_id(s: &str, len: usize, what: &str) -> Result<String, String> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "must be {len} hexadecimal characters (a {what}), got {:?}",
            truncate(s, 40)
        ));
    }
    if s.bytes().all(|b| b == b'0') {
        return Err(format!("an all-zero {what} is invalid"));
    }
    Ok(s.to_ascii_lowercase())
}

/// A 32-hex trace id, lowercased.
pub fn trace_id(s: &str) -> Result<String, String> {
    hex_id(s, 32, "16-byte trace id")
}

/// A 16-hex span id, lowercased.
pub fn span_id(s: &str) -> Result<String, String> {
    hex_id(s, 16, "8-byte span id")
}

pub(crate) fn name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-' | '/')))
    {
        return Err(format!(
            "invalid character {c:?}: use letters, digits, '.', '_', ':', '-' or '/'"
        ));
    }
    Ok(())
}

fn source(s: &str) -> Result<pb::Source, String> {
    match s {
        "human" => Ok(pb::Source::Human),
        "model" => Ok(pb::Source::Model),
        "api" => Ok(pb::Source::Api),
        "heuristic" => Ok(pb::Source::Heuristic),
        other => Err(format!(
            "unknown source {:?}: use human, model, api or heuristic",
            truncate(other, 40)
        )),
    }
}

fn timestamp(t: &Value, now: i64, limits: &Limits) -> Result<i64, String> {
    let ns = match t {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("{:?} is not an RFC 3339 time: {e}", truncate(s, 40)))?
            .timestamp_nanos_opt()
            .ok_or("out of range")?,
        Value::Number(n) => {
            let ms = n
                .as_i64()
                .ok_or("a number must be whole Unix milliseconds")?;
            ms.checked_mul(1_000_000).ok_or(
                "out of range: numbers are Unix milliseconds (use an RFC 3339 string otherwise)",
            )?
        }
        _ => return Err("must be an RFC 3339 string or Unix milliseconds".into()),
    };
    let skew = i64::try_from(limits.max_future_skew_secs)
        .unwrap_or(i64::MAX / 1_000_000_000)
        .saturating_mul(1_000_000_000);
    if ns > now.saturating_add(skew) {
        return Err(format!(
            "{} s in the future (more than {} s): check the clock or the unit (numbers are Unix milliseconds)",
            (ns - now) / 1_000_000_000,
            limits.max_future_skew_secs
        ));
    }
    if ns < MIN_TIMESTAMP_NS {
        return Err(
            "before 2000-01-01: check the unit (numbers are Unix milliseconds)".to_string(),
        );
    }
    Ok(ns)
}

pub(crate) fn max_bytes(s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("{} bytes; at most {max} are accepted", s.len()));
    }
    Ok(())
}

/// Checks a feedback value against the declared type and the project's definition. Errors
/// name `value` or `value_type`.
pub(crate) fn feedback_value(
    limits: &Limits,
    value: &Value,
    declared: Option<ValueType>,
    definition: Option<&FeedbackDefinition>,
) -> Result<pb::feedback_value::Kind, (&'static str, String)> {
    use pb::feedback_value::Kind;
    let natural = match value {
        Value::Number(_) => ValueType::Number,
        Value::Bool(_) => ValueType::Boolean,
        Value::String(_) => declared
            .filter(|d| *d == ValueType::Text)
            .or(definition
                .map(|d| d.value_type)
                .filter(|t| *t == ValueType::Text))
            .unwrap_or(ValueType::Label),
        _ => {
            return Err((
                "value",
                "must be a number, a boolean or a string".to_string(),
            ))
        }
    };
    if let Some(d) = declared {
        if d != natural {
            return Err((
                "value_type",
                format!(
                    "declared {} but the value is a {}",
                    d.as_str(),
                    natural.as_str()
                ),
            ));
        }
    }
    if let Some(def) = definition {
        if def.value_type != natural {
            return Err((
                "value",
                format!(
                    "this project defines this feedback as {}, got a {}",
                    def.value_type.as_str(),
                    natural.as_str()
                ),
            ));
        }
    }
    Ok(match value {
        Value::Number(n) => {
            let x = n
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or(("value", "must be a finite number".to_string()))?;
            if let Some(def) = definition {
                let below = def.min.is_some_and(|min| x < min);
                let above = def.max.is_some_and(|max| x > max);
                if below || above {
                    return Err((
                        "value",
                        format!(
                            "{x} is outside the defined range [{}, {}]",
                            def.min.map_or("-inf".into(), |m| m.to_string()),
                            def.max.map_or("inf".into(), |m| m.to_string())
                        ),
                    ));
                }
            }
            Kind::Number(x)
        }
        Value::Bool(b) => Kind::Boolean(*b),
        Value::String(s) if natural == ValueType::Text => {
            max_bytes(s, limits.max_text_bytes).map_err(|m| ("value", m))?;
            Kind::Text(s.clone())
        }
        Value::String(s) => {
            max_bytes(s, limits.max_label_bytes).map_err(|m| {
                (
                    "value",
                    format!("{m} for a label (send value_type \"text\" for free text)"),
                )
            })?;
            if s.is_empty() {
                return Err(("value", "an empty label".to_string()));
            }
            if let Some(def) = definition.filter(|d| !d.labels.is_empty()) {
                if !def.labels.iter().any(|l| l == s) {
                    return Err((
                        "value",
                        format!(
                            "label {:?} is not one of the defined labels: {}",
                            truncate(s, 40),
                            def.labels.join(", ")
                        ),
                    ));
                }
            }
            Kind::Label(s.clone())
        }
        _ => unreachable!("checked above"),
    })
}

/// Signal type names as sent (`custom:<name>` for application-defined ones).
pub const SIGNAL_TYPES: [&str; 10] = [
    "regenerate",
    "stop",
    "edit",
    "copy",
    "retry",
    "rephrase",
    "continue",
    "abandon",
    "conversation_end",
    "custom:<name>",
];

/// Parses a signal type name into the enum and the custom name.
pub fn signal_type(s: &str) -> Result<(pb::SignalType, String), String> {
    use pb::SignalType as T;
    let t = match s {
        "regenerate" => T::Regenerate,
        "stop" => T::Stop,
        "edit" => T::Edit,
        "copy" => T::Copy,
        "retry" => T::Retry,
        "rephrase" => T::Rephrase,
        "continue" => T::Continue,
        "abandon" => T::Abandon,
        "conversation_end" => T::ConversationEnd,
        other => {
            let Some(custom) = other.strip_prefix("custom:") else {
                return Err(format!(
                    "unknown signal type {:?}: use one of {}",
                    truncate(other, 40),
                    SIGNAL_TYPES.join(", ")
                ));
            };
            if custom.is_empty()
                || custom.len() > 64
                || !custom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            {
                return Err(
                    "custom signal names are 1 to 64 letters, digits, '_', '.' or '-'".into(),
                );
            }
            return Ok((T::Custom, custom.to_string()));
        }
    };
    Ok((t, String::new()))
}

/// The name of a signal type as stored (`custom:<name>` for custom signals).
pub fn signal_type_name(t: pb::SignalType) -> &'static str {
    use pb::SignalType as T;
    match t {
        T::Unspecified => "unspecified",
        T::Regenerate => "regenerate",
        T::Stop => "stop",
        T::Edit => "edit",
        T::Copy => "copy",
        T::Retry => "retry",
        T::Rephrase => "rephrase",
        T::Continue => "continue",
        T::Abandon => "abandon",
        T::ConversationEnd => "conversation_end",
        T::Custom => "custom",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Definitions per project (`[collector.feedback_definitions.<project>.<name>]`).
pub type Definitions = BTreeMap<String, BTreeMap<String, FeedbackDefinition>>;
