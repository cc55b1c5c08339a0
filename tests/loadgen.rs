//! `flywheel loadgen` against the real binary in `all` mode (collector + ingester) on the
//! real broker and ClickHouse engine: twenty simulated minutes at 30x (40 s), then every call
//! is in `llm_calls` with TTFT, TPOT and cost, the ingester's derived signals find the
//! regenerations and stopped streams loadgen simulated, and every feedback item and signal
//! posted is in `feedback` / `signals`, attached to a stored call.

mod common;

use std::process::Command;
use std::time::Duration;

use common::ingest::{clickhouse_url, Pipeline};
use common::{kafka_brokers, Collector};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

/// One loadgen run at a time (see `loadgen`).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Spans only (the regenerate and stop rules are checked on the spans alone).
const SPANS_ONLY: &str = r#"
rate = 3.0
duration = "20m"
seed = 11
[feedback]
thumbs_rate = 0.0
score_rate = 0.0
[signals]
edit = 0.0
copy = 0.0
abandon = 0.0
regenerate = 0.1
stop = 0.1
explicit_regenerate_stop = false
"#;

/// Default feedback and signal rates.
const WITH_FEEDBACK: &str = r#"
rate = 3.0
duration = "20m"
seed = 12
"#;

/// Runs loadgen to completion; returns its ground truth lines.
fn loadgen(
    collector: &Collector,
    dir: &tempfile::TempDir,
    scenario: &str,
    extra: &[&str],
) -> Vec<Value> {
    let text = scenario;
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, text).unwrap();
    let truth = dir.path().join("truth.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .arg("loadgen")
        .arg("--scenario")
        .arg(&scenario)
        // 30x: about 180 spans/s. Faster runs, two at once, starved the local tansu on 2 cores
        // until deliveries timed out, and tansu 0.6 (sqlite) wedges when an idempotent
        // producer then bumps its epoch (docs/notes/2026-11-28-session-2.md).
        .args(["--endpoint", &collector.http, "--speedup", "30"])
        .arg("--ground-truth")
        .arg(&truth)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 refused"), "{stdout}");
    std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn loadgen_traffic_lands_in_llm_calls_with_ttft_tpot_and_cost() {
    let _serial = SERIAL.lock().await;
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    let env = p.env();
    let c = Collector::spawn_command("all", &kafka_brokers(), &p.env_with(&env, &[]));
    c.wait_ready(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let truth = loadgen(
        &c,
        &dir,
        SPANS_ONLY,
        &[
            "--incident",
            "kind=ttft_regression,start=10m,duration=5m,model=gpt-4o,multiplier=4",
        ],
    );
    let summary = truth.last().unwrap();
    assert_eq!(summary["type"], "summary");
    let calls = summary["calls"].as_u64().unwrap();
    assert!(calls > 3000, "{summary}");
    assert_eq!(summary["spans"]["accepted"].as_u64(), Some(2 * calls));
    let incident = &truth[1];
    assert_eq!(incident["kind"], "ttft_regression");

    p.wait_count("SELECT count() FROM llm_calls FINAL", calls, TIMEOUT)
        .await;
    assert_eq!(p.count("SELECT count() FROM llm_calls FINAL").await, calls);
    assert_eq!(p.count("SELECT count() FROM otel_traces").await, 2 * calls);
    // Every answered call priced (failed ones report no usage); every answered stream with
    // TTFT, and TPOT when it had two tokens.
    let zero = [
        "countIf(status_code != 'Error' AND (cost_usd IS NULL OR cost_usd <= 0))",
        "countIf(status_code = 'Error' AND cost_usd IS NOT NULL)",
        "countIf(streaming AND status_code != 'Error' AND ttft_ms IS NULL)",
        "countIf(streaming AND output_tokens > 1 AND status_code != 'Error' AND tpot_ms IS NULL)",
        "countIf(NOT streaming AND ttft_ms IS NOT NULL)",
        "countIf(conversation_id = '' OR input_messages = '')",
    ];
    for expr in zero {
        let n = p
            .count(&format!("SELECT {expr} FROM llm_calls FINAL"))
            .await;
        assert_eq!(n, 0, "{expr}");
    }
    assert_eq!(
        p.count("SELECT uniqExact(model) FROM llm_calls FINAL")
            .await,
        4
    );
    for expr in [
        "countIf(aborted)",
        "countIf(status_code = 'Error')",
        "countIf(has(finish_reasons, 'stop'))",
    ] {
        let n = p
            .count(&format!("SELECT {expr} FROM llm_calls FINAL"))
            .await;
        assert!(n > 0, "{expr}");
    }
    // The TTFT regression shows in the rows, exactly in its window: gpt-4o's mean TTFT
    // (configured 450 ms) about 4x inside, about 1x outside.
    let (start, end) = (
        incident["start_unix_ns"].as_i64().unwrap(),
        incident["end_unix_ns"].as_i64().unwrap(),
    );
    let mean_ttft = |inside: bool| {
        let cond = if inside { "" } else { "NOT " };
        format!(
            "SELECT toUInt64(ifNull(avg(ttft_ms), 0)) FROM llm_calls FINAL WHERE model = 'gpt-4o' \
             AND {cond}(toUnixTimestamp64Nano(timestamp) BETWEEN {start} AND {end} - 1)"
        )
    };
    let inside = p.count(&mean_ttft(true)).await;
    let outside = p.count(&mean_ttft(false)).await;
    assert!((1500..2100).contains(&inside), "inside {inside} ms");
    assert!((390..510).contains(&outside), "outside {outside} ms");

    // Regenerations resend the same input: the ingester's rule finds them (and the stops).
    p.run_cli(&["derive-signals", "--since", "2h"]);
    for kind in ["regenerate", "stop"] {
        let n = p
            .count(&format!(
                "SELECT count() FROM signals FINAL WHERE type = '{kind}' AND origin = 'derived'"
            ))
            .await;
        assert!(n > 50, "{n} derived {kind} signals");
    }
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn loadgen_feedback_and_signals_land_attached_to_their_calls() {
    let _serial = SERIAL.lock().await;
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    let env = p.env();
    let c = Collector::spawn_command("all", &kafka_brokers(), &p.env_with(&env, &[]));
    c.wait_ready(Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let truth = loadgen(&c, &dir, WITH_FEEDBACK, &[]);
    let summary = truth.last().unwrap();
    let calls = summary["calls"].as_u64().unwrap();
    let feedback = summary["feedback"].as_u64().unwrap();
    let signals = summary["signals"].as_u64().unwrap();
    assert!(feedback > 800 && signals > 400, "{summary}");
    assert_eq!(
        summary["feedback_sent"]["accepted"].as_u64(),
        Some(feedback)
    );
    assert_eq!(summary["signals_sent"]["accepted"].as_u64(), Some(signals));

    p.wait_count("SELECT count() FROM llm_calls FINAL", calls, TIMEOUT)
        .await;
    p.wait_count("SELECT count() FROM feedback FINAL", feedback, TIMEOUT)
        .await;
    let posted = "SELECT count() FROM signals FINAL WHERE origin = 'api'";
    p.wait_count(posted, signals, TIMEOUT).await;
    assert_eq!(
        p.count("SELECT count() FROM feedback FINAL").await,
        feedback
    );
    assert_eq!(p.count(posted).await, signals);
    // Every item names a stored call, with its conversation and user.
    for table in ["feedback", "signals"] {
        let orphans = p
            .count(&format!(
                "SELECT count() FROM {table} FINAL WHERE origin = 'api' AND \
                 (trace_id, span_id, conversation_id, user_id) NOT IN \
                 (SELECT trace_id, span_id, conversation_id, user_id FROM llm_calls FINAL)"
            ))
            .await;
        assert_eq!(orphans, 0, "{table} without their call");
    }
    for kind in ["regenerate", "stop", "edit", "copy", "abandon"] {
        let n = p
            .count(&format!(
                "SELECT count() FROM signals FINAL WHERE origin = 'api' AND type = '{kind}'"
            ))
            .await;
        assert!(n > 0, "no {kind} signal");
    }
    // Thumbs down: 10 % of thumbs (about 500 of them here).
    let down_permille = p
        .count(
            "SELECT toUInt64(1000 * countIf(score = 0) / count()) FROM feedback FINAL \
             WHERE name = 'thumbs'",
        )
        .await;
    assert!(
        (60..140).contains(&down_permille),
        "{down_permille} per mille"
    );
    p.drop_database().await;
}
