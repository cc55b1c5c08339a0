//! Feedback and signals topics -> ClickHouse `feedback` / `signals`, against the real broker
//! and ClickHouse engine with the real `flywheel ingester`: rows as sent, one row per id
//! (FINAL) with the latest received winning, feedback kept before its spans and joined once
//! they arrive, poison and invalid items dead-lettered while the rest is stored.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::ingest::{clickhouse_url, Ingester, Pipeline};
use common::kafka_brokers;
use flywheel_feedback::pb::{self, feedback_value::Kind, Origin, SignalType, Source};
use flywheel_schema::rows::{FeedbackRow, SignalRow};
use prost::Message;

const TIMEOUT: Duration = Duration::from_secs(60);
const FEEDBACK_FINAL: &str = "SELECT count() FROM feedback FINAL";

fn subject(trace_id: &str, span_id: &str) -> Option<pb::Subject> {
    Some(pb::Subject {
        trace_id: trace_id.into(),
        span_id: span_id.into(),
        conversation_id: "conv-7".into(),
        user_id: "user-7".into(),
    })
}

fn thumbs(id: &str, trace_id: &str, span_id: &str, score: f64) -> pb::Feedback {
    pb::Feedback {
        id: id.into(),
        subject: subject(trace_id, span_id),
        name: "helpfulness".into(),
        value: Some(pb::FeedbackValue {
            kind: Some(Kind::Number(score)),
            number_label: String::new(),
        }),
        comment: format!("score {score}"),
        source: Source::Human as i32,
        time_unix_nano: 1_764_000_000_000_000_000,
        attributes: HashMap::from([("ui".into(), "web".into())]),
        origin: Origin::Api as i32,
    }
}

const TRACE: &str = "5b8aa5a2d2c872e8321cf37308d69df2";
const SPAN: &str = "051581bf3cb55c13";

