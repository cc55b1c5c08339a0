//! Golden and property tests of the OTLP decoders with real SDK payloads
//! (`tests/fixtures/otlp/`, captured from OpenLLMetry 0.62.4 through the OTel Python SDK).

use flywheel_collector::decode::{decode_json, decode_protobuf, gunzip_limited};
use flywheel_collector::spans::{count_spans, drop_invalid, split_by_trace, Rejections};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use proptest::prelude::*;
use prost::Message;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../tests/fixtures/otlp/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn attr<'a>(span: &'a opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

const FIXTURES: [&str; 2] = [
    "openllmetry-openai-0.62.4-chat-and-stream",
    "openllmetry-openai-0.62.4-error-and-stopped-stream",
];

#[test]
fn protobuf_and_json_forms_of_real_sdk_payloads_decode_identically() {
    for name in FIXTURES {
        let pb = decode_protobuf(&fixture(&format!("{name}.pb"))).unwrap();
        let mut rej = Rejections::default();
        let json = decode_json(&fixture(&format!("{name}.json")), &mut rej).unwrap();
        assert_eq!(rej.count(), 0, "{name}: {}", rej.message());
        assert_eq!(pb, json, "{name}: protobuf and JSON decode differently");
    }
}

#[test]
fn chat_and_stream_fixture_content() {
    let req = decode_protobuf(&fixture("openllmetry-openai-0.62.4-chat-and-stream.pb")).unwrap();
    assert_eq!(count_spans(&req), 2);
    let spans: Vec<_> = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    assert!(spans.iter().all(|s| s.name == "openai.chat"));
    assert_eq!(
        hex::encode(&spans[0].trace_id),
        "c828b5f96f708644f3662461347fe549"
    );
    assert_eq!(hex::encode(&spans[1].span_id), "ba7c65d346e2958b");
    // The streaming call carries one event per chunk.
    assert_eq!(spans[1].events.len(), 8);
    assert_eq!(spans[1].events[0].name, "gen_ai.content.completion.chunk");
    assert!(matches!(
        attr(spans[0], "gen_ai.usage.input_tokens"),
        Some(Value::IntValue(42))
    ));

    // Two traces -> two messages, each a valid request with the resource kept.
    let mut rej = Rejections::default();
    let msgs = split_by_trace(req.clone(), 1_000_000, &mut rej);
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        let one = ExportTraceServiceRequest::decode(m.payload.as_slice()).unwrap();
        assert_eq!(count_spans(&one), 1);
        assert_eq!(
            one.resource_spans[0].resource,
            req.resource_spans[0].resource
        );
    }
}

#[test]
fn error_fixture_keeps_status_and_exception_event() {
    let mut req = decode_protobuf(&fixture(
        "openllmetry-openai-0.62.4-error-and-stopped-stream.pb",
    ))
    .unwrap();
    let mut rej = Rejections::default();
    drop_invalid(&mut req, &mut rej);
    assert_eq!(rej.count(), 0);
    let span = &req.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    assert_eq!(span.events[0].name, "exception");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn protobuf_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_protobuf(&bytes);
    }

    #[test]
    fn json_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_json(&bytes, &mut Rejections::default());
    }

    #[test]
    fn gunzip_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = gunzip_limited(&bytes, 1 << 20);
    }

    /// Mutating a real payload byte by byte never panics the protobuf path, and whatever decodes
    /// splits into messages that account for every span exactly once.
    #[test]
    fn mutated_real_payloads_decode_or_fail_cleanly(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut bytes = fixture("openllmetry-openai-0.62.4-chat-and-stream.pb");
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        if let Ok(mut req) = decode_protobuf(&bytes) {
            let mut rej = Rejections::default();
            let total = count_spans(&req);
            drop_invalid(&mut req, &mut rej);
            let msgs = split_by_trace(req, 1_000_000, &mut rej);
            let published: u64 = msgs.iter().map(|m| m.spans).sum();
            prop_assert_eq!(published + rej.count(), total);
        }
    }

    /// Mutated JSON: decode or fail with a message, never panic; span accounting holds.
    #[test]
    fn mutated_json_payloads_decode_or_fail_cleanly(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
    ) {
        let mut bytes = fixture("openllmetry-openai-0.62.4-chat-and-stream.json");
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let mut rej = Rejections::default();
        if let Ok(req) = decode_json(&bytes, &mut rej) {
            prop_assert!(count_spans(&req) + rej.count() <= 2);
        }
    }
}
