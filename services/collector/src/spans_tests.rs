//! Tests of span validation and per-trace splitting.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;

fn span(trace: u8, id: u8, name: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: name.to_string(),
        ..Default::default()
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

/// (service name, [(scope name, spans)])
type Resources<'a> = Vec<(&'a str, Vec<(&'a str, Vec<Span>)>)>;

fn request(groups: Resources<'_>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(service, scopes)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans)| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: scope.into(),
                            ..Default::default()
                        }),
                        spans,
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn decode(m: &TraceMessage) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(m.payload.as_slice()).unwrap()
}

/// (service, scope, span name) for every span of a request, in order.
fn flatten(r: &ExportTraceServiceRequest) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rs in &r.resource_spans {
        let service = match &rs.resource.as_ref().unwrap().attributes[0].value {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) => s.clone(),
            _ => String::new(),
        };
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                out.push((
                    service.clone(),
                    ss.scope.as_ref().unwrap().name.clone(),
                    s.name.clone(),
                ));
            }
        }
    }
    out
}

#[test]
fn splits_per_trace_keeping_resource_and_scope() {
    let req = request(vec![
        (
            "svc-a",
            vec![
                ("s1", vec![span(1, 1, "a1"), span(2, 2, "b1")]),
                ("s2", vec![span(1, 3, "a2")]),
            ],
        ),
        (
            "svc-b",
            vec![("s3", vec![span(2, 4, "b2"), span(1, 5, "a3")])],
        ),
    ]);
    let mut rej = Rejections::default();
    let msgs = split_by_trace(req, 1_000_000, &mut rej);
    assert_eq!(rej.count(), 0);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].trace_id, [1; 16]);
    assert_eq!(msgs[0].spans, 3);
    assert_eq!(
        flatten(&decode(&msgs[0])),
        vec![
            ("svc-a".into(), "s1".into(), "a1".into()),
            ("svc-a".into(), "s2".into(), "a2".into()),
            ("svc-b".into(), "s3".into(), "a3".into()),
        ]
    );
    // Two scopes under one resource stay under one ResourceSpans.
    assert_eq!(decode(&msgs[0]).resource_spans.len(), 2);
    assert_eq!(
        flatten(&decode(&msgs[1])),
        vec![
            ("svc-a".into(), "s1".into(), "b1".into()),
            ("svc-b".into(), "s3".into(), "b2".into()),
        ]
    );
}

#[test]
fn large_trace_is_cut_below_the_message_limit_and_oversized_span_rejected() {
    let mut spans: Vec<Span> = (0..50).map(|i| span(7, i + 1, &format!("s{i}"))).collect();
    for s in &mut spans {
        s.attributes.push(kv("payload", &"x".repeat(1000)));
    }
    let mut huge = span(7, 99, "huge");
    huge.attributes.push(kv("payload", &"y".repeat(20_000)));
    spans.push(huge);
    let req = request(vec![("svc", vec![("scope", spans)])]);
    let mut rej = Rejections::default();
    let msgs = split_by_trace(req, 8_000, &mut rej);
    assert_eq!(rej.count(), 1);
    assert!(rej.message().contains("\"huge\""), "{}", rej.message());
    assert!(msgs.len() >= 7, "{} messages", msgs.len());
    let mut names = Vec::new();
    for m in &msgs {
        assert!(
            m.payload.len() <= 8_000,
            "message of {} bytes",
            m.payload.len()
        );
        assert_eq!(m.trace_id, [7; 16]);
        names.extend(flatten(&decode(m)).into_iter().map(|(_, _, n)| n));
    }
    let expected: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
    assert_eq!(names, expected);
}

#[test]
fn invalid_spans_are_dropped_with_reasons() {
    let mut short = span(1, 1, "short-trace");
    short.trace_id.truncate(15);
    let zero = span(0, 2, "zero-trace");
    let mut bad_parent = span(3, 3, "bad-parent");
    bad_parent.parent_span_id = vec![1; 4];
    let zero_span = span(4, 0, "zero-span");
    let good = span(5, 5, "good");
    let mut req = request(vec![(
        "svc",
        vec![("s", vec![short, zero, good, bad_parent, zero_span])],
    )]);
    let mut rej = Rejections::default();
    drop_invalid(&mut req, &mut rej);
    assert_eq!(rej.count(), 4);
    assert_eq!(count_spans(&req), 1);
    let msg = rej.message();
    assert!(msg.contains("trace_id must be 16 bytes, got 15"), "{msg}");
    assert!(msg.contains("all zeros"), "{msg}");
    assert!(msg.contains("parent_span_id"), "{msg}");
    assert!(msg.contains("spans[3] (\"bad-parent\")"), "{msg}");
}

#[test]
fn rejection_message_is_bounded() {
    let mut rej = Rejections::default();
    for i in 0..100 {
        rej.reject(format!("reason {i}"));
    }
    assert_eq!(rej.count(), 100);
    assert!(
        rej.message().ends_with("; and 95 more"),
        "{}",
        rej.message()
    );
}
