//! Stores a batch through the store ([`IngestStore::ingest`]: its marker, then its rows under
//! the deduplication token), retrying with jittered exponential back-off until it succeeds or
//! the ingester shuts down. Nothing is consumed meanwhile: the batch in hand is the only
//! memory held, so an outage costs no loss and no unbounded growth.

use std::sync::Arc;
use std::time::Duration;

use flywheel_schema::rows::IngestBatchRow;
use flywheel_store::{IngestStore, RowBatch, StoreError, TableWrite};
use tokio_util::sync::CancellationToken;

use crate::map::Rows;
use crate::metrics::Metrics;

/// The insert was abandoned because the ingester is shutting down.
#[derive(Debug, PartialEq, Eq)]
pub struct Cancelled;

/// Where a partition stands: the last batch marker, if any.
pub async fn last_marker(
    store: &dyn IngestStore,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<(i64, i64)>, StoreError> {
    store.last_marker(group, topic, partition).await
}

pub struct Writer {
    store: Arc<dyn IngestStore>,
    metrics: Metrics,
    retry_initial: Duration,
    retry_max: Duration,
}

impl Writer {
    pub fn store(&self) -> &dyn IngestStore {
        self.store.as_ref()
    }

    pub fn new(
        store: Arc<dyn IngestStore>,
        metrics: Metrics,
        retry_initial: Duration,
        retry_max: Duration,
    ) -> Self {
        Self {
            store,
            metrics,
            retry_initial,
            retry_max,
        }
    }

    /// Records the batch marker and stores every table's rows under `token`
    /// ([`IngestStore::ingest`]); a retry repeats it, and what an earlier attempt stored is
    /// not stored twice.
    pub async fn insert(
        &self,
        marker: &IngestBatchRow,
        token: &str,
        rows: &Rows,
        shutdown: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let batch = RowBatch {
            token: token.to_string(),
            otel_traces: rows.traces.clone(),
            llm_calls: rows.calls.clone(),
            feedback: rows.feedback.clone(),
            signals: rows.signals.clone(),
        };
        let mut delay = self.retry_initial;
        loop {
            match self.store.ingest(marker, &batch).await {
                Ok(written) => {
                    self.record(&written);
                    return Ok(());
                }
                Err(e) => {
                    self.metrics.insert_retries.inc();
                    let jittered = delay.mul_f64(0.5 + fastrand::f64());
                    tracing::warn!(error = %e, token, retry_in_ms = jittered.as_millis() as u64, "insert failed, will retry");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(Cancelled),
                        _ = tokio::time::sleep(jittered) => {}
                    }
                    delay = (delay * 2).min(self.retry_max);
                }
            }
        }
    }

    /// Stores `batch` once (no retry, no marker): derived signals.
    pub async fn insert_rows(&self, batch: &RowBatch) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        self.store.insert(batch).await?;
        let seconds = started.elapsed().as_secs_f64();
        let written: Vec<TableWrite> = [
            ("otel_traces", batch.otel_traces.len()),
            ("llm_calls", batch.llm_calls.len()),
            ("feedback", batch.feedback.len()),
            ("signals", batch.signals.len()),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(table, rows)| TableWrite {
            table,
            rows,
            seconds,
        })
        .collect();
        self.record(&written);
        Ok(())
    }

    fn record(&self, written: &[TableWrite]) {
        for w in written {
            self.metrics
                .insert_duration
                .with_label_values(&[w.table])
                .observe(w.seconds);
            self.metrics
                .rows_inserted
                .with_label_values(&[w.table])
                .inc_by(w.rows as u64);
        }
    }
}
