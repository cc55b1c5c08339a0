//! The ingester's side of the store (`flywheel_store::IngestStore`) on both backends: a batch
//! with its marker under one token (a replay stores nothing, the marker is readable), and the
//! derived-signal rules, which give the same rows on ClickHouse and DuckDB for the calls of
//! tests/derived_signals.rs.

mod common;

use std::sync::Arc;

use common::ingest::clickhouse_url;
use flywheel_pricing::{Price, Usage};
use flywheel_schema::rows::{IngestBatchRow, LlmCallRow, OtelTraceRow, SignalRow};
use flywheel_schema::ClickHouseConfig;
use flywheel_store::derive::{Rule, Window};
use flywheel_store::{AccessMode, ClickHouseStore, DuckDbStore, IngestStore, RowBatch};

const SEC: i64 = 1_000_000_000;

/// A fresh ClickHouse database with the schema, and its name (to drop).
async fn clickhouse() -> (Arc<dyn IngestStore>, ClickHouseConfig) {
    let config = ClickHouseConfig {
        url: clickhouse_url(),
        database: format!("test_{}", common::unique("st").replace(['-', '.'], "_")),
        ..ClickHouseConfig::default()
    };
    flywheel_schema::migrate::migrate(&config).await.unwrap();
    (Arc::new(ClickHouseStore::new(config.client())), config)
}

async fn drop_database(config: &ClickHouseConfig) {
    let _ = clickhouse::Client::default()
        .with_url(&config.url)
        .query(&format!("DROP DATABASE IF EXISTS {}", config.database))
        .execute()
        .await;
}

fn duckdb() -> Arc<dyn IngestStore> {
    Arc::new(DuckDbStore::in_memory().unwrap())
}

fn marker(first: i64, last: i64) -> IngestBatchRow {
    IngestBatchRow {
        consumer_group: "g".into(),
        topic: "spans".into(),
        partition: 3,
        first_offset: first,
        last_offset: last,
    }
}

/// One model call as the mapper stores it (tests/derived_signals.rs's `Call`).
#[allow(clippy::too_many_arguments)]
fn call(
    trace: u8,
    span: u8,
    conversation: &str,
    input: &str,
    start_ns: i64,
    streaming: bool,
    finish: Option<&str>,
    error: bool,
) -> LlmCallRow {
    LlmCallRow {
        timestamp: start_ns,
        project: "default".into(),
        trace_id: hex::encode([trace; 16]),
        span_id: hex::encode([span; 8]),
        service: "svc".into(),
        span_name: "chat gpt-4o-mini".into(),
        operation: "chat".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        request_model: "gpt-4o-mini".into(),
        output_tokens: Some(37),
        duration_ns: 2_000_000_000,
        streaming,
        finish_reasons: finish.map(|f| vec![f.to_string()]).unwrap_or_default(),
        status_code: if error { "Error" } else { "Unset" }.into(),
        conversation_id: conversation.into(),
        user_id: "user-1".into(),
        input_messages: input.into(),
        received_at: start_ns + 3 * SEC,
        ..LlmCallRow::default()
    }
}

