//! # Flywheel ingester
//!
//! A Kafka consumer group on the span topic that writes every span to ClickHouse's
//! `otel_traces` (the OpenTelemetry Collector exporter's schema) and every model call to
//! `llm_calls` (flattened GenAI conventions, tokens, cost, TTFT, TPOT).
//!
//! Data flow: [`consumer`] reads messages and keeps one batch per partition
//! ([`batch`]); [`map`] turns each `ExportTraceServiceRequest` into rows; when a batch is full
//! or old enough, [`writer`] inserts it with a deduplication token derived from the offset
//! range, and only then is the offset committed. Undecodable messages go to a dead-letter topic.
//!
//! Start reading at [`run`].

pub mod batch;
pub mod config;
pub mod consumer;
pub mod map;
pub mod metrics;
pub mod pricing;
pub mod reprice;
pub mod writer;

use std::collections::HashMap;
use std::time::Duration;

use flywheel_bus::{KafkaConfig, KafkaPublisher};
use flywheel_schema::ClickHouseConfig;
use flywheel_telemetry::Readiness;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

pub use config::IngesterConfig;

/// Errors that stop the ingester at start-up.
#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error(transparent)]
    Schema(#[from] flywheel_schema::migrate::SchemaError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("prices: {0}")]
    Prices(String),
    #[error("reprice failed: {0}")]
    Reprice(String),
}

/// Runs the ingester until `shutdown`, then inserts complete batches, commits and returns.
/// Refuses to start on a schema older than this build needs.
pub async fn run(
    config: IngesterConfig,
    kafka: &KafkaConfig,
    clickhouse: &ClickHouseConfig,
    registry: &Registry,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> Result<(), IngesterError> {
    flywheel_schema::migrate::check(clickhouse).await?;
    let metrics = metrics::Metrics::register(registry)?;
    let prices =
        pricing::PriceTable::load(config.prices_file.as_deref()).map_err(IngesterError::Prices)?;
    let (consumer, changes) = consumer::create_consumer(kafka, &config, metrics.clone())?;
    let dead_letters = KafkaPublisher::start(
        kafka,
        vec![config.dead_letter_topic.clone()],
        shutdown.clone(),
    )?;
    let dlq_ready = dead_letters.clone();
    readiness.register("ingester_kafka", move || {
        flywheel_bus::Publisher::is_ready(&dlq_ready)
    });
    let writer = writer::Writer::new(
        clickhouse.client(),
        metrics.clone(),
        Duration::from_millis(config.retry_initial_ms),
        Duration::from_millis(config.retry_max_ms),
    );
    tracing::info!(topic = %config.spans_topic, group = %config.group_id, database = %clickhouse.database, "ingester consuming");
    consumer::Ingest {
        mapper: map::Mapper::new(prices, config.clone()),
        config,
        consumer,
        changes,
        writer,
        dead_letters,
        metrics,
        partitions: HashMap::new(),
        inserts: 0,
    }
    .run(shutdown)
    .await;
    Ok(())
}

/// Rewrites the cost of `llm_calls` since `since_ns` (Unix ns) from the current price table
/// (built-in plus `ingester.prices_file`) and waits for the mutation to finish.
pub async fn reprice(
    config: &IngesterConfig,
    clickhouse: &ClickHouseConfig,
    since_ns: i64,
) -> Result<(), IngesterError> {
    flywheel_schema::migrate::check(clickhouse).await?;
    let prices =
        pricing::PriceTable::load(config.prices_file.as_deref()).map_err(IngesterError::Prices)?;
    let Some(sql) = reprice::mutation(&prices, since_ns) else {
        return Ok(());
    };
    clickhouse
        .client()
        .query(&sql)
        .execute()
        .await
        .map_err(|e| IngesterError::Reprice(e.to_string()))
}
