//! Helpers for the feedback and signals tests: a collector with keys, a definition and CORS,
//! reading the feedback and signals topics back, and OTLP log records.

use std::collections::HashMap;
use std::io::Write;

use flywheel_bus::inspect::TopicMessage;
use flywheel_core::wire;
use flywheel_feedback::pb;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use serde_json::Value;

use super::{kafka_brokers, Collector};

pub const SECRET: &str = "secret-key-team-a";
pub const PUBLIC: &str = "pk-browser-team-a";
pub const ORIGIN: &str = "https://app.example.com";
pub const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
pub const SPAN: &str = "b7ad6b7169203331";

/// A collector with keys for project `team-a`, a feedback definition, a small text limit and
/// one CORS origin, configured through a file as an operator would.
pub fn collector(dir: &tempfile::TempDir) -> Collector {
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

pub async fn post_json(url: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Messages of a topic decoded as `T`, by item id; panics on a duplicate id.
pub fn by_id<T: Message + Default>(
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

pub fn feedback_on_topic(c: &Collector) -> HashMap<String, (pb::Feedback, TopicMessage)> {
    by_id(&c.messages_of(&c.feedback_topic), |f: &pb::Feedback| {
        f.id.clone()
    })
}

pub fn signals_on_topic(c: &Collector) -> HashMap<String, (pb::Signal, TopicMessage)> {
    by_id(&c.messages_of(&c.signals_topic), |s: &pb::Signal| {
        s.id.clone()
    })
}

pub fn assert_headers(m: &TopicMessage, encoding: &str) {
    assert_eq!(m.header(wire::HEADER_PROJECT), Some(&b"team-a"[..]));
    assert_eq!(m.header(wire::HEADER_ENCODING), Some(encoding.as_bytes()));
    let at: u128 = std::str::from_utf8(m.header(wire::HEADER_RECEIVED_AT_NS).unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!(at > 1_600_000_000_000_000_000);
}

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

pub fn logs(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
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
