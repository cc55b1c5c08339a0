//! `GET /v1/datasets/export` on a real `flywheel api` process against each store backend, the
//! local ClickHouse and an embedded DuckDB file (every test but the ClickHouse outage runs once
//! per backend: `clickhouse::*`, `duckdb::*`): keys and projects (a public key cannot export, a
//! key never reads another project), precise 400s, the report in trailers and metrics, and a
//! large export arriving in many bounded chunks.

mod common;
#[path = "common/datasets.rs"]
mod fixture;

use common::ingest::Pipeline;
use fixture::{get, on_both_backends, Api, Backend, Db, PROJECT_B_SECRET};
use flywheel_schema::rows::LlmCallRow;
use flywheel_store::RowBatch;

on_both_backends!(async:
    keys_and_projects,
    bad_parameters_are_400_naming_them,
    report_reaches_the_caller_in_trailers_and_metrics,
    large_export_streams_in_bounded_chunks,
);

const KEY_A: (&str, &str) = ("authorization", "Bearer secret-key-a");
const KEY_B: (&str, &str) = ("x-api-key", "secret-key-b");
const PUBLIC_A: (&str, &str) = ("authorization", "Bearer pk-browser-a");

async fn keys_and_projects(b: Backend) {
    let db = fixture::fixture_database(b).await;
    let api = Api::start(&db, &[]);
    let path = "/v1/datasets/export?shape=eval";

    let r = get(&api.addr, path, &[]);
    assert_eq!(r.status, 401);
    let r = get(
        &api.addr,
        path,
        &[("authorization", "Bearer not-a-key-123")],
    );
    assert_eq!(r.status, 401);
    // A browser key of the same project cannot read or export.
    let r = get(&api.addr, path, &[PUBLIC_A]);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "permission_denied");
    // Asking for another project than the key's.
    let r = get(&api.addr, "/v1/datasets/export?project=a", &[KEY_B]);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["param"], "project");

    // Each key gets its own project, whatever the shape.
    for shape in ["sft", "preference", "eval"] {
        let r = get(
            &api.addr,
            &format!("/v1/datasets/export?shape={shape}"),
            &[KEY_B],
        );
        assert_eq!(r.status, 200);
        assert!(r.complete);
        let body = String::from_utf8(r.body()).unwrap();
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["metadata"]["project"], "b", "{line}");
        }
        let r = get(
            &api.addr,
            &format!("/v1/datasets/export?shape={shape}&project=a"),
            &[KEY_A],
        );
        assert_eq!(r.status, 200);
        let body = String::from_utf8(r.body()).unwrap();
        assert!(!body.is_empty(), "{shape}");
        assert!(!body.contains(PROJECT_B_SECRET), "{shape}: {body}");
        assert!(!body.contains("fb-b"), "{shape}: {body}");
    }
    let r = get(&api.addr, "/v1/datasets/export?shape=sft", &[KEY_B]);
    assert!(String::from_utf8(r.body())
        .unwrap()
        .contains(PROJECT_B_SECRET));
    db.drop_database().await;
}

async fn bad_parameters_are_400_naming_them(b: Backend) {
    let db = fixture::fixture_database(b).await;
    let api = Api::start(&db, &[]);
    for (query, param) in [
        ("shape=dpo", "shape"),
        ("format=csv", "format"),
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
        ("feedback_min=3", "feedback"),
        ("shape=preference&signal=edit", "signal"),
        ("color=blue", "color"),
        ("redact=no", "redact"),
    ] {
        let r = get(&api.addr, &format!("/v1/datasets/export?{query}"), &[KEY_A]);
        assert_eq!(r.status, 400, "{query}");
        let body = r.json();
        assert_eq!(body["param"], param, "{query}: {body}");
        assert_eq!(body["code"], "malformed");
        assert!(body["message"].as_str().unwrap().contains(param));
    }
    db.drop_database().await;
}

