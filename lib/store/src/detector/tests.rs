//! [`DetectorStore`] on both backends with one fixture: a DuckDB file in a temporary
//! directory and a scratch ClickHouse database on the server of `CLICKHOUSE_URL` (as the
//! other store tests: deploy/local/services.sh starts it). Every answer is checked against
//! what the fixture implies, and the two backends' answers must be identical.

use std::sync::Arc;

use flywheel_schema::rows::{AlertRow, FeedbackRow, LlmCallRow, SignalRow};
use flywheel_schema::ClickHouseConfig;

use super::*;
use crate::{AccessMode, ClickHouseStore, DuckDbStore, RowBatch, Store};

/// Start of the fixture's time, Unix ms (2026-09-21).
const BASE: i64 = 1_790_000_000_000;
/// The replay reads from here (ms) ...
const FROM_MS: i64 = BASE + 10_000;
/// ... what was received before this (ns).
const CUT_NS: i64 = (BASE + 100_000) * 1_000_000;
/// The spend policies' period start (ms).
const PERIOD_MS: i64 = BASE - 10_000;

fn ns(ms: i64) -> i64 {
    ms * 1_000_000
}

struct Call {
    start_ms: i64,
    duration_ms: u64,
    model: &'static str,
    trace: &'static str,
    conversation: &'static str,
    user: &'static str,
    cost: Option<f64>,
    received_ms: i64,
}

fn call(c: Call) -> LlmCallRow {
    LlmCallRow {
        // Sub-millisecond parts: event times are truncated to milliseconds.
        timestamp: ns(BASE + c.start_ms) + 700_000,
        project: "p".into(),
        trace_id: c.trace.into(),
        span_id: format!("s-{}", c.trace),
        service: "chat-svc".into(),
        operation: "chat".into(),
        model: c.model.into(),
        input_tokens: c.cost.map(|_| 10),
        output_tokens: c.cost.map(|_| 5),
        cost_usd: c.cost,
        duration_ns: c.duration_ms * 1_000_000 + 600_000,
        ttft_ms: c.cost.map(|_| 120.5),
        status_code: if c.cost.is_some() { "Ok" } else { "Error" }.into(),
        conversation_id: c.conversation.into(),
        user_id: c.user.into(),
        received_at: ns(BASE + c.received_ms),
        ..LlmCallRow::default()
    }
}

fn calls() -> Vec<LlmCallRow> {
    let c = |start_ms, model, trace, user, cost| Call {
        start_ms,
        duration_ms: 1_000,
        model,
        trace,
        conversation: "",
        user,
        cost,
        received_ms: start_ms + 5_000,
    };
    let mut other_project = call(c(3_000, "m1", "t7", "", Some(0.75)));
    other_project.project = "q".into();
    vec![
        // Replayed: both end at BASE + 21 500 ms (a tie of event times).
        call(Call {
            duration_ms: 1_500,
            conversation: "c1",
            ..c(20_000, "m1", "t1", "u1", Some(0.5))
        }),
        call(Call {
            duration_ms: 1_499,
            conversation: "c1",
            ..c(20_001, "m2", "t2", "u1", None)
        }),
        // Before the replay, in the period: the seed.
        call(c(5_000, "m1", "t3", "u2", Some(0.25))),
        call(c(2_000, "m1", "t5", "u3", Some(2.0))),
        other_project,
        // Ends before the period: neither.
        call(c(-50_000, "m1", "t4", "u1", Some(1.0))),
        // Received after the cut: neither.
        call(Call {
            received_ms: 200_000,
            conversation: "c9",
            ..c(30_000, "m1", "t6", "u1", Some(4.0))
        }),
    ]
}

fn feedback(id: &str, at_ms: i64, received_ms: i64) -> FeedbackRow {
    FeedbackRow {
        id: id.into(),
        project: "p".into(),
        timestamp: ns(BASE + at_ms) + 123_456,
        trace_id: "t1".into(),
        span_id: "s-t1".into(),
        conversation_id: "c1".into(),
        name: "thumbs".into(),
        value_type: "boolean".into(),
        score: Some(1.0),
        received_at: ns(BASE + received_ms),
        ..FeedbackRow::default()
    }
}

