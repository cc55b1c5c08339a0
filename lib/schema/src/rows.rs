//! Row types, field for field the columns of the tables (RowBinary order and names).
//! Timestamps are Unix nanoseconds (`DateTime64(9)`).

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// A row of `otel_traces`, in the OpenTelemetry Collector ClickHouse exporter's schema plus the
/// `Project` column.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct OtelTraceRow {
    #[serde(rename = "Timestamp")]
    pub timestamp: i64,
    #[serde(rename = "TraceId")]
    pub trace_id: String,
    #[serde(rename = "SpanId")]
    pub span_id: String,
    #[serde(rename = "ParentSpanId")]
    pub parent_span_id: String,
    #[serde(rename = "TraceState")]
    pub trace_state: String,
    #[serde(rename = "SpanName")]
    pub span_name: String,
    #[serde(rename = "SpanKind")]
    pub span_kind: String,
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ResourceAttributes")]
    pub resource_attributes: Vec<(String, String)>,
    #[serde(rename = "ScopeName")]
    pub scope_name: String,
    #[serde(rename = "ScopeVersion")]
    pub scope_version: String,
    #[serde(rename = "SpanAttributes")]
    pub span_attributes: Vec<(String, String)>,
    #[serde(rename = "Duration")]
    pub duration: u64,
    #[serde(rename = "StatusCode")]
    pub status_code: String,
    #[serde(rename = "StatusMessage")]
    pub status_message: String,
    #[serde(rename = "Events.Timestamp")]
    pub events_timestamp: Vec<i64>,
    #[serde(rename = "Events.Name")]
    pub events_name: Vec<String>,
    #[serde(rename = "Events.Attributes")]
    pub events_attributes: Vec<Vec<(String, String)>>,
    #[serde(rename = "Links.TraceId")]
    pub links_trace_id: Vec<String>,
    #[serde(rename = "Links.SpanId")]
    pub links_span_id: Vec<String>,
    #[serde(rename = "Links.TraceState")]
    pub links_trace_state: Vec<String>,
    #[serde(rename = "Links.Attributes")]
    pub links_attributes: Vec<Vec<(String, String)>>,
    #[serde(rename = "Project")]
    pub project: String,
}

/// A row of `llm_calls`.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct LlmCallRow {
    pub timestamp: i64,
    pub project: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub service: String,
    pub span_name: String,
    pub operation: String,
    pub provider: String,
    /// The model the detectors and dashboards group by: the normalised response model, else
    /// the normalised request model.
    pub model: String,
    pub request_model: String,
    pub response_model: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: Option<f64>,
    pub price_version: String,
    pub duration_ns: u64,
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub streaming: bool,
    pub aborted: bool,
    pub finish_reasons: Vec<String>,
    pub status_code: String,
    pub error_type: String,
    pub conversation_id: String,
    pub user_id: String,
    pub request_params: Vec<(String, String)>,
    pub input_messages: String,
    pub output_messages: String,
    pub received_at: i64,
}

/// A row of `ingest_batches`: the offset range an ingester is about to insert.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct IngestBatchRow {
    pub consumer_group: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// A row of `feedback`.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct FeedbackRow {
    pub id: String,
    pub project: String,
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub name: String,
    /// `number`, `boolean`, `label` or `text`.
    pub value_type: String,
    /// The number, or 1 / 0 for a boolean.
    pub score: Option<f64>,
    pub label: String,
    pub text: String,
    pub comment: String,
    /// `human`, `model`, `api` or `heuristic`.
    pub source: String,
    /// `api`, `otlp_span_event`, `otlp_log` or `derived`.
    pub origin: String,
    pub attributes: Vec<(String, String)>,
    pub received_at: i64,
}

/// A row of `signals`.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct SignalRow {
    pub id: String,
    pub project: String,
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    pub user_id: String,
    /// `regenerate`, `stop`, `edit`, `copy`, `retry`, `rephrase`, `continue`, `abandon`,
    /// `conversation_end` or `custom:<name>`.
    #[serde(rename = "type")]
    pub signal_type: String,
    pub source: String,
    pub origin: String,
    pub discarded_trace_id: String,
    pub discarded_span_id: String,
    pub tokens_received: Option<u64>,
    pub ms_since_start: Option<f64>,
    pub edit_ratio: Option<f64>,
    pub edited_text: String,
    pub text: String,
    pub turn_count: Option<u32>,
    pub attributes: Vec<(String, String)>,
    pub received_at: i64,
}

/// A row of `alerts`: one notification of the detector.
#[derive(Debug, Clone, Default, PartialEq, Row, Serialize, Deserialize)]
pub struct AlertRow {
    pub fingerprint: String,
    pub alertname: String,
    pub slo: String,
    pub project: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// A new firing alert or a resolution (not a re-send).
    pub announced: bool,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub long_burn_rate: Option<f64>,
    pub short_burn_rate: Option<f64>,
    pub sli: Option<f64>,
    pub budget_remaining: f64,
    pub event_time: i64,
    pub sent_at: i64,
}
