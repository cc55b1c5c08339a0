//! Integration tests of the collector's feedback and signals receivers against a real
//! Kafka-protocol broker: `POST /v1/feedback` and `/v1/signals` (per-item results, 400 naming
//! field and index while the valid items are kept), public (browser) keys and CORS, and
//! feedback carried by OTLP log records over HTTP and gRPC.

mod common;

use std::collections::HashMap;
use std::io::Write;

use common::{kafka_brokers, Collector};
use flywheel_bus::inspect::TopicMessage;
use flywheel_core::wire;
use flywheel_feedback::pb;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use serde_json::{json, Value};

const SECRET: &str = "secret-key-team-a";
const PUBLIC: &str = "pk-browser-team-a";
const ORIGIN: &str = "https://app.example.com";
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

/// A collector with keys for project `team-a`, a feedback definition, a small text limit and
/// one CORS origin, configured through a file as an operator would.
fn collector(dir: &tempfile::TempDir) -> Collector {
    let path = dir.path().join("flywheel.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[auth]
required = true
[auth.keys]
"{SECRET}" = "team-a"
[auth.public_keys]
"{PUBLIC}" = "team-a"

[collector]
cors_allowed_origins = ["{ORIGIN}"]

[collector.feedback_limits]
max_text_bytes = 1024

[collector.feedback_definitions.team-a.helpfulness]
type = "number"
min = 1
max = 5
"#
        ),
    )
    .unwrap();
    Collector::start(
        &kafka_brokers(),
        &[("FLYWHEEL_CONFIG", path.to_str().unwrap())],
    )
}