fn signal(id: &str, at_ms: i64, signal_type: &str) -> SignalRow {
    SignalRow {
        id: id.into(),
        project: "p".into(),
        timestamp: ns(BASE + at_ms),
        trace_id: "t2".into(),
        conversation_id: "c1".into(),
        signal_type: signal_type.into(),
        received_at: ns(BASE + at_ms + 10),
        ..SignalRow::default()
    }
}

fn alert(fp: &str, project: &str, state: &str, announced: bool, sent_ms: i64) -> AlertRow {
    AlertRow {
        fingerprint: fp.into(),
        alertname: "SLOBurn".into(),
        slo: "availability".into(),
        project: project.into(),
        severity: "page".into(),
        state: state.into(),
        announced,
        // Not in key order: maps keep theirs.
        labels: vec![
            ("slo".into(), "availability".into()),
            ("alertname".into(), "SLOBurn".into()),
            ("project".into(), project.into()),
        ],
        annotations: vec![
            ("summary".into(), format!("{fp} {state}")),
            ("calls_url".into(), format!("http://x/{fp}")),
        ],
        starts_at: ns(BASE + 100) + 1,
        ends_at: (state == "resolved").then(|| ns(BASE + sent_ms)),
        long_burn_rate: Some(14.5),
        short_burn_rate: announced.then_some(20.25),
        sli: None,
        budget_remaining: 0.75,
        event_time: ns(BASE + sent_ms - 50),
        sent_at: ns(BASE + sent_ms) + 7,
    }
}

async fn write_fixture(store: &dyn Store, det: &dyn DetectorStore) {
    let mut batch = RowBatch::new("detector-fixture-1");
    batch.llm_calls = calls();
    let mut resent = feedback("f1", 21_500, 22_000);
    resent.score = Some(0.0);
    let mut conversation = feedback("f2", 25_000, 25_100);
    (conversation.trace_id, conversation.span_id) = (String::new(), String::new());
    (conversation.value_type, conversation.score) = ("label".into(), None);
    conversation.label = "good".into();
    batch.feedback = vec![
        feedback("f1", 21_500, 21_600),
        conversation,
        feedback("f3", 30_000, 200_000),
        feedback("f4", 1_000, 1_100),
    ];
    batch.signals = vec![
        signal("g1", 21_500, "regenerate"),
        signal("g2", 40_000, "copy"),
    ];
    store.insert(&batch).await.unwrap();
    // Later: the first call delivered again, the first feedback item resent (received later,
    // it wins).
    let mut again = RowBatch::new("detector-fixture-2");
    again.llm_calls = vec![calls().remove(0)];
    again.feedback = vec![resent];
    store.insert(&again).await.unwrap();

    det.write_alerts(&[
        alert("00000000000000a1", "p", "firing", true, 1_000),
        alert("00000000000000b2", "p", "firing", true, 1_500),
        alert("00000000000000c3", "q", "firing", true, 500),
    ])
    .await
    .unwrap();
    det.write_alerts(&[]).await.unwrap();
    det.write_alerts(&[
        alert("00000000000000a1", "p", "resolved", true, 2_000),
        alert("00000000000000b2", "p", "firing", false, 3_000),
    ])
    .await
    .unwrap();
}

/// Everything the detector asks, on one backend.
#[derive(Debug, PartialEq)]
struct Answers {
    firing: Vec<FiringAlert>,
    recent: Vec<AlertRow>,
    recent_two: Vec<AlertRow>,
    recent_q: Vec<AlertRow>,
    events: Vec<StoredEvent>,
    keys: Vec<CallKey>,
    keys_by_conversation: Vec<CallKey>,
    no_keys: Vec<CallKey>,
    spend: Vec<SpendRow>,
    no_spend: Vec<SpendRow>,
}

