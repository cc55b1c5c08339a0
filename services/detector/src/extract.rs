//! What the SLIs need from a span message: the model calls in an OTLP
//! `ExportTraceServiceRequest`, each with its SLI key, event time, outcome and latencies, and
//! the ids feedback and signals join on.
//!
//! A focused reading of the GenAI conventions the ingester maps in full
//! (`services/ingester/src/map/genai.rs`, which a service may not import): the same attribute
//! names by the same precedence for operation, model, TTFT, TPOT and status, and the shared
//! [`normalize_model`] so that live keys equal the `model` column of `llm_calls` (history and
//! late lookups read that column). Tokens and the price lookup use the attribute names of
//! `flywheel_pricing::attrs` and the price table of `flywheel_pricing`, both shared with the
//! ingester, so a call's live cost equals its `llm_calls.cost_usd`; the end user comes from
//! `flywheel_pricing::attrs::USER` by the ingester's rule, so it equals `llm_calls.user_id`.

use flywheel_core::genai::normalize_model;
use flywheel_pricing::attrs::{
    CACHE_READ, CACHE_WRITE, CONVERSATION, FIRST_CHUNK_EVENTS, INPUT_TOKENS, MODEL_CALL_OPERATIONS,
    OPERATION, OUTPUT_TOKENS, PROVIDER, REASONING, REQUEST_MODEL, RESPONSE_MODEL, USER,
};
use flywheel_pricing::{PriceTable, Usage};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};

use crate::sli::CallEvent;
use crate::SliKey;

/// One model call as the detector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub key: SliKey,
    /// Start of the call, ms since the epoch (as `llm_calls.timestamp`).
    pub ts_ms: i64,
    pub event: CallEvent,
    /// Lowercase hex, as stored.
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    /// The end user (`llm_calls.user_id`), `""` when none: per-user spend policies only, never
    /// an SLI dimension.
    pub user: String,
}

fn find<'a>(attrs: &'a [KeyValue], names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| {
        attrs
            .iter()
            .find(|kv| kv.key == *n)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    })
}

