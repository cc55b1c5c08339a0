//! The ingester's side of the store (`flywheel_store::IngestStore`) on both backends: a batch
//! with its marker under one token (a replay stores nothing, the marker is readable), and the
//! derived-signal rules, which give the same rows on ClickHouse and DuckDB for the calls of
//! tests/derived_signals.rs.

mod common;

use std::sync::Arc;

use common::ingest::clickhouse_url;
use flywheel_schema::rows::{IngestBatchRow, LlmCallRow, OtelTraceRow, SignalRow};
use flywheel_schema::ClickHouseConfig;
use flywheel_store::derive::{Rule, Window};
use flywheel_store::{ClickHouseStore, DuckDbStore, IngestStore, RowBatch};

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
