//! Spans -> `otel_traces` rows with the OpenTelemetry Collector ClickHouse exporter's value
//! conventions: lowercase hex ids (empty for all-zero ids), span kind and status code as pdata
//! names (`Server`, `Error`, ...), start time as `Timestamp`, `Duration` in nanoseconds,
//! attribute values through pcommon `AsString` with keys sorted.

use opentelemetry_proto::tonic::trace::v1::Span;

use super::value::attribute_map_owned;
use flywheel_schema::rows::OtelTraceRow;

/// Lowercase hex, or empty for an absent or all-zero id (`traceutil.*ToHexOrEmptyString`).
pub fn hex_id(id: &[u8]) -> String {
    if id.iter().all(|b| *b == 0) {
        String::new()
    } else {
        hex::encode(id)
    }
}

/// pdata `SpanKind.String()`.
pub fn span_kind(kind: i32) -> &'static str {
    match kind {
        0 => "Unspecified",
        1 => "Internal",
        2 => "Server",
        3 => "Client",
        4 => "Producer",
        5 => "Consumer",
        _ => "",
    }
}

/// pdata `StatusCode.String()`.
pub fn status_code(code: i32) -> &'static str {
    match code {
        0 => "Unset",
        1 => "Ok",
        2 => "Error",
        _ => "",
    }
}

fn ns(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// The resource- and scope-level fields shared by the spans of one `ScopeSpans`.
pub struct SpanContext<'a> {
    pub service_name: &'a str,
    pub resource_attributes: &'a [(String, String)],
    pub scope_name: &'a str,
    pub scope_version: &'a str,
    pub project: &'a str,
}

/// One `otel_traces` row; takes the span so that its strings move into the row.
pub fn trace_row(span: Span, ctx: &SpanContext<'_>) -> OtelTraceRow {
    let (status_code_value, status_message) = span
        .status
        .map_or((0, String::new()), |s| (s.code, s.message));
    let duration = span
        .end_time_unix_nano
        .wrapping_sub(span.start_time_unix_nano);
    let mut row = OtelTraceRow {
        timestamp: ns(span.start_time_unix_nano),
        trace_id: hex_id(&span.trace_id),
        span_id: hex_id(&span.span_id),
        parent_span_id: hex_id(&span.parent_span_id),
        trace_state: span.trace_state,
        span_name: span.name,
        span_kind: span_kind(span.kind).to_string(),
        service_name: ctx.service_name.to_string(),
        resource_attributes: ctx.resource_attributes.to_vec(),
        scope_name: ctx.scope_name.to_string(),
        scope_version: ctx.scope_version.to_string(),
        span_attributes: attribute_map_owned(span.attributes),
        // pcommon.Timestamp subtraction: unsigned, wrapping.
        duration,
        status_code: status_code(status_code_value).to_string(),
        status_message,
        project: ctx.project.to_string(),
        ..OtelTraceRow::default()
    };
    for e in span.events {
        row.events_timestamp.push(ns(e.time_unix_nano));
        row.events_name.push(e.name);
        row.events_attributes
            .push(attribute_map_owned(e.attributes));
    }
    for l in span.links {
        row.links_trace_id.push(hex_id(&l.trace_id));
        row.links_span_id.push(hex_id(&l.span_id));
        row.links_trace_state.push(l.trace_state);
        row.links_attributes.push(attribute_map_owned(l.attributes));
    }
    row
}
