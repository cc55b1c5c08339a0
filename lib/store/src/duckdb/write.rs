//! Rows into DuckDB, with ClickHouse's engine semantics spelled out in SQL: `llm_calls`
//! replaces the row of the same key (ReplacingMergeTree without a version: the last write
//! wins), `feedback` and `signals` keep the row received last (ReplacingMergeTree(received_at);
//! on a tie the last write wins, as in ClickHouse), `otel_traces` appends (MergeTree).
//!
//! Each table's rows are appended (DuckDB's appender, the bulk path) to a temporary staging
//! table, then moved by one set-based INSERT ... SELECT that converts them, keeps one row per
//! key within the batch (DuckDB refuses to upsert one key twice in a statement) and resolves
//! conflicts with stored rows. The appender binds scalars only, so maps and arrays are staged
//! as JSON text (cast with `from_json`) and timestamps as Unix nanoseconds
//! (`make_timestamp_ns`). Row-at-a-time upserts were tried first: 20 000 of them in one
//! transaction exhausted 19 GiB.

use duckdb::types::Value;
use duckdb::Transaction;
use flywheel_schema::rows::{AlertRow, FeedbackRow, LlmCallRow, OtelTraceRow, SignalRow};

use crate::StoreError;

/// A column's staged type and how it becomes the table's.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    U64,
    U32,
    F64,
    Bool,
    /// Unix nanoseconds -> TIMESTAMP_NS.
    Ts,
    /// JSON `[{"k":..,"v":..}]` -> MAP(VARCHAR, VARCHAR).
    Map,
    /// JSON `["..."]` -> VARCHAR[].
    Strs,
    /// JSON `[ns, ...]` -> TIMESTAMP_NS[].
    TsList,
    /// JSON `[[{"k":..,"v":..}], ...]` -> MAP(VARCHAR, VARCHAR)[].
    MapList,
}

impl Kind {
    fn staged(self) -> &'static str {
        match self {
            Self::Str | Self::Map | Self::Strs | Self::TsList | Self::MapList => "VARCHAR",
            Self::U64 => "UBIGINT",
            Self::U32 => "UINTEGER",
            Self::F64 => "DOUBLE",
            Self::Bool => "BOOLEAN",
            Self::Ts => "BIGINT",
        }
    }

    /// The expression converting staged column `c`.
    fn convert(self, c: &str) -> String {
        const ENTRY: &str = r#"{"k":"VARCHAR","v":"VARCHAR"}"#;
        match self {
            Self::Str | Self::U64 | Self::U32 | Self::F64 | Self::Bool => c.to_string(),
            Self::Ts => format!("make_timestamp_ns({c})"),
            Self::Map => format!("map_from_entries(from_json({c}, '[{ENTRY}]'))"),
            Self::Strs => format!(r#"from_json({c}, '["VARCHAR"]')"#),
            Self::TsList => {
                format!(
                    r#"list_transform(from_json({c}, '["BIGINT"]'), x -> make_timestamp_ns(x))"#
                )
            }
            Self::MapList => {
                format!("list_transform(from_json({c}, '[[{ENTRY}]]'), x -> map_from_entries(x))")
            }
        }
    }
}

use Kind::{Bool, Map, MapList, Str, Strs, Ts, TsList, F64, U32, U64};

/// What happens to a row whose key is already stored (or repeated in the batch).
enum OnConflict {
    /// No key: append.
    Append,
    /// Replace it; the last row of the batch wins. (key columns)
    Replace(&'static [&'static str]),
    /// Replace it unless it was received later; the latest `received_at` of the batch wins,
    /// on a tie its last row. (key columns)
    Latest(&'static [&'static str]),
}

fn quoted(columns: &[&str]) -> String {
    let q: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    q.join(", ")
}

