//! Dashboards use exactly the metric names the services export (their `metrics.rs` constants).

use std::collections::BTreeSet;

use flywheel_collector::metrics as collector;
use flywheel_detector::metrics as detector;
use flywheel_ingester::metrics as ingester;

/// Every metric name a service exports, with the suffixes Prometheus adds to histograms.
fn exported() -> BTreeSet<String> {
    let bases = [
        collector::SPANS_RECEIVED,
        collector::SPANS_PUBLISHED,
        collector::SPANS_REJECTED,
        collector::REQUESTS,
        collector::REQUEST_DURATION,
        collector::PRODUCE_DURATION,
        collector::PRODUCER_QUEUE_DEPTH,
        collector::IN_FLIGHT_BYTES,
        collector::ITEMS_ACCEPTED,
        collector::ITEMS_REJECTED,
        ingester::ROWS_INSERTED,
        ingester::INSERT_DURATION,
        ingester::BATCH_ROWS,
        ingester::INSERT_RETRIES,
        ingester::DEAD_LETTERS,
        ingester::CONSUMER_LAG,
        ingester::EVENT_TO_STORED,
        ingester::UNKNOWN_MODEL_PRICES,
        ingester::INVALID_SPAN_EVENTS,
        ingester::DERIVED_SIGNALS,
        ingester::DERIVE_RUNS,
        ingester::DERIVE_ERRORS,
        ingester::EXPIRED_ROWS,
        ingester::EXPIRE_ERRORS,
        detector::EVENTS,
        detector::UNATTRIBUTED,
        detector::UNDECODABLE,
        detector::NOTIFICATIONS,
        detector::NOTIFICATIONS_DROPPED,
        detector::DELIVERY_RETRIES,
        detector::ALERTS_FIRING,
        detector::SERIES,
        detector::WATERMARK_LAG,
        detector::EVALUATION,
        detector::SLO_SLI,
        detector::SLO_BUDGET,
        detector::SLO_BURN,
        detector::REBUILT_EVENTS,
        detector::RESTORED_ALERTS,
        detector::HISTORY_ERRORS,
        detector::SLO_LATENCY_P99,
        detector::COST_BUDGET_RATIO,
        detector::COST_SPEND_RATE,
        detector::COST_CHANGE_CUSUM,
        detector::COST_USER_FOLDED,
        detector::SEEDED_SPEND_SERIES,
    ];
    let mut names = BTreeSet::new();
    for base in bases {
        names.insert(base.to_string());
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{base}{suffix}"));
        }
    }
    names
}

#[test]
fn dashboard_queries_use_exported_metric_names() {
    let exported = exported();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let _: serde_json::Value = serde_json::from_str(&text).expect("dashboard is not JSON");
        for (i, _) in text.match_indices("flywheel_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                exported.contains(&name),
                "{}: unknown metric {name}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no metric referenced by any dashboard");
}