async fn ingest_is_idempotent_and_keeps_the_marker(store: Arc<dyn IngestStore>) {
    assert_eq!(store.last_marker("g", "spans", 3).await.unwrap(), None);
    let mut batch = RowBatch::new("spans:3:10-19");
    batch.llm_calls = vec![call(1, 1, "c", "in", 1_000 * SEC, false, None, false)];
    batch.otel_traces = vec![OtelTraceRow {
        timestamp: 1_000 * SEC,
        trace_id: "t".into(),
        span_id: "s".into(),
        project: "default".into(),
        ..OtelTraceRow::default()
    }];
    let written = store.ingest(&marker(10, 19), &batch).await.unwrap();
    let tables: Vec<_> = written.iter().map(|w| (w.table, w.rows)).collect();
    assert_eq!(tables, vec![("otel_traces", 1), ("llm_calls", 1)]);
    assert_eq!(
        store.last_marker("g", "spans", 3).await.unwrap(),
        Some((10, 19))
    );
    // The same batch again (a retry, or a replay after a crash): nothing more is stored.
    store.ingest(&marker(10, 19), &batch).await.unwrap();
    let filter = flywheel_store::CallFilter {
        project: "default".into(),
        ..Default::default()
    };
    assert_eq!(store.count_calls(&filter).await.unwrap(), 1);
    // A later batch of the partition moves the marker; an empty batch records its marker too.
    store
        .ingest(&marker(20, 29), &RowBatch::new("spans:3:20-29"))
        .await
        .unwrap();
    assert_eq!(
        store.last_marker("g", "spans", 3).await.unwrap(),
        Some((20, 29))
    );
    assert_eq!(store.last_marker("g", "spans", 4).await.unwrap(), None);
    assert_eq!(store.last_marker("other", "spans", 3).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_ingest_is_idempotent_and_keeps_the_marker() {
    let (store, config) = clickhouse().await;
    ingest_is_idempotent_and_keeps_the_marker(store).await;
    drop_database(&config).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_ingest_is_idempotent_and_keeps_the_marker() {
    ingest_is_idempotent_and_keeps_the_marker(duckdb()).await;
}

const HI: &str =
    r#"[{"role":"user","parts":[{"type":"text","content":"Write a haiku about rust"}]}]"#;
const OTHER: &str = r#"[{"role":"user","parts":[{"type":"text","content":"And one about go"}]}]"#;

/// The calls of tests/derived_signals.rs (the first test), plus a2 delivered twice.
fn calls(base: i64) -> Vec<LlmCallRow> {
    vec![
        call(0xa1, 0xa1, "chat-a", HI, base, false, Some("stop"), false),
        call(
            0xa2,
            0xa2,
            "chat-a",
            HI,
            base + 10 * SEC,
            false,
            Some("stop"),
            false,
        ),
        call(
            0xa3,
            0xa3,
            "chat-a",
            HI,
            base + 610 * SEC,
            false,
            Some("stop"),
            false,
        ),
        call(
            0xa4,
            0xa4,
            "chat-a",
            OTHER,
            base + 620 * SEC,
            false,
            None,
            true,
        ),
        call(
            0xa5,
            0xa5,
            "chat-a",
            OTHER,
            base + 630 * SEC,
            false,
            Some("stop"),
            false,
        ),
        call(0xb1, 0xb1, "chat-b", "b1", base, true, None, false),
        call(
            0xb2,
            0xb2,
            "chat-b",
            "b2",
            base + 20 * SEC,
            false,
            None,
            false,
        ),
        call(
            0xb2,
            0xb3,
            "chat-b",
            "b3",
            base + 40 * SEC,
            true,
            Some("stop"),
            false,
        ),
    ]
}

/// Every rule's new rows over `window`, without `received_at` (the time of the run).
async fn derive(store: &dyn IngestStore, window: &Window) -> Vec<SignalRow> {
    let mut all = Vec::new();
    for rule in Rule::ALL {
        for mut row in store.derive(rule, window).await.unwrap() {
            assert_eq!(row.signal_type, rule.signal_type());
            assert!(row.received_at > 0);
            row.received_at = 0;
            all.push(row);
        }
    }
    all
}

/// Derives over the crafted calls, stores the result and derives again (nothing new).
async fn derived_signals(store: Arc<dyn IngestStore>) -> Vec<SignalRow> {
    let now = common::now_ns();
    let base = now - 2 * 3600 * SEC;
    let mut batch = RowBatch::new("calls");
    batch.llm_calls = calls(base);
    store.ingest(&marker(0, 7), &batch).await.unwrap();
    let mut again = RowBatch::new("calls-again");
    again.llm_calls = vec![batch.llm_calls[1].clone()];
    store.ingest(&marker(8, 8), &again).await.unwrap();
    let window = Window {
        since_ns: now - 3 * 3600 * SEC,
        now_ns: now,
        regenerate_window_ns: 300 * SEC,
        conversation_idle_ns: 1800 * SEC,
    };
    let got = derive(store.as_ref(), &window).await;
    let mut stored = RowBatch::new("derived");
    stored.signals = got.clone();
    for s in &mut stored.signals {
        s.received_at = now;
    }
    store.insert(&stored).await.unwrap();
    assert_eq!(
        derive(store.as_ref(), &window).await,
        vec![],
        "derived twice"
    );
    // Rebase the times on the start, so that both backends' runs compare.
    got.into_iter()
        .map(|mut s| {
            s.timestamp -= base;
            s
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn derived_signals_are_the_same_on_both_backends() {
    let (ch, config) = clickhouse().await;
    let on_clickhouse = derived_signals(ch).await;
    drop_database(&config).await;
    let on_duckdb = derived_signals(duckdb()).await;
    assert_eq!(on_clickhouse, on_duckdb);

    let summary: Vec<(&str, &str, &str, i64, Option<u32>)> = on_duckdb
        .iter()
        .map(|r| {
            (
                r.signal_type.as_str(),
                r.trace_id.as_str(),
                r.conversation_id.as_str(),
                r.timestamp / SEC,
                r.turn_count,
            )
        })
        .collect();
    let (a1, a5, b1, b2) = (
        hex::encode([0xa1u8; 16]),
        hex::encode([0xa5u8; 16]),
        hex::encode([0xb1u8; 16]),
        hex::encode([0xb2u8; 16]),
    );
    // Rule by rule, each in (project, id) order.
    assert_eq!(
        summary,
        vec![
            ("regenerate", a1.as_str(), "chat-a", 10, None),
            ("stop", b1.as_str(), "chat-b", 2, None),
            ("conversation_end", a5.as_str(), "chat-a", 630, Some(5)),
            ("conversation_end", b2.as_str(), "chat-b", 40, Some(2)),
        ]
    );
    let stop = &on_duckdb[1];
    assert_eq!(
        (stop.tokens_received, stop.ms_since_start),
        (Some(37), Some(2000.0))
    );
    let regen = &on_duckdb[0];
    assert_eq!(
        regen.attributes,
        vec![
            (
                "replaced_by_trace_id".to_string(),
                hex::encode([0xa2u8; 16])
            ),
            ("replaced_by_span_id".to_string(), hex::encode([0xa2u8; 8])),
            ("seconds_between".to_string(), "10".to_string()),
        ]
    );
}

/// One call of the reprice test: span byte, model, timestamp, (input, output, cache read,
/// cache creation, reasoning) tokens.
type Priced = (
    u8,
    &'static str,
    i64,
    Option<u64>,
    Option<u64>,
    u64,
    u64,
    u64,
);

const SINCE: i64 = 2_000 * SEC;
const REPRICE_CALLS: [Priced; 6] = [
    (1, "gpt-4o-mini", SINCE, Some(1000), Some(200), 300, 0, 0),
    // Cache and reasoning counts above their totals are clamped, as at ingest.
    (
        2,
        "gpt-4o-mini",
        SINCE + SEC,
        Some(100),
        Some(10),
        5000,
        50,
        20,
    ),
    (3, "gpt-4o-mini", SINCE + 2 * SEC, None, Some(50), 0, 0, 7),
    // Not repriced: before `since`, a model without a price, no token counts at all.
    (
        4,
        "gpt-4o-mini",
        SINCE - SEC,
        Some(1000),
        Some(200),
        0,
        0,
        0,
    ),
    (5, "my-finetune", SINCE, Some(1000), Some(200), 0, 0, 0),
    (6, "gpt-4o-mini", SINCE, None, None, 0, 0, 0),
];

fn fixed_price() -> Price {
    Price {
        input: 1.0,
        cached_input: 0.5,
        cache_write: 1.25,
        output: 2.0,
        reasoning: 3.0,
        version: "fix-1".into(),
    }
}

/// Stores [`REPRICE_CALLS`], each at cost 9.99, version `old`.
async fn store_calls(store: &dyn IngestStore) {
    let mut batch = RowBatch::new("spans:0:0-5");
    batch.llm_calls = REPRICE_CALLS
        .iter()
        .map(
            |&(span, model, ts, input, output, read, creation, reasoning)| {
                let mut c = call(1, span, "c", "in", ts, false, Some("stop"), false);
                c.model = model.into();
                (c.input_tokens, c.output_tokens) = (input, output);
                c.cache_read_tokens = read;
                c.cache_creation_tokens = creation;
                c.reasoning_tokens = reasoning;
                c.cost_usd = Some(9.99);
                c.price_version = "old".into();
                c
            },
        )
        .collect();
    store.ingest(&marker(0, 5), &batch).await.unwrap();
}

/// [`store_calls`], then reprices gpt-4o-mini since [`SINCE`] at [`fixed_price`].
async fn store_and_reprice(store: &dyn IngestStore) {
    store_calls(store).await;
    let prices = vec![("gpt-4o-mini".to_string(), fixed_price())];
    store.reprice(&prices, SINCE).await.unwrap();
    // Again: idempotent.
    store.reprice(&prices, SINCE).await.unwrap();
}

/// What the store must hold after [`store_and_reprice`], computed by `Price::cost` (the
/// formula the ingester prices with), in span order.
fn expected_costs() -> Vec<(u8, Option<f64>, String)> {
    REPRICE_CALLS
        .iter()
        .map(|&(span, _, _, input, output, read, creation, reasoning)| {
            if span >= 4 {
                return (span, Some(9.99), "old".to_string());
            }
            let usage = Usage {
                input: input.unwrap_or(0),
                output: output.unwrap_or(0),
                cache_read: read,
                cache_creation: creation,
                reasoning,
            };
            (span, Some(fixed_price().cost(&usage)), "fix-1".to_string())
        })
        .collect()
}

fn assert_costs(stored: Vec<(String, Option<f64>, String)>) {
    let stored: Vec<(u8, Option<f64>, String)> = stored
        .into_iter()
        .map(|(span, cost, version)| (hex::decode(span).unwrap()[0], cost, version))
        .collect();
    let expected = expected_costs();
    assert_eq!(stored.len(), expected.len(), "{stored:?}");
    for (s, e) in stored.iter().zip(&expected) {
        assert_eq!((s.0, &s.2), (e.0, &e.2), "{stored:?}");
        let (s_cost, e_cost) = (s.1.unwrap(), e.1.unwrap());
        assert!(
            (s_cost - e_cost).abs() <= 1e-12 * e_cost,
            "{stored:?} vs {expected:?}"
        );
    }
    // The clamped case is priced as the ingester prices it: 100 cached input, no plain input.
    assert!((expected[1].1.unwrap() - (100.0 * 0.5 + 10.0 * 3.0) / 1e6).abs() < 1e-15);
}

const COSTS: &str = "SELECT span_id, cost_usd, price_version FROM llm_calls ORDER BY span_id";

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_reprice_rewrites_costs_since_a_time() {
    let (store, config) = clickhouse().await;
    store_and_reprice(store.as_ref()).await;
    let stored = config
        .client()
        .query(COSTS)
        .fetch_all::<(String, Option<f64>, String)>()
        .await
        .unwrap();
    drop_database(&config).await;
    assert_costs(stored);
}

#[tokio::test(flavor = "multi_thread")]
async fn duckdb_reprice_rewrites_costs_since_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flywheel.duckdb");
    let store = DuckDbStore::open(&path, AccessMode::ReadWrite).unwrap();
    store_and_reprice(&store).await;
    drop(store);
    assert_costs(duckdb_costs(&path));
}

fn duckdb_costs(path: &std::path::Path) -> Vec<(String, Option<f64>, String)> {
    let conn = duckdb::Connection::open(path).unwrap();
    let mut stmt = conn.prepare(COSTS).unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

/// `flywheel reprice` on an embedded data directory, with a price file: while another process
/// holds the DuckDB file (a running `flywheel up`) it fails saying so and changes nothing;
/// once that process is gone it reprices.
#[tokio::test(flavor = "multi_thread")]
async fn flywheel_reprice_runs_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flywheel.duckdb");
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "version = \"fix-1\"\n[[model]]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\n\
         input = 1.0\ncached_input = 0.5\ncache_write = 1.25\noutput = 2.0\nreasoning = 3.0\n",
    )
    .unwrap();
    let reprice = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .args(["reprice", "--since", "1970-01-01T00:33:20Z"])
            .env("FLYWHEEL_STORE__BACKEND", "duckdb")
            .env("FLYWHEEL_STORE__PATH", &path)
            .env("FLYWHEEL_INGESTER__PRICES_FILE", &prices)
            .output()
            .unwrap()
    };
    let store = DuckDbStore::open(&path, AccessMode::ReadWrite).unwrap();
    store_calls(&store).await;
    let held = reprice();
    let stderr = String::from_utf8_lossy(&held.stderr);
    assert!(!held.status.success(), "{stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");
    drop(store);
    assert!(duckdb_costs(&path)
        .iter()
        .all(|(_, c, v)| *c == Some(9.99) && v == "old"));

    let done = reprice();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_costs(duckdb_costs(&path));
}
