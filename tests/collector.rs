//! Integration tests of `flywheel collector` against a real Kafka-protocol broker: what a client
//! sends over OTLP/HTTP (protobuf, JSON, gzip) and OTLP/gRPC is exactly what lands on the topic,
//! bad input is refused precisely without losing the rest, and nothing is acknowledged that is
//! not on Kafka.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{fixture, kafka_brokers, Collector};
use flywheel_core::wire;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

async fn post(
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request failed")
}

fn request_of(name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(fixture(name).as_slice()).unwrap()
}

fn spans_in(req: &ExportTraceServiceRequest) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| ss.spans.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_protobuf_json_gzip_and_grpc_land_on_the_topic_unchanged() {
    let c = Collector::start(&kafka_brokers(), &[]);
    let chat = "openllmetry-openai-0.62.4-chat-and-stream";
    let errs = "openllmetry-openai-0.62.4-error-and-stopped-stream";

    // OTLP/HTTP protobuf, gzip-compressed.
    let r = post(
        &c.traces_url(),
        PB,
        gzip(&fixture(&format!("{chat}.pb"))),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], PB);
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            r.bytes().await.unwrap(),
        )
        .unwrap();
    assert!(resp.partial_success.is_none());

    // OTLP/HTTP JSON.
    let r = post(&c.traces_url(), JSON, fixture(&format!("{errs}.json")), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], JSON);
    assert_eq!(r.text().await.unwrap(), "{}");

    let expected_http: Vec<_> = spans_in(&request_of(&format!("{chat}.pb")))
        .into_iter()
        .chain(spans_in(&request_of(&format!("{errs}.pb"))))
        .collect();
    let on_topic = c.spans();
    assert_eq!(on_topic.len(), expected_http.len());
    for span in &expected_http {
        assert_eq!(
            on_topic.get(&hex::encode(&span.span_id)),
            Some(span),
            "span content differs"
        );
    }

    // OTLP/gRPC with gzip: same spans under new ids so they are distinguishable.
    let mut grpc_req = request_of(&format!("{chat}.pb"));
    for rs in &mut grpc_req.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.span_id[0] ^= 0xff;
            }
        }
    }
    let mut client = TraceServiceClient::connect(c.grpc.clone())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let resp = client.export(grpc_req.clone()).await.unwrap().into_inner();
    assert!(resp.partial_success.is_none());
    let on_topic = c.spans();
    assert_eq!(on_topic.len(), expected_http.len() + 2);
    for span in spans_in(&grpc_req) {
        assert_eq!(on_topic.get(&hex::encode(&span.span_id)), Some(&span));
    }

    // Every message carries the project and receive time, and a trace stays in one partition.
    let messages = c.messages();
    let mut partition_of = std::collections::HashMap::new();
    for m in &messages {
        assert_eq!(m.header(wire::HEADER_PROJECT), Some(&b"default"[..]));
        assert_eq!(m.header(wire::HEADER_ENCODING), Some(&b"otlp_proto"[..]));
        let at: u128 = std::str::from_utf8(m.header(wire::HEADER_RECEIVED_AT_NS).unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(at > 1_600_000_000_000_000_000);
        let p = partition_of.entry(m.key.clone()).or_insert(m.partition);
        assert_eq!(*p, m.partition, "trace split across partitions");
    }
    let metrics = c.metrics();
    assert!(
        metrics.contains("flywheel_collector_spans_published_total{transport=\"grpc\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("flywheel_collector_spans_published_total{transport=\"http_json\"} 1"));
    assert!(
        metrics.contains("flywheel_collector_spans_published_total{transport=\"http_protobuf\"} 2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_spans_are_rejected_through_partial_success_and_the_rest_kept() {
    let c = Collector::start(&kafka_brokers(), &[]);
    let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"0102030405060708090a0b0c0d0e0f","spanId":"1111111111111111","name":"short-trace"},
        {"traceId":"zz02030405060708090a0b0c0d0e0f10","spanId":"2222222222222222","name":"not-hex"},
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"3333333333333333","name":"good"}]}]}]}"#;
    let r = post(&c.traces_url(), JSON, body.to_vec(), &[]).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], 2, "{v}");
    let msg = v["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(msg.contains("trace_id must be 16 bytes, got 15"), "{msg}");
    assert!(msg.contains("spans[1].traceId"), "{msg}");
    let spans = c.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans["3333333333333333"].name, "good");
    assert!(c.metrics().contains(
        "flywheel_collector_spans_rejected_total{reason=\"invalid_item\",transport=\"http_json\"} 2"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_precise_errors_and_the_service_keeps_running() {
    let c = Collector::start(
        &kafka_brokers(),
        &[("FLYWHEEL_COLLECTOR__MAX_REQUEST_BYTES", "65536")],
    );
    let url = c.traces_url();
    let good = fixture("openllmetry-openai-0.62.4-chat-and-stream.pb");

    let r = post(&url, "text/plain", good.clone(), &[]).await;
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("text/plain"));

    let r = post(&url, PB, vec![0xff; 64], &[]).await;
    assert_eq!(r.status(), 400);
    let status = flywheel_collector::http::RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status.message.contains("ExportTraceServiceRequest"),
        "{}",
        status.message
    );

    let r = post(&url, JSON, b"{\"resourceSpans\": [".to_vec(), &[]).await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );

    // Over the limit uncompressed, and a gzip bomb over the limit once decompressed.
    let r = post(&url, PB, vec![0u8; 70_000], &[]).await;
    assert_eq!(r.status(), 413);
    let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
    assert!(bomb.len() < 65_536);
    let r = post(&url, PB, bomb, &[("content-encoding", "gzip")]).await;
    assert_eq!(r.status(), 413);
    assert!(
        flywheel_collector::http::RpcStatus::decode(r.bytes().await.unwrap())
            .unwrap()
            .message
            .contains("decompressed body exceeds")
    );

    let gz = gzip(&good);
    let r = post(
        &url,
        PB,
        gz[..gz.len() / 2].to_vec(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(&url, PB, good.clone(), &[("content-encoding", "br")]).await;
    assert_eq!(r.status(), 415);

    // gRPC: garbage is INVALID_ARGUMENT-class, oversized is RESOURCE_EXHAUSTED.
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let mut big = ExportTraceServiceRequest::decode(good.as_slice()).unwrap();
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100_000);
    let e = client.export(big).await.unwrap_err();
    assert!(
        matches!(
            e.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{e:?}"
    );
    // A gzip bomb over gRPC: small on the wire, over the limit once decompressed.
    let mut bomb = ExportTraceServiceRequest::decode(good.as_slice()).unwrap();
    bomb.resource_spans[0].scope_spans[0].spans[0].name = "a".repeat(20 * 1024 * 1024);
    let mut gz_client = TraceServiceClient::connect(c.grpc.clone())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_encoding_message_size(usize::MAX);
    let e = gz_client.export(bomb).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("decompressing"), "{e:?}");

    // Nothing of the above reached the topic; a valid request still works.
    assert!(c.spans().is_empty());
    let r = post(&url, PB, good, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(c.spans().len(), 2);
    let m = c.metrics();
    for reason in [
        "unsupported_media_type",
        "malformed",
        "too_large",
        "unsupported_encoding",
    ] {
        assert!(
            m.lines()
                .any(|l| l.starts_with("flywheel_collector_requests_total")
                    && l.contains(&format!("outcome=\"{reason}\""))
                    && !l.ends_with(" 0")),
            "no {reason} rejection counted:\n{m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_refuses_missing_and_unknown_keys_and_tags_the_project() {
    let c = Collector::start(
        &kafka_brokers(),
        &[
            ("FLYWHEEL_AUTH__REQUIRED", "true"),
            ("FLYWHEEL_AUTH__KEYS", "{secret-key-a=\"team-a\"}"),
        ],
    );
    let url = c.traces_url();
    let body = fixture("openllmetry-openai-0.62.4-chat-and-stream.pb");
    assert_eq!(post(&url, PB, body.clone(), &[]).await.status(), 401);
    assert_eq!(
        post(
            &url,
            PB,
            body.clone(),
            &[("authorization", "Bearer wrong-key-123")]
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        post(&url, PB, body.clone(), &[("x-api-key", "nope-nope-nope")])
            .await
            .status(),
        401
    );
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let e = client
        .export(ExportTraceServiceRequest::decode(body.as_slice()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(c.messages().is_empty(), "refused data reached the topic");

    let r = post(&url, PB, body, &[("authorization", "Bearer secret-key-a")]).await;
    assert_eq!(r.status(), 200);
    let messages = c.messages();
    assert_eq!(messages.len(), 2);
    assert!(messages
        .iter()
        .all(|m| m.header(wire::HEADER_PROJECT) == Some(&b"team-a"[..])));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_exits_cleanly() {
    let c = Collector::start(&kafka_brokers(), &[]);
    let r = post(
        &c.traces_url(),
        PB,
        fixture("openllmetry-openai-0.62.4-chat-and-stream.pb"),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let brokers = c.brokers.clone();
    let topic = c.topic.clone();
    let status = c.terminate();
    assert!(status.success(), "exit status {status:?}");
    let config = flywheel_bus::KafkaConfig {
        brokers,
        ..Default::default()
    };
    let messages =
        flywheel_bus::inspect::read_all(&config, &topic, Duration::from_secs(10)).unwrap();
    assert_eq!(common::spans_of(&messages).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_and_uncompressed_producers_round_trip() {
    for codec in ["zstd", "none"] {
        let c = Collector::start(&kafka_brokers(), &[("FLYWHEEL_KAFKA__COMPRESSION", codec)]);
        let body = fixture("openllmetry-openai-0.62.4-chat-and-stream.pb");
        assert_eq!(
            post(&c.traces_url(), PB, body.clone(), &[]).await.status(),
            200
        );
        let spans = c.spans();
        for span in spans_in(&ExportTraceServiceRequest::decode(body.as_slice()).unwrap()) {
            assert_eq!(
                spans.get(&hex::encode(&span.span_id)),
                Some(&span),
                "{codec}"
            );
        }
    }
}
