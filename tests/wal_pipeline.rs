//! The ingester's pipeline over the in-process wal instead of Kafka (`flywheel_wal::WalBus`):
//! OTLP span messages published through `WalPublisher` with the collector's headers, consumed
//! through `WalSource` into the real ClickHouse. Exact row counts across an abrupt stop (the
//! ingester's task dropped mid-stream, as a crash leaves it: inserted but uncommitted batches
//! are replayed under their original token), a graceful restart, and a replay of each
//! partition's last batch (its commit rewound); at the end the group's committed offsets are
//! the partitions' ends.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ingest::{clickhouse_url, Pipeline};
use flywheel_bus::{Publisher, Record};
use flywheel_core::wire;
use flywheel_ingester::{IngesterConfig, IngesterError};
use flywheel_schema::ClickHouseConfig;
use flywheel_wal::{Wal, WalBus, WalConfig, WalPublisher};
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(60);
const EXACT: &str = "SELECT count() FROM otel_traces";
const UNIQUE: &str = "SELECT uniqExact(TraceId, SpanId) FROM otel_traces";
const CALLS: &str = "SELECT count() FROM llm_calls";
/// Spans (and model calls) per [`common::numbered_request`].
const SPANS_PER_REQUEST: u64 = 2;

/// An ingester running in this process.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), IngesterError>>,
}

fn start(bus: &WalBus, config: &IngesterConfig, clickhouse: &ClickHouseConfig) -> Running {
    let shutdown = CancellationToken::new();
    let (bus, config, clickhouse, token) = (
        bus.clone(),
        config.clone(),
        clickhouse.clone(),
        shutdown.clone(),
    );
    let task = tokio::spawn(async move {
        let store =
            flywheel_ingester::open_store(&flywheel_store::StoreConfig::default(), &clickhouse)
                .await?;
        flywheel_ingester::run(
            config,
            &bus,
            store,
            clickhouse.ttl_days.clone(),
            &prometheus::Registry::new(),
            &flywheel_telemetry::Readiness::new(),
            token,
        )
        .await
    });
    Running { shutdown, task }
}

impl Running {
    /// Graceful: complete batches are inserted and committed.
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Abrupt: the task is dropped wherever it is (no flush, no commit).
    async fn abort(self) {
        self.task.abort();
        assert!(self.task.await.unwrap_err().is_cancelled());
    }
}

/// Publishes requests `range`, one `publish` call per request, with the collector's headers
/// and the trace id as key.
async fn publish(publisher: &WalPublisher, topic: &str, range: std::ops::Range<u32>) {
    for n in range {
        let request = common::numbered_request(n);
        let trace_id = hex::encode(&request.resource_spans[0].scope_spans[0].spans[0].trace_id);
        let headers: &flywheel_bus::Headers = &[
            (wire::HEADER_PROJECT, b"wal-test".to_vec()),
            (
                wire::HEADER_RECEIVED_AT_NS,
                common::now_ns().to_string().into_bytes(),
            ),
            (
                wire::HEADER_ENCODING,
                wire::ENCODING_OTLP_PROTO.as_bytes().to_vec(),
            ),
        ];
        let record = Record {
            key: trace_id.into_bytes(),
            payload: request.encode_to_vec(),
        };
        publisher
            .publish(topic, headers, vec![record])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_over_the_wal_land_exactly_once_across_restarts() {
    let p = Pipeline::new("unused:9092", &clickhouse_url());
    let clickhouse = ClickHouseConfig {
        url: p.clickhouse.clone(),
        database: p.database.clone(),
        ..ClickHouseConfig::default()
    };
    flywheel_schema::migrate::migrate(&clickhouse)
        .await
        .unwrap();
    let config = IngesterConfig {
        group_id: p.group.clone(),
        spans_topic: p.topic.clone(),
        feedback_topic: p.feedback_topic.clone(),
        signals_topic: p.signals_topic.clone(),
        dead_letter_topic: p.dead_letters.clone(),
        batch_max_age_ms: 200,
        batch_max_rows: 20,
        derive_signals: false,
        ..IngesterConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(WalConfig::new(dir.path())).unwrap());
    let bus = WalBus::new(wal.clone());
    let publisher = wal.publisher();

    // Before the ingester exists, then while it runs; stopped abruptly mid-stream.
    publish(&publisher, &p.topic, 0..50).await;
    let first = start(&bus, &config, &clickhouse);
    p.wait_count(EXACT, 50 * SPANS_PER_REQUEST, TIMEOUT).await;
    publish(&publisher, &p.topic, 50..100).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    first.abort().await;
    let stored = p.count(EXACT).await;
    assert!(stored <= 100 * SPANS_PER_REQUEST, "{stored} rows");

    // A new ingester in the same group picks up from the committed offsets (and replays
    // whatever was inserted without a commit under its original token).
    let second = start(&bus, &config, &clickhouse);
    publish(&publisher, &p.topic, 100..150).await;
    p.wait_count(EXACT, 150 * SPANS_PER_REQUEST, TIMEOUT).await;
    second.stop().await;

    // As if the last batch of every partition had been inserted but its commit lost: the
    // committed offset goes back to the batch's first offset, so the next ingester replays the
    // range under the same token (and ClickHouse drops it as a duplicate).
    let mut rewound = 0;
    let store = flywheel_ingester::open_store(&flywheel_store::StoreConfig::default(), &clickhouse)
        .await
        .unwrap();
    {
        let group = wal.subscribe(&p.group, &[p.topic.as_str()]).unwrap();
        for (partition, _) in group.assignment().into_iter().map(|(_, p)| (p, ())) {
            let marker =
                flywheel_ingester::writer::last_marker(&*store, &p.group, &p.topic, partition)
                    .await
                    .unwrap();
            let Some((first, last)) = marker else {
                continue;
            };
            assert_eq!(group.committed(&p.topic, partition), Some(last + 1));
            group
                .commit_blocking(&[(p.topic.clone(), partition, first)])
                .unwrap();
            rewound += last + 1 - first;
        }
    }
    assert!(rewound > 0);

    // Published while nothing consumes.
    publish(&publisher, &p.topic, 150..200).await;
    let third = start(&bus, &config, &clickhouse);
    p.wait_count(EXACT, 200 * SPANS_PER_REQUEST, TIMEOUT).await;
    // Time for a duplicate to show if there were one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    third.stop().await;

    let want = 200 * SPANS_PER_REQUEST;
    assert_eq!(p.count(EXACT).await, want);
    assert_eq!(p.count(UNIQUE).await, want);
    assert_eq!(p.count(CALLS).await, want);
    assert_eq!(p.count("SELECT count() FROM llm_calls FINAL").await, want);
    assert_eq!(
        p.count("SELECT count() FROM llm_calls WHERE project = 'wal-test'")
            .await,
        want
    );

    // Everything consumed is committed: a fourth ingester would start at the ends.
    let partitions = wal
        .topics()
        .into_iter()
        .find(|(t, _)| *t == p.topic)
        .map(|(_, n)| n)
        .unwrap();
    let mut total = 0;
    for partition in 0..partitions {
        let (_, end) = wal.bounds(&p.topic, partition).unwrap();
        assert_eq!(
            wal.committed(&p.group, &p.topic, partition),
            Some(end).filter(|e| *e > 0)
        );
        total += end;
    }
    assert_eq!(total, 200);
    p.drop_database().await;
}
