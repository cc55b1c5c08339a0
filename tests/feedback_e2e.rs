//! End to end through `flywheel all` against the real broker and ClickHouse engine: feedback
//! posted to the collector (JSON API and OTLP log records) becomes rows in `feedback` and
//! `signals`, and a client retry of the same ids is one row each (adr/0006).

mod common;

use std::time::Duration;

use common::ingest::{clickhouse_url, Pipeline};
use common::{kafka_brokers, Collector};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread")]
async fn posted_feedback_becomes_rows_and_a_retry_with_the_same_ids_is_one_row_each() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    let env = p.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let c = Collector::spawn_command("all", &p.brokers, &env);
    c.wait_ready(TIMEOUT);

    let batch = json!([
        {"id": "e2e-thumbs", "trace_id": TRACE, "name": "thumbs", "value": true, "source": "human"},
        {"id": "e2e-score", "trace_id": TRACE, "conversation_id": "conv-e2e",
         "name": "helpfulness", "value": 4, "comment": "good"}
    ]);
    // Same trace, so same key and partition: stored after the retry, it marks the retry stored.
    let last = json!({"id": "e2e-last", "trace_id": TRACE, "name": "thumbs", "value": false});
    let client = reqwest::Client::new();
    // The client retries (say, its first answer was lost on the network): same ids.
    for body in [&batch, &batch, &last] {
        let r = client
            .post(format!("{}/v1/feedback", c.http))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(c.messages_of(&c.feedback_topic).len(), 5);
    let logs = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
    "eventName": "flywheel.signal", "traceId": TRACE,
    "attributes": [
        {"key": "flywheel.signal.id", "value": {"stringValue": "e2e-copy"}},
        {"key": "flywheel.signal.type", "value": {"stringValue": "copy"}}
    ]}]}]}]});
    let r = client
        .post(format!("{}/v1/logs", c.http))
        .header("content-type", "application/json")
        .body(logs.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{}");

    // Both copies are on the topic and were ingested; counting with FINAL sees each id once.
    p.wait_count(
        "SELECT count() FROM feedback WHERE id = 'e2e-last'",
        1,
        TIMEOUT,
    )
    .await;
    assert_eq!(p.count("SELECT count() FROM feedback FINAL").await, 3);
    assert_eq!(
        p.count(
            "SELECT count() FROM feedback FINAL WHERE id = 'e2e-thumbs' AND project = 'default' \
             AND trace_id = '4bf92f3577b34da6a3ce929d0e0e4736' AND value_type = 'boolean' \
             AND score = 1 AND source = 'human' AND origin = 'api'"
        )
        .await,
        1
    );
    assert_eq!(
        p.count(
            "SELECT count() FROM feedback FINAL WHERE id = 'e2e-score' \
             AND conversation_id = 'conv-e2e' AND score = 4 AND comment = 'good'"
        )
        .await,
        1
    );
    p.wait_count(
        "SELECT count() FROM signals FINAL WHERE id = 'e2e-copy' AND type = 'copy' \
         AND origin = 'otlp_log' AND trace_id = '4bf92f3577b34da6a3ce929d0e0e4736'",
        1,
        TIMEOUT,
    )
    .await;
    drop(c);
    p.drop_database().await;
}
