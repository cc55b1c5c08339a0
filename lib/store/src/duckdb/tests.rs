//! The DuckDB store on an in-memory database: idempotent batches, ReplacingMergeTree
//! semantics, and the read queries.

use flywheel_schema::rows::{FeedbackRow, LlmCallRow, OtelTraceRow, SignalRow};

use super::*;
use crate::model::{CallFilter, FeedbackFilter, FeedbackValue, Ids, PageKey};
use crate::Store;

fn call(n: i64, conversation: &str) -> LlmCallRow {
    LlmCallRow {
        timestamp: 1_000 + n,
        project: "p".into(),
        trace_id: format!("t{n}"),
        span_id: format!("s{n}"),
        model: "m".into(),
        conversation_id: conversation.into(),
        input_messages: format!("in {n}"),
        output_messages: format!("out {n}"),
        finish_reasons: vec!["stop".into()],
        request_params: vec![("temperature".into(), "0.2".into())],
        ..LlmCallRow::default()
    }
}

fn feedback(id: &str, received_at: i64, comment: &str) -> FeedbackRow {
    FeedbackRow {
        id: id.into(),
        project: "p".into(),
        timestamp: 5,
        trace_id: "t1".into(),
        name: "thumbs".into(),
        value_type: "boolean".into(),
        score: Some(1.0),
        comment: comment.into(),
        attributes: vec![("k".into(), "v".into())],
        received_at,
        ..FeedbackRow::default()
    }
}

fn all(project: &str) -> CallFilter {
    CallFilter {
        project: project.into(),
        ..CallFilter::default()
    }
}

