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
pub const INVALID_SPAN_EVENTS: &str = "flywheel_ingester_invalid_span_events_total";
pub const DERIVED_SIGNALS: &str = "flywheel_ingester_derived_signals_total";
pub const DERIVE_RUNS: &str = "flywheel_ingester_derive_runs_total";
pub const DERIVE_ERRORS: &str = "flywheel_ingester_derive_errors_total";
pub const EXPIRED_ROWS: &str = "flywheel_ingester_expired_rows_total";
pub const EXPIRE_ERRORS: &str = "flywheel_ingester_expire_errors_total";

/// Tables the ingester writes (the `table` label of the row and latency metrics).
pub const TABLES: [&str; 4] = ["otel_traces", "llm_calls", "feedback", "signals"];
/// Signal types the derivation produces (the `type` label of [`DERIVED_SIGNALS`]).
pub const DERIVED_TYPES: [&str; 3] = ["regenerate", "stop", "conversation_end"];

/// The ingester's metric handles.
#[derive(Clone)]
pub struct Metrics {
    /// Rows inserted, by table.
    pub rows_inserted: IntCounterVec,
    /// Insert latency, by table.
    pub insert_duration: HistogramVec,
    /// Items (spans, feedback, signals) per inserted batch.
    pub batch_rows: Histogram,
    /// Failed insert attempts that were retried.
    pub insert_retries: IntCounter,
    /// Undecodable or invalid messages copied to the dead-letter topic, by source topic.
    pub dead_letters: IntCounterVec,
    /// Messages behind the partition's end, by topic and partition (librdkafka statistics, or the wal's
    /// read position, every 5 s).
    pub consumer_lag: IntGaugeVec,
    /// Collector receipt to row stored in ClickHouse.
    pub event_to_stored: Histogram,
    /// LLM calls stored with cost NULL because their model has no price.
    pub unpriced_calls: IntCounter,
    /// Feedback / signal span events that could not be converted (the span is still stored).
    pub invalid_span_events: IntCounter,
    /// Derived signals inserted, by type (re-derived ones that are already stored are not).
    pub derived_signals: IntCounterVec,
    /// Derivation runs completed.
    pub derive_runs: IntCounter,
    /// Derivation runs that failed (retried at the next interval).
    pub derive_errors: IntCounter,
    /// Rows deleted by retention (`clickhouse.ttl_days` on DuckDB; ClickHouse's table TTL is
    /// not counted), by table.
    pub expired_rows: IntCounterVec,
    /// Retention runs that failed (retried at the next interval).
    pub expire_errors: IntCounter,
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
                HistogramOpts::new(
                    BATCH_ROWS,
                    "Items (spans, feedback, signals) per inserted batch.",
                )
                    .buckets(exponential_buckets(1.0, 4.0, 10)?),
            )?,
            insert_retries: IntCounter::new(
                INSERT_RETRIES,
                "Insert attempts that failed and were retried.",
            )?,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    DEAD_LETTERS,
                    "Undecodable or invalid messages sent to the dead-letter topic, by source topic.",
                ),
                &["topic"],
            )?,
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    CONSUMER_LAG,
                    "Messages not yet consumed, by topic and partition.",
                ),
                &["topic", "partition"],
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
            invalid_span_events: IntCounter::new(
                INVALID_SPAN_EVENTS,
                "Feedback or signal span events that could not be converted (the span is stored).",
            )?,
            derived_signals: IntCounterVec::new(
                Opts::new(DERIVED_SIGNALS, "Derived signals inserted, by type."),
                &["type"],
            )?,
            derive_runs: IntCounter::new(DERIVE_RUNS, "Signal derivation runs completed.")?,
            derive_errors: IntCounter::new(
                DERIVE_ERRORS,
                "Signal derivation runs that failed (retried at the next interval).",
            )?,
            expired_rows: IntCounterVec::new(
                Opts::new(
                    EXPIRED_ROWS,
                    "Rows deleted because they are older than clickhouse.ttl_days (embedded store), by table.",
                ),
                &["table"],
            )?,
            expire_errors: IntCounter::new(
                EXPIRE_ERRORS,
                "Retention runs that failed (retried at the next interval).",
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
        registry.register(Box::new(m.invalid_span_events.clone()))?;
        registry.register(Box::new(m.derived_signals.clone()))?;
        registry.register(Box::new(m.derive_runs.clone()))?;
        registry.register(Box::new(m.derive_errors.clone()))?;
        registry.register(Box::new(m.expired_rows.clone()))?;
        registry.register(Box::new(m.expire_errors.clone()))?;
        for table in TABLES {
            m.rows_inserted.with_label_values(&[table]);
            m.expired_rows.with_label_values(&[table]);
        }
        for kind in DERIVED_TYPES {
            m.derived_signals.with_label_values(&[kind]);
        }
        Ok(m)
    }
}
