//! # Flywheel store
//!
//! The analytical store behind Flywheel's read path, as one trait, [`Store`], with two
//! implementations that pass the same test suites (tests/datasets.rs, tests/datasets_api.rs):
//!
//! - [`ClickHouseStore`]: the ClickHouse server and the schema of `lib/schema` (the
//!   deployment at scale);
//! - [`DuckDbStore`]: an embedded DuckDB file with the same tables and column names
//!   (`src/duckdb/migrations/`), for one process without servers.
//!
//! The read queries are written once ([`sql`], two dialects); the write path stores a
//! [`RowBatch`] idempotently under a token, with ClickHouse's ReplacingMergeTree semantics
//! (latest `received_at` per feedback or signal id wins). [`StoreConfig`] (section `[store]`)
//! picks the backend; [`open`] builds it. Decisions: adr/0009-embedded-store.md.

mod clickhouse;
mod clickhouse_ingest;
pub mod config;
pub mod derive;
pub mod detector;
mod duckdb;
mod engine;
pub mod ingest;
pub mod model;
pub mod reprice;
pub mod sql;
pub mod status;

use std::sync::Arc;

use flywheel_schema::ClickHouseConfig;

use crate::engine::Engine;

pub use crate::clickhouse::ClickHouseStore;
pub use crate::config::{Backend, StoreConfig};
pub use crate::detector::DetectorStore;
pub use crate::duckdb::{required_version as duckdb_required_version, AccessMode, DuckDbStore};
pub use crate::ingest::{open_ingest, Expired, IngestStore, TableWrite};
pub use crate::model::{
    CallFilter, CallRow, FeedbackFilter, FeedbackItem, FeedbackValue, Ids, PageKey, RowBatch,
    SignalItem,
};
pub use crate::status::StatusStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] ::clickhouse::error::Error),
    #[error("duckdb: {0}")]
    DuckDb(#[from] ::duckdb::Error),
    #[error("duckdb {path}: {source}")]
    Open {
        path: String,
        source: ::duckdb::Error,
    },
    /// Another process holds the DuckDB file (one writer process per file).
    #[error(
        "duckdb {path} is in use by another process (a running `flywheel up` or `all`?): \
         a DuckDB file has one writer process, stop that one first ({source})"
    )]
    InUse {
        path: String,
        source: ::duckdb::Error,
    },
    #[error("duckdb: unexpected value in column {column}: {value}")]
    Decode { column: String, value: String },
    #[error("encoding a row: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// The store cannot be reached now; retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::ClickHouse(::clickhouse::error::Error::Network(_))
        )
    }
}

/// The analytical store: the reads of dataset export and the writes that load its tables.
/// Every read is restricted to one project and sees deduplicated rows.
#[async_trait::async_trait]
pub trait Store: StatusStore + Send + Sync {
    /// `clickhouse` or `duckdb` (readiness checks, logs).
    fn backend(&self) -> &'static str;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// One page of calls after `after`, in `(model, timestamp, trace_id, span_id)` order.
    async fn calls_page(
        &self,
        filter: &CallFilter,
        after: Option<&PageKey>,
        limit: u64,
    ) -> Result<Vec<CallRow>, StoreError>;

    /// How many calls match `filter`.
    async fn count_calls(&self, filter: &CallFilter) -> Result<u64, StoreError>;

    /// Calls matching `filter` with these trace ids, in `(timestamp, trace_id, span_id)` order.
    async fn calls_of_traces(
        &self,
        filter: &CallFilter,
        traces: &Ids,
    ) -> Result<Vec<CallRow>, StoreError>;

    /// Calls matching `filter` in these conversations, in `(timestamp, trace_id, span_id)`
    /// order.
    async fn calls_of_conversations(
        &self,
        filter: &CallFilter,
        conversations: &Ids,
    ) -> Result<Vec<CallRow>, StoreError>;

    /// Feedback of `project` on these traces, or on these conversations without a trace, in
    /// `(timestamp, id)` order.
    async fn feedback_for(
        &self,
        project: &str,
        traces: &Ids,
        conversations: &Ids,
    ) -> Result<Vec<FeedbackItem>, StoreError>;

    /// Signals of `project` on (or discarding an answer of) these traces, or on these
    /// conversations without a trace, in `(timestamp, id)` order.
    async fn signals_for(
        &self,
        project: &str,
        traces: &Ids,
        conversations: &Ids,
    ) -> Result<Vec<SignalItem>, StoreError>;

