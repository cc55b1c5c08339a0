//! The status page's JSON (`GET /v1/status/{models,timeseries,feedback,alerts}`) from a real
//! `flywheel api` on each store backend: the same fixture (calls, feedback and signals through
//! `Store::insert`, the detector's alert notifications through `StatusStore::insert_alerts`)
//! in a private ClickHouse database and in a DuckDB file gives the same JSON from both, equal
//! to the last bit (both compute exact type-7 quantiles: ClickHouse `quantilesExactInclusive`,
//! DuckDB `quantile_cont`), and the figures are the ones the fixture defines: deduplicated
//! rows, interpolated percentiles, buckets, negative items with their call (redacted), alert
//! episodes, nothing of another project.
//!
//! The fixture is placed 30 minutes before the test starts (the endpoints read the last
//! `minutes` before the server's clock); what depends on the request time (`since_ms`,
//! `until_ms`, the empty buckets) is left out of the comparison. `clickhouse::*` and `duckdb::*`
//! check the figures on each backend alone, `the_same_status_json_from_both_backends` compares.

mod common;
#[path = "common/datasets.rs"]
mod fixture;

use fixture::{get, on_both_backends, Api, Backend, Db};
use flywheel_schema::rows::{AlertRow, FeedbackRow, LlmCallRow, SignalRow};
use flywheel_store::RowBatch;
use serde_json::{json, Value};

on_both_backends!(async: figures_are_the_fixtures,);

const KEY_A: (&str, &str) = ("authorization", "Bearer secret-key-a");
const MS: i64 = 1_000_000;
const B_SECRET: &str = "PROJECT-B-ONLY";

fn now_ms() -> i64 {
    common::now_ns() / MS
}

/// `base_ms`: a multiple of 30 s (the bucket of `minutes=60`), half an hour ago.
fn call(base_ms: i64, n: u32, model: &str, at_s: i64) -> LlmCallRow {
    LlmCallRow {
        timestamp: (base_ms + at_s * 1_000) * MS,
        project: "a".into(),
        trace_id: format!("trace-{n}"),
        span_id: format!("span-{n}"),
        model: model.into(),
        conversation_id: format!("conv-{n}"),
        user_id: format!("user-{n}"),
        input_messages: json!([{"role": "user", "content": format!("question {n}")}]).to_string(),
        output_messages: json!([{"role": "assistant", "content": format!("answer {n}")}])
            .to_string(),
        received_at: base_ms * MS,
        ..LlmCallRow::default()
    }
}

fn feedback(base_ms: i64, id: &str, name: &str, trace: u32, at_s: i64) -> FeedbackRow {
    FeedbackRow {
        id: id.into(),
        project: "a".into(),
        timestamp: (base_ms + at_s * 1_000) * MS,
        trace_id: format!("trace-{trace}"),
        span_id: format!("span-{trace}"),
        conversation_id: format!("conv-{trace}"),
        name: name.into(),
        source: "human".into(),
        origin: "api".into(),
        received_at: (base_ms + at_s * 1_000) * MS,
        ..FeedbackRow::default()
    }
}

fn signal(base_ms: i64, id: &str, kind: &str, trace: u32, at_s: i64) -> SignalRow {
    SignalRow {
        id: id.into(),
        project: "a".into(),
        timestamp: (base_ms + at_s * 1_000) * MS,
        trace_id: format!("trace-{trace}"),
        span_id: format!("span-{trace}"),
        conversation_id: format!("conv-{trace}"),
        signal_type: kind.into(),
        source: "api".into(),
        origin: "api".into(),
        received_at: (base_ms + at_s * 1_000) * MS,
        ..SignalRow::default()
    }
}

/// One notification of the detector for fingerprint `fp`, episode starting at `start_s`.
fn alert(base_ms: i64, fp: &str, start_s: i64, sent_s: i64, state: &str) -> AlertRow {
    AlertRow {
        fingerprint: fp.into(),
        alertname: "FlywheelSLOBurnRate".into(),
        slo: format!("slo-{fp}"),
        project: "a".into(),
        severity: "page".into(),
        state: state.into(),
        announced: true,
        labels: vec![
            ("project".into(), "a".into()),
            ("slo".into(), format!("slo-{fp}")),
        ],
        annotations: vec![("summary".into(), format!("{fp} {state} at {sent_s}"))],
        starts_at: (base_ms + start_s * 1_000) * MS,
        ends_at: None,
        long_burn_rate: None,
        short_burn_rate: None,
        sli: Some(0.9),
        budget_remaining: 1.0,
        event_time: (base_ms + sent_s * 1_000) * MS,
        sent_at: (base_ms + sent_s * 1_000) * MS,
    }
}

