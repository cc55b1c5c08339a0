//! What differs between the backends when they answer the shared questions: how a query runs,
//! how its rows are decoded and how rows are appended. [`Engine`] is that seam; the public
//! traits' reads ([`crate::Store`], [`crate::StatusStore`], [`crate::DetectorStore`]) are
//! implemented once over it, so each question is one function for both backends: the SQL of
//! [`crate::sql`], [`crate::status::sql`] and [`crate::detector::sql`] in the engine's
//! [`Dialect`], decoded into the same row types (adr/0009).

use flywheel_schema::rows::AlertRow;

use crate::model::RowBatch;
use crate::sql::{Dialect, Sql};
use crate::StoreError;

/// A row type both backends read: by column name from ClickHouse (`clickhouse::Row` +
/// serde), by position from DuckDB ([`crate::duckdb::FromRow`], the column order of the SQL).
pub(crate) trait Readable:
    clickhouse::RowOwned + clickhouse::RowRead + crate::duckdb::FromRow + Send + 'static
{
}

impl<T> Readable for T where
    T: clickhouse::RowOwned + clickhouse::RowRead + crate::duckdb::FromRow + Send + 'static
{
}

/// One backend: its dialect and its few primitive operations.
#[async_trait::async_trait]
pub(crate) trait Engine: Send + Sync + 'static {
    /// The dialect of the shared SQL this engine runs.
    const DIALECT: Dialect;
    /// `clickhouse` or `duckdb`.
    const NAME: &'static str;

    /// Whether the backend answers.
    async fn probe(&self) -> Result<(), StoreError>;

    /// Every row of `sql`, in its order.
    async fn rows<T: Readable>(&self, sql: Sql) -> Result<Vec<T>, StoreError>;

    /// The single count `sql` selects.
    async fn count(&self, sql: Sql) -> Result<u64, StoreError>;

    /// Stores `batch` under its token (a token stored before stores nothing).
    async fn insert_batch(&self, batch: &RowBatch) -> Result<(), StoreError>;

    /// Appends alert notifications to `alerts` (events: never replaced, no token).
    async fn append_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError>;
}
