//! Runs into the in-memory exporter: everything generated is sent once, in batches of the
//! configured size, as bodies the collector accepts (spans decode; feedback and signals pass
//! the collector's own validator), and the ground truth describes the run.

use std::collections::HashSet;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::*;
use crate::sink::MemoryExporter;

const START: i64 = 1_764_000_000_000_000_000;

fn scenario() -> Scenario {
    let mut s = Scenario {
        rate: 20.0,
        duration: Duration::from_secs(30 * 60),
        ..Scenario::default()
    };
    s.sink.max_spans_per_request = 200;
    s.sink.max_items_per_request = 50;
    s.incidents =
        vec![
            crate::cli::parse_incident("kind=regenerate_surge,start=10m,duration=5m,ratio=0.5")
                .unwrap(),
        ];
    s
}

async fn run_into_memory(
    s: Scenario,
    pace: Pace,
    truth: Option<std::path::PathBuf>,
) -> (Summary, Vec<Request>) {
    let exporter = Arc::new(MemoryExporter {
        keep: true,
        ..MemoryExporter::default()
    });
    let options = RunOptions {
        start_ns: START,
        pace,
        ground_truth: truth,
    };
    let summary = run(s, options, exporter.clone(), CancellationToken::new())
        .await
        .unwrap();
    let requests = exporter.requests.lock().unwrap().clone();
    (summary, requests)
}

#[tokio::test]
async fn everything_generated_is_sent_once_in_bounded_batches() {
    let dir = std::env::temp_dir().join(format!("loadgen-truth-{}", std::process::id()));
    let (summary, requests) = run_into_memory(scenario(), Pace::Unlimited, Some(dir.clone())).await;
    assert!(summary.calls > 20_000, "{summary}");
    assert!(!summary.interrupted);
    assert_eq!(summary.refused(), 0);
    assert_eq!(summary.spans.accepted, summary.calls * 2);
    assert_eq!(summary.feedback_sent.accepted, summary.feedback);
    assert_eq!(summary.signals_sent.accepted, summary.signals);
    assert_eq!(summary.generated_until_ns, START + 30 * 60 * 1_000_000_000);

    let mut span_ids = HashSet::new();
    let mut item_ids = HashSet::new();
    let limits = flywheel_feedback::Limits::default();
    let validator = flywheel_feedback::api::Validator {
        limits: &limits,
        definitions: None,
        now_unix_nano: START + 30 * 60 * 1_000_000_000,
    };
    for r in &requests {
        match r.kind {
            Kind::Spans => {
                assert!(r.items <= 200);
                let req = ExportTraceServiceRequest::decode(r.body.as_slice()).unwrap();
                let spans = &req.resource_spans[0].scope_spans[0].spans;
                assert_eq!(spans.len() as u64, r.items);
                for s in spans {
                    assert!(span_ids.insert((s.trace_id.clone(), s.span_id.clone())));
                    assert_eq!(s.trace_id.len(), 16);
                    assert_eq!(s.span_id.len(), 8);
                }
            }
            Kind::Feedback | Kind::Signals => {
                assert!(r.items <= 50);
                let raws = flywheel_feedback::api::split_batch(&r.body, 1000).unwrap();
                assert_eq!(raws.len() as u64, r.items);
                for (i, raw) in raws.iter().enumerate() {
                    let id = if r.kind == Kind::Feedback {
                        validator.feedback(i, raw).map(|f| f.id)
                    } else {
                        validator.signal(i, raw).map(|s| s.id)
                    };
                    let id = id.unwrap_or_else(|e| panic!("{e}: {}", raw.get()));
                    assert!(item_ids.insert(id));
                }
            }
        }
    }
    assert_eq!(span_ids.len() as u64, summary.calls * 2);
    assert_eq!(item_ids.len() as u64, summary.feedback + summary.signals);

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&dir)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    std::fs::remove_file(&dir).unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["type"], "run");
    assert_eq!(lines[0]["start_unix_ns"], START);
    assert_eq!(lines[0]["run_id"], summary.run_id.as_str());
    assert_eq!(lines[1]["type"], "incident");
    assert_eq!(lines[1]["kind"], "regenerate_surge");
    assert_eq!(lines[1]["start_unix_ns"], START + 600_000_000_000);
    assert_eq!(lines[1]["end_unix_ns"], START + 900_000_000_000);
    assert_eq!(lines[2]["type"], "summary");
    assert_eq!(lines[2]["calls"], summary.calls);
}

#[tokio::test]
async fn a_paced_run_takes_at_least_the_simulated_time_over_the_speedup() {
    let mut s = scenario();
    s.duration = Duration::from_secs(60);
    s.incidents.clear();
    let started = std::time::Instant::now();
    let (summary, _) = run_into_memory(s, Pace::Speedup(200.0), None).await;
    // The last record is due 60 s / 200 = 0.3 s after the start, not earlier.
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert!(summary.calls > 100);
    assert_eq!(summary.refused(), 0);
}

#[tokio::test]
async fn shutdown_stops_generating_and_sends_what_was_batched() {
    let exporter = Arc::new(MemoryExporter {
        keep: true,
        ..MemoryExporter::default()
    });
    let shutdown = CancellationToken::new();
    let options = RunOptions {
        start_ns: START,
        pace: Pace::Speedup(1.0),
        ground_truth: None,
    };
    let task = tokio::spawn(run(scenario(), options, exporter.clone(), shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.cancel();
    let summary = task.await.unwrap().unwrap();
    assert!(summary.interrupted);
    assert!(summary.generated_until_ns < START + 60 * 1_000_000_000);
    let sent: u64 = exporter
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.kind == Kind::Spans)
        .map(|r| r.items)
        .sum();
    assert_eq!(sent, summary.calls * 2);
}