/// Stages `rows` and moves them into `table` in one statement.
fn insert_rows<R>(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[(&str, Kind)],
    on_conflict: OnConflict,
    rows: &[R],
    values: impl Fn(&R) -> Result<Vec<Value>, StoreError>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let stage = format!("stage_{table}");
    let staged: Vec<String> = columns
        .iter()
        .map(|(c, k)| format!("\"{c}\" {}", k.staged()))
        .collect();
    tx.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE {stage} (_seq BIGINT, {})",
        staged.join(", ")
    ))?;
    {
        let mut appender = tx.appender_to_catalog_and_db(&stage, "temp", "main")?;
        for (seq, row) in rows.iter().enumerate() {
            let mut v = Vec::with_capacity(columns.len() + 1);
            v.push(Value::BigInt(i64::try_from(seq).unwrap_or(i64::MAX)));
            v.extend(values(row)?);
            appender.append_row(duckdb::appender_params_from_iter(v))?;
        }
        appender.flush()?;
    }
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let converted: Vec<String> = columns
        .iter()
        .map(|(c, k)| k.convert(&format!("\"{c}\"")))
        .collect();
    let (verb, dedup, conflict) = match &on_conflict {
        OnConflict::Append => ("INSERT", String::new(), String::new()),
        OnConflict::Replace(key) => (
            "INSERT OR REPLACE",
            format!(
                " QUALIFY row_number() OVER (PARTITION BY {} ORDER BY _seq DESC) = 1",
                quoted(key)
            ),
            String::new(),
        ),
        OnConflict::Latest(key) => {
            let set: Vec<String> = names
                .iter()
                .filter(|c| !key.contains(c))
                .map(|c| format!("\"{c}\" = excluded.\"{c}\""))
                .collect();
            (
                "INSERT",
                format!(
                    " QUALIFY row_number() OVER (PARTITION BY {} \
                     ORDER BY received_at DESC, _seq DESC) = 1",
                    quoted(key)
                ),
                format!(
                    " ON CONFLICT ({}) DO UPDATE SET {} \
                     WHERE excluded.received_at >= {table}.received_at",
                    quoted(key),
                    set.join(", ")
                ),
            )
        }
    };
    tx.execute_batch(&format!(
        "{verb} INTO {table} ({}) SELECT {} FROM (SELECT * FROM {stage}{dedup}){conflict}; \
         DROP TABLE {stage};",
        quoted(&names),
        converted.join(", "),
    ))?;
    Ok(())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

fn map_json(m: &[(String, String)]) -> Result<Value, StoreError> {
    let entries: Vec<serde_json::Value> = m
        .iter()
        .map(|(k, v)| serde_json::json!({"k": k, "v": v}))
        .collect();
    Ok(Value::Text(serde_json::to_string(&entries)?))
}

fn json<T: serde::Serialize>(v: &T) -> Result<Value, StoreError> {
    Ok(Value::Text(serde_json::to_string(v)?))
}

fn map_list_json(maps: &[Vec<(String, String)>]) -> Result<Value, StoreError> {
    let lists: Vec<Vec<serde_json::Value>> = maps
        .iter()
        .map(|m| {
            m.iter()
                .map(|(k, v)| serde_json::json!({"k": k, "v": v}))
                .collect()
        })
        .collect();
    json(&lists)
}

const OTEL_TRACES: &[(&str, Kind)] = &[
    ("Timestamp", Ts),
    ("TraceId", Str),
    ("SpanId", Str),
    ("ParentSpanId", Str),
    ("TraceState", Str),
    ("SpanName", Str),
    ("SpanKind", Str),
    ("ServiceName", Str),
    ("ResourceAttributes", Map),
    ("ScopeName", Str),
    ("ScopeVersion", Str),
    ("SpanAttributes", Map),
    ("Duration", U64),
    ("StatusCode", Str),
    ("StatusMessage", Str),
    ("Events.Timestamp", TsList),
    ("Events.Name", Strs),
    ("Events.Attributes", MapList),
    ("Links.TraceId", Strs),
    ("Links.SpanId", Strs),
    ("Links.TraceState", Strs),
    ("Links.Attributes", MapList),
    ("Project", Str),
];

