//! Golden attributes of generated spans: the names and value types the ingester reads
//! (`services/ingester/src/map/genai.rs`), and TTFT / TPOT as it derives them.

use opentelemetry_proto::tonic::common::v1::AnyValue;

use super::*;
use crate::config::default_models;

const START: i64 = 1_764_000_000_000_000_000;

fn call(outcome: Outcome, output: Option<u64>, ttft: Option<f64>, end_ms: i64) -> Call {
    Call {
        trace_id: [0x11; 16],
        span_id: [0x22; 8],
        app_span_id: [0x33; 8],
        conversation_id: "lg-0a0b0c0d-c7".into(),
        user_id: "user-42".into(),
        model: 0,
        turn: 1,
        start_ns: START,
        end_ns: START + end_ms * 1_000_000,
        streaming: true,
        ttft_ms: ttft,
        input_tokens: 1800,
        output_tokens: output,
        max_tokens: 4096,
        outcome,
    }
}

fn render(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => format!("{s:?}"),
        Some(Value::IntValue(i)) => format!("int {i}"),
        Some(Value::DoubleValue(d)) => format!("double {d}"),
        Some(Value::BoolValue(b)) => format!("bool {b}"),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| render(&Some(v.clone()))).collect();
            format!("[{}]", items.join(", "))
        }
        other => format!("{other:?}"),
    }
}

fn attributes(span: &Span) -> Vec<String> {
    span.attributes
        .iter()
        .map(|kv| format!("{} = {}", kv.key, render(&kv.value)))
        .collect()
}

fn ctx(models: &[ModelConfig]) -> SpanContext<'_> {
    SpanContext {
        service: "loadgen-chat",
        models,
        app_spans: true,
        capture_content: true,
    }
}

#[test]
fn a_streamed_answer_has_every_attribute_the_ingester_reads() {
    let models = default_models();
    // 450 ms to the first token, then 99 tokens at 12 ms.
    let c = call(
        Outcome::Finished { reason: "stop" },
        Some(100),
        Some(450.0),
        1638,
    );
    let span = model_span(&c, &ctx(&models));
    let input = r#"[{"parts":[{"content":"You are a helpful assistant.","type":"text"}],"role":"system"},{"parts":[{"content":"question 0 of lg-0a0b0c0d-c7","type":"text"}],"role":"user"},{"parts":[{"content":"answer to question 0","type":"text"}],"role":"assistant"},{"parts":[{"content":"question 1 of lg-0a0b0c0d-c7","type":"text"}],"role":"user"}]"#;
    let output = r#"[{"finish_reason":"stop","parts":[{"content":"answer to question 1 (2222222222222222)","type":"text"}],"role":"assistant"}]"#;
    assert_eq!(
        attributes(&span),
        [
            "gen_ai.operation.name = \"chat\"".to_string(),
            "gen_ai.provider.name = \"openai\"".into(),
            "gen_ai.request.model = \"gpt-4o\"".into(),
            "gen_ai.request.max_tokens = int 4096".into(),
            "gen_ai.request.stream = bool true".into(),
            "gen_ai.conversation.id = \"lg-0a0b0c0d-c7\"".into(),
            "user.id = \"user-42\"".into(),
            "gen_ai.usage.input_tokens = int 1800".into(),
            "gen_ai.response.model = \"gpt-4o-2024-08-06\"".into(),
            "gen_ai.usage.output_tokens = int 100".into(),
            "gen_ai.response.time_to_first_chunk = double 0.45".into(),
            "gen_ai.response.finish_reasons = [\"stop\"]".into(),
            format!("gen_ai.input.messages = {input:?}"),
            format!("gen_ai.output.messages = {output:?}"),
        ]
    );
    assert_eq!(span.name, "chat gpt-4o");
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert_eq!(span.trace_id, vec![0x11; 16]);
    assert_eq!(span.span_id, vec![0x22; 8]);
    assert_eq!(span.parent_span_id, vec![0x33; 8]);
    assert_eq!(span.status, None);
    // TTFT and TPOT as the ingester derives them.
    let ttft_ms = 0.45 * 1000.0;
    let duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6;
    assert_eq!((duration_ms - ttft_ms) / 99.0, 12.0);
}

#[test]
fn a_stopped_stream_has_no_finish_reason_and_a_failed_call_an_error() {
    let models = default_models();
    let stopped = model_span(
        &call(Outcome::Stopped, Some(20), Some(450.0), 678),
        &ctx(&models),
    );
    let keys: Vec<&str> = stopped
        .attributes
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert!(!keys.contains(&"gen_ai.response.finish_reasons"));
    assert!(keys.contains(&"gen_ai.usage.output_tokens"));
    let output = stopped
        .attributes
        .iter()
        .find(|kv| kv.key == "gen_ai.output.messages")
        .unwrap();
    assert!(!render(&output.value).contains("finish_reason"));

    let failed = model_span(
        &call(Outcome::Failed { error_type: "429" }, None, None, 120),
        &ctx(&models),
    );
    let rendered = attributes(&failed);
    assert!(rendered.contains(&"error.type = \"429\"".to_string()));
    for absent in [
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.time_to_first_chunk",
        "gen_ai.response.finish_reasons",
        "gen_ai.output.messages",
    ] {
        assert!(!rendered.iter().any(|a| a.starts_with(absent)), "{absent}");
    }
    let status = failed.status.unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "429 error from openai");
}

#[test]
fn a_request_has_the_app_span_around_each_call_in_one_resource() {
    let models = default_models();
    let calls = vec![
        call(
            Outcome::Finished { reason: "length" },
            Some(4096),
            None,
            5000,
        ),
        call(Outcome::Failed { error_type: "503" }, None, None, 300),
    ];
    let req = request(&calls, &ctx(&models));
    assert_eq!(req.resource_spans.len(), 1);
    let rs = &req.resource_spans[0];
    let service = &rs.resource.as_ref().unwrap().attributes[0];
    assert_eq!(service.key, "service.name");
    assert_eq!(render(&service.value), "\"loadgen-chat\"");
    let spans = &rs.scope_spans[0].spans;
    assert_eq!(spans.len(), 4);
    let (app, model) = (&spans[0], &spans[1]);
    assert_eq!(app.name, "POST /chat");
    assert_eq!(app.span_id, model.parent_span_id);
    assert_eq!(app.trace_id, model.trace_id);
    assert!(app.start_time_unix_nano < model.start_time_unix_nano);
    assert!(app.end_time_unix_nano > model.end_time_unix_nano);
    assert!(attributes(app).contains(&"http.response.status_code = int 200".to_string()));
    assert!(attributes(&spans[2]).contains(&"http.response.status_code = int 502".to_string()));
    assert_eq!(
        spans[2].status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );
    let without = SpanContext {
        app_spans: false,
        capture_content: false,
        ..ctx(&models)
    };
    let req = request(&calls, &without);
    let spans = &req.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 2);
    assert!(spans[0].parent_span_id.is_empty());
    assert!(!attributes(&spans[0]).iter().any(|a| a.contains("messages")));
}

#[test]
fn input_messages_depend_on_conversation_and_turn_only() {
    assert_eq!(input_messages("c1", 3), input_messages("c1", 3));
    assert_ne!(input_messages("c1", 3), input_messages("c1", 4));
    assert_ne!(input_messages("c1", 3), input_messages("c2", 3));
    // History is capped: system + 8 earlier turns (2 messages each) + the question.
    let long: serde_json::Value = serde_json::from_str(&input_messages("c1", 30)).unwrap();
    assert_eq!(long.as_array().unwrap().len(), 1 + 16 + 1);
}
