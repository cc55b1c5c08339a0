//! What the generator produces: model calls (sent as spans), feedback items and signals (sent
//! as the JSON of `POST /v1/feedback` and `POST /v1/signals`, `lib/feedback/src/api.rs`).

use serde::Serialize;

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered; `reason` is the finish reason (`stop`, or `length` at `max_tokens`).
    Finished { reason: &'static str },
    /// A stream the user stopped: no finish reason.
    Stopped,
    /// The provider failed; `error_type` is `error.type` (`429`, `500`, `timeout`, ...).
    Failed { error_type: &'static str },
}

/// One model call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The application's server span (parent of the model call), when app spans are on.
    pub app_span_id: [u8; 8],
    pub conversation_id: String,
    pub user_id: String,
    /// Index into the scenario's models.
    pub model: usize,
    /// User turn in the conversation (0-based); a regenerated or retried call repeats it,
    /// and with it the input messages.
    pub turn: u32,
    /// Simulated Unix ns.
    pub start_ns: i64,
    pub end_ns: i64,
    pub streaming: bool,
    /// Reported for streamed calls that produced a token.
    pub ttft_ms: Option<f64>,
    pub input_tokens: u64,
    /// `None` for failed calls (providers report no usage then).
    pub output_tokens: Option<u64>,
    pub max_tokens: u64,
    pub outcome: Outcome,
}

/// A feedback item, as `POST /v1/feedback` takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackItem {
    pub id: String,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub name: &'static str,
    pub value: serde_json::Value,
    pub source: &'static str,
    /// RFC 3339 with nanoseconds.
    pub timestamp: String,
    #[serde(skip)]
    pub time_ns: i64,
    /// Index into the scenario's models (not sent: for tests and the summary).
    #[serde(skip)]
    pub model: usize,
}

/// A signal, as `POST /v1/signals` takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalItem {
    pub id: String,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    pub user_id: String,
    #[serde(rename = "type")]
    pub signal_type: &'static str,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms_since_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit_ratio: Option<f64>,
    #[serde(skip)]
    pub time_ns: i64,
    #[serde(skip)]
    pub model: usize,
}

/// One generated record.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Call(Box<Call>),
    Feedback(FeedbackItem),
    Signal(SignalItem),
}

impl Event {
    /// When the record exists (a call when it ends, as an SDK exports a span), simulated ns.
    pub fn time_ns(&self) -> i64 {
        match self {
            Self::Call(c) => c.end_ns,
            Self::Feedback(f) => f.time_ns,
            Self::Signal(s) => s.time_ns,
        }
    }
}

/// RFC 3339 UTC with nanoseconds.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
