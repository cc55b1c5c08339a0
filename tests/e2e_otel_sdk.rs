//! End to end with a real client: the OpenTelemetry Python SDK's OTLP exporters (HTTP/protobuf
//! and gRPC) send spans to `flywheel collector`, and the spans arrive on the Kafka topic with
//! their attributes and resource.

mod common;

use std::process::Command;

use common::{kafka_brokers, unique, Collector};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

fn python() -> String {
    let venv = std::env::var("FLYWHEEL_VENV").expect(
        "FLYWHEEL_VENV is not set: run the tests through deploy/local/test.sh (it installs the OTel SDK)",
    );
    format!("{venv}/bin/python")
}

#[test]
fn otel_python_sdk_spans_arrive_on_the_topic() {
    let c = Collector::start(&kafka_brokers(), &[]);
    let run = unique("run");
    let grpc = c.grpc.trim_start_matches("http://").to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/otel_sdk_send.py");
    let out = Command::new(python())
        .args([
            script, "--http", &c.http, "--grpc", &grpc, "--run", &run, "--spans", "5",
        ])
        .output()
        .expect("cannot run python");
    assert!(
        out.status.success(),
        "SDK export failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut by_transport = std::collections::HashMap::<String, Vec<i64>>::new();
    for m in c.messages() {
        let req = ExportTraceServiceRequest::decode(m.payload.as_slice()).unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .unwrap()
                .attributes
                .into_iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value?.value);
            let Some(Value::StringValue(service)) = service else {
                panic!("span without service.name");
            };
            for ss in rs.scope_spans {
                assert_eq!(ss.scope.as_ref().unwrap().name, "flywheel.e2e");
                for span in ss.spans {
                    let attr = |k: &str| {
                        span.attributes
                            .iter()
                            .find(|kv| kv.key == k)
                            .and_then(|kv| kv.value.clone()?.value)
                    };
                    assert_eq!(
                        attr("flywheel.e2e.run"),
                        Some(Value::StringValue(run.clone()))
                    );
                    assert_eq!(
                        attr("gen_ai.request.model"),
                        Some(Value::StringValue("gpt-4o-mini".into()))
                    );
                    let Some(Value::IntValue(i)) = attr("flywheel.e2e.index") else {
                        panic!("no index attribute");
                    };
                    assert_eq!(
                        attr("gen_ai.usage.input_tokens"),
                        Some(Value::IntValue(40 + i))
                    );
                    by_transport.entry(service.clone()).or_default().push(i);
                }
            }
        }
    }
    for transport in ["e2e-http", "e2e-grpc"] {
        let mut got = by_transport.remove(transport).unwrap_or_default();
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2, 3, 4], "{transport}");
    }
    assert!(
        by_transport.is_empty(),
        "unexpected services: {by_transport:?}"
    );
}
