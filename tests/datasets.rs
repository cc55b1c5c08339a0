//! `flywheel export` against each store backend, the real local ClickHouse and an embedded
//! DuckDB file (every test runs once per backend: `clickhouse::*`, `duckdb::*`): golden files
//! for every shape and format (Parquet read back with pyarrow), the same files for both
//! backends, preference pairs from each source, the join rule of `eval`, a resent feedback item
//! counted once, filters, and PII near misses.
//!
//! Set `UPDATE_GOLDEN=1` to rewrite the golden files after an intended change.

mod common;
use common::ingest::clickhouse_url;
#[path = "common/datasets.rs"]
mod fixture;

use std::path::PathBuf;
use std::sync::OnceLock;

use fixture::PROJECT_B_SECRET;
use fixture::{cli_export, on_both_backends, read_parquet, span, trace, Backend, Db};
use serde_json::Value;

on_both_backends!(sync:
    golden_files_for_every_shape_and_format,
    sft_normalises_deduplicates_and_reports,
    pii_is_redacted_and_near_misses_kept,
    preference_pairs_from_every_source,
    eval_attaches_feedback_and_signals_by_the_join_rule,
    filters_select_calls,
);

/// One fixture store per backend shared by the tests of this file (they only read it).
fn db(backend: Backend) -> &'static Db {
    static CLICKHOUSE: OnceLock<Db> = OnceLock::new();
    static DUCKDB: OnceLock<Db> = OnceLock::new();
    let cell = match backend {
        Backend::ClickHouse => &CLICKHOUSE,
        Backend::DuckDb => &DUCKDB,
    };
    cell.get_or_init(|| {
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(fixture::fixture_database(backend))
        })
        .join()
        .unwrap()
    })
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

#[track_caller]
fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn export_jsonl(b: Backend, args: &[&str]) -> (Vec<Value>, String) {
    let mut all = vec!["--project", "a", "--quiet"];
    all.extend_from_slice(args);
    let (out, stderr) = cli_export(db(b), &all);
    (lines(&String::from_utf8(out).unwrap()), stderr)
}

fn golden_files_for_every_shape_and_format(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    for shape in ["sft", "preference", "eval"] {
        let jsonl = dir.path().join(format!("{shape}.jsonl"));
        let parquet = dir.path().join(format!("{shape}.parquet"));
        for (format, path) in [("jsonl", &jsonl), ("parquet", &parquet)] {
            let args = [
                "--project",
                "a",
                "--shape",
                shape,
                "--format",
                format,
                "--quiet",
                "-o",
            ];
            let (stdout, _) = cli_export(db(b), &[&args[..], &[path.to_str().unwrap()]].concat());
            assert!(stdout.is_empty(), "-o writes to the file only");
        }
        let jsonl = std::fs::read_to_string(&jsonl).unwrap();
        check_golden(&format!("datasets.{shape}.jsonl"), &jsonl);
        let from_parquet = read_parquet(&parquet);
        check_golden(&format!("datasets.{shape}.parquet.json"), &from_parquet);
        // Both formats carry the same records (and both backends the same bytes: one golden
        // file each).
        assert_eq!(
            lines(&from_parquet),
            lines(&jsonl),
            "{shape}: parquet != jsonl"
        );
        assert!(!jsonl.contains(PROJECT_B_SECRET));
    }
}

fn sft_normalises_deduplicates_and_reports(b: Backend) {
    let (rows, report) = export_jsonl(b, &["--shape", "sft"]);
    // 8 distinct calls of project a (one delivered twice): one duplicate, one without content.
    assert_eq!(rows.len(), 5, "{rows:#?}");
    assert!(report.contains("rows_written=5"), "{report}");
    assert!(report.contains("calls_read=7"), "{report}");
    assert!(report.contains("duplicates_dropped=1"), "{report}");
    assert!(report.contains("skipped_empty=1"), "{report}");
    let paris = rows
        .iter()
        .find(|r| r["metadata"]["trace_id"] == trace(2))
        .unwrap();
    assert_eq!(
        paris["messages"],
        serde_json::json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": fixture::CAPITAL},
            {"role": "assistant", "content": "Paris."},
        ])
    );
    assert!(rows.iter().all(|r| r["metadata"]["project"] == "a"));
    // Without dedup the duplicate comes back; the re-delivered span still counts once.
    let (rows, _) = export_jsonl(b, &["--shape", "sft", "--no-dedup"]);
    assert_eq!(rows.len(), 6);
}

fn pii_is_redacted_and_near_misses_kept(b: Backend) {
    let (rows, report) = export_jsonl(b, &["--shape", "sft", "--conversation", "c4"]);
    assert_eq!(rows.len(), 1);
    let text = rows[0]["messages"].to_string();
    for gone in [
        "jane.doe@example.com",
        "415 555 0100",
        "10.1.2.3",
        "4111 1111 1111 1111",
        "sk-proj-",
    ] {
        assert!(!text.contains(gone), "{gone} survived: {text}");
    }
    for kept in [
        "1.2.3",
        "2026-11-28",
        "4111 1111 1111 1112",
        "user at example dot com",
        "skilled sketch",
    ] {
        assert!(text.contains(kept), "near miss {kept} was redacted: {text}");
    }
    for count in [
        "redacted_email=2",
        "redacted_phone=1",
        "redacted_card=1",
        "redacted_secret=1",
        "redacted_ip=1",
    ] {
        assert!(report.contains(count), "{count} not in {report}");
    }
    let (rows, report) = export_jsonl(
        b,
        &["--shape", "sft", "--conversation", "c4", "--no-redact"],
    );
    assert!(rows[0]["messages"]
        .to_string()
        .contains("jane.doe@example.com"));
    assert!(report.contains("redacted_email=0"), "{report}");
}