fn string(attrs: &[KeyValue], names: &[&str]) -> Option<String> {
    match find(attrs, names)? {
        Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn number(attrs: &[KeyValue], names: &[&str]) -> Option<f64> {
    match find(attrs, names)? {
        Value::IntValue(i) => Some(*i as f64),
        Value::DoubleValue(d) if d.is_finite() => Some(*d),
        Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The first of `names` present with a non-empty string (or an integer) value: the ingester's
/// `Attrs::str`, which skips an empty value to the next name.
fn first_str(attrs: &[KeyValue], names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        let v = attrs.iter().find(|kv| kv.key == *n)?.value.as_ref()?;
        match v.value.as_ref()? {
            Value::StringValue(s) if !s.is_empty() => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

/// The first of `names` present as a non-negative integer (the ingester's `Attrs::uint`).
fn uint(attrs: &[KeyValue], names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| {
        let v = attrs.iter().find(|kv| kv.key == *n)?.value.as_ref()?;
        match v.value.as_ref()? {
            Value::IntValue(i) => u64::try_from(*i).ok(),
            Value::DoubleValue(d) if d.fract() == 0.0 && *d >= 0.0 && *d < 1e18 => Some(*d as u64),
            Value::StringValue(s) => s.trim().parse().ok(),
            _ => None,
        }
    })
}

/// Tokens (input + output) and cost of a call, as the ingester stores them: no token count,
/// no tokens and no cost; an unpriced model, no cost.
fn usage(a: &[KeyValue], prices: &PriceTable) -> (Option<u64>, Option<f64>) {
    let (input, output) = (uint(a, INPUT_TOKENS), uint(a, OUTPUT_TOKENS));
    if input.is_none() && output.is_none() {
        return (None, None);
    }
    let usage = Usage {
        input: input.unwrap_or(0),
        output: output.unwrap_or(0),
        cache_read: uint(a, CACHE_READ).unwrap_or(0),
        cache_creation: uint(a, CACHE_WRITE).unwrap_or(0),
        reasoning: uint(a, REASONING).unwrap_or(0),
    };
    let provider = string(a, PROVIDER).unwrap_or_default().to_ascii_lowercase();
    let model = string(a, RESPONSE_MODEL)
        .or_else(|| string(a, REQUEST_MODEL))
        .unwrap_or_default();
    let cost = prices.lookup(&provider, &model).map(|p| p.cost(&usage));
    (Some(usage.input.saturating_add(usage.output)), cost)
}

/// The operation of a model call, `None` for other spans (agents, tools, workflows).
fn operation(attrs: &[KeyValue]) -> Option<String> {
    if let Some(op) = string(attrs, OPERATION) {
        let op = op.to_ascii_lowercase();
        return MODEL_CALL_OPERATIONS.contains(&op.as_str()).then_some(op);
    }
    match string(attrs, &["openinference.span.kind"]).as_deref() {
        Some("LLM") => Some("chat".to_string()),
        Some("EMBEDDING") => Some("embeddings".to_string()),
        Some(_) => None,
        None => string(attrs, REQUEST_MODEL).map(|_| "chat".to_string()),
    }
}

/// The call in `span`, if it is one (its user from the span only; [`calls`] falls back to the
/// resource's).
pub fn call(project: &str, service: &str, span: &Span, prices: &PriceTable) -> Option<Call> {
    let a = &span.attributes;
    let operation = operation(a)?;
    let model = string(a, RESPONSE_MODEL)
        .or_else(|| string(a, REQUEST_MODEL))
        .map(|m| normalize_model(&m))
        .unwrap_or_default();
    let duration_ns = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    let first_chunk = span
        .events
        .iter()
        .filter(|e| FIRST_CHUNK_EVENTS.contains(&e.name.as_str()))
        .map(|e| e.time_unix_nano)
        .min();
    let ttft_ms = number(a, &["gen_ai.response.time_to_first_chunk"])
        .map(|s| s * 1000.0)
        .or_else(|| first_chunk.map(|t| t.saturating_sub(span.start_time_unix_nano) as f64 / 1e6));
    let tpot_ms = match (ttft_ms, uint(a, OUTPUT_TOKENS)) {
        (Some(ttft), Some(out)) if out > 1 => {
            let generation = duration_ns as f64 / 1e6 - ttft;
            (generation >= 0.0).then(|| generation / (out - 1) as f64)
        }
        _ => None,
    };
    let (tokens, cost_usd) = usage(a, prices);
    let error = span
        .status
        .as_ref()
        .is_some_and(|s| s.code() == StatusCode::Error);
    Some(Call {
        key: SliKey {
            project: project.to_string(),
            service: service.to_string(),
            model,
            operation,
        },
        // Event time is the call's end: when its outcome is known and its span is exported, so
        // events arrive in event-time order however long calls take (a start time would make
        // every long call late).
        ts_ms: i64::try_from(span.end_time_unix_nano.max(span.start_time_unix_nano) / 1_000_000)
            .unwrap_or(i64::MAX),
        event: CallEvent {
            error,
            duration_ms: duration_ns as f64 / 1e6,
            ttft_ms,
            tpot_ms,
            cost_usd,
            tokens,
        },
        trace_id: hex::encode(&span.trace_id),
        span_id: hex::encode(&span.span_id),
        conversation_id: string(a, CONVERSATION).unwrap_or_default(),
        user: first_str(a, USER).unwrap_or_default(),
    })
}

/// Every model call of a span message.
pub fn calls(project: &str, req: &ExportTraceServiceRequest, prices: &PriceTable) -> Vec<Call> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let service = string(resource, &["service.name"]).unwrap_or_default();
        for ss in &rs.scope_spans {
            out.extend(
                ss.spans
                    .iter()
                    .filter_map(|s| call(project, &service, s, prices))
                    .map(|mut c| {
                        if c.user.is_empty() {
                            c.user = first_str(resource, USER).unwrap_or_default();
                        }
                        c
                    }),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{span::Event, Status};

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn a_streamed_chat_call_and_an_agent_span() {
        let s = |v: &str| Value::StringValue(v.into());
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 3_000_000_000,
            attributes: vec![
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("gen_ai.response.model", s("gpt-4o-2024-08-06")),
                kv("gen_ai.usage.output_tokens", Value::IntValue(101)),
                kv("session.id", s("conv-1")),
            ],
            events: vec![Event {
                name: "gen_ai.content.completion.chunk".into(),
                time_unix_nano: 1_500_000_000,
                ..Default::default()
            }],
            status: Some(Status {
                code: StatusCode::Error as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let prices = PriceTable::load(None).unwrap();
        let c = call("p", "svc", &span, &prices).unwrap();
        assert_eq!(c.key.model, "gpt-4o");
        assert_eq!((c.key.operation.as_str(), c.ts_ms), ("chat", 3000));
        assert!(c.event.error);
        assert_eq!(c.event.duration_ms, 2000.0);
        assert_eq!(c.event.ttft_ms, Some(500.0));
        // (2000 - 500) ms over 100 tokens after the first.
        assert_eq!(c.event.tpot_ms, Some(15.0));
        assert_eq!(c.span_id, "0202020202020202");
        assert_eq!(c.conversation_id, "conv-1");
        let agent = Span {
            attributes: vec![kv("gen_ai.operation.name", s("invoke_agent"))],
            ..Default::default()
        };
        assert!(call("p", "svc", &agent, &prices).is_none());
        // No input count: 101 output tokens, priced at gpt-4o's output price.
        assert_eq!(c.event.tokens, Some(101));
        let out_price = prices.lookup("", "gpt-4o").unwrap().output;
        assert!((c.event.cost_usd.unwrap() - 101.0 * out_price / 1e6).abs() < 1e-12);
    }

    #[test]
    fn the_user_by_the_ingesters_precedence() {
        let s = |v: &str| Value::StringValue(v.into());
        let prices = PriceTable::load(None).unwrap();
        let span = |attrs: Vec<KeyValue>| Span {
            attributes: [vec![kv("gen_ai.operation.name", s("chat"))], attrs].concat(),
            ..Default::default()
        };
        let req = |spans: Vec<Span>, resource: Vec<KeyValue>| ExportTraceServiceRequest {
            resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let users = |r: &ExportTraceServiceRequest| -> Vec<String> {
            calls("p", r, &prices).into_iter().map(|c| c.user).collect()
        };
        // An empty `user.id` is skipped for the next name (as the ingester's `Attrs::str`);
        // a numeric id is its decimal string; the span wins over the resource, which fills in.
        let r = req(
            vec![
                span(vec![kv("user.id", s("")), kv("enduser.id", s("alice"))]),
                span(vec![kv("gen_ai.user", Value::IntValue(42))]),
                span(vec![]),
            ],
            vec![kv("traceloop.association.properties.user_id", s("bob"))],
        );
        assert_eq!(users(&r), ["alice", "42", "bob"]);
        assert_eq!(users(&req(vec![span(vec![])], vec![])), [""]);
    }

    #[test]
    fn tokens_and_cost_by_the_ingesters_precedence() {
        let s = |v: &str| Value::StringValue(v.into());
        let prices = PriceTable::load(None).unwrap();
        let span = |model: &str| Span {
            attributes: vec![
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.provider.name", s("openai")),
                kv("gen_ai.request.model", s(model)),
                // The current name wins over the deprecated one; values are never summed.
                kv("gen_ai.usage.input_tokens", Value::IntValue(1000)),
                kv("gen_ai.usage.prompt_tokens", Value::IntValue(5)),
                kv("gen_ai.usage.completion_tokens", s("200")),
                kv(
                    "gen_ai.usage.cache_read.input_tokens",
                    Value::DoubleValue(400.0),
                ),
            ],
            ..Default::default()
        };
        let c = call("p", "svc", &span("gpt-4o-2024-08-06"), &prices).unwrap();
        assert_eq!(c.event.tokens, Some(1200));
        // gpt-4o: 600 plain input x $2.50 + 400 cached x $1.25 + 200 output x $10 per million.
        let want = (600.0 * 2.5 + 400.0 * 1.25 + 200.0 * 10.0) / 1e6;
        assert!((c.event.cost_usd.unwrap() - want).abs() < 1e-12);
        // An unpriced model has tokens but no cost (never 0).
        let c = call("p", "svc", &span("my-finetune"), &prices).unwrap();
        assert_eq!((c.event.tokens, c.event.cost_usd), (Some(1200), None));
        // No token counts: neither.
        let bare = Span {
            attributes: vec![kv("gen_ai.request.model", s("gpt-4o"))],
            ..Default::default()
        };
        let c = call("p", "svc", &bare, &prices).unwrap();
        assert_eq!((c.event.tokens, c.event.cost_usd), (None, None));
    }
}