pub fn otel_traces(tx: &Transaction<'_>, rows: &[OtelTraceRow]) -> Result<(), StoreError> {
    insert_rows(
        tx,
        "otel_traces",
        OTEL_TRACES,
        OnConflict::Append,
        rows,
        |r| {
            Ok(vec![
                Value::BigInt(r.timestamp),
                text(&r.trace_id),
                text(&r.span_id),
                text(&r.parent_span_id),
                text(&r.trace_state),
                text(&r.span_name),
                text(&r.span_kind),
                text(&r.service_name),
                map_json(&r.resource_attributes)?,
                text(&r.scope_name),
                text(&r.scope_version),
                map_json(&r.span_attributes)?,
                Value::UBigInt(r.duration),
                text(&r.status_code),
                text(&r.status_message),
                json(&r.events_timestamp)?,
                json(&r.events_name)?,
                map_list_json(&r.events_attributes)?,
                json(&r.links_trace_id)?,
                json(&r.links_span_id)?,
                json(&r.links_trace_state)?,
                map_list_json(&r.links_attributes)?,
                text(&r.project),
            ])
        },
    )
}

/// The sorting key of ClickHouse's `llm_calls`.
const CALL_KEY: &[&str] = &["project", "model", "timestamp", "trace_id", "span_id"];

const LLM_CALLS: &[(&str, Kind)] = &[
    ("timestamp", Ts),
    ("project", Str),
    ("trace_id", Str),
    ("span_id", Str),
    ("parent_span_id", Str),
    ("service", Str),
    ("span_name", Str),
    ("operation", Str),
    ("provider", Str),
    ("model", Str),
    ("request_model", Str),
    ("response_model", Str),
    ("input_tokens", U64),
    ("output_tokens", U64),
    ("cache_read_tokens", U64),
    ("cache_creation_tokens", U64),
    ("reasoning_tokens", U64),
    ("cost_usd", F64),
    ("price_version", Str),
    ("duration_ns", U64),
    ("ttft_ms", F64),
    ("tpot_ms", F64),
    ("streaming", Bool),
    ("aborted", Bool),
    ("finish_reasons", Strs),
    ("status_code", Str),
    ("error_type", Str),
    ("conversation_id", Str),
    ("user_id", Str),
    ("request_params", Map),
    ("input_messages", Str),
    ("output_messages", Str),
    ("received_at", Ts),
];

pub fn llm_calls(tx: &Transaction<'_>, rows: &[LlmCallRow]) -> Result<(), StoreError> {
    insert_rows(
        tx,
        "llm_calls",
        LLM_CALLS,
        OnConflict::Replace(CALL_KEY),
        rows,
        |r| {
            Ok(vec![
                Value::BigInt(r.timestamp),
                text(&r.project),
                text(&r.trace_id),
                text(&r.span_id),
                text(&r.parent_span_id),
                text(&r.service),
                text(&r.span_name),
                text(&r.operation),
                text(&r.provider),
                text(&r.model),
                text(&r.request_model),
                text(&r.response_model),
                opt(r.input_tokens, Value::UBigInt),
                opt(r.output_tokens, Value::UBigInt),
                Value::UBigInt(r.cache_read_tokens),
                Value::UBigInt(r.cache_creation_tokens),
                Value::UBigInt(r.reasoning_tokens),
                opt(r.cost_usd, Value::Double),
                text(&r.price_version),
                Value::UBigInt(r.duration_ns),
                opt(r.ttft_ms, Value::Double),
                opt(r.tpot_ms, Value::Double),
                Value::Boolean(r.streaming),
                Value::Boolean(r.aborted),
                json(&r.finish_reasons)?,
                text(&r.status_code),
                text(&r.error_type),
                text(&r.conversation_id),
                text(&r.user_id),
                map_json(&r.request_params)?,
                text(&r.input_messages),
                text(&r.output_messages),
                Value::BigInt(r.received_at),
            ])
        },
    )
}

const FEEDBACK: &[(&str, Kind)] = &[
    ("id", Str),
    ("project", Str),
    ("timestamp", Ts),
    ("trace_id", Str),
    ("span_id", Str),
    ("conversation_id", Str),
    ("user_id", Str),
    ("name", Str),
    ("value_type", Str),
    ("score", F64),
    ("label", Str),
    ("text", Str),
    ("comment", Str),
    ("source", Str),
    ("origin", Str),
    ("attributes", Map),
    ("received_at", Ts),
];

