//! [`ClickHouseStore`]: the [`Store`] on a ClickHouse server with the schema of `lib/schema`.
//! Reads run the queries of [`crate::sql`] in the ClickHouse dialect (`FINAL`); writes insert
//! each table with `insert_deduplication_token`, as the ingester does (adr/0004).

mod status;

use clickhouse::{Client, Row};
use serde::Serialize;

use crate::model::{CallFilter, CallRow, FeedbackItem, Ids, PageKey, RowBatch, SignalItem};
use crate::sql::{self, Bind, Dialect, Sql};
use crate::{Store, StoreError};

const D: Dialect = Dialect::ClickHouse;

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
impl Store for ClickHouseStore {
    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client.query("SELECT 1").fetch_one::<u8>().await?;
        Ok(())
    }

    async fn calls_page(
        &self,
        filter: &CallFilter,
        after: Option<&PageKey>,
        limit: u64,
    ) -> Result<Vec<CallRow>, StoreError> {
        self.fetch(sql::calls_page(D, filter, after, limit)).await
    }

    async fn count_calls(&self, filter: &CallFilter) -> Result<u64, StoreError> {
        Ok(self
            .query(&sql::count_calls(D, filter))
            .fetch_one::<u64>()
            .await?)
    }

    async fn calls_of_traces(
        &self,
        filter: &CallFilter,
        traces: &Ids,
    ) -> Result<Vec<CallRow>, StoreError> {
        self.fetch(sql::calls_of_traces(D, filter, traces)).await
    }

    async fn calls_of_conversations(
        &self,
        filter: &CallFilter,
        conversations: &Ids,
    ) -> Result<Vec<CallRow>, StoreError> {
        self.fetch(sql::calls_of_conversations(D, filter, conversations))
            .await
    }

    async fn feedback_for(
        &self,
        project: &str,
        traces: &Ids,
        conversations: &Ids,
    ) -> Result<Vec<FeedbackItem>, StoreError> {
        self.fetch(sql::feedback_for(D, project, traces, conversations))
            .await
    }

    async fn signals_for(
        &self,
        project: &str,
        traces: &Ids,
        conversations: &Ids,
    ) -> Result<Vec<SignalItem>, StoreError> {
        self.fetch(sql::signals_for(D, project, traces, conversations))
            .await
    }

    async fn signals_of_type(
        &self,
        project: &str,
        signal_type: &str,
    ) -> Result<Vec<SignalItem>, StoreError> {
        self.fetch(sql::signals_of_type(D, project, signal_type))
            .await
    }

    async fn rating_feedback(
        &self,
        project: &str,
        name: &str,
        positive_min: f64,
        negative_max: f64,
    ) -> Result<Vec<FeedbackItem>, StoreError> {
        self.fetch(sql::rating_feedback(
            D,
            project,
            name,
            positive_min,
            negative_max,
        ))
        .await
    }

    /// Deduplication is per table, so one token serves every table of the batch; a table
    /// already inserted by an earlier attempt is dropped by ClickHouse (within
    /// `non_replicated_deduplication_window` inserts).
    async fn insert(&self, batch: &RowBatch) -> Result<(), StoreError> {
        let token = batch.token.as_str();
        self.insert_table("otel_traces", &batch.otel_traces, token)
            .await?;
        self.insert_table("llm_calls", &batch.llm_calls, token)
            .await?;
        self.insert_table("feedback", &batch.feedback, token)
            .await?;
        self.insert_table("signals", &batch.signals, token).await
    }
}
