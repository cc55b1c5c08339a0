//! Inserts a batch into ClickHouse with its deduplication token, retrying with jittered
//! exponential back-off until it succeeds or the ingester shuts down. Nothing is consumed
//! meanwhile: the batch in hand is the only memory held, so an outage costs no loss and no
//! unbounded growth.

use std::time::{Duration, Instant};

use clickhouse::{Client, Row};
use flywheel_schema::rows::IngestBatchRow;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::map::Rows;
use crate::metrics::Metrics;

/// The insert was abandoned because the ingester is shutting down.
#[derive(Debug, PartialEq, Eq)]
pub struct Cancelled;

/// Where a partition stands: the last batch marker, if any.
pub async fn last_marker(
    client: &Client,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<(i64, i64)>, clickhouse::error::Error> {
    client
        .query(
            "SELECT first_offset, last_offset FROM ingest_batches FINAL \
             WHERE consumer_group = ? AND topic = ? AND partition = ? \
             ORDER BY first_offset DESC LIMIT 1",
        )
        .bind(group)
        .bind(topic)
        .bind(partition)
        .fetch_optional::<(i64, i64)>()
        .await
}

pub struct Writer {
    client: Client,
    metrics: Metrics,
    retry_initial: Duration,
    retry_max: Duration,
}

impl Writer {
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn new(
        client: Client,
        metrics: Metrics,
        retry_initial: Duration,
        retry_max: Duration,
    ) -> Self {
        Self {
            client,
            metrics,
            retry_initial,
            retry_max,
        }
    }

    /// Records the batch marker, then inserts every table's rows under `token`; a table
    /// already inserted by an earlier attempt is deduplicated by ClickHouse (deduplication is
    /// per table, so one token serves them all).
    pub async fn insert(
        &self,
        marker: &IngestBatchRow,
        token: &str,
        rows: &Rows,
        shutdown: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let mut delay = self.retry_initial;
        loop {
            let result = async {
                let mut insert = self
                    .client
                    .insert::<IngestBatchRow>("ingest_batches")
                    .await?;
                insert.write(marker).await?;
                insert.end().await?;
                self.insert_table("otel_traces", &rows.traces, token)
                    .await?;
                self.insert_table("llm_calls", &rows.calls, token).await?;
                self.insert_table("feedback", &rows.feedback, token).await?;
                self.insert_table("signals", &rows.signals, token).await
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
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

    /// Inserts `rows` into `table` under the deduplication `token`, once (no retry).
    pub async fn insert_table<T>(
        &self,
        table: &str,
        rows: &[T],
        token: &str,
    ) -> Result<(), clickhouse::error::Error>
    where
        T: Row + Serialize + for<'a> Row<Value<'a> = T>,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut insert = self
            .client
            .insert::<T>(table)
            .await?
            .with_setting("insert_deduplication_token", token)
            .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1");
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        self.metrics
            .insert_duration
            .with_label_values(&[table])
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .rows_inserted
            .with_label_values(&[table])
            .inc_by(rows.len() as u64);
        Ok(())
    }
}
