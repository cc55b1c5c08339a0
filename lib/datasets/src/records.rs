//! The exported records of each shape, serialised as they are (JSONL) and through the Arrow
//! schemas of [`crate::encode`] (Parquet), so both formats carry identical content.

use serde::Serialize;

use crate::messages::Message;

/// Where a record came from. Timestamps are RFC 3339 UTC with nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    pub project: String,
    pub trace_id: String,
    pub span_id: String,
    pub model: String,
    pub timestamp: String,
    pub conversation_id: String,
    pub user_id: String,
}

/// `sft`: the prompt messages then the completion as the last assistant message.
#[derive(Debug, Clone, Serialize)]
pub struct SftRecord {
    pub messages: Vec<Message>,
    pub metadata: Metadata,
}

/// `preference` (TRL): `chosen` is preferred over `rejected` for `prompt`.
#[derive(Debug, Clone, Serialize)]
pub struct PreferenceRecord {
    pub prompt: Vec<Message>,
    pub chosen: Vec<Message>,
    pub rejected: Vec<Message>,
    /// `regenerate`, `feedback` or `edit`.
    pub source: String,
    pub metadata: PreferenceMetadata,
}

#[derive(Debug, Clone, Serialize)]
pub struct PreferenceMetadata {
    pub project: String,
    pub model: String,
    pub conversation_id: String,
    /// The chosen call's timestamp (the rejected one's for an edit).
    pub timestamp: String,
    pub chosen_trace_id: String,
    pub chosen_span_id: String,
    pub rejected_trace_id: String,
    pub rejected_span_id: String,
    /// Ids of the signals or feedback items the pair was mined from.
    pub evidence: Vec<String>,
}

/// `eval`: a call with every feedback item and signal attached to it.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRecord {
    pub input: Vec<Message>,
    pub output: String,
    pub feedback: Vec<EvalFeedback>,
    pub signals: Vec<EvalSignal>,
    pub metadata: Metadata,
}

/// How an item is attached to a call (the join rule, adr/0007).
pub const LEVEL_SPAN: &str = "span";
pub const LEVEL_TRACE: &str = "trace";
pub const LEVEL_CONVERSATION: &str = "conversation";

#[derive(Debug, Clone, Serialize)]
pub struct EvalFeedback {
    pub id: String,
    pub name: String,
    pub value_type: String,
    pub score: Option<f64>,
    pub label: String,
    pub text: String,
    pub comment: String,
    pub source: String,
    /// `span`, `trace` or `conversation`.
    pub level: String,
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalSignal {
    pub id: String,
    #[serde(rename = "type")]
    pub signal_type: String,
    pub source: String,
    pub level: String,
    pub timestamp: String,
    pub discarded_trace_id: String,
    pub discarded_span_id: String,
    pub tokens_received: Option<u64>,
    pub ms_since_start: Option<f64>,
    pub edit_ratio: Option<f64>,
    pub edited_text: String,
    pub text: String,
    pub turn_count: Option<u32>,
}

/// Any record; serialises as the inner record.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Record {
    Sft(SftRecord),
    Preference(PreferenceRecord),
    Eval(EvalRecord),
}

/// Unix nanoseconds as RFC 3339 UTC with nanoseconds.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
