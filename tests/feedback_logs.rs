//! Feedback and signals carried by OTLP log records (`POST /v1/logs`, protobuf and JSON, and
//! gRPC `LogsService/Export`), against a real Kafka-protocol broker: feedback events land on the
//! topics, other records and invalid events are refused through partial success and counted.

mod common;

use common::feedback::*;
use flywheel_core::wire;
use flywheel_feedback::pb;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::json;

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
