//! Convention-by-convention tests of the GenAI mapper (no I/O).

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::Event, status::StatusCode, Span, Status};

use super::*;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.to_string())
}

fn i(v: i64) -> Value {
    Value::IntValue(v)
}

const START: u64 = 1_000_000_000_000;

fn span(attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "chat".into(),
        start_time_unix_nano: START,
        end_time_unix_nano: START + 2_000_000_000, // 2 s
        attributes: attrs,
        ..Default::default()
    }
}

fn map(span: &Span) -> Option<LlmCallRow> {
    map_with(span, true)
}

fn map_with(span: &Span, capture: bool) -> Option<LlmCallRow> {
    let prices = PriceTable::load(None).unwrap();
    let ctx = CallContext {
        project: "p",
        service: "svc",
        resource: Attrs(&[]),
        received_at_ns: 0,
        prices: &prices,
        capture_content: capture,
    };
    llm_call(span, &ctx)
}

#[test]
fn current_semconv_with_cache_and_reasoning_is_priced_once() {
    let row = map(&span(vec![
        kv("gen_ai.operation.name", s("chat")),
        kv("gen_ai.provider.name", s("openai")),
        kv("gen_ai.request.model", s("o4-mini")),
        kv("gen_ai.response.model", s("o4-mini-2025-04-16")),
        kv("gen_ai.usage.input_tokens", i(1000)),
        kv("gen_ai.usage.cache_read.input_tokens", i(400)),
        kv("gen_ai.usage.output_tokens", i(500)),
        kv("gen_ai.usage.reasoning.output_tokens", i(300)),
        kv(
            "gen_ai.response.time_to_first_chunk",
            Value::DoubleValue(0.5),
        ),
        kv("gen_ai.conversation.id", s("conv-1")),
        kv(
            "gen_ai.response.finish_reasons",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(s("stop")),
                }],
            }),
        ),
    ]))
    .unwrap();
    assert_eq!(row.model, "o4-mini");
    assert_eq!(
        (row.input_tokens, row.output_tokens),
        (Some(1000), Some(500))
    );
    assert_eq!((row.cache_read_tokens, row.reasoning_tokens), (400, 300));
    // 600 * 1.10 + 400 * 0.275 + 500 * 4.40 (reasoning inside output, billed once)
    let expected = (600.0 * 1.10 + 400.0 * 0.275 + 500.0 * 4.40) / 1e6;
    assert!(
        (row.cost_usd.unwrap() - expected).abs() < 1e-12,
        "{:?}",
        row.cost_usd
    );
    assert_eq!(row.ttft_ms, Some(500.0));
    // (2000 ms - 500 ms) / (500 - 1)
    assert!((row.tpot_ms.unwrap() - 1500.0 / 499.0).abs() < 1e-9);
    assert_eq!(row.conversation_id, "conv-1");
    assert_eq!(row.finish_reasons, vec!["stop"]);
    assert!(!row.aborted);
}

#[test]
fn deprecated_names_map_like_current_ones() {
    let row = map(&span(vec![
        kv("gen_ai.system", s("openai")),
        kv("gen_ai.request.model", s("gpt-4o")),
        kv("gen_ai.usage.prompt_tokens", i(100)),
        kv("gen_ai.usage.completion_tokens", i(20)),
        kv("gen_ai.usage.cache_read_input_tokens", i(50)),
    ]))
    .unwrap();
    assert_eq!(row.provider, "openai");
    assert_eq!(row.operation, "chat");
    assert_eq!(
        (row.input_tokens, row.output_tokens, row.cache_read_tokens),
        (Some(100), Some(20), 50)
    );
}

#[test]
fn when_conventions_conflict_the_newest_wins_and_nothing_is_summed() {
    let row = map(&span(vec![
        kv("gen_ai.operation.name", s("chat")),
        kv("gen_ai.request.model", s("gpt-4o-mini")),
        kv("llm.model_name", s("something-else")),
        kv("gen_ai.usage.input_tokens", i(42)),
        kv("gen_ai.usage.prompt_tokens", i(40)),
        kv("llm.token_count.prompt", i(41)),
        kv("gen_ai.usage.output_tokens", i(8)),
        kv("llm.token_count.completion", i(9)),
        kv("gen_ai.usage.reasoning.output_tokens", i(2)),
        kv("gen_ai.usage.reasoning_tokens", i(3)),
    ]))
    .unwrap();
    assert_eq!(row.request_model, "gpt-4o-mini");
    assert_eq!(
        (row.input_tokens, row.output_tokens, row.reasoning_tokens),
        (Some(42), Some(8), 2)
    );
}

