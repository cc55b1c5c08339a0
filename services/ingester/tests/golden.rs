//! Golden tests: real SDK payloads (`tests/fixtures/otlp/`, OpenLLMetry 0.62.4) -> the exact
//! rows expected in `otel_traces` and `llm_calls` (`tests/golden/*.json`). The integration test
//! `tests/ingester.rs` checks that ClickHouse returns the same rows.
//!
//! After a deliberate mapping change: `UPDATE_GOLDEN=1 cargo test -p flywheel-ingester --test
//! golden`, then review the diff of `tests/golden/`.

use flywheel_core::ProjectId;
use flywheel_ingester::map::Mapper;
use flywheel_ingester::metrics::Metrics;
use flywheel_ingester::pricing::PriceTable;
use flywheel_ingester::IngesterConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const FIXTURES: [&str; 2] = [
    "openllmetry-openai-0.62.4-chat-and-stream",
    "openllmetry-openai-0.62.4-error-and-stopped-stream",
];

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(path: std::path::PathBuf, actual: serde_json::Value) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
    }
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    assert_eq!(actual, expected, "{} differs", path.display());
}

#[test]
fn real_sdk_payloads_map_to_golden_rows() {
    let mapper = Mapper::new(PriceTable::load(None).unwrap(), IngesterConfig::default());
    let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
    for name in FIXTURES {
        let body = std::fs::read(root().join(format!("tests/fixtures/otlp/{name}.pb"))).unwrap();
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let rows = mapper.map(
            request,
            &ProjectId::new("golden").unwrap(),
            1_700_000_000_000_000_000,
            &metrics,
        );
        check(
            root().join(format!("tests/golden/{name}.otel_traces.json")),
            serde_json::to_value(&rows.traces).unwrap(),
        );
        check(
            root().join(format!("tests/golden/{name}.llm_calls.json")),
            serde_json::to_value(&rows.calls).unwrap(),
        );
    }
}