async fn post_json(url: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Messages of a topic decoded as `T`, by item id; panics on a duplicate id.
fn by_id<T: Message + Default>(
    messages: &[TopicMessage],
    id: impl Fn(&T) -> String,
) -> HashMap<String, (T, TopicMessage)> {
    let mut out = HashMap::new();
    for m in messages {
        let item = T::decode(m.payload.as_slice()).expect("not the topic's protobuf");
        let key = id(&item);
        assert!(
            out.insert(key.clone(), (item, m.clone())).is_none(),
            "item {key} is on the topic twice"
        );
    }
    out
}

fn feedback_on_topic(c: &Collector) -> HashMap<String, (pb::Feedback, TopicMessage)> {
    by_id(&c.messages_of(&c.feedback_topic), |f: &pb::Feedback| {
        f.id.clone()
    })
}

fn signals_on_topic(c: &Collector) -> HashMap<String, (pb::Signal, TopicMessage)> {
    by_id(&c.messages_of(&c.signals_topic), |s: &pb::Signal| {
        s.id.clone()
    })
}

fn assert_headers(m: &TopicMessage, encoding: &str) {
    assert_eq!(m.header(wire::HEADER_PROJECT), Some(&b"team-a"[..]));
    assert_eq!(m.header(wire::HEADER_ENCODING), Some(encoding.as_bytes()));
    let at: u128 = std::str::from_utf8(m.header(wire::HEADER_RECEIVED_AT_NS).unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!(at > 1_600_000_000_000_000_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_bad_items_is_a_400_naming_each_and_the_valid_items_are_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(&dir);
    let url = format!("{}/v1/feedback", c.http);
    let far_future_ms = (chrono::Utc::now().timestamp() + 30 * 86_400) * 1000;
    let batch = json!({"items": [
        {"id": "fb-ok-1", "trace_id": TRACE, "span_id": SPAN, "name": "thumbs", "value": true,
         "source": "human", "comment": "nice"},
        {"id": "fb-bad-trace", "trace_id": "0af7651916cd43dd8448eb211c80319", "name": "thumbs", "value": true},
        {"id": "fb-bad-span", "trace_id": TRACE, "span_id": "b7ad6b716920333g", "name": "thumbs", "value": true},
        {"id": "fb-bad-def", "trace_id": TRACE, "name": "helpfulness", "value": "very"},
        {"id": "fb-future", "trace_id": TRACE, "name": "thumbs", "value": false, "timestamp": far_future_ms},
        {"id": "fb-long", "trace_id": TRACE, "name": "thumbs", "value": false, "comment": "x".repeat(2000)},
        {"id": "fb-unknown", "trace_id": TRACE, "name": "thumbs", "value": true, "colour": "red"},
        {"conversation_id": "conv-42", "name": "helpfulness", "value": 4}
    ]});
    let r = post_json(&url, SECRET, &batch).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(body["rejected"], 6, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["index"], i, "{body}");
    }
    let expect_rejected = [
        (1, "fb-bad-trace", "trace_id"),
        (2, "fb-bad-span", "span_id"),
        (3, "fb-bad-def", "value"),
        (4, "fb-future", "timestamp"),
        (5, "fb-long", "comment"),
        (6, "fb-unknown", "colour"),
    ];
    for (i, id, field) in expect_rejected {
        let item = &items[i];
        assert_eq!(item["status"], "rejected", "{item}");
        assert_eq!(item["id"], id, "{item}");
        assert!(
            item["error"]["field"].as_str().unwrap().contains(field),
            "item {i}: {item}"
        );
        assert!(!item["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        items[0],
        json!({"index": 0, "id": "fb-ok-1", "status": "accepted"})
    );
    assert_eq!(items[7]["status"], "accepted");
    let generated = items[7]["id"].as_str().unwrap().to_string();
    assert!(!generated.is_empty());

    let on_topic = feedback_on_topic(&c);
    let mut ids: Vec<&String> = on_topic.keys().collect();
    ids.sort();
    let mut expected = vec![&generated, &"fb-ok-1".to_string()]
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    expected.sort();
    assert_eq!(ids, expected.iter().collect::<Vec<_>>());
    let (f, m) = &on_topic["fb-ok-1"];
    assert_headers(m, wire::ENCODING_FEEDBACK_PROTO);
    assert_eq!(m.key, TRACE.as_bytes());
    let subject = f.subject.as_ref().unwrap();
    assert_eq!(
        (subject.trace_id.as_str(), subject.span_id.as_str()),
        (TRACE, SPAN)
    );
    assert_eq!(f.name, "thumbs");
    assert_eq!(f.source(), pb::Source::Human);
    assert_eq!(f.origin(), pb::Origin::Api);
    assert_eq!(f.comment, "nice");
    let (f, m) = &on_topic[&generated];
    assert_eq!(m.key, b"conv-42");
    assert_eq!(
        f.value.as_ref().unwrap().kind,
        Some(pb::feedback_value::Kind::Number(4.0))
    );

    let metrics = c.metrics();
    for line in [
        "flywheel_collector_items_accepted_total{kind=\"feedback\",transport=\"http_feedback\"} 2",
        "flywheel_collector_items_rejected_total{kind=\"feedback\",reason=\"invalid_item\",transport=\"http_feedback\"} 6",
        "flywheel_collector_requests_total{outcome=\"invalid_item\",transport=\"http_feedback\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_single_items_gzip_and_whole_request_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(&dir);
    let url = format!("{}/v1/signals", c.http);

    // One item, gzip-compressed, with the x-api-key header: 200.
    let one = json!({"id": "sig-stop", "trace_id": TRACE, "type": "stop",
                     "tokens_received": 120, "ms_since_start": 850.5});
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("x-api-key", SECRET)
        .body(gzip(one.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"accepted": 1, "rejected": 0,
        "items": [{"index": 0, "id": "sig-stop", "status": "accepted"}]})
    );

    // An array with an unknown type.
    let batch = json!([{"conversation_id": "c1", "type": "copy"},
                       {"id": "sig-bad", "trace_id": TRACE, "type": "teleport"}]);
    let r = post_json(&url, SECRET, &batch).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["items"][1]["error"]["field"], "type", "{body}");
    let copy_id = body["items"][0]["id"].as_str().unwrap().to_string();

    let on_topic = signals_on_topic(&c);
    assert_eq!(on_topic.len(), 2);
    let (stop, m) = &on_topic["sig-stop"];
    assert_headers(m, wire::ENCODING_SIGNAL_PROTO);
    assert_eq!(stop.r#type(), pb::SignalType::Stop);
    assert_eq!(stop.tokens_received, Some(120));
    assert_eq!(on_topic[&copy_id].0.r#type(), pb::SignalType::Copy);
    assert!(c.messages_of(&c.feedback_topic).is_empty());

    // Whole-request errors: google.rpc.Status JSON, nothing published.
    let r = post_json(&url, "not-a-key-at-all", &one).await;
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "text/plain")
        .header("x-api-key", SECRET)
        .body(one.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = post_json(&url, SECRET, &json!([])).await;
    assert_eq!(r.status(), 400);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["code"], 3, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("no items"),
        "{status}"
    );
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"conversation_id": "c", "type": "copy"}))
        .collect();
    let r = post_json(&url, SECRET, &Value::Array(many)).await;
    assert_eq!(r.status(), 413);
    assert_eq!(signals_on_topic(&c).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn public_keys_write_feedback_but_not_traces() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(&dir);
    let fb = json!({"id": "from-browser", "trace_id": TRACE, "name": "thumbs", "value": true});
    let r = post_json(&format!("{}/v1/feedback", c.http), PUBLIC, &fb).await;
    assert_eq!(r.status(), 200);
    let r = post_json(
        &format!("{}/v1/signals", c.http),
        PUBLIC,
        &json!({"trace_id": TRACE, "type": "copy"}),
    )
    .await;
    assert_eq!(r.status(), 200);

    let traces = common::numbered_request(7);
    let r = reqwest::Client::new()
        .post(c.traces_url())
        .header("content-type", "application/x-protobuf")
        .header("authorization", format!("Bearer {PUBLIC}"))
        .body(traces.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let mut request = tonic::Request::new(traces.clone());
    request
        .metadata_mut()
        .insert("x-api-key", PUBLIC.parse().unwrap());
    let e = client.export(request).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    // The secret key may send the same spans.
    let mut request = tonic::Request::new(traces);
    request
        .metadata_mut()
        .insert("x-api-key", SECRET.parse().unwrap());
    client.export(request).await.unwrap();

    assert!(feedback_on_topic(&c).contains_key("from-browser"));
    assert_eq!(c.spans().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_answers_the_configured_origin_only() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(&dir);
    let url = format!("{}/v1/feedback", c.http);
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-api-key",
            )
            .send()
    };
    let r = preflight(ORIGIN).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "authorization",
        "x-api-key",
        "content-type",
        "content-encoding",
    ] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert!(r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));

    let r = preflight("https://evil.example.net").await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));

    // The actual request from the allowed origin carries the CORS headers.
    let r = reqwest::Client::new()
        .post(&url)
        .header("origin", ORIGIN)
        .header("content-type", "application/json")
        .header("x-api-key", PUBLIC)
        .body(json!({"trace_id": TRACE, "name": "thumbs", "value": false}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    assert!(r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("retry-after"));
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn logs(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn feedback_log_records_over_http_and_grpc_land_on_the_topics() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(&dir);
    let url = format!("{}/v1/logs", c.http);
    let trace = hex::decode(TRACE).unwrap();
    let span = hex::decode(SPAN).unwrap();

    // OTLP/HTTP protobuf: an evaluation event, and a plain log line that is refused.
    let evaluation = LogRecord {
        event_name: "gen_ai.evaluation.result".into(),
        trace_id: trace.clone(),
        span_id: span.clone(),
        time_unix_nano: 1_790_000_000_000_000_000,
        attributes: vec![
            kv("gen_ai.evaluation.name", s("relevance")),
            kv(
                "gen_ai.evaluation.score.value",
                any_value::Value::DoubleValue(0.8),
            ),
            kv("gen_ai.evaluation.score.label", s("relevant")),
            kv("flywheel.feedback.id", s("eval-1")),
        ],
        ..Default::default()
    };
    let plain = LogRecord {
        body: Some(AnyValue {
            value: Some(s("GET /health 200")),
        }),
        ..Default::default()
    };
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .header("x-api-key", PUBLIC)
        .body(logs(vec![evaluation, plain]).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let response = ExportLogsServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("log record 1"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("stores only"),
        "{}",
        partial.error_message
    );

    // OTLP/HTTP JSON, gzip: a flywheel.feedback event named through the event.name attribute.
    let json_body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
    "traceId": TRACE, "spanId": SPAN, "timeUnixNano": "1790000000000000000",
    "attributes": [
        {"key": "event.name", "value": {"stringValue": "flywheel.feedback"}},
        {"key": "flywheel.feedback.id", "value": {"stringValue": "log-json-1"}},
        {"key": "flywheel.feedback.name", "value": {"stringValue": "thumbs"}},
        {"key": "flywheel.feedback.value", "value": {"boolValue": true}}
    ]}]}]}]});
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("x-api-key", SECRET)
        .body(gzip(json_body.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{}");

    // OTLP/gRPC: a signal and an invalid feedback event (value contradicting the definition).
    let signal = LogRecord {
        event_name: "flywheel.signal".into(),
        trace_id: trace.clone(),
        attributes: vec![
            kv("flywheel.signal.type", s("regenerate")),
            kv("flywheel.signal.id", s("log-sig-1")),
        ],
        ..Default::default()
    };
    let invalid = LogRecord {
        event_name: "flywheel.feedback".into(),
        trace_id: trace.clone(),
        attributes: vec![
            kv("flywheel.feedback.name", s("helpfulness")),
            kv("flywheel.feedback.value", any_value::Value::IntValue(9)),
        ],
        ..Default::default()
    };
    let mut client = LogsServiceClient::connect(c.grpc.clone())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let mut request = tonic::Request::new(logs(vec![signal, invalid]));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {SECRET}").parse().unwrap());
    let response = client.export(request).await.unwrap().into_inner();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial
            .error_message
            .contains("log record 1 (flywheel.feedback): flywheel.feedback.value"),
        "{}",
        partial.error_message
    );

    let feedback = feedback_on_topic(&c);
    assert_eq!(feedback.len(), 2, "{:?}", feedback.keys());
    let (eval, m) = &feedback["eval-1"];
    assert_headers(m, wire::ENCODING_FEEDBACK_PROTO);
    assert_eq!(m.key, TRACE.as_bytes());
    assert_eq!(eval.origin(), pb::Origin::OtlpLog);
    assert_eq!(eval.name, "relevance");
    assert_eq!(eval.subject.as_ref().unwrap().span_id, SPAN);
    assert_eq!(eval.time_unix_nano, 1_790_000_000_000_000_000);
    assert_eq!(feedback["log-json-1"].0.origin(), pb::Origin::OtlpLog);
    let signals = signals_on_topic(&c);
    assert_eq!(signals["log-sig-1"].0.r#type(), pb::SignalType::Regenerate);
    assert_eq!(signals["log-sig-1"].0.origin(), pb::Origin::OtlpLog);

    let metrics = c.metrics();
    for line in [
        "flywheel_collector_items_rejected_total{kind=\"log_record\",reason=\"not_feedback_event\",transport=\"http_logs_protobuf\"} 1",
        "flywheel_collector_items_rejected_total{kind=\"feedback\",reason=\"invalid_item\",transport=\"grpc_logs\"} 1",
        "flywheel_collector_items_accepted_total{kind=\"signal\",transport=\"grpc_logs\"} 1",
        "flywheel_collector_items_accepted_total{kind=\"feedback\",transport=\"http_logs_json\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}
