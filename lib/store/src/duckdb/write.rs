//! Rows into DuckDB: one prepared INSERT per table, with ClickHouse's engine semantics spelled
//! out in SQL: `llm_calls` replaces the row of the same key (ReplacingMergeTree without a
//! version: the last write wins), `feedback` and `signals` keep the row received last
//! (ReplacingMergeTree(received_at); on a tie the last write wins, as in ClickHouse),
//! `otel_traces` appends (MergeTree).
//!
//! The duckdb crate binds scalars only, so maps and arrays travel as JSON text and are cast in
//! SQL (`from_json`); timestamps travel as Unix nanoseconds (`make_timestamp_ns`).

use duckdb::types::Value;
use duckdb::Transaction;
use flywheel_schema::rows::{FeedbackRow, LlmCallRow, OtelTraceRow, SignalRow};

use crate::StoreError;

/// How a column's bound value becomes the column's type.
#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Ts,
    Map,
    Strs,
    TsList,
    MapList,
}

impl Kind {
    fn placeholder(self) -> &'static str {
        match self {
            Self::Plain => "?",
            Self::Ts => "make_timestamp_ns(?)",
            Self::Map => "map_from_entries(from_json(?, '[{\"k\":\"VARCHAR\",\"v\":\"VARCHAR\"}]'))",
            Self::Strs => "from_json(?, '[\"VARCHAR\"]')",
            Self::TsList => "list_transform(from_json(?, '[\"BIGINT\"]'), x -> make_timestamp_ns(x))",
            Self::MapList => {
                "list_transform(from_json(?, '[[{\"k\":\"VARCHAR\",\"v\":\"VARCHAR\"}]]'), \
                 x -> map_from_entries(x))"
            }
        }
    }
}

use Kind::{Map, MapList, Plain, Strs, Ts, TsList};

/// What happens to a row whose key is already stored.
enum OnConflict {
    /// No key: append.
    Append,
    /// Replace it.
    Replace,
    /// Replace it unless it was received later; (key columns).
    Latest(&'static [&'static str]),
}

fn insert_sql(table: &str, columns: &[(&str, Kind)], on_conflict: &OnConflict) -> String {
    let names: Vec<String> = columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
    let values: Vec<&str> = columns.iter().map(|(_, k)| k.placeholder()).collect();
    let verb = match on_conflict {
        OnConflict::Replace => "INSERT OR REPLACE",
        _ => "INSERT",
    };
    let mut sql = format!(
        "{verb} INTO {table} ({}) VALUES ({})",
        names.join(", "),
        values.join(", ")
    );
    if let OnConflict::Latest(key) = on_conflict {
        let key_sql: Vec<String> = key.iter().map(|c| format!("\"{c}\"")).collect();
        let set: Vec<String> = columns
            .iter()
            .filter(|(c, _)| !key.contains(c))
            .map(|(c, _)| format!("\"{c}\" = excluded.\"{c}\""))
            .collect();
        sql.push_str(&format!(
            " ON CONFLICT ({}) DO UPDATE SET {} WHERE excluded.received_at >= {table}.received_at",
            key_sql.join(", "),
            set.join(", ")
        ));
    }
    sql
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

/// Inserts `rows` with one prepared statement.
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
    let mut stmt = tx.prepare(&insert_sql(table, columns, &on_conflict))?;
    for row in rows {
        let v = values(row)?;
        debug_assert_eq!(v.len(), columns.len());
        stmt.execute(duckdb::params_from_iter(v))?;
    }
    Ok(())
}

const OTEL_TRACES: &[(&str, Kind)] = &[
    ("Timestamp", Ts),
    ("TraceId", Plain),
    ("SpanId", Plain),
    ("ParentSpanId", Plain),
    ("TraceState", Plain),
    ("SpanName", Plain),
    ("SpanKind", Plain),
    ("ServiceName", Plain),
    ("ResourceAttributes", Map),
    ("ScopeName", Plain),
    ("ScopeVersion", Plain),
    ("SpanAttributes", Map),
    ("Duration", Plain),
    ("StatusCode", Plain),
    ("StatusMessage", Plain),
    ("Events.Timestamp", TsList),
    ("Events.Name", Strs),
    ("Events.Attributes", MapList),
    ("Links.TraceId", Strs),
    ("Links.SpanId", Strs),
    ("Links.TraceState", Strs),
    ("Links.Attributes", MapList),
    ("Project", Plain),
];

pub fn otel_traces(tx: &Transaction<'_>, rows: &[OtelTraceRow]) -> Result<(), StoreError> {
    insert_rows(tx, "otel_traces", OTEL_TRACES, OnConflict::Append, rows, |r| {
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
    })
}

const LLM_CALLS: &[(&str, Kind)] = &[
    ("timestamp", Ts),
    ("project", Plain),
    ("trace_id", Plain),
    ("span_id", Plain),
    ("parent_span_id", Plain),
    ("service", Plain),
    ("span_name", Plain),
    ("operation", Plain),
    ("provider", Plain),
    ("model", Plain),
    ("request_model", Plain),
    ("response_model", Plain),
    ("input_tokens", Plain),
    ("output_tokens", Plain),
    ("cache_read_tokens", Plain),
    ("cache_creation_tokens", Plain),
    ("reasoning_tokens", Plain),
    ("cost_usd", Plain),
    ("price_version", Plain),
    ("duration_ns", Plain),
    ("ttft_ms", Plain),
    ("tpot_ms", Plain),
    ("streaming", Plain),
    ("aborted", Plain),
    ("finish_reasons", Strs),
    ("status_code", Plain),
    ("error_type", Plain),
    ("conversation_id", Plain),
    ("user_id", Plain),
    ("request_params", Map),
    ("input_messages", Plain),
    ("output_messages", Plain),
    ("received_at", Ts),
];

pub fn llm_calls(tx: &Transaction<'_>, rows: &[LlmCallRow]) -> Result<(), StoreError> {
    insert_rows(tx, "llm_calls", LLM_CALLS, OnConflict::Replace, rows, |r| {
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
    })
}

const FEEDBACK: &[(&str, Kind)] = &[
    ("id", Plain),
    ("project", Plain),
    ("timestamp", Ts),
    ("trace_id", Plain),
    ("span_id", Plain),
    ("conversation_id", Plain),
    ("user_id", Plain),
    ("name", Plain),
    ("value_type", Plain),
    ("score", Plain),
    ("label", Plain),
    ("text", Plain),
    ("comment", Plain),
    ("source", Plain),
    ("origin", Plain),
    ("attributes", Map),
    ("received_at", Ts),
];

const KEY: &[&str] = &["project", "id"];

pub fn feedback(tx: &Transaction<'_>, rows: &[FeedbackRow]) -> Result<(), StoreError> {
    insert_rows(tx, "feedback", FEEDBACK, OnConflict::Latest(KEY), rows, |r| {
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
    })
}

const SIGNALS: &[(&str, Kind)] = &[
    ("id", Plain),
    ("project", Plain),
    ("timestamp", Ts),
    ("trace_id", Plain),
    ("span_id", Plain),
    ("conversation_id", Plain),
    ("user_id", Plain),
    ("type", Plain),
    ("source", Plain),
    ("origin", Plain),
    ("discarded_trace_id", Plain),
    ("discarded_span_id", Plain),
    ("tokens_received", Plain),
    ("ms_since_start", Plain),
    ("edit_ratio", Plain),
    ("edited_text", Plain),
    ("text", Plain),
    ("turn_count", Plain),
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
