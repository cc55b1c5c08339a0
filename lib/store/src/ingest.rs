//! The ingester's side of the store ([`IngestStore`]): a batch of rows stored under one
//! idempotency token together with its batch marker (`ingest_batches`, adr/0004), the last
//! marker of a partition, and the derived-signal rules ([`crate::derive`]).
//!
//! - ClickHouse: the marker row, then each table with `insert_deduplication_token` (exactly
//!   the ingester's sequence of adr/0004; a retry repeats it and ClickHouse drops what it
//!   stored already).
//! - DuckDB: token, marker and rows in one transaction: a replayed batch is a no-op and a
//!   marker never exists without its rows.
//!
//! Retention ([`IngestStore::expire`]): ClickHouse's table TTL, DuckDB's periodic delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use flywheel_pricing::Price;
use flywheel_schema::rows::{IngestBatchRow, SignalRow};
use flywheel_schema::ClickHouseConfig;

use crate::derive::{Rule, Window};
use crate::StoreError;
use crate::{AccessMode, RowBatch, Store, StoreConfig};

/// One table written by [`IngestStore::ingest`]: how many rows and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct TableWrite {
    pub table: &'static str,
    pub rows: usize,
    pub seconds: f64,
}

/// Rows deleted from one table by [`IngestStore::expire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub table: &'static str,
    pub rows: usize,
}

/// Nanoseconds in a day.
const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// What [`IngestStore::expire`] deletes from one table.
pub(crate) struct Cutoff {
    pub table: &'static str,
    /// The time column of the table's TTL.
    pub column: &'static str,
    /// Rows with `column` before this (Unix ns) expire; `None` when it is before the
    /// representable range (nothing is that old).
    pub before_ns: Option<i64>,
}

/// The [`Cutoff`] of each table of `ttl_days`, in [`flywheel_schema::migrate::TTL_COLUMNS`]
/// order. An unknown table is an error (the configuration validation refuses it first).
pub(crate) fn expiry_cutoffs(
    ttl_days: &BTreeMap<String, u32>,
    now_ns: i64,
) -> Result<Vec<Cutoff>, StoreError> {
    use flywheel_schema::migrate::TTL_COLUMNS;
    if let Some(unknown) = ttl_days
        .keys()
        .find(|t| !TTL_COLUMNS.iter().any(|(table, _)| table == t))
    {
        return Err(StoreError::Task(format!(
            "no retention for table {unknown:?}: clickhouse.ttl_days applies to {}",
            flywheel_schema::migrate::TTL_TABLES.join(", ")
        )));
    }
    Ok(TTL_COLUMNS
        .iter()
        .filter_map(|&(table, column)| {
            let days = *ttl_days.get(table)?;
            let before_ns = i64::from(days)
                .checked_mul(DAY_NS)
                .and_then(|age| now_ns.checked_sub(age));
            Some(Cutoff {
                table,
                column,
                before_ns,
            })
        })
        .collect())
}

/// What the ingester writes and reads. `Arc<dyn IngestStore>` coerces to `Arc<dyn Store>`, so
/// one handle serves the ingester and the read path (one DuckDB file, one process).
#[async_trait::async_trait]
pub trait IngestStore: Store {
    /// Records `marker` (the partition's latest batch: the row with the highest
    /// `first_offset` wins), then stores `batch` under its token. Storing a token again stores
    /// nothing. Returns the tables written, in order (without the marker, and without empty
    /// tables).
    async fn ingest(
        &self,
        marker: &IngestBatchRow,
        batch: &RowBatch,
    ) -> Result<Vec<TableWrite>, StoreError>;

    /// The `(first_offset, last_offset)` of the partition's latest marker, if any.
    async fn last_marker(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, StoreError>;

    /// The rows `rule` derives over `window` that are not stored yet as they are (same id,
    /// time and turn count), in `(project, id)` order.
    async fn derive(&self, rule: Rule, window: &Window) -> Result<Vec<SignalRow>, StoreError>;

    /// Rewrites `cost_usd` and `price_version` of the calls since `since_ns` (Unix ns) of every
    /// model of `prices` from its price (`flywheel reprice`, [`crate::reprice`]); done when it
    /// returns (ClickHouse: a synchronous mutation; DuckDB: one transaction).
    async fn reprice(&self, prices: &[(String, Price)], since_ns: i64) -> Result<(), StoreError>;

    /// Data retention (`clickhouse.ttl_days`, on both backends): deletes the rows of each table
    /// of `ttl_days` whose time column ([`flywheel_schema::migrate::TTL_COLUMNS`]) is more than
    /// that many days before `now_ns` (Unix ns). Returns the rows deleted per table.
    ///
    /// - ClickHouse: nothing to do, returns nothing. The tables' `TTL` clause (rendered from
    ///   `clickhouse.ttl_days` at migration time, with `ttl_only_drop_parts`) expires rows in
    ///   the background.
    /// - DuckDB: one `DELETE` per configured table under the write lock, then a `CHECKPOINT`
    ///   so the file reuses the space; every configured table is returned, also with 0 rows.
    ///   Batch tokens (`insert_tokens`) older than a week go too, whatever `ttl_days` says
    ///   (listed when any went).
    async fn expire(
        &self,
        ttl_days: &BTreeMap<String, u32>,
        now_ns: i64,
    ) -> Result<Vec<Expired>, StoreError>;
}

/// [`crate::open`], as the ingester's store (which is also the read path's).
pub fn open_ingest(
    config: &StoreConfig,
    clickhouse: &ClickHouseConfig,
    mode: AccessMode,
) -> Result<Arc<dyn IngestStore>, StoreError> {
    Ok(crate::open_all(config, clickhouse, mode)?.ingest)
}