    /// Signals of one type of `project`, in `(timestamp, id)` order.
    async fn signals_of_type(
        &self,
        project: &str,
        signal_type: &str,
    ) -> Result<Vec<SignalItem>, StoreError>;

    /// Feedback named `name` on a trace with a score of at least `positive_min` or at most
    /// `negative_max`, in `(timestamp, id)` order.
    async fn rating_feedback(
        &self,
        project: &str,
        name: &str,
        positive_min: f64,
        negative_max: f64,
    ) -> Result<Vec<FeedbackItem>, StoreError>;

    /// Stores `batch` (see [`RowBatch`]): a batch whose token was stored before is a no-op.
    async fn insert(&self, batch: &RowBatch) -> Result<(), StoreError>;
}

/// Both backends: the shared SQL of [`sql`] in the engine's dialect.
#[async_trait::async_trait]
impl<E: Engine> Store for E {
    fn backend(&self) -> &'static str {
        E::NAME
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.probe().await
    }

    async fn calls_page(
        &self,
        filter: &CallFilter,
        after: Option<&PageKey>,
        limit: u64,
    ) -> Result<Vec<CallRow>, StoreError> {
        self.rows(sql::calls_page(E::DIALECT, filter, after, limit))
            .await
    }

    async fn count_calls(&self, filter: &CallFilter) -> Result<u64, StoreError> {
        self.count(sql::count_calls(E::DIALECT, filter)).await
    }

    async fn calls_of_traces(
        &self,
        filter: &CallFilter,
        traces: &Ids,
    ) -> Result<Vec<CallRow>, StoreError> {
        self.rows(sql::calls_of_traces(E::DIALECT, filter, traces))
            .await
    }

    async fn calls_of_conversations(
        &self,
        filter: &CallFilter,
        conversations: &Ids,
    ) -> Result<Vec<CallRow>, StoreError> {
        self.rows(sql::calls_of_conversations(
            E::DIALECT,
            filter,
            conversations,
        ))
        .await
    }

    async fn feedback_for(
        &self,
        project: &str,
        traces: &Ids,
        conversations: &Ids,
    ) -> Result<Vec<FeedbackItem>, StoreError> {
        self.rows(sql::feedback_for(
            E::DIALECT,
            project,
            traces,
            conversations,
        ))
        .await
    }

    async fn signals_for(
        &self,
        project: &str,
        traces: &Ids,
        conversations: &Ids,
    ) -> Result<Vec<SignalItem>, StoreError> {
        self.rows(sql::signals_for(E::DIALECT, project, traces, conversations))
            .await
    }

    async fn signals_of_type(
        &self,
        project: &str,
        signal_type: &str,
    ) -> Result<Vec<SignalItem>, StoreError> {
        self.rows(sql::signals_of_type(E::DIALECT, project, signal_type))
            .await
    }

    async fn rating_feedback(
        &self,
        project: &str,
        name: &str,
        positive_min: f64,
        negative_max: f64,
    ) -> Result<Vec<FeedbackItem>, StoreError> {
        let sql = sql::rating_feedback(E::DIALECT, project, name, positive_min, negative_max);
        self.rows(sql).await
    }

    async fn insert(&self, batch: &RowBatch) -> Result<(), StoreError> {
        self.insert_batch(batch).await
    }
}

/// The store `config` selects: ClickHouse (with `clickhouse`) or the DuckDB file, opened
/// (and created or migrated) in `mode`.
pub fn open(
    config: &StoreConfig,
    clickhouse: &ClickHouseConfig,
    mode: AccessMode,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open_all(config, clickhouse, mode)?.store)
}

/// One store seen through each service's trait: `flywheel all` / `up` open it once, since a
/// DuckDB file has one writer per process.
#[derive(Clone)]
pub struct Stores {
    pub store: Arc<dyn Store>,
    pub ingest: Arc<dyn IngestStore>,
    pub detector: Arc<dyn DetectorStore>,
}

/// Opens the configured store once (DuckDB: created and migrated when missing).
pub fn open_all(
    config: &StoreConfig,
    clickhouse: &ClickHouseConfig,
    mode: AccessMode,
) -> Result<Stores, StoreError> {
    fn of<S: IngestStore + DetectorStore + 'static>(s: Arc<S>) -> Stores {
        Stores {
            store: s.clone(),
            ingest: s.clone(),
            detector: s,
        }
    }
    Ok(match config.backend {
        Backend::ClickHouse => of(Arc::new(ClickHouseStore::new(clickhouse.client()))),
        Backend::DuckDb => of(Arc::new(DuckDbStore::open_with(
            &config.path,
            mode,
            &config.memory_limit,
        )?)),
    })
}