#[test]
fn openinference_llm_span() {
    let mut sp = span(vec![
        kv("openinference.span.kind", s("LLM")),
        kv("llm.model_name", s("claude-3-5-sonnet-20241022")),
        kv("llm.provider", s("anthropic")),
        kv("llm.token_count.prompt", i(2000)),
        kv("llm.token_count.completion", i(100)),
        kv("llm.token_count.prompt_details.cache_read", i(1000)),
        kv("llm.token_count.prompt_details.cache_write", i(500)),
        kv(
            "llm.invocation_parameters",
            s(r#"{"temperature": 0.7, "max_tokens": 256, "stream": true}"#),
        ),
        kv("llm.input_messages.0.message.role", s("user")),
        kv("llm.input_messages.0.message.content", s("Hi")),
        kv("llm.output_messages.0.message.role", s("assistant")),
        kv("llm.output_messages.0.message.content", s("Hello")),
        kv("session.id", s("sess-9")),
        kv("user.id", s("u-1")),
    ]);
    sp.events.push(Event {
        name: "First Token Stream Event".into(),
        time_unix_nano: START + 250_000_000,
        ..Default::default()
    });
    sp.status = Some(Status {
        code: StatusCode::Ok as i32,
        message: String::new(),
    });
    let row = map(&sp).unwrap();
    assert_eq!(
        (
            row.operation.as_str(),
            row.provider.as_str(),
            row.model.as_str()
        ),
        ("chat", "anthropic", "claude-3-5-sonnet")
    );
    assert_eq!(
        (row.cache_read_tokens, row.cache_creation_tokens),
        (1000, 500)
    );
    // 500 plain * 3 + 1000 * 0.30 + 500 * 3.75 + 100 * 15
    let expected = (500.0 * 3.0 + 1000.0 * 0.30 + 500.0 * 3.75 + 100.0 * 15.0) / 1e6;
    assert!((row.cost_usd.unwrap() - expected).abs() < 1e-12);
    assert_eq!(row.ttft_ms, Some(250.0));
    assert!(row.streaming);
    assert_eq!(
        (row.conversation_id.as_str(), row.user_id.as_str()),
        ("sess-9", "u-1")
    );
    assert!(row
        .request_params
        .contains(&("temperature".into(), "0.7".into())));
    assert!(row
        .request_params
        .contains(&("max_tokens".into(), "256".into())));
    assert_eq!(row.input_messages, r#"[{"content":"Hi","role":"user"}]"#);
    assert_eq!(
        row.output_messages,
        r#"[{"content":"Hello","role":"assistant"}]"#
    );
    // OpenInference sends no finish reason: an OK stream without one is reported as aborted.
    assert!(row.aborted);
}

#[test]
fn openllmetry_indexed_prompts_and_completions() {
    let row = map(&span(vec![
        kv("llm.request.type", s("chat")),
        kv("gen_ai.system", s("OpenAI")),
        kv("gen_ai.request.model", s("gpt-4o-mini")),
        kv("gen_ai.prompt.0.role", s("system")),
        kv("gen_ai.prompt.0.content", s("Be brief.")),
        kv("gen_ai.prompt.1.role", s("user")),
        kv("gen_ai.prompt.1.content", s("Capital of France?")),
        kv("gen_ai.completion.0.role", s("assistant")),
        kv("gen_ai.completion.0.content", s("Paris.")),
        kv("gen_ai.completion.0.finish_reason", s("stop")),
        kv("llm.is_streaming", Value::BoolValue(false)),
        kv("traceloop.association.properties.user_id", s("user-7")),
    ]))
    .unwrap();
    assert_eq!(row.provider, "openai");
    assert_eq!(row.finish_reasons, vec!["stop"]);
    assert_eq!(
        row.input_messages,
        r#"[{"content":"Be brief.","role":"system"},{"content":"Capital of France?","role":"user"}]"#
    );
    assert_eq!(
        row.output_messages,
        r#"[{"content":"Paris.","finish_reason":"stop","role":"assistant"}]"#
    );
    assert_eq!(row.user_id, "user-7");
    // Known model, no token counts: no cost rather than a made-up 0.
    assert_eq!(row.cost_usd, None);
}

#[test]
fn stopped_stream_is_aborted_with_known_usage() {
    let mut sp = span(vec![
        kv("gen_ai.operation.name", s("chat")),
        kv("gen_ai.request.model", s("gpt-4o-mini")),
        kv("gen_ai.request.stream", Value::BoolValue(true)),
        kv("gen_ai.usage.input_tokens", i(30)),
    ]);
    sp.events.push(Event {
        name: "gen_ai.content.completion.chunk".into(),
        time_unix_nano: START + 100_000_000,
        ..Default::default()
    });
    let row = map(&sp).unwrap();
    assert!(row.aborted);
    assert_eq!(row.finish_reasons, vec!["aborted"]);
    assert_eq!((row.input_tokens, row.output_tokens), (Some(30), None));
    assert!(row.cost_usd.is_some(), "the usage that is known is priced");
    assert_eq!(row.tpot_ms, None);

    // A cancelled call is aborted too, streaming or not.
    let row = map(&span(vec![
        kv("gen_ai.operation.name", s("chat")),
        kv("gen_ai.request.model", s("gpt-4o-mini")),
        kv("error.type", s("asyncio.CancelledError")),
    ]))
    .unwrap();
    assert!(row.aborted);
    assert_eq!(row.error_type, "asyncio.CancelledError");
}

#[test]
fn not_model_calls_and_unknown_models() {
    assert!(map(&span(vec![kv("gen_ai.operation.name", s("execute_tool"))])).is_none());
    assert!(map(&span(vec![kv("openinference.span.kind", s("CHAIN"))])).is_none());
    assert!(map(&span(vec![kv("http.route", s("/x"))])).is_none());
    let row = map(&span(vec![
        kv("gen_ai.operation.name", s("chat")),
        kv("gen_ai.request.model", s("my-finetune")),
        kv("gen_ai.usage.input_tokens", i(10)),
    ]))
    .unwrap();
    assert_eq!((row.cost_usd, row.price_version.as_str()), (None, ""));
}

#[test]
fn content_capture_can_be_off() {
    let sp = span(vec![
        kv("gen_ai.operation.name", s("chat")),
        kv("gen_ai.request.model", s("gpt-4o")),
        kv(
            "gen_ai.input.messages",
            s(r#"[{"role":"user","parts":[]}]"#),
        ),
    ]);
    assert!(!map_with(&sp, true).unwrap().input_messages.is_empty());
    assert!(map_with(&sp, false).unwrap().input_messages.is_empty());
}