/// The fixture, relative to `base_ms`.
fn rows(base_ms: i64) -> (RowBatch, Vec<AlertRow>) {
    let mut batch = RowBatch::new("status-fixture");
    // gpt-4o: 5 calls at 0, 10, ..., 40 s; TTFT 100 200 300 400 1000, TPOT 10..50,
    // duration 1..5 s, 0.5 USD each; the second one failed.
    let ttft = [100.0, 200.0, 300.0, 400.0, 1000.0];
    for (i, t) in ttft.iter().enumerate() {
        let k = i as i64;
        let mut c = call(base_ms, i as u32 + 1, "gpt-4o", 10 * k);
        c.ttft_ms = Some(*t);
        c.tpot_ms = Some(10.0 * (k + 1) as f64);
        c.duration_ns = (k as u64 + 1) * 1_000_000_000;
        c.cost_usd = Some(0.5);
        c.input_tokens = Some(100);
        c.output_tokens = Some(50);
        c.status_code = if i == 1 { "Error" } else { "Ok" }.into();
        batch.llm_calls.push(c);
    }
    // The third call delivered twice: one call on both stores.
    batch.llm_calls.push(batch.llm_calls[2].clone());
    // claude: 2 calls at 60 and 70 s, no TTFT (not streamed), one failed.
    for (n, at, status) in [(6, 60, "Error"), (7, 70, "Ok")] {
        let mut c = call(base_ms, n, "claude-sonnet-4", at);
        c.duration_ns = if n == 6 { 1_500_000_000 } else { 2_500_000_000 };
        c.cost_usd = Some(0.125);
        c.status_code = status.into();
        batch.llm_calls.push(c);
    }
    // Out of the range (2 h earlier) and another project: never shown.
    let mut old = call(base_ms, 8, "gpt-4o", -7_200);
    old.cost_usd = Some(100.0);
    let mut other = call(base_ms, 9, "gpt-4o", 20);
    other.project = "b".into();
    other.output_messages = json!([{"role": "assistant", "content": B_SECRET}]).to_string();
    batch.llm_calls.extend([old, other]);

    let mut down = feedback(base_ms, "fb-down", "thumbs", 2, 15);
    down.value_type = "boolean".into();
    down.score = Some(0.0);
    down.comment = "Wrong. Mail me at jane.doe@example.com".into();
    let mut up = feedback(base_ms, "fb-up", "thumbs", 1, 16);
    up.value_type = "boolean".into();
    up.score = Some(1.0);
    let mut low = feedback(base_ms, "fb-low", "helpfulness", 6, 75);
    low.value_type = "number".into();
    low.score = Some(0.25);
    // Resent later with a comment: one item, the latest received.
    let mut low_again = low.clone();
    low_again.received_at += 1_000 * MS;
    low_again.comment = "not helpful".into();
    let mut label = feedback(base_ms, "fb-label", "correctness", 3, 20);
    label.value_type = "label".into();
    label.label = "wrong".into();
    let mut other_fb = feedback(base_ms, "fb-b", "thumbs", 9, 21);
    other_fb.project = "b".into();
    other_fb.value_type = "boolean".into();
    other_fb.score = Some(0.0);
    other_fb.comment = B_SECRET.into();
    batch.feedback = vec![down, up, low, low_again, label, other_fb];

    let regen = signal(base_ms, "sig-regen", "regenerate", 4, 35);
    let copy = signal(base_ms, "sig-copy", "copy", 4, 36);
    let mut stop = signal(base_ms, "sig-stop", "stop", 7, 65);
    stop.tokens_received = Some(12);
    batch.signals = vec![regen, copy, stop];

    // fp1: fires at 30 s, re-sent at 60 s, resolved at 90 s (ended at 85 s); fp2 fires at
    // 100 s; one notification of project b.
    let mut alerts = Vec::new();
    for (sent, state, long, short, budget) in [
        (30, "firing", 12.0, 20.0, 0.8),
        (60, "firing", 14.0, 18.0, 0.6),
        (90, "resolved", 2.0, 0.5, 0.5),
    ] {
        let mut a = alert(base_ms, "fp1", 20, sent, state);
        a.long_burn_rate = Some(long);
        a.short_burn_rate = Some(short);
        a.budget_remaining = budget;
        if state == "resolved" {
            a.ends_at = Some((base_ms + 85_000) * MS);
        }
        alerts.push(a);
    }
    let mut fp2 = alert(base_ms, "fp2", 95, 100, "firing");
    fp2.long_burn_rate = Some(6.0);
    fp2.budget_remaining = 0.9;
    let mut other_alert = alert(base_ms, "fp-b", 10, 50, "firing");
    other_alert.project = "b".into();
    other_alert.annotations = vec![("summary".into(), B_SECRET.into())];
    alerts.extend([fp2, other_alert]);
    (batch, alerts)
}

