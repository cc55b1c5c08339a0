//! Unit tests of the feedback receivers' pure parts and of their publishing rules, with a
//! scripted publisher (no I/O). The real broker is exercised in `tests/feedback_api.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use flywheel_bus::PublishError;
use flywheel_core::{wire, ErrorCode, ProjectId};
use flywheel_feedback::api::{Limits, Validator};
use flywheel_feedback::pb;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use serde_json::value::RawValue;

use super::endpoints::{answer, batch_error, FieldError, ItemResult, ItemStatus};
use super::*;
use crate::metrics::Metrics;
use crate::test_support::Scripted;

fn sink(publisher: Scripted, max_in_flight: usize) -> FeedbackSink<Scripted> {
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let durable = Arc::new(Durable::new(publisher, max_in_flight, metrics));
    FeedbackSink::new(
        durable,
        "fb".into(),
        "sig".into(),
        Limits::default(),
        BTreeMap::new(),
    )
}

fn feedback(id: &str, trace_id: &str, conversation_id: &str) -> Item {
    Item::Feedback(pb::Feedback {
        id: id.into(),
        subject: Some(pb::Subject {
            trace_id: trace_id.into(),
            conversation_id: conversation_id.into(),
            ..Default::default()
        }),
        name: "thumbs".into(),
        ..Default::default()
    })
}

fn signal(id: &str) -> Item {
    Item::Signal(pb::Signal {
        id: id.into(),
        r#type: pb::SignalType::Copy as i32,
        ..Default::default()
    })
}

fn result(index: usize, rejected: bool) -> ItemResult {
    ItemResult {
        index,
        id: (!rejected).then(|| format!("id-{index}")),
        status: if rejected {
            ItemStatus::Rejected
        } else {
            ItemStatus::Accepted
        },
        error: rejected.then(|| FieldError {
            field: "trace_id".into(),
            message: "must be 32 hex characters".into(),
        }),
    }
}

#[test]
fn all_accepted_is_200_any_rejected_is_400_with_counts() {
    let (status, body) = answer(vec![result(0, false), result(1, false)]);
    assert_eq!(status, StatusCode::OK);
    assert_eq!((body.accepted, body.rejected), (2, 0));

    let (status, body) = answer(vec![result(0, false), result(1, true), result(2, false)]);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!((body.accepted, body.rejected), (2, 1));
    let json: serde_json::Value = serde_json::to_value(&body).unwrap();
    assert_eq!(
        json["items"][0],
        serde_json::json!({"index": 0, "id": "id-0", "status": "accepted"})
    );
    assert_eq!(
        json["items"][1],
        serde_json::json!({"index": 1, "status": "rejected",
            "error": {"field": "trace_id", "message": "must be 32 hex characters"}})
    );
}

