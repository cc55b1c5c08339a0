//! [`IngestStore`] on ClickHouse: the ingester's statements of adr/0004, unchanged.

use std::time::Instant;

use flywheel_pricing::Price;
use flywheel_schema::rows::{IngestBatchRow, SignalRow};

use crate::derive::{Rule, Window};
use crate::ingest::{IngestStore, TableWrite};
use crate::reprice;
use crate::sql::Dialect;
use crate::{ClickHouseStore, RowBatch, StoreError};

#[async_trait::async_trait]
impl IngestStore for ClickHouseStore {
    /// The marker first (a plain insert: the ReplacingMergeTree keeps the highest
    /// `first_offset`), then every table under the token; deduplication is per table, so one
    /// token serves them all and a table stored by an earlier attempt is dropped.
    async fn ingest(
        &self,
        marker: &IngestBatchRow,
        batch: &RowBatch,
    ) -> Result<Vec<TableWrite>, StoreError> {
        let mut insert = self
            .client()
            .insert::<IngestBatchRow>("ingest_batches")
            .await?;
        insert.write(marker).await?;
        insert.end().await?;
        let token = batch.token.as_str();
        let mut written = Vec::new();
        macro_rules! table {
            ($name:literal, $rows:expr) => {
                if !$rows.is_empty() {
                    let started = Instant::now();
                    self.insert_table($name, &$rows, token).await?;
                    written.push(TableWrite {
                        table: $name,
                        rows: $rows.len(),
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
            };
        }
        table!("otel_traces", batch.otel_traces);
        table!("llm_calls", batch.llm_calls);
        table!("feedback", batch.feedback);
        table!("signals", batch.signals);
        Ok(written)
    }

    async fn last_marker(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(self
            .client()
            .query(
                "SELECT first_offset, last_offset FROM ingest_batches FINAL \
                 WHERE consumer_group = ? AND topic = ? AND partition = ? \
                 ORDER BY first_offset DESC LIMIT 1",
            )
            .bind(group)
            .bind(topic)
            .bind(partition)
            .fetch_optional::<(i64, i64)>()
            .await?)
    }

    async fn derive(&self, rule: Rule, window: &Window) -> Result<Vec<SignalRow>, StoreError> {
        Ok(self
            .client()
            .query(&rule.new_rows(Dialect::ClickHouse, window))
            .fetch_all()
            .await?)
    }

    async fn reprice(&self, prices: &[(String, Price)], since_ns: i64) -> Result<(), StoreError> {
        match reprice::statement(Dialect::ClickHouse, prices, since_ns) {
            Some(sql) => Ok(self.query(&sql).execute().await?),
            None => Ok(()),
        }
    }
}
