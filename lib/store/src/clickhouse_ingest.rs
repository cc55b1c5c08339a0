//! [`IngestStore`] on ClickHouse: the ingester's statements of adr/0004, unchanged.

use std::collections::BTreeMap;
use std::time::Instant;

use flywheel_pricing::Price;
use flywheel_schema::rows::{IngestBatchRow, SignalRow};

use crate::derive::{Rule, Window};
use crate::ingest::{Expired, IngestStore, TableWrite};
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

    /// Nothing to do: the tables' `TTL` clause (from `clickhouse.ttl_days` at migration time)
    /// expires rows in ClickHouse's background merges, whole daily parts at a time
    /// (`ttl_only_drop_parts`). A `ttl_days` changed after migration is not applied here.
    async fn expire(
        &self,
        ttl_days: &BTreeMap<String, u32>,
        now_ns: i64,
    ) -> Result<Vec<Expired>, StoreError> {
        crate::ingest::expiry_cutoffs(ttl_days, now_ns)?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table TTL expires rows; `expire` sends nothing (the client points at a closed port,
    /// so any request would fail) and reports nothing.
    #[tokio::test]
    async fn expire_is_left_to_the_table_ttl() {
        let store =
            ClickHouseStore::new(clickhouse::Client::default().with_url("http://127.0.0.1:9"));
        let ttl: BTreeMap<String, u32> = [("llm_calls".to_string(), 30)].into();
        assert_eq!(
            store.expire(&ttl, 1_717_200_000_000_000_000).await.unwrap(),
            vec![]
        );
        assert!(store.expire(&BTreeMap::new(), 0).await.unwrap().is_empty());
        let unknown: BTreeMap<String, u32> = [("alerts".to_string(), 1)].into();
        assert!(store.expire(&unknown, 0).await.is_err());
    }
}