const KEY: &[&str] = &["project", "id"];

pub fn feedback(tx: &Transaction<'_>, rows: &[FeedbackRow]) -> Result<(), StoreError> {
    insert_rows(
        tx,
        "feedback",
        FEEDBACK,
        OnConflict::Latest(KEY),
        rows,
        |r| {
            Ok(vec![
                text(&r.id),
                text(&r.project),
                Value::BigInt(r.timestamp),
                text(&r.trace_id),
                text(&r.span_id),
                text(&r.conversation_id),
                text(&r.user_id),
                text(&r.name),
                text(&r.value_type),
                opt(r.score, Value::Double),
                text(&r.label),
                text(&r.text),
                text(&r.comment),
                text(&r.source),
                text(&r.origin),
                map_json(&r.attributes)?,
                Value::BigInt(r.received_at),
            ])
        },
    )
}

const SIGNALS: &[(&str, Kind)] = &[
    ("id", Str),
    ("project", Str),
    ("timestamp", Ts),
    ("trace_id", Str),
    ("span_id", Str),
    ("conversation_id", Str),
    ("user_id", Str),
    ("type", Str),
    ("source", Str),
    ("origin", Str),
    ("discarded_trace_id", Str),
    ("discarded_span_id", Str),
    ("tokens_received", U64),
    ("ms_since_start", F64),
    ("edit_ratio", F64),
    ("edited_text", Str),
    ("text", Str),
    ("turn_count", U32),
    ("attributes", Map),
    ("received_at", Ts),
];

pub fn signals(tx: &Transaction<'_>, rows: &[SignalRow]) -> Result<(), StoreError> {
    insert_rows(tx, "signals", SIGNALS, OnConflict::Latest(KEY), rows, |r| {
        Ok(vec![
            text(&r.id),
            text(&r.project),
            Value::BigInt(r.timestamp),
            text(&r.trace_id),
            text(&r.span_id),
            text(&r.conversation_id),
            text(&r.user_id),
            text(&r.signal_type),
            text(&r.source),
            text(&r.origin),
            text(&r.discarded_trace_id),
            text(&r.discarded_span_id),
            opt(r.tokens_received, Value::UBigInt),
            opt(r.ms_since_start, Value::Double),
            opt(r.edit_ratio, Value::Double),
            text(&r.edited_text),
            text(&r.text),
            opt(r.turn_count, Value::UInt),
            map_json(&r.attributes)?,
            Value::BigInt(r.received_at),
        ])
    })
}

const ALERTS: &[(&str, Kind)] = &[
    ("fingerprint", Str),
    ("alertname", Str),
    ("slo", Str),
    ("project", Str),
    ("severity", Str),
    ("state", Str),
    ("announced", Bool),
    ("labels", Map),
    ("annotations", Map),
    ("starts_at", Ts),
    ("ends_at", Ts),
    ("long_burn_rate", F64),
    ("short_burn_rate", F64),
    ("sli", F64),
    ("budget_remaining", F64),
    ("event_time", Ts),
    ("sent_at", Ts),
];

/// The detector's notifications (events: appended).
pub fn alerts(tx: &Transaction<'_>, rows: &[AlertRow]) -> Result<(), StoreError> {
    insert_rows(tx, "alerts", ALERTS, OnConflict::Append, rows, |r| {
        Ok(vec![
            text(&r.fingerprint),
            text(&r.alertname),
            text(&r.slo),
            text(&r.project),
            text(&r.severity),
            text(&r.state),
            Value::Boolean(r.announced),
            map_json(&r.labels)?,
            map_json(&r.annotations)?,
            Value::BigInt(r.starts_at),
            opt(r.ends_at, Value::BigInt),
            opt(r.long_burn_rate, Value::Double),
            opt(r.short_burn_rate, Value::Double),
            opt(r.sli, Value::Double),
            Value::Double(r.budget_remaining),
            Value::BigInt(r.event_time),
            Value::BigInt(r.sent_at),
        ])
    })
}
