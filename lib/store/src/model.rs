//! What the read path asks for and gets back: call filters and page keys in, rows of
//! `llm_calls`, `feedback` and `signals` out; and what the write path takes: a [`RowBatch`].

use clickhouse::Row;
use flywheel_schema::rows::{FeedbackRow, LlmCallRow, OtelTraceRow, SignalRow};
use serde::Deserialize;

/// The columns of `llm_calls` an export reads.
#[derive(Debug, Clone, Default, PartialEq, Row, Deserialize)]
pub struct CallRow {
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub model: String,
    pub conversation_id: String,
    pub user_id: String,
    pub input_messages: String,
    pub output_messages: String,
}

/// The columns of `feedback` an export reads.
#[derive(Debug, Clone, Default, PartialEq, Row, Deserialize)]
pub struct FeedbackItem {
    pub id: String,
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    pub name: String,
    pub value_type: String,
    pub score: Option<f64>,
    pub label: String,
    pub text: String,
    pub comment: String,
    pub source: String,
}

/// The columns of `signals` an export reads.
#[derive(Debug, Clone, Default, PartialEq, Row, Deserialize)]
pub struct SignalItem {
    pub id: String,
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    #[serde(rename = "type")]
    pub signal_type: String,
    pub source: String,
    pub discarded_trace_id: String,
    pub discarded_span_id: String,
    pub tokens_received: Option<u64>,
    pub ms_since_start: Option<f64>,
    pub edit_ratio: Option<f64>,
    pub edited_text: String,
    pub text: String,
    pub turn_count: Option<u32>,
}

/// Which feedback value selects a call.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackValue {
    /// Any value of the named feedback.
    Any,
    /// Score equal to this (booleans are 1 / 0).
    Score(f64),
    /// Score within `[min, max]` (either bound optional).
    Range { min: Option<f64>, max: Option<f64> },
    /// This category label.
    Label(String),
}

/// Only calls with feedback of this name (and value).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackFilter {
    pub name: String,
    pub value: FeedbackValue,
}

/// Which calls of a project: every filter is optional and they all apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFilter {
    pub project: String,
    /// Unix nanoseconds, inclusive.
    pub from: Option<i64>,
    /// Unix nanoseconds, exclusive.
    pub to: Option<i64>,
    pub models: Vec<String>,
    pub conversation: Option<String>,
    /// Calls with an attached feedback item matching this (the join rule of the export).
    pub feedback: Option<FeedbackFilter>,
    /// Calls with an attached signal of this type.
    pub signal: Option<String>,
}

/// The sorting key of the last call of a page: the next page starts after it.
#[derive(Debug, Clone, PartialEq)]
pub struct PageKey {
    pub model: String,
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
}

impl PageKey {
    pub fn of(c: &CallRow) -> Self {
        Self {
            model: c.model.clone(),
            timestamp: c.timestamp,
            trace_id: c.trace_id.clone(),
            span_id: c.span_id.clone(),
        }
    }
}

/// A set of ids (trace ids, conversation ids) a query looks for: sorted, distinct, never
/// containing `""` (an empty id matches nothing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ids(Vec<String>);

impl Ids {
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let mut v: Vec<String> = ids
            .into_iter()
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .collect();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// Rows of one write, stored all or nothing under one idempotency `token`: writing a batch
/// with a token already stored stores nothing (a replay after a crash or a retry).
/// `llm_calls` rows replace a row of the same key; `feedback` and `signals` rows replace the
/// row of the same (project, id) unless that one was received later (`received_at`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowBatch {
    pub token: String,
    pub otel_traces: Vec<OtelTraceRow>,
    pub llm_calls: Vec<LlmCallRow>,
    pub feedback: Vec<FeedbackRow>,
    pub signals: Vec<SignalRow>,
}

impl RowBatch {
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.otel_traces.is_empty()
            && self.llm_calls.is_empty()
            && self.feedback.is_empty()
            && self.signals.is_empty()
    }
}