fn spend_queries() -> Vec<SpendQuery> {
    vec![
        SpendQuery {
            policy: 0,
            max_users: 10,
            period_start_ms: PERIOD_MS,
            ..SpendQuery::default()
        },
        SpendQuery {
            policy: 1,
            model: Some("m1".into()),
            per_user: true,
            max_users: 1,
            period_start_ms: PERIOD_MS,
            ..SpendQuery::default()
        },
    ]
}

async fn answers(store: Arc<dyn Store>, det: Arc<dyn DetectorStore>) -> Answers {
    write_fixture(store.as_ref(), det.as_ref()).await;
    Answers {
        firing: det.firing_alerts().await.unwrap(),
        recent: det.recent_alerts("p", 100).await.unwrap(),
        recent_two: det.recent_alerts("p", 2).await.unwrap(),
        recent_q: det.recent_alerts("q", 100).await.unwrap(),
        events: det.stored_events(FROM_MS, CUT_NS).await.unwrap(),
        keys: det
            .lookup_keys(&Ids::of(["t1", "t5", "nope"]), &Ids::default())
            .await
            .unwrap(),
        keys_by_conversation: det
            .lookup_keys(&Ids::default(), &Ids::of(["c1"]))
            .await
            .unwrap(),
        no_keys: det
            .lookup_keys(&Ids::default(), &Ids::default())
            .await
            .unwrap(),
        spend: det
            .period_spend(&spend_queries(), FROM_MS, CUT_NS, 100)
            .await
            .unwrap(),
        no_spend: det.period_spend(&[], FROM_MS, CUT_NS, 100).await.unwrap(),
    }
}

async fn on_duckdb() -> Answers {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        DuckDbStore::open(&dir.path().join("detector.duckdb"), AccessMode::ReadWrite).unwrap(),
    );
    answers(store.clone(), store).await
}

