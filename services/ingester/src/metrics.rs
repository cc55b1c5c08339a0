//! Every metric the ingester exports, by name, in one place.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry,
};

pub const ROWS_INSERTED: &str = "flywheel_ingester_rows_inserted_total";
pub const INSERT_DURATION: &str = "flywheel_ingester_insert_duration_seconds";
pub const BATCH_ROWS: &str = "flywheel_ingester_batch_rows";
pub const INSERT_RETRIES: &str = "flywheel_ingester_insert_retries_total";
pub const DEAD_LETTERS: &str = "flywheel_ingester_dead_letters_total";
pub const CONSUMER_LAG: &str = "flywheel_ingester_consumer_lag";
pub const EVENT_TO_STORED: &str = "flywheel_ingester_event_to_stored_seconds";
pub const UNKNOWN_MODEL_PRICES: &str = "flywheel_ingester_unpriced_calls_total";

/// The ingester's metric handles.
#[derive(Clone)]
pub struct Metrics {
    /// Rows inserted, by table.
    pub rows_inserted: IntCounterVec,
    /// Insert latency, by table.
    pub insert_duration: HistogramVec,
    /// Spans per inserted batch.
    pub batch_rows: Histogram,
    /// Failed insert attempts that were retried.
    pub insert_retries: IntCounter,
    /// Undecodable messages copied to the dead-letter topic.
    pub dead_letters: IntCounter,
    /// Messages behind the partition's end, by partition (from librdkafka statistics).
    pub consumer_lag: IntGaugeVec,
    /// Collector receipt to row stored in ClickHouse.
    pub event_to_stored: Histogram,
    /// LLM calls stored with cost NULL because their model has no price.
    pub unpriced_calls: IntCounter,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let secs = exponential_buckets(0.001, 2.0, 16)?;
        let m = Self {
            rows_inserted: IntCounterVec::new(
                Opts::new(ROWS_INSERTED, "Rows inserted into ClickHouse, by table."),
                &["table"],
            )?,
            insert_duration: HistogramVec::new(
                HistogramOpts::new(INSERT_DURATION, "ClickHouse insert latency, by table.")
                    .buckets(secs.clone()),
                &["table"],
            )?,
            batch_rows: Histogram::with_opts(
                HistogramOpts::new(BATCH_ROWS, "Spans per inserted batch.")
                    .buckets(exponential_buckets(1.0, 4.0, 10)?),
            )?,
            insert_retries: IntCounter::new(
                INSERT_RETRIES,
                "Insert attempts that failed and were retried.",
            )?,
            dead_letters: IntCounter::new(
                DEAD_LETTERS,
                "Undecodable messages sent to the dead-letter topic.",
            )?,
            consumer_lag: IntGaugeVec::new(
                Opts::new(CONSUMER_LAG, "Messages not yet consumed, by partition."),
                &["partition"],
            )?,
            event_to_stored: Histogram::with_opts(
                HistogramOpts::new(
                    EVENT_TO_STORED,
                    "Collector receipt to row stored in ClickHouse.",
                )
                .buckets(secs),
            )?,
            unpriced_calls: IntCounter::new(
                UNKNOWN_MODEL_PRICES,
                "LLM calls stored with cost NULL because no price is known for their model.",
            )?,
        };
        registry.register(Box::new(m.rows_inserted.clone()))?;
        registry.register(Box::new(m.insert_duration.clone()))?;
        registry.register(Box::new(m.batch_rows.clone()))?;
        registry.register(Box::new(m.insert_retries.clone()))?;
        registry.register(Box::new(m.dead_letters.clone()))?;
        registry.register(Box::new(m.consumer_lag.clone()))?;
        registry.register(Box::new(m.event_to_stored.clone()))?;
        registry.register(Box::new(m.unpriced_calls.clone()))?;
        for table in ["otel_traces", "llm_calls"] {
            m.rows_inserted.with_label_values(&[table]);
        }
        Ok(m)
    }
}