#[test]
fn batch_errors_are_400_or_413() {
    let split = |body: &[u8]| {
        flywheel_feedback::api::split_batch(body, 2)
            .map(|items| items.len())
            .map_err(batch_error)
    };
    assert_eq!(split(b"[]").unwrap_err().code, ErrorCode::Malformed);
    assert_eq!(split(b"{not json").unwrap_err().code, ErrorCode::Malformed);
    assert_eq!(split(br#"[{},{}]"#).unwrap(), 2);
    let e = split(br#"{"items":[{},{},{}]}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert!(e.message.contains("max_items"), "{}", e.message);
}

#[test]
fn record_key_is_trace_then_conversation_then_id() {
    let t = "5b8efff798038103d269b633813fc60c";
    assert_eq!(feedback("a", t, "conv").to_record().key, t.as_bytes());
    assert_eq!(feedback("a", "", "conv").to_record().key, b"conv");
    assert_eq!(feedback("a", "", "").to_record().key, b"a");
    assert_eq!(signal("s").to_record().key, b"s");
}

#[tokio::test]
async fn items_go_to_their_topics_with_headers_in_one_admission() {
    let publisher = Scripted::default();
    let s = sink(publisher.clone(), 1 << 20);
    let project = ProjectId::new("team-a").unwrap();
    let items = vec![
        feedback("f1", "", "c"),
        signal("s1"),
        feedback("f2", "", ""),
    ];
    s.publish(&project, &items, Transport::GrpcLogs)
        .await
        .unwrap();
    let published = publisher.published.lock().unwrap();
    assert_eq!(published.len(), 2);
    let (topic, headers, records) = &published[0];
    assert_eq!(topic, "fb");
    assert_eq!(records.len(), 2);
    assert!(headers.contains(&(wire::HEADER_PROJECT, b"team-a".to_vec())));
    assert!(headers.contains(&(
        wire::HEADER_ENCODING,
        wire::ENCODING_FEEDBACK_PROTO.as_bytes().to_vec()
    )));
    assert!(headers
        .iter()
        .any(|(k, _)| *k == wire::HEADER_RECEIVED_AT_NS));
    let decoded = <pb::Feedback as prost::Message>::decode(records[1].payload.as_slice()).unwrap();
    assert_eq!(decoded.id, "f2");
    let (topic, headers, records) = &published[1];
    assert_eq!(topic, "sig");
    assert_eq!(records.len(), 1);
    assert!(headers.contains(&(
        wire::HEADER_ENCODING,
        wire::ENCODING_SIGNAL_PROTO.as_bytes().to_vec()
    )));
    let accepted = &s.metrics().items_accepted;
    assert_eq!(
        accepted.with_label_values(&["feedback", "grpc_logs"]).get(),
        2
    );
    assert_eq!(
        accepted.with_label_values(&["signal", "grpc_logs"]).get(),
        1
    );
}

#[tokio::test]
async fn publish_failure_acknowledges_nothing_and_counts_by_reason() {
    let publisher = Scripted::default();
    *publisher.outcome.lock().unwrap() = Some(PublishError::Unavailable("down".into()));
    let s = sink(publisher.clone(), 1 << 20);
    let e = s
        .publish(
            &ProjectId::default_project(),
            &[feedback("f", "", "")],
            Transport::HttpFeedback,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert_eq!(e.code.retry_after_secs(), Some(5));
    let m = s.metrics();
    assert_eq!(
        m.items_rejected
            .with_label_values(&["feedback", "http_feedback", "unavailable"])
            .get(),
        1
    );
    assert_eq!(
        m.items_accepted
            .with_label_values(&["feedback", "http_feedback"])
            .get(),
        0
    );
}

#[tokio::test]
async fn the_in_flight_budget_is_shared_with_spans() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let publisher = Scripted {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    let s = Arc::new(sink(publisher.clone(), 2 * 1024));
    // A 2 KiB item takes the whole budget while the gated publisher holds it.
    let mut big = pb::Feedback {
        id: "big".into(),
        comment: "x".repeat(1500),
        ..Default::default()
    };
    let holder = {
        let s = s.clone();
        let item = Item::Feedback(big.clone());
        tokio::spawn(async move {
            s.publish(
                &ProjectId::default_project(),
                &[item],
                Transport::HttpFeedback,
            )
            .await
        })
    };
    while s.metrics().in_flight_bytes.get() == 0 {
        tokio::task::yield_now().await;
    }
    big.id = "second".into();
    let e = s
        .publish(
            &ProjectId::default_project(),
            &[Item::Feedback(big)],
            Transport::HttpFeedback,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InFlightLimit);
    gate.notify_one();
    holder.await.unwrap().unwrap();
    assert_eq!(s.metrics().in_flight_bytes.get(), 0);
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
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

#[test]
fn event_name_comes_from_the_field_else_the_attribute() {
    let by_field = LogRecord {
        event_name: "flywheel.feedback".into(),
        attributes: vec![string_kv("event.name", "other")],
        ..Default::default()
    };
    assert_eq!(logs::event_name(&by_field), "flywheel.feedback");
    let by_attribute = LogRecord {
        attributes: vec![string_kv("event.name", "flywheel.signal")],
        ..Default::default()
    };
    assert_eq!(logs::event_name(&by_attribute), "flywheel.signal");
    assert_eq!(logs::event_name(&LogRecord::default()), "");
}

#[test]
fn plain_log_records_are_refused_by_index_and_counted() {
    let request = logs(vec![
        LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue("GET /health 200".into())),
            }),
            ..Default::default()
        },
        LogRecord {
            event_name: "http.request".into(),
            ..Default::default()
        },
    ]);
    let limits = Limits::default();
    let validator = Validator {
        limits: &limits,
        definitions: None,
        now_unix_nano: 1_700_000_000_000_000_000,
    };
    let out = logs::convert(&request, &validator);
    assert!(out.items.is_empty());
    assert_eq!(out.not_events, 2);
    assert_eq!(out.rejections.count(), 2);
    let message = out.rejections.message();
    assert!(message.contains("log record 0"), "{message}");
    assert!(
        message.contains("log record 1: event name \"http.request\""),
        "{message}"
    );
    assert!(
        message.contains(
            "stores only gen_ai.evaluation.result, flywheel.feedback and flywheel.signal events"
        ),
        "{message}"
    );
}

#[test]
fn client_ids_of_rejected_items_are_echoed() {
    let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
    assert_eq!(
        endpoints::client_id(&raw(r#"{"id":"abc","x":1}"#)).as_deref(),
        Some("abc")
    );
    assert_eq!(endpoints::client_id(&raw(r#"{"id":7}"#)), None);
    assert_eq!(endpoints::client_id(&raw("[1]")), None);
}

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[test]
fn a_batch_is_validated_item_by_item_and_ids_are_generated() {
    let limits = Limits::default();
    let validator = Validator {
        limits: &limits,
        definitions: None,
        now_unix_nano: 1_796_000_000_000_000_000,
    };
    let body = format!(
        r#"[{{"id":"client-1","trace_id":"{TRACE}","name":"thumbs","value":true}},
            {{"id":"client-2","trace_id":"xyz","name":"thumbs","value":true}},
            {{"trace_id":"{TRACE}","name":"helpfulness","value":4}}]"#
    );
    let raws = flywheel_feedback::api::split_batch(body.as_bytes(), 10).unwrap();
    let (items, results) = endpoints::validate_items(Kind::Feedback, &raws, &validator);
    assert_eq!(items.len(), 2);
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].id.as_deref(), Some("client-1"));
    assert_eq!(results[0].status, ItemStatus::Accepted);
    assert_eq!(results[1].status, ItemStatus::Rejected);
    assert_eq!(results[1].id.as_deref(), Some("client-2"));
    assert_eq!(results[1].error.as_ref().unwrap().field, "trace_id");
    let generated = results[2].id.clone().unwrap();
    assert!(!generated.is_empty());
    assert_eq!(items[1].id(), generated);
    assert_eq!(items[1].to_record().key, TRACE.as_bytes());
}

#[test]
fn feedback_log_records_become_items_with_the_record_ids() {
    let limits = Limits::default();
    let validator = Validator {
        limits: &limits,
        definitions: None,
        now_unix_nano: 1_796_000_000_000_000_000,
    };
    let feedback_record = LogRecord {
        event_name: "flywheel.feedback".into(),
        trace_id: hex::decode(TRACE).unwrap(),
        span_id: hex::decode("b7ad6b7169203331").unwrap(),
        time_unix_nano: 1_795_000_000_000_000_000,
        attributes: vec![
            string_kv("flywheel.feedback.name", "thumbs"),
            string_kv("flywheel.feedback.value", "up"),
        ],
        ..Default::default()
    };
    let bad_signal = LogRecord {
        attributes: vec![
            string_kv("event.name", "flywheel.signal"),
            string_kv("flywheel.signal.type", "teleport"),
        ],
        trace_id: hex::decode(TRACE).unwrap(),
        ..Default::default()
    };
    let out = logs::convert(&logs(vec![feedback_record, bad_signal]), &validator);
    assert_eq!(out.items.len(), 1);
    let Item::Feedback(f) = &out.items[0] else {
        panic!("not feedback: {:?}", out.items[0]);
    };
    assert_eq!(f.origin(), pb::Origin::OtlpLog);
    let subject = f.subject.as_ref().unwrap();
    assert_eq!(subject.trace_id, TRACE);
    assert_eq!(subject.span_id, "b7ad6b7169203331");
    assert_eq!(f.time_unix_nano, 1_795_000_000_000_000_000);
    assert_eq!(out.invalid_signals, 1);
    assert_eq!(out.not_events, 0);
    let message = out.rejections.message();
    assert!(
        message.contains("log record 1 (flywheel.signal): flywheel.signal.type"),
        "{message}"
    );
}