async fn on_clickhouse() -> Answers {
    let url = std::env::var("CLICKHOUSE_URL").expect(
        "CLICKHOUSE_URL is not set: run the tests through deploy/local/test.sh, which starts the services",
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let config = ClickHouseConfig {
        url,
        database: format!("store_detector_{}_{nanos}", std::process::id()),
        ..ClickHouseConfig::default()
    };
    flywheel_schema::migrate::migrate(&config).await.unwrap();
    let store = Arc::new(ClickHouseStore::new(config.client()));
    let answers = answers(store.clone(), store).await;
    let _ = config
        .client()
        .query(&format!("DROP DATABASE IF EXISTS {}", config.database))
        .execute()
        .await;
    answers
}

fn strs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the fixture implies (checked on DuckDB; ClickHouse must answer the same).
fn check(a: &Answers) {
    // Alert history: a1 resolved, b2 still firing (its re-send is the latest row), c3 firing.
    let fps: Vec<&str> = a.firing.iter().map(|f| f.fingerprint.as_str()).collect();
    assert_eq!(fps, ["00000000000000b2", "00000000000000c3"]);
    let b2 = &a.firing[0];
    assert_eq!(b2.event_time, ns(BASE + 3_000 - 50));
    assert_eq!(b2.starts_at, ns(BASE + 100) + 1);
    assert_eq!(b2.labels, alert("x", "p", "firing", true, 0).labels);
    assert_eq!(
        b2.annotations,
        strs(&[
            ("summary", "00000000000000b2 firing"),
            ("calls_url", "http://x/00000000000000b2"),
        ])
    );
    assert_eq!(
        a.recent,
        vec![
            alert("00000000000000a1", "p", "resolved", true, 2_000),
            alert("00000000000000b2", "p", "firing", true, 1_500),
            alert("00000000000000a1", "p", "firing", true, 1_000),
        ]
    );
    assert_eq!(a.recent_two, a.recent[..2]);
    assert_eq!(
        a.recent_q,
        vec![alert("00000000000000c3", "q", "firing", true, 500)]
    );

    // Rebuild: the two replayed calls (the first once), then the item about them, then the
    // rest in time order.
    let kinds: Vec<(i64, &str, &str)> = a
        .events
        .iter()
        .map(|e| match e {
            StoredEvent::Call(c) => (c.ts - BASE, "call", c.trace_id.as_str()),
            StoredEvent::Feedback(f) => (f.ts - BASE, "feedback", f.trace_id.as_str()),
            StoredEvent::Signal(s) => (s.ts - BASE, "signal", s.name.as_str()),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (21_500, "call", "t1"),
            (21_500, "call", "t2"),
            (21_500, "feedback", "t1"),
            (21_500, "signal", "regenerate"),
            (25_000, "feedback", ""),
            (40_000, "signal", "copy"),
        ]
    );
    let StoredEvent::Call(first) = &a.events[0] else {
        unreachable!()
    };
    assert_eq!(
        first,
        &StoredCall {
            ts: BASE + 21_500,
            project: "p".into(),
            service: "chat-svc".into(),
            model: "m1".into(),
            operation: "chat".into(),
            status_code: "Ok".into(),
            duration_ns: 1_500_600_000,
            ttft_ms: Some(120.5),
            tpot_ms: None,
            cost_usd: Some(0.5),
            tokens: Some(15),
            trace_id: "t1".into(),
            span_id: "s-t1".into(),
            conversation_id: "c1".into(),
            user_id: "u1".into(),
        }
    );
    let StoredEvent::Call(second) = &a.events[1] else {
        unreachable!()
    };
    assert_eq!((second.tokens, second.cost_usd), (None, None));
    assert_eq!(second.status_code, "Error");
    // The resent feedback item: the one received last.
    let StoredEvent::Feedback(thumbs) = &a.events[2] else {
        unreachable!()
    };
    assert_eq!(thumbs.score, Some(0.0));
    let StoredEvent::Feedback(label) = &a.events[4] else {
        unreachable!()
    };
    assert_eq!(
        (label.value_type.as_str(), label.score, label.label.as_str()),
        ("label", None, "good")
    );
    let StoredEvent::Signal(regen) = &a.events[3] else {
        unreachable!()
    };
    assert_eq!(
        (regen.value_type.as_str(), regen.score, regen.label.as_str()),
        ("", None, "")
    );

    // Lookups: oldest first, each once.
    let key = |trace: &str, model: &str, conversation: &str| CallKey {
        project: "p".into(),
        service: "chat-svc".into(),
        model: model.into(),
        operation: "chat".into(),
        trace_id: trace.into(),
        span_id: format!("s-{trace}"),
        conversation_id: conversation.into(),
    };
    assert_eq!(a.keys, [key("t5", "m1", ""), key("t1", "m1", "c1")]);
    assert_eq!(
        a.keys_by_conversation,
        [key("t1", "m1", "c1"), key("t2", "m2", "c1")]
    );
    assert!(a.no_keys.is_empty());

    // Seed: calls that end in the period and start before the replay, received before the cut.
    let row = |policy, project: &str, model: &str, user: &str, usd, calls| SpendRow {
        policy,
        project: project.into(),
        k_service: String::new(),
        k_model: model.into(),
        k_operation: String::new(),
        k_user: user.into(),
        usd,
        calls,
    };
    assert_eq!(
        a.spend,
        [
            row(0, "p", "", "", 2.25, 2),
            row(0, "q", "", "", 0.75, 1),
            row(1, "p", "m1", OTHER_USER, 0.25, 1),
            row(1, "p", "m1", "u3", 2.0, 1),
            row(1, "q", "m1", "", 0.75, 1),
        ]
    );
    assert!(a.no_spend.is_empty());
}

#[tokio::test]
async fn duckdb_answers_what_the_fixture_implies() {
    check(&on_duckdb().await);
}

#[tokio::test]
async fn clickhouse_and_duckdb_answer_the_same() {
    let (duck, ch) = (on_duckdb().await, on_clickhouse().await);
    check(&ch);
    assert_eq!(duck, ch);
}