async fn report_reaches_the_caller_in_trailers_and_metrics(b: Backend) {
    let db = fixture::fixture_database(b).await;
    let api = Api::start(&db, &[]);
    let r = get(
        &api.addr,
        "/v1/datasets/export?shape=sft&format=parquet",
        &[KEY_A],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apache.parquet")
    );
    assert!(r.complete);
    assert!(r.body().starts_with(b"PAR1") && r.body().ends_with(b"PAR1"));
    assert_eq!(r.trailer("flywheel-export-status"), Some("ok"));
    let report: serde_json::Value =
        serde_json::from_str(r.trailer("flywheel-export-report").unwrap()).unwrap();
    assert_eq!(report["rows_written"], 5, "{report}");
    assert_eq!(report["duplicates_dropped"], 1, "{report}");
    for (kind, n) in [
        ("email", 2),
        ("phone", 1),
        ("card", 1),
        ("secret", 1),
        ("ip", 1),
    ] {
        assert_eq!(report["redactions"][kind], n, "{kind}: {report}");
    }
    // The same counts in the metrics.
    let metrics = common::http_get_body(&format!("{}/metrics", api.admin)).unwrap();
    for line in [
        "flywheel_api_export_redactions_total{kind=\"email\"} 2",
        "flywheel_api_export_redactions_total{kind=\"card\"} 1",
        "flywheel_api_export_rows_total{shape=\"sft\"} 5",
        "flywheel_api_export_duplicates_dropped_total{shape=\"sft\"} 1",
        "flywheel_api_exports_total{format=\"parquet\",outcome=\"ok\",shape=\"sft\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
    db.drop_database().await;
}

/// Inserts `n` calls of ~1.2 KB of content into project `a` in one batch.
async fn insert_many(db: &Db, n: u64) {
    let mut batch = RowBatch::new("bulk");
    batch.llm_calls = (0..n)
        .map(|i| {
            let mut trace = i.to_string().into_bytes();
            trace.resize(16, 0);
            let span: Vec<u8> = i
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            LlmCallRow {
                timestamp: fixture::BASE + i64::try_from(i).unwrap() * 1_000_000,
                project: "a".into(),
                trace_id: hex::encode(trace),
                span_id: if span.is_empty() {
                    "00".into()
                } else {
                    hex::encode(span)
                },
                model: "bulk-model".into(),
                conversation_id: format!("conv-{}", i % 1000),
                input_messages: fixture::semconv(
                    "user",
                    &format!("question {i} {}", "lorem ipsum ".repeat(50)),
                ),
                output_messages: fixture::semconv(
                    "assistant",
                    &format!("answer {i} {}", "dolor sit amet ".repeat(40)),
                ),
                ..LlmCallRow::default()
            }
        })
        .collect();
    db.insert(batch).await;
}

async fn large_export_streams_in_bounded_chunks(b: Backend) {
    let db = fixture::fixture_database(b).await;
    let rows = 20_000;
    insert_many(&db, rows).await;
    let api = Api::start(&db, &[("FLYWHEEL_API__EXPORT_PAGE_SIZE", "500")]);
    let r = get(&api.addr, "/v1/datasets/export?model=bulk-model", &[KEY_A]);
    assert_eq!(r.status, 200);
    assert!(r.complete, "the body ended early");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    let total: usize = r.chunks.iter().map(Vec::len).sum();
    let largest = r.chunks.iter().map(Vec::len).max().unwrap();
    // One chunk per page of 500 calls: the server never held the whole dataset.
    assert!(r.chunks.len() >= 40, "{} chunks", r.chunks.len());
    assert!(
        largest * 20 < total,
        "largest chunk {largest} of {total} bytes"
    );
    let lines = String::from_utf8(r.body()).unwrap().lines().count();
    assert_eq!(lines as u64, rows);
    let report: serde_json::Value =
        serde_json::from_str(r.trailer("flywheel-export-report").unwrap()).unwrap();
    assert_eq!(report["rows_written"], rows);

    // The api is done: a DuckDB file is written by one process at a time.
    drop(api);

    // eval with pages larger than one side query takes (1000 ids): a conversation-level item
    // found by several parts of a page is attached once.
    let mut conv = fixture::feedback("fb-bulk", "a", "helpfulness", ("", "", "conv-1"));
    conv.score = Some(5.0);
    let mut batch = RowBatch::new("bulk-feedback");
    batch.feedback = vec![conv];
    db.insert(batch).await;
    let args = [
        "--project",
        "a",
        "--shape",
        "eval",
        "--model",
        "bulk-model",
        "--page-size",
        "5000",
        "--quiet",
    ];
    let (out, _) = fixture::cli_export(&db, &args);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count() as u64, rows);
    let rated: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["metadata"]["conversation_id"] == "conv-1")
        .collect();
    assert_eq!(rated.len() as u64, rows / 1000);
    for r in &rated {
        assert_eq!(
            r["feedback"].as_array().unwrap().len(),
            1,
            "{}",
            r["feedback"]
        );
    }
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_down_before_any_byte_is_503() {
    let nowhere = format!("http://127.0.0.1:{}", common::free_port());
    let db = Db::clickhouse(Pipeline::new("127.0.0.1:9092", &nowhere));
    let api = Api::start(&db, &[]);
    let r = get(&api.addr, "/v1/datasets/export", &[KEY_A]);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["code"], "unavailable");
    assert!(r.header("retry-after").is_some());
}
