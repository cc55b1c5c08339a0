//! Derived signals (docs/SIGNALS.md) from crafted model-call spans, against the real broker and
//! ClickHouse engine: the ingester's periodic derivation and `flywheel derive-signals`.
//!
//! The calls are dated two hours back, so every conversation is idle and every gap between
//! calls is set by the test, not by the clock.

mod common;

use std::time::Duration;

use common::ingest::{clickhouse_url, Ingester, Pipeline};
use common::kafka_brokers;
use common::kv;
use flywheel_schema::rows::SignalRow;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const TIMEOUT: Duration = Duration::from_secs(60);
const SEC: u64 = 1_000_000_000;

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, Value::StringValue(v.into()))
}

/// One model call.
struct Call {
    /// Trace and span ids are derived from these (a turn = a trace).
    trace: u8,
    span: u8,
    conversation: &'static str,
    input: &'static str,
    start_ns: u64,
    streaming: bool,
    finish: Option<&'static str>,
    error: bool,
}

impl Call {
    fn trace_id(&self) -> String {
        hex::encode([self.trace; 16])
    }
    fn span_id(&self) -> String {
        hex::encode([self.span; 8])
    }

    fn span(&self) -> Span {
        let mut attributes = vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.provider.name", "openai"),
            s("gen_ai.request.model", "gpt-4o-mini"),
            s("gen_ai.conversation.id", self.conversation),
            s("user.id", "user-1"),
            s("gen_ai.input.messages", self.input),
            s("gen_ai.request.stream", &self.streaming.to_string()),
            kv("gen_ai.usage.output_tokens", Value::IntValue(37)),
        ];
        if let Some(reason) = self.finish {
            attributes.push(s("gen_ai.response.finish_reasons", reason));
        }
        Span {
            trace_id: vec![self.trace; 16],
            span_id: vec![self.span; 8],
            name: "chat gpt-4o-mini".into(),
            kind: 3,
            start_time_unix_nano: self.start_ns,
            end_time_unix_nano: self.start_ns + 2 * SEC,
            attributes,
            status: Some(Status {
                code: if self.error {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Unset as i32
                },
                ..Status::default()
            }),
            ..Span::default()
        }
    }
}