/// A migrated private store of `backend` holding the fixture (a DuckDB file is closed again).
async fn store_with_fixture(backend: Backend, base_ms: i64) -> Db {
    let db = Db::new(backend);
    if backend == Backend::ClickHouse {
        db.pipeline.migrate();
    }
    let (batch, alerts) = rows(base_ms);
    let store = db.store();
    store.insert(&batch).await.unwrap();
    store.insert_alerts(&alerts).await.unwrap();
    drop(store);
    db
}

const ENDPOINTS: [&str; 4] = [
    "models?minutes=60",
    "timeseries?minutes=60",
    "feedback?minutes=60",
    "alerts?minutes=60",
];

/// The JSON of every endpoint, without what depends on the time of the request: the range,
/// and the timeseries' empty buckets (the columns become one object per non-empty bucket).
fn status_json(api: &Api) -> Value {
    let mut all = serde_json::Map::new();
    for e in ENDPOINTS {
        let r = get(&api.addr, &format!("/v1/status/{e}"), &[KEY_A]);
        assert_eq!(r.status, 200, "{e}: {}", String::from_utf8_lossy(&r.body()));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let mut v = r.json();
        let o = v.as_object_mut().unwrap();
        o.remove("since_ms");
        o.remove("until_ms");
        if e.starts_with("timeseries") {
            let cols = [
                "calls",
                "errors",
                "ttft_p95_ms",
                "cost_usd",
                "negative_feedback",
                "negative_signals",
            ];
            let t = o.remove("t").unwrap();
            let t = t.as_array().unwrap();
            let columns: Vec<Value> = cols.iter().map(|c| o.remove(*c).unwrap()).collect();
            let mut buckets = Vec::new();
            for (i, t) in t.iter().enumerate() {
                let mut b = serde_json::Map::new();
                b.insert("t".into(), t.clone());
                let mut empty = true;
                for (c, col) in cols.iter().zip(&columns) {
                    let x = col[i].clone();
                    empty &= x.is_null() || x.as_f64() == Some(0.0);
                    b.insert((*c).into(), x);
                }
                if !empty {
                    buckets.push(Value::Object(b));
                }
            }
            o.insert("buckets".into(), buckets.into());
        }
        all.insert(e.split('?').next().unwrap().into(), v);
    }
    Value::Object(all)
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

/// What the fixture defines, checked on one backend's JSON (the other's is equal).
fn check_figures(v: &Value, base_ms: i64) {
    let text = v.to_string();
    assert!(!text.contains(B_SECRET), "another project leaks: {text}");
    assert!(
        !text.contains("jane.doe@example.com"),
        "not redacted: {text}"
    );

    let models = v["models"]["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{models:?}");
    let (gpt, claude) = (&models[0], &models[1]);
    assert_eq!(gpt["model"], "gpt-4o");
    assert_eq!(
        (gpt["calls"].as_u64(), gpt["errors"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(gpt["error_ratio"], 0.2);
    assert_eq!(gpt["cost_usd"], 2.5);
    assert_eq!(
        (gpt["input_tokens"].as_u64(), gpt["output_tokens"].as_u64()),
        (Some(500), Some(250))
    );
    // Type 7: p = x[h] + (h - floor h)(x[h+1] - x[h]), h = (n - 1) q.
    for (metric, want) in [
        ("ttft_ms", [300.0, 880.0, 976.0]),
        ("tpot_ms", [30.0, 48.0, 49.6]),
        ("duration_ms", [3000.0, 4800.0, 4960.0]),
    ] {
        for (p, w) in ["p50", "p95", "p99"].iter().zip(want) {
            assert!(close(&gpt[metric][p], w), "{metric} {p}: {gpt}");
        }
    }
    assert_eq!(claude["model"], "claude-sonnet-4");
    assert_eq!(claude["calls"], 2);
    assert_eq!(claude["cost_usd"], 0.25);
    assert_eq!(
        claude["ttft_ms"],
        json!({"p50": null, "p95": null, "p99": null})
    );
    assert!(close(&claude["duration_ms"]["p50"], 2000.0), "{claude}");

    let ts = &v["timeseries"];
    assert_eq!(ts["step_ms"], 30_000);
    let buckets: Vec<Value> = ts["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let mut b = b.clone();
            b["t"] = (b["t"].as_i64().unwrap() - base_ms).into();
            b
        })
        .collect();
    assert_eq!(buckets.len(), 3, "{buckets:?}");
    let row = |b: &Value| {
        (
            b["t"].as_i64().unwrap(),
            b["calls"].as_u64().unwrap(),
            b["errors"].as_u64().unwrap(),
            b["cost_usd"].as_f64().unwrap(),
            b["negative_feedback"].as_u64().unwrap(),
            b["negative_signals"].as_u64().unwrap(),
        )
    };
    assert_eq!(row(&buckets[0]), (0, 3, 1, 1.5, 1, 0));
    assert_eq!(row(&buckets[1]), (30_000, 2, 0, 1.0, 0, 1));
    assert_eq!(row(&buckets[2]), (60_000, 2, 1, 0.25, 1, 1));
    assert!(close(&buckets[0]["ttft_p95_ms"], 290.0), "{buckets:?}");
    assert!(close(&buckets[1]["ttft_p95_ms"], 970.0), "{buckets:?}");
    assert_eq!(buckets[2]["ttft_p95_ms"], Value::Null);

    let items = v["feedback"]["items"].as_array().unwrap();
    let got: Vec<(&str, &str, &str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap(),
                i["detail"].as_str().unwrap(),
                i["model"].as_str().unwrap_or("-"),
                i["prompt"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("helpfulness", "0.25", "claude-sonnet-4", "question 6"),
            ("stop", "after 12 tokens", "claude-sonnet-4", "question 7"),
            ("regenerate", "", "gpt-4o", "question 4"),
            ("thumbs", "false", "gpt-4o", "question 2"),
        ],
        "{items:?}"
    );
    assert_eq!(items[0]["comment"], "not helpful");
    assert_eq!(items[0]["time_ms"], base_ms + 75_000);
    assert_eq!(items[3]["answer"], "answer 2");
    let comment = items[3]["comment"].as_str().unwrap();
    assert!(comment.starts_with("Wrong. Mail me at "), "{comment}");
    assert_eq!(
        v["feedback"]["counts"],
        json!({"feedback:helpfulness": 1, "signal:stop": 1, "signal:regenerate": 1,
               "feedback:thumbs": 1})
    );

    let alerts = v["alerts"]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let (fp2, fp1) = (&alerts[0], &alerts[1]);
    assert_eq!(fp2["fingerprint"], "fp2");
    assert_eq!(fp2["state"], "firing");
    assert_eq!(fp2["ends_at_ms"], Value::Null);
    assert_eq!(fp2["peak_short_burn_rate"], Value::Null);
    assert_eq!(fp1["fingerprint"], "fp1");
    assert_eq!(fp1["state"], "resolved");
    assert_eq!(fp1["starts_at_ms"], base_ms + 20_000);
    assert_eq!(fp1["ends_at_ms"], base_ms + 85_000);
    assert_eq!(fp1["last_sent_ms"], base_ms + 90_000);
    assert_eq!(fp1["peak_long_burn_rate"], 14.0);
    assert_eq!(fp1["peak_short_burn_rate"], 20.0);
    assert_eq!(fp1["min_budget_remaining"], 0.5);
    assert_eq!(fp1["summary"], "fp1 resolved at 90");
    assert_eq!(fp1["labels"], json!({"project": "a", "slo": "slo-fp1"}));
    assert_eq!(fp1["slo"], "slo-fp1");
}

fn base_ms() -> i64 {
    (now_ms() - 30 * 60_000).div_euclid(30_000) * 30_000
}

/// The JSON of the status endpoints on `backend` holding the fixture at `base_ms`.
async fn status_of(backend: Backend, base_ms: i64) -> Value {
    let db = store_with_fixture(backend, base_ms).await;
    let api = Api::start(&db, &[]);
    let v = status_json(&api);
    drop(api);
    db.drop_database().await;
    v
}

async fn figures_are_the_fixtures(backend: Backend) {
    let base_ms = base_ms();
    check_figures(&status_of(backend, base_ms).await, base_ms);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_status_json_from_both_backends() {
    let base_ms = base_ms();
    let clickhouse = status_of(Backend::ClickHouse, base_ms).await;
    let duckdb = status_of(Backend::DuckDb, base_ms).await;
    assert!(clickhouse["models"]["models"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    for e in ENDPOINTS {
        let e = e.split('?').next().unwrap();
        assert_eq!(
            clickhouse[e], duckdb[e],
            "{e}:\nclickhouse {}\nduckdb     {}",
            clickhouse[e], duckdb[e]
        );
    }
}
