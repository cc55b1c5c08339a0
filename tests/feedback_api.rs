//! Integration tests of the collector's feedback and signals API against a real Kafka-protocol
//! broker: `POST /v1/feedback` and `/v1/signals` (per-item results, 400 naming field and index
//! while the valid items are kept), public (browser) keys and CORS.

mod common;

use common::feedback::*;
use flywheel_core::wire;
use flywheel_feedback::pb;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use serde_json::{json, Value};

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