fn preference_pairs_from_every_source(b: Backend) {
    let (rows, report) = export_jsonl(b, &["--shape", "preference"]);
    let by_source = |s: &str| rows.iter().filter(|r| r["source"] == s).collect::<Vec<_>>();
    let regen = by_source("regenerate");
    assert_eq!(regen.len(), 1, "{rows:#?}");
    assert_eq!(regen[0]["chosen"][0]["content"], "Paris.");
    assert_eq!(regen[0]["rejected"][0]["content"], "Lyon.");
    assert_eq!(regen[0]["metadata"]["chosen_trace_id"], trace(2));
    assert_eq!(
        regen[0]["metadata"]["evidence"],
        serde_json::json!(["sig-regen"])
    );
    let fb = by_source("feedback");
    assert_eq!(fb.len(), 1, "{rows:#?}");
    assert_eq!(fb[0]["chosen"][0]["content"], "Borrow checker hums");
    assert_eq!(fb[0]["rejected"][0]["content"], "Segfault at midnight");
    let edit = by_source("edit");
    assert_eq!(edit.len(), 1, "{rows:#?}");
    assert_eq!(
        edit[0]["chosen"][0]["content"],
        "Summary: contact Jane by email."
    );
    assert!(edit[0]["rejected"][0]["content"]
        .as_str()
        .unwrap()
        .contains("[EMAIL]"));
    assert_eq!(rows.len(), 3);
    assert!(
        report.contains("pairs_regenerate=1 pairs_feedback=1 pairs_edit=1"),
        "{report}"
    );
    // One source only; ratings as numbers with other thresholds find nothing here.
    let (rows, _) = export_jsonl(b, &["--shape", "preference", "--pair-sources", "edit"]);
    assert_eq!(rows.len(), 1);
    let (rows, _) = export_jsonl(
        b,
        &[
            "--shape",
            "preference",
            "--pair-sources",
            "feedback",
            "--positive-min",
            "4",
            "--negative-max",
            "2",
        ],
    );
    assert!(rows.is_empty(), "{rows:#?}");
}

fn eval_attaches_feedback_and_signals_by_the_join_rule(b: Backend) {
    let (rows, _) = export_jsonl(b, &["--shape", "eval"]);
    let of = |n: u32| {
        rows.iter()
            .find(|r| r["metadata"]["trace_id"] == trace(n) && r["metadata"]["span_id"] == span(n))
            .unwrap_or_else(|| panic!("call {n} missing: {rows:#?}"))
    };
    let names = |r: &Value, what: &str| -> Vec<(String, String)> {
        r[what]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().unwrap().into(),
                    i["level"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let own = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    // Conversation-level feedback reaches both calls of c1; the regenerate signal its subject.
    assert_eq!(
        names(of(1), "feedback"),
        own(&[("fb-conv", "conversation")])
    );
    assert_eq!(names(of(1), "signals"), own(&[("sig-regen", "span")]));
    assert_eq!(
        names(of(2), "feedback"),
        own(&[("fb-conv", "conversation")])
    );
    assert_eq!(names(of(2), "signals"), own(&[("sig-copy", "span")]));
    // The resent thumbs-up is one item, the last received version.
    let up = &of(3)["feedback"];
    assert_eq!(up.as_array().unwrap().len(), 1, "{up}");
    assert_eq!(up[0]["score"], 1.0);
    assert_eq!(up[0]["comment"], "resent; reach me at [EMAIL]");
    // Trace-level feedback (no span).
    assert_eq!(names(of(5), "feedback"), own(&[("fb-trace", "trace")]));
    assert_eq!(of(5)["signals"][0]["edit_ratio"], 0.4);
    assert!(rows.iter().all(|r| !r.to_string().contains("fb-b")));
}

fn filters_select_calls(b: Backend) {
    let traces = |args: &[&str]| -> Vec<String> {
        let (rows, _) = export_jsonl(b, &[&["--shape", "sft"], args].concat());
        let mut t: Vec<String> = rows
            .iter()
            .map(|r| r["metadata"]["trace_id"].as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    };
    assert_eq!(
        traces(&["--feedback", "thumbs", "--feedback-value", "true"]),
        [trace(3)]
    );
    assert_eq!(traces(&["--feedback", "thumbs"]), [trace(3), trace(4)]);
    assert_eq!(
        traces(&["--feedback", "helpfulness", "--feedback-min", "3"]),
        [trace(1), trace(2)]
    );
    assert_eq!(
        traces(&["--feedback", "correctness", "--feedback-label", "correct"]),
        [trace(5)]
    );
    assert_eq!(traces(&["--signal", "edit"]), [trace(5)]);
    assert_eq!(traces(&["--model", "claude-sonnet-4"]), [trace(4)]);
    assert_eq!(traces(&["--conversation", "c1"]), [trace(1), trace(2)]);
    let from = "2026-11-15T00:00:03Z";
    let to = "2026-11-15T00:00:05Z";
    assert_eq!(traces(&["--from", from, "--to", to]), [trace(3), trace(4)]);
    assert_eq!(traces(&["--limit", "2"]).len(), 2);
}

#[test]
fn bad_flags_are_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .args(["export", "--project", "a", "--shape", "dpo"])
        .env("FLYWHEEL_CLICKHOUSE__URL", clickhouse_url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--shape: must be sft, preference or eval"),
        "{err}"
    );
}
