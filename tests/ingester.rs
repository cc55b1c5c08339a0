//! Integration tests of the ingest spine against the real broker and ClickHouse engine:
//! OTLP in at the collector -> rows in `otel_traces` and `llm_calls`, exactly the golden rows;
//! faults (kill -9 mid-batch, a crash between insert and commit, a poison message) checked by
//! exact counts and uniqueness of (TraceId, SpanId).

mod common;

use std::time::Duration;

use common::ingest::{clickhouse_url, Ingester, Pipeline};
use common::{fixture, kafka_brokers, Collector};
use flywheel_schema::rows::{LlmCallRow, OtelTraceRow};
use prost::Message;

const CHAT: &str = "openllmetry-openai-0.62.4-chat-and-stream";
const ERRS: &str = "openllmetry-openai-0.62.4-error-and-stopped-stream";
const TIMEOUT: Duration = Duration::from_secs(60);

async fn post_pb(url: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn golden<T: serde::de::DeserializeOwned>(name: &str) -> Vec<T> {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// [`common::numbered_request`], encoded.
fn numbered(n: u32) -> Vec<u8> {
    common::numbered_request(n).encode_to_vec()
}

const EXACT: &str = "SELECT count() FROM otel_traces";
const UNIQUE: &str = "SELECT uniqExact(TraceId, SpanId) FROM otel_traces";
const CALLS: &str = "SELECT count() FROM llm_calls";

#[tokio::test(flavor = "multi_thread")]
async fn otlp_in_golden_rows_out_in_both_tables() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let env = p.env();
    let c = Collector::start(
        &kafka_brokers(),
        &p.env_with(
            &env,
            &[("FLYWHEEL_AUTH__KEYS", "{golden-key-1=\"golden\"}")],
        ),
    );
    let _ingester = Ingester::start(&p, &[]);
    for name in [CHAT, ERRS] {
        let status = reqwest::Client::new()
            .post(c.traces_url())
            .header("content-type", "application/x-protobuf")
            .header("authorization", "Bearer golden-key-1")
            .body(fixture(&format!("{name}.pb")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    p.wait_count(EXACT, 3, TIMEOUT).await;
    p.wait_count(CALLS, 3, TIMEOUT).await;

    let traces: Vec<OtelTraceRow> = p
        .client()
        .query("SELECT ?fields FROM otel_traces ORDER BY Timestamp")
        .fetch_all()
        .await
        .unwrap();
    let mut expected: Vec<OtelTraceRow> = golden(&format!("{CHAT}.otel_traces.json"));
    expected.extend(golden::<OtelTraceRow>(&format!("{ERRS}.otel_traces.json")));
    expected.sort_by_key(|r| r.timestamp);
    assert_eq!(traces, expected);

    let mut calls: Vec<LlmCallRow> = p
        .client()
        .query("SELECT ?fields FROM llm_calls ORDER BY timestamp")
        .fetch_all()
        .await
        .unwrap();
    let mut expected: Vec<LlmCallRow> = golden(&format!("{CHAT}.llm_calls.json"));
    expected.extend(golden::<LlmCallRow>(&format!("{ERRS}.llm_calls.json")));
    expected.sort_by_key(|r| r.timestamp);
    // The receive time is the collector's clock, not the golden file's.
    for (got, want) in calls.iter_mut().zip(&mut expected) {
        assert!(got.received_at > 1_600_000_000_000_000_000);
        got.received_at = 0;
        want.received_at = 0;
    }
    assert_eq!(calls, expected);
    // The trace-id lookup materialized view follows the table.
    assert_eq!(
        p.count("SELECT count() FROM otel_traces_trace_id_ts").await,
        3
    );
    p.drop_database().await;
}

/// The ingester aborts right after its `n`-th insert, before committing it; a normal ingester
/// takes over and must replay the uncommitted range with the same token.
async fn crash_after_insert(n: u64) {
    // A private broker on tansu's SQLite engine: the takeover depends on the committed offset
    // the crashed consumer left, and the shared test broker's in-memory engine (tansu 0.6)
    // answered a stale one after the crash (a batch stored twice under another token).
    let dir = tempfile::tempdir().unwrap();
    let broker = common::Broker::start(dir.path());
    let p = Pipeline::new(&broker.addr, &clickhouse_url());
    p.migrate();
    let env = p.env();
    let c = Collector::start(&broker.addr, &p.env_with(&env, &[]));
    // 60 requests of 2 spans before any ingester runs, so batches are full and deterministic.
    for i in 0..60 {
        assert_eq!(post_pb(&c.traces_url(), numbered(i)).await, 200);
    }
    let crash_at = n.to_string();
    let small_batches = ("FLYWHEEL_INGESTER__BATCH_MAX_ROWS", "10");
    let crashing = Ingester::start(
        &p,
        &[
            small_batches,
            (
                "FLYWHEEL_INGESTER__TEST_CRASH_AFTER_INSERTS",
                crash_at.as_str(),
            ),
        ],
    );
    common::wait_until(Duration::from_secs(60), "ingester aborted", || {
        common::http_get_status(&format!("{}/healthz", crashing.admin)).is_none()
    });
    drop(crashing);
    let before = p.count(EXACT).await;
    assert!(before >= 10 * n, "{before} rows before the crash");
    let ingester = Ingester::start(&p, &[small_batches]);
    p.wait_count(EXACT, 120, TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // let any duplicate show up
    assert_eq!(p.count(EXACT).await, 120);
    assert_eq!(p.count(UNIQUE).await, 120);
    assert_eq!(p.count(CALLS).await, 120);
    assert_eq!(p.count("SELECT count() FROM llm_calls FINAL").await, 120);
    let m = ingester.metrics();
    assert!(
        m.contains("flywheel_ingester_rows_inserted_total{table=\"otel_traces\"}"),
        "{m}"
    );
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_first_insert_replays_without_duplicates() {
    crash_after_insert(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_a_later_insert_replays_without_duplicates() {
    crash_after_insert(4).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_batch_loses_nothing_and_duplicates_nothing() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let env = p.env();
    let c = Collector::start(&kafka_brokers(), &p.env_with(&env, &[]));
    let opts = [
        ("FLYWHEEL_INGESTER__BATCH_MAX_ROWS", "25"),
        ("FLYWHEEL_INGESTER__BATCH_MAX_AGE_MS", "300"),
    ];
    let mut ingester = Ingester::start(&p, &opts);
    let url = c.traces_url();
    let sender = tokio::spawn(async move {
        for n in 0..300 {
            assert_eq!(post_pb(&url, numbered(1000 + n)).await, 200);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Kill -9 three times while data flows, restarting each time.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        ingester.kill9();
        ingester = Ingester::start(&p, &opts);
    }
    sender.await.unwrap();
    p.wait_count(EXACT, 600, TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.count(EXACT).await, 600);
    assert_eq!(p.count(UNIQUE).await, 600);
    assert_eq!(p.count(CALLS).await, 600);
    drop(ingester);
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_message_goes_to_dead_letters_and_the_rest_flows() {
    use flywheel_bus::{KafkaConfig, KafkaPublisher, Publisher, Record};
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let env = p.env();
    let c = Collector::start(&kafka_brokers(), &p.env_with(&env, &[]));
    assert_eq!(post_pb(&c.traces_url(), numbered(1)).await, 200);
    // A message that is not an ExportTraceServiceRequest, keyed like the others.
    let kafka = KafkaConfig {
        brokers: p.brokers.clone(),
        create_topics: false,
        ..KafkaConfig::default()
    };
    let publisher =
        KafkaPublisher::start(&kafka, vec![], tokio_util::sync::CancellationToken::new()).unwrap();
    common::wait_until(Duration::from_secs(20), "producer ready", || {
        publisher.is_ready()
    });
    let poison = Record {
        key: b"0102".to_vec(),
        payload: vec![0xff, 0xff, 0xff, 0x01],
    };
    publisher
        .publish(&p.topic, &[], vec![poison])
        .await
        .unwrap();
    assert_eq!(post_pb(&c.traces_url(), numbered(2)).await, 200);

    let ingester = Ingester::start(&p, &[]);
    p.wait_count(EXACT, 4, TIMEOUT).await;
    let dlq_config = KafkaConfig {
        brokers: p.brokers.clone(),
        ..KafkaConfig::default()
    };
    let mut dead = Vec::new();
    common::wait_until(Duration::from_secs(30), "dead letter", || {
        dead =
            flywheel_bus::inspect::read_all(&dlq_config, &p.dead_letters, Duration::from_secs(5))
                .unwrap_or_default();
        !dead.is_empty()
    });
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, vec![0xff, 0xff, 0xff, 0x01]);
    assert!(dead[0].header("flywheel.dlq.offset").is_some());
    assert!(
        std::str::from_utf8(dead[0].header("flywheel.dlq.error").unwrap())
            .unwrap()
            .contains("decode")
    );
    let dead_line = format!(
        "flywheel_ingester_dead_letters_total{{topic=\"{}\"}} 1",
        p.topic
    );
    assert!(ingester.metrics().contains(&dead_line));
    assert_eq!(p.count(EXACT).await, 4);
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ingester_refuses_an_old_schema() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .arg("ingester")
        .envs(p.env())
        .env(
            "FLYWHEEL_ADMIN__LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run `flywheel migrate`"), "{err}");
}

/// ClickHouse goes away for 30 s while spans keep arriving: the ingester stops, backs off,
/// keeps its offsets, and once ClickHouse is back everything is there exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_outage_of_30s_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ch = common::ingest::PrivateClickHouse::start(dir.path());
    let p = Pipeline::new(&kafka_brokers(), &ch.url);
    p.migrate();
    let env = p.env();
    let c = Collector::start(&kafka_brokers(), &p.env_with(&env, &[]));
    let ingester = Ingester::start(&p, &[("FLYWHEEL_INGESTER__RETRY_MAX_MS", "2000")]);
    for n in 0..50 {
        assert_eq!(post_pb(&c.traces_url(), numbered(5000 + n)).await, 200);
    }
    p.wait_count(EXACT, 100, TIMEOUT).await;

    ch.kill();
    // Spans keep arriving during the outage: Kafka holds them.
    for n in 50..150 {
        assert_eq!(post_pb(&c.traces_url(), numbered(5000 + n)).await, 200);
        tokio::time::sleep(Duration::from_millis(300)).await; // spread over 30 s
    }
    ch.restart();
    p.wait_count(EXACT, 300, TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(p.count(EXACT).await, 300);
    assert_eq!(p.count(UNIQUE).await, 300);
    assert_eq!(p.count(CALLS).await, 300);
    let m = ingester.metrics();
    let retries: u64 = m
        .lines()
        .find(|l| l.starts_with("flywheel_ingester_insert_retries_total "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    assert!(retries > 0, "the outage caused no retry:\n{m}");
}

/// A price fix corrects history: `flywheel reprice --since` recomputes stored costs from the
/// current table (here an override file with a new gpt-4o-mini price).
#[tokio::test(flavor = "multi_thread")]
async fn reprice_rewrites_history_after_a_price_fix() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let env = p.env();
    let c = Collector::start(&kafka_brokers(), &p.env_with(&env, &[]));
    let ingester = Ingester::start(&p, &[]);
    assert_eq!(
        post_pb(&c.traces_url(), fixture(&format!("{CHAT}.pb"))).await,
        200
    );
    p.wait_count(CALLS, 2, TIMEOUT).await;
    drop(ingester);
    // Built-in gpt-4o-mini: 32 plain input * 0.15 + 10 cached * 0.075 + 8 output * 0.60.
    let before: Vec<(Option<f64>, String)> = p
        .client()
        .query("SELECT cost_usd, price_version FROM llm_calls")
        .fetch_all()
        .await
        .unwrap();
    assert!(
        before
            .iter()
            .all(|(c, _)| (c.unwrap() - 10.35e-6).abs() < 1e-12),
        "{before:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "version = \"fix-1\"\n[[model]]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\ninput = 1.0\ncached_input = 0.5\noutput = 2.0\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .args(["reprice", "--since", "2020-01-01"])
        .envs(p.env())
        .env("FLYWHEEL_INGESTER__PRICES_FILE", &prices)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: Vec<(Option<f64>, String)> = p
        .client()
        .query("SELECT cost_usd, price_version FROM llm_calls")
        .fetch_all()
        .await
        .unwrap();
    // 32 * 1.0 + 10 * 0.5 + 8 * 2.0 = 53 per million
    for (cost, version) in &after {
        assert!((cost.unwrap() - 53e-6).abs() < 1e-12, "{after:?}");
        assert_eq!(version, "fix-1");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .args(["reprice", "--since", "last tuesday"])
        .envs(p.env())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected YYYY-MM-DD"));
    p.drop_database().await;
}

/// SIGTERM flushes the open batches and commits them: everything is stored at exit, and an
/// ingester started afterwards has nothing left to insert.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_open_batches_and_commits() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let env = p.env();
    let c = Collector::start(&kafka_brokers(), &p.env_with(&env, &[]));
    // Batches would stay open for a minute: only the shutdown flush can store them.
    let slow = [("FLYWHEEL_INGESTER__BATCH_MAX_AGE_MS", "60000")];
    let ingester = Ingester::start(&p, &slow);
    for n in 0..20 {
        assert_eq!(post_pb(&c.traces_url(), numbered(7000 + n)).await, 200);
    }
    // Wait until the ingester has consumed them (its lag gauge or simply some time).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        p.count(EXACT).await,
        0,
        "nothing is stored before the batches are due"
    );
    let status = ingester.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(p.count(EXACT).await, 40);
    // A new ingester starts after the committed offsets: nothing is inserted twice.
    let again = Ingester::start(&p, &[]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(p.count(EXACT).await, 40);
    assert_eq!(p.count(UNIQUE).await, 40);
    drop(again);
    p.drop_database().await;
}
