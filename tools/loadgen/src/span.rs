//! Calls -> OTLP spans, with the OpenTelemetry GenAI attributes the ingester maps into
//! `llm_calls` (`services/ingester/src/map/genai.rs`): operation, provider, request and
//! response model, usage, `gen_ai.request.stream`, `gen_ai.response.time_to_first_chunk`
//! (seconds; TPOT follows from the span's duration), finish reasons (none on a stopped stream,
//! which the ingester reads as aborted), conversation, user, `error.type` and the messages
//! (identical for a regenerated or retried call, which the regenerate rule relies on).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use serde_json::json;

use crate::config::ModelConfig;
use crate::event::{Call, Outcome};

/// Previous turns repeated in the input messages, at most.
const HISTORY_TURNS: u32 = 8;
/// The application's overhead around the model call, ns.
const APP_OVERHEAD_NS: i64 = 15_000_000;

/// What every span of a run shares.
#[derive(Debug, Clone)]
pub struct SpanContext<'a> {
    pub service: &'a str,
    pub models: &'a [ModelConfig],
    pub app_spans: bool,
    pub capture_content: bool,
}

/// One OTLP request carrying `calls` (one resource, one scope; two spans per call with app
/// spans on).
pub fn request(calls: &[Call], ctx: &SpanContext<'_>) -> ExportTraceServiceRequest {
    let per_call = if ctx.app_spans { 2 } else { 1 };
    let mut spans = Vec::with_capacity(calls.len() * per_call);
    for call in calls {
        if ctx.app_spans {
            spans.push(app_span(call));
        }
        spans.push(model_span(call, ctx));
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s(ctx.service)),
                    kv("telemetry.sdk.name", s("flywheel-loadgen")),
                    kv("telemetry.sdk.language", s("rust")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "flywheel-loadgen".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Spans per call.
pub fn spans_per_call(ctx: &SpanContext<'_>) -> u64 {
    if ctx.app_spans {
        2
    } else {
        1
    }
}

/// The model call: a client span `chat <model>`.
pub fn model_span(call: &Call, ctx: &SpanContext<'_>) -> Span {
    let m = &ctx.models[call.model];
    let response_model = m.response_model.as_deref().unwrap_or(&m.name);
    let mut attributes = vec![
        kv("gen_ai.operation.name", s("chat")),
        kv("gen_ai.provider.name", s(&m.provider)),
        kv("gen_ai.request.model", s(&m.name)),
        kv("gen_ai.request.max_tokens", int(call.max_tokens)),
        kv("gen_ai.request.stream", Value::BoolValue(call.streaming)),
        kv("gen_ai.conversation.id", s(&call.conversation_id)),
        kv("user.id", s(&call.user_id)),
    ];
    // A failed call reports no usage (providers return none with an error), so it has no cost.
    if let Some(out) = call.output_tokens {
        attributes.push(kv("gen_ai.usage.input_tokens", int(call.input_tokens)));
        attributes.push(kv("gen_ai.response.model", s(response_model)));
        attributes.push(kv("gen_ai.usage.output_tokens", int(out)));
    }
    if let Some(ttft) = call.ttft_ms {
        attributes.push(kv(
            "gen_ai.response.time_to_first_chunk",
            Value::DoubleValue(ttft / 1000.0),
        ));
    }
    let finish = match &call.outcome {
        Outcome::Finished { reason } => Some(*reason),
        Outcome::Stopped | Outcome::Failed { .. } => None,
    };
    if let Some(reason) = finish {
        attributes.push(kv(
            "gen_ai.response.finish_reasons",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(s(reason)),
                }],
            }),
        ));
    }
    let mut status = None;
    if let Outcome::Failed { error_type } = &call.outcome {
        attributes.push(kv("error.type", s(error_type)));
        status = Some(Status {
            code: StatusCode::Error as i32,
            message: format!("{} error from {}", error_type, m.provider),
        });
    }
    if ctx.capture_content {
        attributes.push(kv(
            "gen_ai.input.messages",
            s(&input_messages(&call.conversation_id, call.turn)),
        ));
        if call.output_tokens.is_some() {
            attributes.push(kv(
                "gen_ai.output.messages",
                s(&output_messages(call, finish)),
            ));
        }
    }
    Span {
        trace_id: call.trace_id.to_vec(),
        span_id: call.span_id.to_vec(),
        parent_span_id: if ctx.app_spans {
            call.app_span_id.to_vec()
        } else {
            Vec::new()
        },
        name: format!("chat {}", m.name),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: call.start_ns as u64,
        end_time_unix_nano: call.end_ns as u64,
        attributes,
        status,
        ..Default::default()
    }
}

/// The application's server span around the model call.
pub fn app_span(call: &Call) -> Span {
    let failed = matches!(call.outcome, Outcome::Failed { .. });
    Span {
        trace_id: call.trace_id.to_vec(),
        span_id: call.app_span_id.to_vec(),
        name: "POST /chat".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: (call.start_ns - APP_OVERHEAD_NS) as u64,
        end_time_unix_nano: (call.end_ns + APP_OVERHEAD_NS) as u64,
        attributes: vec![
            kv("http.request.method", s("POST")),
            kv("http.route", s("/chat")),
            kv(
                "http.response.status_code",
                int(if failed { 502 } else { 200 }),
            ),
            kv("gen_ai.conversation.id", s(&call.conversation_id)),
            kv("user.id", s(&call.user_id)),
        ],
        status: failed.then(|| Status {
            code: StatusCode::Error as i32,
            message: "model call failed".into(),
        }),
        ..Default::default()
    }
}

/// The input of a turn: a system prompt, up to [`HISTORY_TURNS`] earlier turns and the user's
/// message. A function of the conversation and turn only, so that a regenerated or retried call
/// sends exactly the same input.
pub fn input_messages(conversation_id: &str, turn: u32) -> String {
    let text = |role: &str, content: String| json!({"role": role, "parts": [{"type": "text", "content": content}]});
    let mut messages = vec![text("system", "You are a helpful assistant.".into())];
    for t in turn.saturating_sub(HISTORY_TURNS)..turn {
        messages.push(text("user", format!("question {t} of {conversation_id}")));
        messages.push(text("assistant", format!("answer to question {t}")));
    }
    messages.push(text(
        "user",
        format!("question {turn} of {conversation_id}"),
    ));
    serde_json::Value::Array(messages).to_string()
}

fn output_messages(call: &Call, finish: Option<&str>) -> String {
    let mut message = json!({
        "role": "assistant",
        "parts": [{"type": "text", "content": format!("answer to question {} ({})", call.turn, hex::encode(call.span_id))}],
    });
    if let Some(reason) = finish {
        message["finish_reason"] = json!(reason);
    }
    json!([message]).to_string()
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn int(v: u64) -> Value {
    Value::IntValue(i64::try_from(v).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;