#[tokio::test(flavor = "multi_thread")]
async fn feedback_and_signals_land_as_rows_and_a_resent_id_is_one_row() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let producer = p.producer();
    let t0 = 1_764_100_000_000_000_000_i64;
    for (id, score) in [("fb-1", 0.2), ("fb-2", 1.0)] {
        let f = thumbs(id, TRACE, SPAN, score);
        p.produce(
            &producer,
            &p.feedback_topic,
            "acme",
            t0,
            TRACE.as_bytes(),
            f.encode_to_vec(),
        )
        .await;
    }
    let stop = pb::Signal {
        id: "sig-1".into(),
        subject: subject(TRACE, SPAN),
        r#type: SignalType::Stop as i32,
        source: Source::Api as i32,
        origin: Origin::Api as i32,
        tokens_received: Some(12),
        ms_since_start: Some(640.0),
        ..Default::default()
    };
    p.produce(
        &producer,
        &p.signals_topic,
        "acme",
        t0,
        TRACE.as_bytes(),
        stop.encode_to_vec(),
    )
    .await;
    let ingester = Ingester::start(&p, &[("FLYWHEEL_INGESTER__DERIVE_SIGNALS", "false")]);
    p.wait_count(FEEDBACK_FINAL, 2, TIMEOUT).await;
    p.wait_count("SELECT count() FROM signals", 1, TIMEOUT)
        .await;

    let rows: Vec<FeedbackRow> = p
        .rows("SELECT ?fields FROM feedback FINAL ORDER BY id")
        .await;
    let expected = FeedbackRow {
        id: "fb-2".into(),
        project: "acme".into(),
        timestamp: 1_764_000_000_000_000_000,
        trace_id: TRACE.into(),
        span_id: SPAN.into(),
        conversation_id: "conv-7".into(),
        user_id: "user-7".into(),
        name: "helpfulness".into(),
        value_type: "number".into(),
        score: Some(1.0),
        label: String::new(),
        text: String::new(),
        comment: "score 1".into(),
        source: "human".into(),
        origin: "api".into(),
        attributes: vec![("ui".into(), "web".into())],
        received_at: t0,
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1], expected);
    let [signal]: [SignalRow; 1] = p
        .rows("SELECT ?fields FROM signals FINAL")
        .await
        .try_into()
        .unwrap();
    assert_eq!(
        (
            signal.signal_type.as_str(),
            signal.tokens_received,
            signal.ms_since_start
        ),
        ("stop", Some(12), Some(640.0))
    );
    // No client time: the receive time stands in.
    assert_eq!((signal.timestamp, signal.received_at), (t0, t0));

    // fb-1 resent later (a client retry with a corrected score): one row, the latest wins.
    let resent = thumbs("fb-1", TRACE, SPAN, 0.9);
    p.produce(
        &producer,
        &p.feedback_topic,
        "acme",
        t0 + 1_000,
        TRACE.as_bytes(),
        resent.encode_to_vec(),
    )
    .await;
    p.wait_count("SELECT count() FROM feedback", 3, TIMEOUT)
        .await;
    assert_eq!(p.count(FEEDBACK_FINAL).await, 2);
    assert_eq!(
        p.count("SELECT count() FROM feedback FINAL WHERE id = 'fb-1'")
            .await,
        1
    );
    let score: f64 = p
        .client()
        .query("SELECT assumeNotNull(score) FROM feedback FINAL WHERE id = 'fb-1'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(score, 0.9);
    let m = ingester.metrics();
    assert!(
        m.contains("flywheel_ingester_rows_inserted_total{table=\"feedback\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("flywheel_ingester_rows_inserted_total{table=\"signals\"} 1"),
        "{m}"
    );
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn feedback_before_its_spans_is_kept_and_joins_when_they_arrive() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let producer = p.producer();
    let request = common::numbered_request(4242);
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    let (trace_id, span_id) = (hex::encode(&span.trace_id), hex::encode(&span.span_id));
    let now = common::now_ns();
    let f = thumbs("early-1", &trace_id, &span_id, 1.0);
    p.produce(
        &producer,
        &p.feedback_topic,
        "default",
        now,
        trace_id.as_bytes(),
        f.encode_to_vec(),
    )
    .await;
    let _ingester = Ingester::start(&p, &[("FLYWHEEL_INGESTER__DERIVE_SIGNALS", "false")]);
    p.wait_count(FEEDBACK_FINAL, 1, TIMEOUT).await;
    let joined = "SELECT count() FROM feedback AS f FINAL \
                  INNER JOIN (SELECT trace_id, span_id FROM llm_calls FINAL) AS c \
                  ON f.trace_id = c.trace_id AND f.span_id = c.span_id";
    assert_eq!(p.count(joined).await, 0, "no spans yet");

    // The spans arrive later (as the collector would publish them).
    p.produce(
        &producer,
        &p.topic,
        "default",
        now,
        trace_id.as_bytes(),
        request.encode_to_vec(),
    )
    .await;
    p.wait_count(joined, 1, TIMEOUT).await;
    assert_eq!(p.count(joined).await, 1);
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_and_invalid_feedback_go_to_dead_letters_and_the_rest_is_stored() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let producer = p.producer();
    let now = common::now_ns();
    let mut no_id = thumbs("", TRACE, SPAN, 1.0);
    no_id.id.clear();
    let payloads = [
        thumbs("ok-1", TRACE, SPAN, 1.0).encode_to_vec(),
        vec![0xff, 0xff, 0xff, 0x01], // not a protobuf
        no_id.encode_to_vec(),        // decodes, but cannot be deduplicated
        thumbs("ok-2", TRACE, SPAN, 0.0).encode_to_vec(),
    ];
    for payload in payloads {
        p.produce(
            &producer,
            &p.feedback_topic,
            "default",
            now,
            TRACE.as_bytes(),
            payload,
        )
        .await;
    }
    let ingester = Ingester::start(&p, &[("FLYWHEEL_INGESTER__DERIVE_SIGNALS", "false")]);
    p.wait_count(FEEDBACK_FINAL, 2, TIMEOUT).await;
    let dlq = flywheel_bus::KafkaConfig {
        brokers: p.brokers.clone(),
        ..flywheel_bus::KafkaConfig::default()
    };
    let mut dead = Vec::new();
    common::wait_until(Duration::from_secs(30), "dead letters", || {
        dead = flywheel_bus::inspect::read_all(&dlq, &p.dead_letters, Duration::from_secs(5))
            .unwrap_or_default();
        dead.len() >= 2
    });
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].payload, vec![0xff, 0xff, 0xff, 0x01]);
    for d in &dead {
        assert_eq!(
            d.header("flywheel.dlq.source_topic"),
            Some(p.feedback_topic.as_bytes())
        );
    }
    let error = std::str::from_utf8(dead[1].header("flywheel.dlq.error").unwrap()).unwrap();
    assert!(error.contains("id is empty"), "{error}");
    let ids: Vec<String> = p.rows("SELECT id FROM feedback FINAL ORDER BY id").await;
    assert_eq!(ids, ["ok-1", "ok-2"]);
    let m = ingester.metrics();
    let line = format!(
        "flywheel_ingester_dead_letters_total{{topic=\"{}\"}} 2",
        p.feedback_topic
    );
    assert!(m.contains(&line), "{m}");
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn span_events_become_feedback_and_signals_and_invalid_ones_only_count() {
    use common::kv;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    let event = |name: &str, attributes: Vec<KeyValue>| Event {
        time_unix_nano: 1_795_000_000_000_000_000, // in the past: future times are refused
        name: name.into(),
        attributes,
        dropped_attributes_count: 0,
    };
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let producer = p.producer();
    let mut request = common::numbered_request(77);
    let span = &mut request.resource_spans[0].scope_spans[0].spans[0];
    span.attributes.push(kv(
        "gen_ai.conversation.id",
        Value::StringValue("conv-77".into()),
    ));
    span.events.extend([
        event(
            "gen_ai.evaluation.result",
            vec![
                kv(
                    "gen_ai.evaluation.name",
                    Value::StringValue("relevance".into()),
                ),
                kv("gen_ai.evaluation.score.value", Value::DoubleValue(0.25)),
            ],
        ),
        event(
            "flywheel.signal",
            vec![
                kv("flywheel.signal.type", Value::StringValue("edit".into())),
                kv("flywheel.signal.edit_ratio", Value::DoubleValue(0.4)),
            ],
        ),
        // Not a signal type: counted, dropped, and the span is stored anyway.
        event(
            "flywheel.signal",
            vec![kv(
                "flywheel.signal.type",
                Value::StringValue("like".into()),
            )],
        ),
    ]);
    let (trace_id, span_id) = (hex::encode(&span.trace_id), hex::encode(&span.span_id));
    let payload = request.encode_to_vec();
    let now = common::now_ns();
    p.produce(
        &producer,
        &p.topic,
        "acme",
        now,
        trace_id.as_bytes(),
        payload.clone(),
    )
    .await;
    let ingester = Ingester::start(&p, &[("FLYWHEEL_INGESTER__DERIVE_SIGNALS", "false")]);
    // Tables are written in turn (signals last): wait for the last one.
    p.wait_count("SELECT count() FROM signals", 1, TIMEOUT)
        .await;
    assert_eq!(p.count("SELECT count() FROM otel_traces").await, 2);
    assert_eq!(p.count(FEEDBACK_FINAL).await, 1);
    assert_eq!(p.count("SELECT count() FROM signals FINAL").await, 1);
    let [f]: [FeedbackRow; 1] = p
        .rows("SELECT ?fields FROM feedback FINAL")
        .await
        .try_into()
        .unwrap();
    assert_eq!(
        (
            f.trace_id.as_str(),
            f.span_id.as_str(),
            f.conversation_id.as_str()
        ),
        (trace_id.as_str(), span_id.as_str(), "conv-77")
    );
    assert_eq!(
        (f.name.as_str(), f.score, f.project.as_str()),
        ("relevance", Some(0.25), "acme")
    );
    assert_eq!(
        (f.source.as_str(), f.origin.as_str()),
        ("model", "otlp_span_event")
    );
    let [sig]: [SignalRow; 1] = p
        .rows("SELECT ?fields FROM signals FINAL")
        .await
        .try_into()
        .unwrap();
    assert_eq!(
        (sig.signal_type.as_str(), sig.edit_ratio),
        ("edit", Some(0.4))
    );
    assert_eq!(sig.trace_id, trace_id);
    assert!(ingester
        .metrics()
        .contains("flywheel_ingester_invalid_span_events_total 1"));

    // The same span delivered again: deterministic ids, still one item each under FINAL.
    p.produce(
        &producer,
        &p.topic,
        "acme",
        now + 1,
        trace_id.as_bytes(),
        payload,
    )
    .await;
    p.wait_count("SELECT count() FROM signals", 2, TIMEOUT)
        .await;
    assert_eq!(p.count("SELECT count() FROM feedback").await, 2);
    assert_eq!(p.count(FEEDBACK_FINAL).await, 1);
    assert_eq!(p.count("SELECT count() FROM signals FINAL").await, 1);
    p.drop_database().await;
}