fn request(calls: &[&Call]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: calls.iter().map(|c| c.span()).collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn now_ns() -> u64 {
    u64::try_from(common::now_ns()).unwrap()
}

/// Publishes the calls as one span message, as the collector would.
async fn send(p: &Pipeline, producer: &flywheel_bus::KafkaPublisher, calls: &[&Call]) {
    let payload = request(calls).encode_to_vec();
    p.produce(
        producer,
        &p.topic,
        "default",
        common::now_ns(),
        b"k",
        payload,
    )
    .await;
}

const HI: &str =
    r#"[{"role":"user","parts":[{"type":"text","content":"Write a haiku about rust"}]}]"#;
const OTHER: &str = r#"[{"role":"user","parts":[{"type":"text","content":"And one about go"}]}]"#;
const B1: &str = r#"[{"role":"user","parts":[{"type":"text","content":"Summarise this"}]}]"#;
const B2: &str = r#"[{"role":"user","parts":[{"type":"text","content":"Shorter"}]}]"#;
const B3: &str = r#"[{"role":"user","parts":[{"type":"text","content":"Thanks"}]}]"#;

async fn signals(p: &Pipeline) -> Vec<SignalRow> {
    p.rows("SELECT ?fields FROM signals FINAL ORDER BY type, trace_id")
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn regenerate_stop_and_conversation_end_are_derived_once() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let producer = p.producer();
    let base = now_ns() - 2 * 3600 * SEC;
    let base_call = Call {
        trace: 0,
        span: 0,
        conversation: "chat-a",
        input: HI,
        start_ns: base,
        streaming: false,
        finish: Some("stop"),
        error: false,
    };
    // Conversation a: a1, then a2 10 s later with the same input (a1 regenerated), then a3 ten
    // minutes after a2 with the same input again (beyond the 300 s window: not a regenerate),
    // then a4 with another input; a5 repeats a4's input after a4 failed (a retry of an error,
    // not a discarded answer).
    let a1 = Call {
        trace: 0xa1,
        span: 0xa1,
        ..base_call
    };
    let a2 = Call {
        trace: 0xa2,
        span: 0xa2,
        start_ns: base + 10 * SEC,
        ..base_call
    };
    let a3 = Call {
        trace: 0xa3,
        span: 0xa3,
        start_ns: base + 610 * SEC,
        ..base_call
    };
    let a4 = Call {
        trace: 0xa4,
        span: 0xa4,
        input: OTHER,
        start_ns: base + 620 * SEC,
        error: true,
        finish: None,
        ..base_call
    };
    let a5 = Call {
        trace: 0xa5,
        span: 0xa5,
        input: OTHER,
        start_ns: base + 630 * SEC,
        ..base_call
    };
    // Conversation b (every input different): a streaming call without finish reason
    // (stopped), a non-streaming one without finish reason and a streaming one that finished;
    // b2 and b3 share a trace, so the conversation has 2 turns for 3 calls.
    let b = Call {
        conversation: "chat-b",
        ..base_call
    };
    let b1 = Call {
        trace: 0xb1,
        span: 0xb1,
        input: B1,
        streaming: true,
        finish: None,
        ..b
    };
    let b2 = Call {
        trace: 0xb2,
        span: 0xb2,
        input: B2,
        start_ns: base + 20 * SEC,
        finish: None,
        ..b
    };
    let b3 = Call {
        trace: 0xb2,
        span: 0xb3,
        input: B3,
        start_ns: base + 40 * SEC,
        streaming: true,
        ..b
    };
    send(&p, &producer, &[&a1, &a2, &a3, &a4, &a5, &b1, &b2, &b3]).await;
    let ingester = Ingester::start(&p, &[("FLYWHEEL_INGESTER__DERIVE_INTERVAL_S", "1")]);
    p.wait_count("SELECT count() FROM llm_calls", 8, TIMEOUT)
        .await;
    // a2 delivered a second time (a client retry): still one call, no self-regeneration.
    send(&p, &producer, &[&a2]).await;
    p.wait_count("SELECT count() FROM llm_calls", 9, TIMEOUT)
        .await;
    // The periodic derivation finds all four (it may have run between the two deliveries).
    p.wait_count("SELECT count() FROM signals FINAL", 4, TIMEOUT)
        .await;
    let m = ingester.metrics();
    for (kind, n) in [("regenerate", 1), ("stop", 1), ("conversation_end", 2)] {
        let line = format!("flywheel_ingester_derived_signals_total{{type=\"{kind}\"}} {n}\n");
        assert!(m.contains(&line), "{line}{m}");
    }
    assert!(m.contains("flywheel_ingester_derive_errors_total 0"), "{m}");
    drop(ingester);

    let got = signals(&p).await;
    let summary: Vec<(String, String, String)> = got
        .iter()
        .map(|r| {
            (
                r.signal_type.clone(),
                r.trace_id.clone(),
                r.conversation_id.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("conversation_end".into(), a5.trace_id(), "chat-a".into()),
            ("conversation_end".into(), b3.trace_id(), "chat-b".into()),
            ("regenerate".into(), a1.trace_id(), "chat-a".into()),
            ("stop".into(), b1.trace_id(), "chat-b".into()),
        ]
    );
    let (end_a, end_b, regen, stop) = (&got[0], &got[1], &got[2], &got[3]);
    for r in &got {
        assert_eq!(
            (r.source.as_str(), r.origin.as_str()),
            ("heuristic", "derived")
        );
        assert_eq!(r.user_id, "user-1");
    }
    assert_eq!(end_a.turn_count, Some(5));
    assert_eq!(end_b.turn_count, Some(2));
    assert_eq!(end_a.id, "h:conversation_end:chat-a");
    assert_eq!(end_a.timestamp, i64::try_from(a5.start_ns).unwrap());

    assert_eq!(
        regen.id,
        format!("h:regenerate:{}:{}", a1.trace_id(), a1.span_id())
    );
    assert_eq!(
        (
            regen.discarded_trace_id.clone(),
            regen.discarded_span_id.clone()
        ),
        (a1.trace_id(), a1.span_id())
    );
    assert_eq!(regen.span_id, a1.span_id());
    assert_eq!(
        regen.timestamp,
        i64::try_from(a2.start_ns).unwrap(),
        "when the user asked again"
    );
    assert!(
        regen
            .attributes
            .contains(&("replaced_by_trace_id".into(), a2.trace_id())),
        "{:?}",
        regen.attributes
    );

    assert_eq!(
        stop.id,
        format!("h:stop:{}:{}", b1.trace_id(), b1.span_id())
    );
    assert_eq!(stop.tokens_received, Some(37));
    assert_eq!(stop.ms_since_start, Some(2000.0));
    assert_eq!(
        stop.timestamp,
        i64::try_from(b1.start_ns + 2 * SEC).unwrap(),
        "when it stopped"
    );

    // Derived again over the same period: nothing new, nothing counted twice.
    let stored = p.count("SELECT count() FROM signals").await;
    let out = p.run_cli(&["derive-signals", "--since", "3h"]);
    assert_eq!(
        out,
        "regenerate: 0 new\nstop: 0 new\nconversation_end: 0 new\n"
    );
    assert_eq!(p.count("SELECT count() FROM signals").await, stored);
    assert_eq!(p.count("SELECT count() FROM signals FINAL").await, 4);
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_derives_and_a_resumed_conversation_replaces_its_end() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let producer = p.producer();
    let base = now_ns() - 5 * 3600 * SEC; // beyond the default 3 h lookback
    let c1 = Call {
        trace: 0xc1,
        span: 0xc1,
        conversation: "chat-c",
        input: HI,
        start_ns: base,
        streaming: false,
        finish: Some("stop"),
        error: false,
    };
    let c2 = Call {
        trace: 0xc2,
        span: 0xc2,
        input: OTHER,
        start_ns: base + 60 * SEC,
        ..c1
    };
    send(&p, &producer, &[&c1, &c2]).await;
    let ingester = Ingester::start(&p, &[("FLYWHEEL_INGESTER__DERIVE_SIGNALS", "false")]);
    p.wait_count("SELECT count() FROM llm_calls", 2, TIMEOUT)
        .await;
    // Out of the periodic window; only a backfill sees it.
    let out = p.run_cli(&["derive-signals", "--since", "6h"]);
    assert_eq!(
        out,
        "regenerate: 0 new\nstop: 0 new\nconversation_end: 1 new\n"
    );
    assert_eq!(signals(&p).await[0].turn_count, Some(2));

    // The user comes back an hour later: a later derivation replaces the end (same id).
    let c3 = Call {
        trace: 0xc3,
        span: 0xc3,
        start_ns: base + 3600 * SEC,
        ..c2
    };
    send(&p, &producer, &[&c3]).await;
    p.wait_count("SELECT count() FROM llm_calls", 3, TIMEOUT)
        .await;
    drop(ingester);
    let out = p.run_cli(&["derive-signals", "--since", "6h"]);
    assert_eq!(
        out,
        "regenerate: 0 new\nstop: 0 new\nconversation_end: 1 new\n"
    );
    let got = signals(&p).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].turn_count, got[0].trace_id.clone()),
        (Some(3), c3.trace_id())
    );
    p.drop_database().await;
}
