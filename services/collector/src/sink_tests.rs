//! Tests of the pipeline's admission and acknowledgement rules with a scripted publisher (no
//! I/O). The real broker is exercised in the integration tests under `tests/`.

use std::sync::Arc;

use flywheel_bus::PublishError;
use flywheel_core::{ErrorCode, ProjectId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::sync::Notify;

use super::*;
use crate::test_support::Scripted;

fn request(traces: u8) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (1..=traces)
                    .map(|t| Span {
                        trace_id: vec![t; 16],
                        span_id: vec![t; 8],
                        name: "x".repeat(600),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn sink(publisher: Scripted, max_in_flight: usize) -> TraceSink<Scripted> {
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    let durable = Arc::new(Durable::new(publisher, max_in_flight, metrics));
    TraceSink::new(durable, "spans".into(), 1_000_000)
}

#[tokio::test]
async fn publishes_one_record_per_trace_with_project_headers() {
    let publisher = Scripted::default();
    let s = sink(publisher.clone(), 1 << 20);
    let project = ProjectId::new("team-a").unwrap();
    let outcome = s
        .export(&project, request(3), Rejections::default(), Transport::Grpc)
        .await
        .unwrap();
    assert_eq!(outcome, ExportOutcome::default());
    let published = publisher.published.lock().unwrap();
    let (topic, headers, records) = &published[0];
    assert_eq!(topic, "spans");
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].key, hex::encode([1u8; 16]).into_bytes());
    assert!(headers.contains(&(wire::HEADER_PROJECT, b"team-a".to_vec())));
    assert_eq!(
        s.metrics()
            .spans_published
            .with_label_values(&["grpc"])
            .get(),
        3
    );
}

#[tokio::test]
async fn publish_failure_is_never_success_and_is_counted() {
    for (error, code) in [
        (
            PublishError::Unavailable("down".into()),
            ErrorCode::Unavailable,
        ),
        (PublishError::QueueFull, ErrorCode::QueueFull),
        (PublishError::ShuttingDown, ErrorCode::ShuttingDown),
        (
            PublishError::Rejected("too big".into()),
            ErrorCode::Internal,
        ),
    ] {
        let publisher = Scripted::default();
        *publisher.outcome.lock().unwrap() = Some(error);
        let s = sink(publisher, 1 << 20);
        let e = s
            .export(
                &ProjectId::default_project(),
                request(2),
                Rejections::default(),
                Transport::HttpJson,
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, code);
        assert_eq!(
            s.metrics()
                .spans_rejected
                .with_label_values(&["http_json", code.reason()])
                .get(),
            2
        );
        assert_eq!(
            s.metrics()
                .spans_published
                .with_label_values(&["http_json"])
                .get(),
            0
        );
    }
}

/// Starts exporting a 3-trace request and waits until it holds its in-flight budget (the
/// gated publisher keeps it there until notified).
async fn start_export(
    s: &Arc<TraceSink<Scripted>>,
) -> tokio::task::JoinHandle<Result<ExportOutcome, IngestError>> {
    let sink = s.clone();
    let handle = tokio::spawn(async move {
        sink.export(
            &ProjectId::default_project(),
            request(3),
            Rejections::default(),
            Transport::HttpProtobuf,
        )
        .await
    });
    while s.metrics().in_flight_bytes.get() == 0 {
        tokio::task::yield_now().await;
    }
    handle
}

#[tokio::test]
async fn in_flight_budget_refuses_with_429_before_publishing() {
    let gate = Arc::new(Notify::new());
    let publisher = Scripted {
        gate: Some(gate.clone()),
        ..Default::default()
    };
    // Room for one 3-trace request (~2 KiB) but not two.
    let s = Arc::new(sink(publisher.clone(), 3 * 1024));
    let first = start_export(&s).await;
    let e = s
        .export(
            &ProjectId::default_project(),
            request(3),
            Rejections::default(),
            Transport::HttpProtobuf,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InFlightLimit);
    assert_eq!(e.code.http_status(), 429);
    gate.notify_one();
    first.await.unwrap().unwrap();
    assert_eq!(publisher.published.lock().unwrap().len(), 1);
    assert_eq!(s.metrics().in_flight_bytes.get(), 0);
    // The budget is released: the next request goes through.
    let next = start_export(&s).await;
    gate.notify_one();
    next.await.unwrap().unwrap();
}

#[tokio::test]
async fn invalid_spans_come_back_as_partial_success() {
    let publisher = Scripted::default();
    let s = sink(publisher.clone(), 1 << 20);
    let mut req = request(2);
    req.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1; 3];
    let outcome = s
        .export(
            &ProjectId::default_project(),
            req,
            Rejections::default(),
            Transport::Grpc,
        )
        .await
        .unwrap();
    assert_eq!(outcome.rejected_spans, 1);
    assert!(outcome
        .error_message
        .contains("span_id must be 8 bytes, got 3"));
    let response = outcome.into_response();
    assert_eq!(response.partial_success.unwrap().rejected_spans, 1);
    assert_eq!(publisher.published.lock().unwrap()[0].2.len(), 1);
}
