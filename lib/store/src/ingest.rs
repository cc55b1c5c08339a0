//! The ingester's side of the store ([`IngestStore`]): a batch of rows stored under one
//! idempotency token together with its batch marker (`ingest_batches`, adr/0004), the last
//! marker of a partition, and the derived-signal rules ([`crate::derive`]).
//!
//! - ClickHouse: the marker row, then each table with `insert_deduplication_token` (exactly
//!   the ingester's sequence of adr/0004; a retry repeats it and ClickHouse drops what it
//!   stored already).
//! - DuckDB: token, marker and rows in one transaction: a replayed batch is a no-op and a
//!   marker never exists without its rows.

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
}

/// [`crate::open`], as the ingester's store (which is also the read path's).
pub fn open_ingest(
    config: &StoreConfig,
    clickhouse: &ClickHouseConfig,
    mode: AccessMode,
) -> Result<Arc<dyn IngestStore>, StoreError> {
    Ok(crate::open_all(config, clickhouse, mode)?.ingest)
}