async fn count(store: &DuckDbStore, sql: &'static str) -> i64 {
    store
        .run(move |c| Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))?))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replayed_token_stores_nothing() {
    let store = DuckDbStore::in_memory().unwrap();
    let mut batch = RowBatch::new("spans:0:0-9");
    batch.llm_calls = vec![call(1, "c"), call(2, "c")];
    batch.otel_traces = vec![OtelTraceRow {
        timestamp: 1,
        trace_id: "t1".into(),
        events_timestamp: vec![2, 3],
        events_name: vec!["a".into(), "b".into()],
        events_attributes: vec![vec![("x".into(), "1".into())], vec![]],
        project: "p".into(),
        ..OtelTraceRow::default()
    }];
    batch.feedback = vec![feedback("f", 10, "first")];
    store.insert(&batch).await.unwrap();
    // The same token again, even with other rows: nothing is written.
    batch.feedback = vec![feedback("f", 20, "replayed")];
    batch.otel_traces[0].trace_id = "t2".into();
    store.insert(&batch).await.unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM llm_calls").await, 2);
    assert_eq!(count(&store, "SELECT count(*) FROM otel_traces").await, 1);
    assert_eq!(count(&store, "SELECT count(*) FROM insert_tokens").await, 1);
    let fb = store
        .feedback_for("p", &Ids::of(["t1"]), &Ids::default())
        .await
        .unwrap();
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0].comment, "first");
    // Nested columns survive the JSON round trip.
    let events: String = store
        .run(|c| {
            Ok(c.query_row(
                "SELECT concat(epoch_ns(\"Events.Timestamp\"[2])::VARCHAR, ' ', \
                 \"Events.Attributes\"[1]['x'], ' ', cardinality(\"Events.Attributes\"[2]))::VARCHAR \
                 FROM otel_traces",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(events, "3 1 0");
}

#[tokio::test]
async fn the_latest_received_feedback_and_signal_win() {
    let store = DuckDbStore::in_memory().unwrap();
    let mut batch = RowBatch::new("a");
    // Twice in one batch: the later received wins whatever the order.
    batch.feedback = vec![feedback("f", 20, "later"), feedback("f", 10, "earlier")];
    batch.signals = vec![SignalRow {
        id: "s".into(),
        project: "p".into(),
        trace_id: "t1".into(),
        signal_type: "edit".into(),
        edited_text: "v1".into(),
        received_at: 10,
        ..SignalRow::default()
    }];
    store.insert(&batch).await.unwrap();
    let mut batch = RowBatch::new("b");
    // Another batch: an older copy does not replace, a newer or equally new one does.
    batch.feedback = vec![feedback("f", 15, "stale")];
    let mut newer = batch_signal(&store).await;
    newer.edited_text = "v2".into();
    newer.received_at = 10;
    batch.signals = vec![newer];
    store.insert(&batch).await.unwrap();
    let fb = store
        .rating_feedback("p", "thumbs", 1.0, 0.0)
        .await
        .unwrap();
    assert_eq!(fb.len(), 1, "{fb:?}");
    assert_eq!(fb[0].comment, "later");
    let s = store.signals_of_type("p", "edit").await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].edited_text, "v2");
    assert_eq!(count(&store, "SELECT count(*) FROM feedback").await, 1);
    // Another project's item of the same id is another item.
    let mut batch = RowBatch::new("c");
    let mut other = feedback("f", 1, "other project");
    other.project = "q".into();
    batch.feedback = vec![other];
    store.insert(&batch).await.unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM feedback").await, 2);
}

async fn batch_signal(store: &DuckDbStore) -> SignalRow {
    let s = store.signals_of_type("p", "edit").await.unwrap();
    SignalRow {
        id: s[0].id.clone(),
        project: "p".into(),
        trace_id: s[0].trace_id.clone(),
        signal_type: s[0].signal_type.clone(),
        edited_text: s[0].edited_text.clone(),
        ..SignalRow::default()
    }
}

#[tokio::test]
async fn a_redelivered_call_is_one_row_and_pages_follow_the_key() {
    let store = DuckDbStore::in_memory().unwrap();
    let mut batch = RowBatch::new("a");
    batch.llm_calls = (1..=5).map(|n| call(n, "c")).collect();
    batch.llm_calls.push(call(3, "c"));
    store.insert(&batch).await.unwrap();
    assert_eq!(store.count_calls(&all("p")).await.unwrap(), 5);
    assert_eq!(store.count_calls(&all("q")).await.unwrap(), 0);
    let first = store.calls_page(&all("p"), None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].timestamp, 1_001);
    let after = PageKey::of(first.last().unwrap());
    let rest = store.calls_page(&all("p"), Some(&after), 10).await.unwrap();
    let ts: Vec<i64> = rest.iter().map(|c| c.timestamp).collect();
    assert_eq!(ts, [1_003, 1_004, 1_005]);
    let mut f = all("p");
    f.from = Some(1_002);
    f.to = Some(1_004);
    f.models = vec!["m".into(), "other".into()];
    assert_eq!(store.count_calls(&f).await.unwrap(), 2);
    let traces = store
        .calls_of_traces(&all("p"), &Ids::of(["t2", "t5", "nope"]))
        .await
        .unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(
        store
            .calls_of_conversations(&all("p"), &Ids::of(["c"]))
            .await
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test]
async fn filters_follow_the_join_rule() {
    let store = DuckDbStore::in_memory().unwrap();
    let mut batch = RowBatch::new("a");
    batch.llm_calls = vec![call(1, "c1"), call(2, "c2")];
    let mut conv = feedback("conv", 1, "");
    conv.trace_id = String::new();
    conv.conversation_id = "c2".into();
    conv.name = "helpfulness".into();
    conv.score = Some(4.0);
    batch.feedback = vec![feedback("span", 1, ""), conv];
    store.insert(&batch).await.unwrap();
    let with = |name: &str, value: FeedbackValue| CallFilter {
        feedback: Some(FeedbackFilter {
            name: name.into(),
            value,
        }),
        ..all("p")
    };
    let traces = |calls: Vec<CallRow>| calls.into_iter().map(|c| c.trace_id).collect::<Vec<_>>();
    // "span" names trace t1 without a span: trace level.
    let got = store
        .calls_page(&with("thumbs", FeedbackValue::Score(1.0)), None, 10)
        .await
        .unwrap();
    assert_eq!(traces(got), ["t1"]);
    let got = store
        .calls_page(
            &with(
                "helpfulness",
                FeedbackValue::Range {
                    min: Some(3.0),
                    max: None,
                },
            ),
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(traces(got), ["t2"]);
    let got = store
        .calls_page(&with("thumbs", FeedbackValue::Label("x".into())), None, 10)
        .await
        .unwrap();
    assert!(got.is_empty());
}

#[test]
fn lists_expand_to_one_placeholder_per_element() {
    let sql = Sql {
        text: "a = ? AND b IN ? AND c < ?".into(),
        binds: vec![
            Bind::Str("x".into()),
            Bind::Strs(vec!["1".into(), "2".into()]),
            Bind::I64(3),
        ],
    };
    let (text, params) = expand(&sql);
    assert_eq!(text, "a = ? AND b IN (?, ?) AND c < ?");
    assert_eq!(params.len(), 4);
}
