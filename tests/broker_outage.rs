//! Durability under broker failure, with a private tansu broker that the test kills and
//! restarts: no 200 / OK for data that is not on Kafka, fast 503 / UNAVAILABLE while the broker
//! is down, and a retried request lands exactly once after it returns.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{numbered_request, Broker, Collector};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const OUTAGE_ENV: &[(&str, &str)] = &[("FLYWHEEL_KAFKA__MESSAGE_TIMEOUT_MS", "3000")];

fn span_ids(req: &ExportTraceServiceRequest) -> Vec<String> {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| hex::encode(&s.span_id))
        .collect()
}

async fn post_pb(url: &str, req: &ExportTraceServiceRequest) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_down_gets_503_and_a_retry_after_restart_lands_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let c = Collector::start(&broker.addr, OUTAGE_ENV);
    let url = c.traces_url();

    let before = numbered_request(1);
    assert_eq!(post_pb(&url, &before).await.status(), 200);

    broker.kill();
    c.wait_not_ready(Duration::from_secs(20));
    let retried = numbered_request(2);
    let r = post_pb(&url, &retried).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let status = flywheel_collector::http::RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 14);
    let mut client = TraceServiceClient::connect(c.grpc.clone()).await.unwrap();
    let e = client.export(retried.clone()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);

    broker.restart();
    c.wait_ready(Duration::from_secs(30));
    assert_eq!(post_pb(&url, &retried).await.status(), 200);

    let spans = c.spans(); // panics if any span is stored twice
    let mut expected = span_ids(&before);
    expected.extend(span_ids(&retried));
    let mut got: Vec<String> = spans.keys().cloned().collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    let m = c.metrics();
    assert!(
        m.contains("flywheel_collector_requests_total{outcome=\"unavailable\",transport=\"http_protobuf\"} 1"),
        "{m}"
    );
    assert!(m.contains(
        "flywheel_collector_requests_total{outcome=\"unavailable\",transport=\"grpc\"} 1"
    ));
}

/// Clients keep sending while the broker is killed mid-load and restarted. Every request
/// answered 200 must have all its spans on the topic afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn no_acknowledged_span_is_lost_when_the_broker_dies_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let c = Collector::start(&broker.addr, OUTAGE_ENV);
    let url = Arc::new(c.traces_url());
    let stop = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    for w in 0..4u32 {
        let url = url.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0u32);
            // Bounded: at most 400 requests per worker.
            for i in 0..400u32 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let req = numbered_request(w * 100_000 + i + 10);
                let status = post_pb(&url, &req).await.status();
                match status.as_u16() {
                    200 => acked.extend(span_ids(&req)),
                    429 | 503 => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
            (acked, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    broker.restart();
    c.wait_ready(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);

    let (mut acked, mut refused) = (Vec::new(), 0);
    for w in workers {
        let (a, r) = w.await.unwrap();
        acked.extend(a);
        refused += r;
    }
    assert!(
        refused > 0,
        "the outage refused nothing: the test did not exercise it"
    );
    assert!(!acked.is_empty());
    let on_topic = c.spans();
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !on_topic.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged spans are not on Kafka: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Feedback, signals and feedback log records follow the same rule: broker down -> 503 +
/// Retry-After (gRPC UNAVAILABLE) with nothing acknowledged; the retried request lands once.
#[tokio::test(flavor = "multi_thread")]
async fn feedback_while_the_broker_is_down_gets_503_and_lands_once_after_retry() {
    use flywheel_feedback::pb;
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;

    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let c = Collector::start(&broker.addr, OUTAGE_ENV);
    let url = format!("{}/v1/feedback", c.http);
    let post = |body: serde_json::Value| {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(30))
            .send()
    };
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let before =
        serde_json::json!({"id": "before", "trace_id": trace, "name": "thumbs", "value": true});
    assert_eq!(post(before).await.unwrap().status(), 200);

    broker.kill();
    c.wait_not_ready(Duration::from_secs(20));
    // Nothing is acknowledged: no per-item results, only the retryable status.
    let retried = serde_json::json!([
        {"id": "retried-1", "trace_id": trace, "name": "thumbs", "value": false},
        {"id": "retried-2", "conversation_id": "c-1", "name": "helpfulness", "value": 3}
    ]);
    let r = post(retried.clone()).await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let status: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status["code"], 14, "{status}");
    assert!(status.get("items").is_none(), "{status}");
    let logs = common::feedback::logs(vec![LogRecord {
        event_name: "flywheel.signal".into(),
        trace_id: hex::decode(trace).unwrap(),
        attributes: vec![common::feedback::kv(
            "flywheel.signal.type",
            common::feedback::s("copy"),
        )],
        ..Default::default()
    }]);
    let mut client = LogsServiceClient::connect(c.grpc.clone()).await.unwrap();
    let e = client.export(logs).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);

    broker.restart();
    c.wait_ready(Duration::from_secs(30));
    assert_eq!(post(retried).await.unwrap().status(), 200);

    let mut ids: Vec<String> = c
        .messages_of(&c.feedback_topic)
        .iter()
        .map(|m| {
            <pb::Feedback as Message>::decode(m.payload.as_slice())
                .unwrap()
                .id
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["before", "retried-1", "retried-2"]);
    assert!(c.messages_of(&c.signals_topic).is_empty());
    let m = c.metrics();
    for line in [
        "flywheel_collector_requests_total{outcome=\"unavailable\",transport=\"http_feedback\"} 1",
        "flywheel_collector_requests_total{outcome=\"unavailable\",transport=\"grpc_logs\"} 1",
        "flywheel_collector_items_rejected_total{kind=\"feedback\",reason=\"unavailable\",transport=\"http_feedback\"} 2",
    ] {
        assert!(m.contains(line), "{line} not in\n{m}");
    }
}
