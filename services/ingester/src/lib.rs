//! # Flywheel ingester
//!
//! A consumer group on the span, feedback and signals topics (of Kafka, or of the in-process
//! wal: the log is reached through a [`flywheel_bus::Bus`]) that writes every span to
//! ClickHouse's `otel_traces` (the OpenTelemetry Collector exporter's schema), every model call
//! to `llm_calls` (flattened GenAI conventions, tokens, cost, TTFT, TPOT), and every feedback
//! item and signal (from their topics, or from span events) to `feedback` and `signals`.
//!
//! Data flow: [`consumer`] reads messages and keeps one batch per topic partition
//! ([`batch`]); [`message`] decodes them by topic; [`map`] turns each
//! `ExportTraceServiceRequest` into rows; when a batch is full or old enough, [`writer`] inserts
//! it with a deduplication token derived from the offset range, and only then is the offset
//! committed. Messages that cannot be stored go to a dead-letter topic ([`dead_letter`]).
//! Beside the loop, [`derive`] infers implicit signals from stored calls and [`expire`] deletes
//! rows older than `clickhouse.ttl_days` (embedded store; ClickHouse's table TTL does it there).
//!
//! Start reading at [`run`].

pub mod batch;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod derive;
pub mod expire;
pub mod map;
pub mod message;
pub mod metrics;
pub mod pricing;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flywheel_bus::{Bus, BusError};
use flywheel_schema::ClickHouseConfig;
use flywheel_store::{Backend, IngestStore, StoreConfig, StoreError};
use flywheel_telemetry::Readiness;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

pub use config::IngesterConfig;

/// Errors that stop the ingester at start-up.
#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error(transparent)]
    Schema(#[from] flywheel_schema::migrate::SchemaError),
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("prices: {0}")]
    Prices(String),
    #[error("reprice failed: {0}")]
    Reprice(String),
    #[error("signal derivation failed: {0}")]
    Derive(#[source] StoreError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The store the ingester writes (`[store]`: ClickHouse, or the DuckDB file, created or
/// migrated on open). Refuses a ClickHouse schema older than this build needs.
pub async fn open_store(
    store: &StoreConfig,
    clickhouse: &ClickHouseConfig,
) -> Result<Arc<dyn IngestStore>, IngesterError> {
    if store.backend == Backend::ClickHouse {
        flywheel_schema::migrate::check(clickhouse).await?;
    }
    let (store, clickhouse) = (store.clone(), clickhouse.clone());
    tokio::task::spawn_blocking(move || {
        flywheel_store::open_ingest(&store, &clickhouse, flywheel_store::AccessMode::ReadWrite)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?
    .map_err(IngesterError::from)
}

/// Runs the ingester until `shutdown`, writing to `store` ([`open_store`]), then inserts
/// complete batches, commits and returns. `bus` gives the consumer ([`consumer::source_spec`])
/// and the dead-letter publisher: `flywheel_bus::KafkaBus` or `flywheel_wal::WalBus`.
/// `ttl_days` (`clickhouse.ttl_days`) is the retention [`expire`] applies every
/// `ingester.expire_interval_s`.
pub async fn run<B: Bus>(
    config: IngesterConfig,
    bus: &B,
    store: Arc<dyn IngestStore>,
    ttl_days: BTreeMap<String, u32>,
    registry: &Registry,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> Result<(), IngesterError> {
    let metrics = metrics::Metrics::register(registry)?;
    let prices =
        pricing::PriceTable::load(config.prices_file.as_deref()).map_err(IngesterError::Prices)?;
    let topics = message::Topics::new(&config);
    for topic in topics.names() {
        metrics.dead_letters.with_label_values(&[topic]);
    }
    let source = bus.source(consumer::source_spec(&config, &metrics))?;
    // Kafka's publisher probe also creates the consumed topics when missing (with
    // `kafka.create_topics`), so that the ingester may start before any producer.
    let mut own_topics = vec![config.dead_letter_topic.clone()];
    own_topics.extend(topics.names().map(str::to_string));
    let dead_letters = bus.publisher(own_topics, shutdown.clone())?;
    let dlq_ready = dead_letters.clone();
    readiness.register("ingester_kafka", move || {
        flywheel_bus::Publisher::is_ready(&dlq_ready)
    });
    let writer = writer::Writer::new(
        store.clone(),
        metrics.clone(),
        Duration::from_millis(config.retry_initial_ms),
        Duration::from_millis(config.retry_max_ms),
    );
    let derive = config.derive_signals.then(|| {
        tokio::spawn(derive::run_periodically(
            config.clone(),
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
        ))
    });
    let expire = Some(tokio::spawn(expire::run_periodically(
        Duration::from_secs(config.expire_interval_s),
        ttl_days.clone(),
        store.clone(),
        metrics.clone(),
        shutdown.clone(),
    )));
    tracing::info!(topics = ?topics.names(), group = %config.group_id, store = store.backend(), derive_signals = config.derive_signals, ?ttl_days, "ingester consuming");
    consumer::Ingest {
        mapper: map::Mapper::new(prices, config.clone()),
        config,
        source,
        writer,
        dead_letters,
        metrics,
        topics,
        partitions: HashMap::new(),
        inserts: 0,
    }
    .run(shutdown.clone())
    .await;
    for task in [derive, expire].into_iter().flatten() {
        let _ = task.await;
    }
    Ok(())
}

/// Derives signals once over the calls since `since_ns` (Unix ns), e.g. to backfill after
/// enabling `ingester.derive_signals` or changing a rule parameter, and inserts those not
/// stored yet. Returns how many of each type were inserted.
pub async fn derive_signals(
    config: &IngesterConfig,
    store: Arc<dyn IngestStore>,
    since_ns: i64,
) -> Result<derive::Counts, IngesterError> {
    let metrics = metrics::Metrics::register(&Registry::new())?;
    let writer = writer::Writer::new(
        store,
        metrics,
        Duration::from_millis(config.retry_initial_ms),
        Duration::from_millis(config.retry_max_ms),
    );
    let window = derive::window(config, since_ns, message::now_ns());
    derive::run_once(&writer, &window)
        .await
        .map_err(IngesterError::Derive)
}

/// Rewrites the cost of `llm_calls` since `since_ns` (Unix ns) from the current price table
/// (built-in plus `ingester.prices_file`), on either backend, and waits until it is done.
pub async fn reprice(
    config: &IngesterConfig,
    store: &dyn IngestStore,
    since_ns: i64,
) -> Result<(), IngesterError> {
    let prices =
        pricing::PriceTable::load(config.prices_file.as_deref()).map_err(IngesterError::Prices)?;
    store
        .reprice(&prices.by_model(), since_ns)
        .await
        .map_err(|e| IngesterError::Reprice(e.to_string()))
}
