//! The status queries on an in-memory DuckDB: the SQL runs, rows decode, and the numbers are
//! the definitions' (interpolated quantiles, deduplicated rows, alert episodes).

use flywheel_schema::rows::{FeedbackRow, LlmCallRow, SignalRow};

use flywheel_schema::rows::AlertRow;

use crate::model::{Ids, RowBatch};
use crate::status::{Quantiles, StatusStore, TimeRange};
use crate::{DuckDbStore, Store};

/// 2026-11-15T00:00:00Z in ms.
const T0: i64 = 1_794_700_800_000;
const MS: i64 = 1_000_000;

fn range() -> TimeRange {
    TimeRange {
        since_ms: T0,
        until_ms: T0 + 3_600_000,
    }
}

fn call(n: i64, model: &str, ttft: Option<f64>) -> LlmCallRow {
    LlmCallRow {
        timestamp: (T0 + n * 1_000) * MS,
        project: "p".into(),
        trace_id: format!("t{n}"),
        span_id: format!("s{n}"),
        model: model.into(),
        ttft_ms: ttft,
        duration_ns: u64::try_from(n).unwrap() * 1_000_000_000,
        cost_usd: Some(0.125),
        input_tokens: Some(10),
        output_tokens: None,
        status_code: if n % 2 == 0 { "Error" } else { "Ok" }.into(),
        input_messages: format!(r#"[{{"role":"user","content":"q{n}"}}]"#),
        ..LlmCallRow::default()
    }
}

async fn store_with_calls() -> DuckDbStore {
    let store = DuckDbStore::in_memory().unwrap();
    let mut batch = RowBatch::new("calls");
    batch.llm_calls = vec![
        call(1, "a", Some(100.0)),
        call(2, "a", Some(200.0)),
        call(3, "a", Some(300.0)),
        call(4, "a", Some(400.0)),
        call(5, "a", Some(1000.0)),
        call(5, "a", Some(1000.0)), // re-delivered: one call
        call(6, "a", None),
        call(7, "b", None),
    ];
    store.insert(&batch).await.unwrap();
    store
}

#[tokio::test]
async fn model_stats_interpolate_quantiles_and_skip_missing_values() {
    let store = store_with_calls().await;
    let models = store.model_stats("p", range(), 10).await.unwrap();
    assert_eq!(models.len(), 2, "{models:?}");
    let a = &models[0];
    assert_eq!((a.model.as_str(), a.calls, a.errors), ("a", 6, 3));
    assert_eq!(a.cost_usd, 0.75);
    assert_eq!((a.input_tokens, a.output_tokens), (60, 0));
    assert_eq!(a.error_ratio, 0.5);
    // TTFT of 5 calls (the 6th has none): 100 200 300 400 1000; type 7 at 0.95 is
    // 400 + 0.8 * 600.
    assert_eq!(a.ttft_ms.p50, Some(300.0));
    let p95 = a.ttft_ms.p95.unwrap();
    assert!((p95 - 880.0).abs() < 1e-9, "{p95}");
    assert_eq!(a.tpot_ms, Quantiles::default());
    assert_eq!(a.duration_ms.p50, Some(3500.0));
    let b = &models[1];
    assert_eq!((b.model.as_str(), b.calls, b.ttft_ms.p50), ("b", 1, None));
    assert_eq!(store.model_stats("p", range(), 1).await.unwrap().len(), 1);
    assert!(store
        .model_stats("q", range(), 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn call_buckets_by_step() {
    let store = store_with_calls().await;
    let buckets = store.call_buckets("p", range(), 3_000).await.unwrap();
    let t: Vec<(i64, u64, u64)> = buckets.iter().map(|b| (b.t, b.calls, b.errors)).collect();
    // Calls at T0 + 1..7 s: buckets [0, 3), [3, 6), [6, 9) s.
    assert_eq!(
        t,
        vec![(T0, 2, 1), (T0 + 3_000, 3, 1), (T0 + 6_000, 2, 1)],
        "{buckets:?}"
    );
    assert_eq!(buckets[2].ttft_p95_ms, None);
    assert_eq!(buckets[0].ttft_p95_ms, Some(195.0));
    assert_eq!(buckets[1].cost_usd, 0.375);
}

#[tokio::test]
async fn negative_items_and_buckets() {
    let store = store_with_calls().await;
    let fb = |id: &str, value_type: &str, score: f64, at: i64| FeedbackRow {
        id: id.into(),
        project: "p".into(),
        timestamp: (T0 + at) * MS,
        trace_id: "t2".into(),
        name: "thumbs".into(),
        value_type: value_type.into(),
        score: Some(score),
        received_at: at,
        ..FeedbackRow::default()
    };
    let sig = |id: &str, kind: &str, at: i64| SignalRow {
        id: id.into(),
        project: "p".into(),
        timestamp: (T0 + at) * MS,
        trace_id: "t3".into(),
        signal_type: kind.into(),
        tokens_received: Some(12),
        edit_ratio: Some(0.4),
        received_at: at,
        ..SignalRow::default()
    };
    let mut batch = RowBatch::new("negative");
    batch.feedback = vec![
        fb("down", "boolean", 0.0, 1_000),
        fb("up", "boolean", 1.0, 2_000),
        fb("low", "number", 0.25, 4_000),
        fb("low", "number", 0.25, 4_000), // resent: once
    ];
    batch.signals = vec![
        sig("stop", "stop", 1_500),
        sig("copy", "copy", 1_600),
        sig("edit", "edit", 5_000),
    ];
    store.insert(&batch).await.unwrap();

    let (f, s) = store.negative_items("p", range(), 10).await.unwrap();
    let names: Vec<(&str, &str)> = f
        .iter()
        .chain(&s)
        .map(|i| (i.name.as_str(), i.detail.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("thumbs", "0.25"),
            ("thumbs", "false"),
            ("edit", "edited 40%"),
            ("stop", "after 12 tokens"),
        ]
    );
    assert_eq!(f[0].time_ms, T0 + 4_000);
    let buckets = store.negative_buckets("p", range(), 3_000).await.unwrap();
    let got: Vec<(&str, i64, u64)> = buckets
        .iter()
        .map(|b| (b.kind.as_str(), b.t - T0, b.n))
        .collect();
    assert_eq!(
        got,
        vec![
            ("feedback", 0, 1),
            ("feedback", 3_000, 1),
            ("signal", 0, 1),
            ("signal", 3_000, 1)
        ]
    );
    let briefs = store
        .call_briefs("p", range(), &Ids::of(["t2", "t3", "nope"]), 10)
        .await
        .unwrap();
    let ids: Vec<&str> = briefs.iter().map(|b| b.trace_id.as_str()).collect();
    assert_eq!(ids, vec!["t3", "t2"]);
    assert!(store
        .call_briefs("p", range(), &Ids::default(), 10)
        .await
        .unwrap()
        .is_empty());
}

fn alert(state: &str, starts: i64, sent: i64, ends: Option<i64>, budget: f64) -> AlertRow {
    AlertRow {
        fingerprint: "fp".into(),
        alertname: "FlywheelSLOBurnRate".into(),
        slo: "availability".into(),
        project: "p".into(),
        severity: "page".into(),
        state: state.into(),
        announced: true,
        labels: vec![("model".into(), "gpt-4o".into())],
        annotations: vec![("summary".into(), format!("{state} at {sent}"))],
        starts_at: (T0 + starts) * MS,
        ends_at: ends.map(|e| (T0 + e) * MS),
        long_burn_rate: Some(budget * 10.0),
        short_burn_rate: None,
        sli: Some(0.9),
        budget_remaining: budget,
        event_time: (T0 + sent) * MS,
        sent_at: (T0 + sent) * MS,
    }
}

#[tokio::test]
async fn alert_episodes_group_notifications() {
    let store = DuckDbStore::in_memory().unwrap();
    store
        .insert_alerts(&[
            alert("firing", 0, 1_000, None, 0.9),
            alert("firing", 0, 2_000, None, 0.5),
            alert("resolved", 0, 3_000, Some(2_500), 0.4),
            // A re-send after the resolution without an end: the end stays the last known.
            alert("firing", 0, 3_500, None, 0.7),
            alert("firing", 10_000, 11_000, None, 0.3),
        ])
        .await
        .unwrap();
    let episodes = store.alert_episodes("p", range(), 10).await.unwrap();
    assert_eq!(episodes.len(), 2, "{episodes:?}");
    let (new, old) = (&episodes[0], &episodes[1]);
    assert_eq!(
        (new.starts_at_ms, new.state.as_str(), new.ends_at_ms),
        (T0 + 10_000, "firing", None)
    );
    assert_eq!(old.starts_at_ms, T0);
    assert_eq!(old.state, "firing");
    assert_eq!(old.ends_at_ms, Some(T0 + 2_500));
    assert_eq!(old.last_sent_ms, T0 + 3_500);
    assert_eq!(old.summary, "firing at 3500");
    assert_eq!(old.min_budget_remaining, 0.4);
    assert_eq!(old.peak_long_burn_rate, Some(9.0));
    assert_eq!(old.peak_short_burn_rate, None);
    assert_eq!(old.labels["model"], "gpt-4o");
    assert_eq!(
        store.alert_episodes("p", range(), 1).await.unwrap().len(),
        1
    );
    assert!(store
        .alert_episodes("q", range(), 10)
        .await
        .unwrap()
        .is_empty());
}
