//! [`ClickHouseStore`]: the [`crate::Store`] on a ClickHouse server with the schema of `lib/schema`.
//! Reads run the queries of [`crate::sql`] in the ClickHouse dialect (`FINAL`); writes insert
//! each table with `insert_deduplication_token`, as the ingester does (adr/0004).

use clickhouse::{Client, Row};
use flywheel_schema::rows::AlertRow;
use serde::Serialize;

use crate::engine::{Engine, Readable};
use crate::model::RowBatch;
use crate::sql::{Bind, Dialect, Sql};
use crate::StoreError;

/// The store on a ClickHouse server.
#[derive(Clone)]
pub struct ClickHouseStore {
    client: Client,
}

impl ClickHouseStore {
    /// A store using `client` (its URL, credentials and database).
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn query(&self, sql: &Sql) -> clickhouse::query::Query {
        let mut q = self.client.query(&sql.text);
        for b in &sql.binds {
            q = match b {
                Bind::Str(s) => q.bind(s.as_str()),
                Bind::I64(i) => q.bind(*i),
                Bind::F64(f) => q.bind(*f),
                Bind::Strs(v) => q.bind(v.as_slice()),
            };
        }
        q
    }

    pub(crate) async fn fetch<T>(&self, sql: Sql) -> Result<Vec<T>, StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let started = std::time::Instant::now();
        let rows = self.query(&sql).fetch_all::<T>().await?;
        tracing::debug!(
            rows = rows.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            sql = %sql.text.chars().take(60).collect::<String>(),
            "query"
        );
        Ok(rows)
    }

    /// Inserts `rows` into `table` under the deduplication `token` (skipped when empty).
    pub(crate) async fn insert_table<T>(
        &self,
        table: &str,
        rows: &[T],
        token: &str,
    ) -> Result<(), StoreError>
    where
        T: Row + Serialize + for<'a> Row<Value<'a> = T>,
    {
        if rows.is_empty() {
            return Ok(());
        }
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
        Ok(())
    }
}

#[async_trait::async_trait]
impl Engine for ClickHouseStore {
    const DIALECT: Dialect = Dialect::ClickHouse;
    const NAME: &'static str = "clickhouse";

    async fn probe(&self) -> Result<(), StoreError> {
        self.client.query("SELECT 1").fetch_one::<u8>().await?;
        Ok(())
    }

    async fn rows<T: Readable>(&self, sql: Sql) -> Result<Vec<T>, StoreError> {
        self.fetch(sql).await
    }

    async fn count(&self, sql: Sql) -> Result<u64, StoreError> {
        Ok(self.query(&sql).fetch_one::<u64>().await?)
    }

    /// Deduplication is per table, so one token serves every table of the batch; a table
    /// already inserted by an earlier attempt is dropped by ClickHouse (within
    /// `non_replicated_deduplication_window` inserts).
    async fn insert_batch(&self, batch: &RowBatch) -> Result<(), StoreError> {
        let token = batch.token.as_str();
        self.insert_table("otel_traces", &batch.otel_traces, token)
            .await?;
        self.insert_table("llm_calls", &batch.llm_calls, token)
            .await?;
        self.insert_table("feedback", &batch.feedback, token)
            .await?;
        self.insert_table("signals", &batch.signals, token).await
    }

    /// One insert, no deduplication token: the detector's history is events, and each row
    /// carries its own `sent_at`.
    async fn append_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<AlertRow>("alerts").await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}
