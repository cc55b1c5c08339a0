//! [`DuckDbStore`]: the [`crate::Store`] in an embedded DuckDB file, for one Flywheel process without
//! servers (`flywheel up`).
//!
//! Tables: `migrations/` (the ClickHouse tables, same names and columns), created or migrated
//! on open. Reads run the queries of [`crate::sql`] in the DuckDB dialect. Writes: [`write`].
//!
//! The duckdb crate is synchronous: every operation runs on tokio's blocking pool, on its own
//! connection cloned from the shared one (DuckDB runs connections of one database in
//! parallel); writes take a lock first, so one transaction writes at a time. DuckDB lets one
//! process at a time open a file for writing (or several read-only): `flywheel export` opens it
//! read-only, and cannot while a writer holds it.

mod ingest;
mod migrate;
mod status;
pub(crate) mod write;

use std::path::Path;
use std::sync::{Arc, Mutex};

use duckdb::types::{TimeUnit, ValueRef};
use duckdb::{Connection, Row};

use flywheel_schema::rows::AlertRow;

use crate::engine::{Engine, Readable};
use crate::model::{CallRow, FeedbackItem, RowBatch, SignalItem};
use crate::sql::{Bind, Dialect, Sql};
use crate::StoreError;

pub use migrate::required_version;

/// How a DuckDB file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// Read and write; creates the file and its tables, or migrates them.
    ReadWrite,
    /// Read only (several processes may); the file must exist with the current schema.
    ReadOnly,
}

/// The store in a DuckDB database.
pub struct DuckDbStore {
    /// Operations clone their connection from this one.
    base: Arc<Mutex<Connection>>,
    /// Held by the one transaction writing.
    pub(crate) writes: Arc<Mutex<()>>,
    read_only: bool,
}

impl std::fmt::Debug for DuckDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckDbStore")
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock_poisoned<T>(_: T) -> StoreError {
    StoreError::Task("a DuckDB operation panicked while holding a lock".into())
}

impl DuckDbStore {
    /// Opens (in `ReadWrite` mode: creates and migrates) the database at `path`, with the
    /// default memory limit of [`crate::StoreConfig`].
    pub fn open(path: &Path, mode: AccessMode) -> Result<Self, StoreError> {
        Self::open_with(path, mode, &crate::StoreConfig::default().memory_limit)
    }

    /// [`Self::open`] with DuckDB's `memory_limit` (e.g. `2GB`).
    pub fn open_with(
        path: &Path,
        mode: AccessMode,
        memory_limit: &str,
    ) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let access = match mode {
            AccessMode::ReadWrite => duckdb::AccessMode::ReadWrite,
            AccessMode::ReadOnly => duckdb::AccessMode::ReadOnly,
        };
        if mode == AccessMode::ReadWrite {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                    path: path.display().to_string(),
                    source: duckdb::Error::ToSqlConversionFailure(Box::new(e)),
                })?;
            }
        }
        let config = duckdb::Config::default()
            .access_mode(access)
            .and_then(|c| c.max_memory(memory_limit))
            .map_err(open_err)?;
        let conn = Connection::open_with_flags(path, config).map_err(|source| {
            if source.to_string().contains("Could not set lock on file") {
                StoreError::InUse {
                    path: path.display().to_string(),
                    source,
                }
            } else {
                open_err(source)
            }
        })?;
        Self::init(conn, mode)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, AccessMode::ReadWrite)
    }

    fn init(mut conn: Connection, mode: AccessMode) -> Result<Self, StoreError> {
        match mode {
            AccessMode::ReadWrite => {
                let applied = migrate::migrate(&mut conn)?;
                if !applied.is_empty() {
                    tracing::info!(?applied, "duckdb schema migrated");
                }
            }
            AccessMode::ReadOnly => {
                let (have, want) = (migrate::current_version(&conn)?, required_version());
                if have < want {
                    return Err(StoreError::Task(format!(
                        "the DuckDB schema is at version {have}, this build needs {want}: \
                         open it once for writing (flywheel migrate) first"
                    )));
                }
            }
        }
        Ok(Self {
            base: Arc::new(Mutex::new(conn)),
            writes: Arc::new(Mutex::new(())),
            read_only: mode == AccessMode::ReadOnly,
        })
    }

    /// Runs `f` on the blocking pool with a fresh connection.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let base = self.base.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = base.lock().map_err(lock_poisoned)?.try_clone()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub(crate) async fn fetch<T: FromRow + Send + 'static>(
        &self,
        sql: Sql,
    ) -> Result<Vec<T>, StoreError> {
        self.run(move |c| {
            let started = std::time::Instant::now();
            let (text, params) = expand(&sql);
            let mut stmt = c.prepare(&text)?;
            let mut rows = stmt.query(duckdb::params_from_iter(params))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(T::from_row(row)?);
            }
            tracing::debug!(
                rows = out.len(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                sql = %sql.text.chars().take(60).collect::<String>(),
                "query"
            );
            Ok(out)
        })
        .await
    }
}

/// The SQL with each list bind spelled as `(?, ?, ...)`, and the flat parameters.
pub(crate) fn expand(sql: &Sql) -> (String, Vec<duckdb::types::Value>) {
    use duckdb::types::Value;
    let mut text = String::with_capacity(sql.text.len());
    let mut params = Vec::with_capacity(sql.binds.len());
    let mut binds = sql.binds.iter();
    for ch in sql.text.chars() {
        if ch != '?' {
            text.push(ch);
            continue;
        }
        match binds.next() {
            Some(Bind::Strs(v)) => {
                text.push('(');
                for (i, s) in v.iter().enumerate() {
                    text.push_str(if i == 0 { "?" } else { ", ?" });
                    params.push(Value::Text(s.clone()));
                }
                text.push(')');
            }
            Some(Bind::Str(s)) => {
                text.push('?');
                params.push(Value::Text(s.clone()));
            }
            Some(Bind::I64(i)) => {
                text.push('?');
                params.push(Value::BigInt(*i));
            }
            Some(Bind::F64(f)) => {
                text.push('?');
                params.push(Value::Double(*f));
            }
            None => text.push('?'),
        }
    }
    (text, params)
}

#[derive(serde::Deserialize)]
struct Entry {
    key: String,
    value: String,
}

/// A map column read as `to_json(map_entries(...))` text, entries in their stored order.
pub(crate) fn json_map(row: &Row<'_>, i: usize) -> Result<Vec<(String, String)>, StoreError> {
    let json: String = row.get(i)?;
    let entries: Vec<Entry> = serde_json::from_str(&json)?;
    Ok(entries.into_iter().map(|e| (e.key, e.value)).collect())
}

/// A `TIMESTAMP_NS` (or coarser) column as Unix nanoseconds.
pub(crate) fn ts(row: &Row<'_>, i: usize) -> Result<i64, StoreError> {
    match row.get_ref(i)? {
        ValueRef::Timestamp(unit, v) => Ok(match unit {
            TimeUnit::Nanosecond => v,
            TimeUnit::Microsecond => v * 1_000,
            TimeUnit::Millisecond => v * 1_000_000,
            TimeUnit::Second => v * 1_000_000_000,
        }),
        other => Err(StoreError::Decode {
            column: i.to_string(),
            value: format!("{other:?}"),
        }),
    }
}

/// A row type read by position, in the column order of [`crate::sql`].
pub(crate) trait FromRow: Sized {
    fn from_row(row: &Row<'_>) -> Result<Self, StoreError>;
}

impl FromRow for CallRow {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            timestamp: ts(r, 0)?,
            trace_id: r.get(1)?,
            span_id: r.get(2)?,
            model: r.get(3)?,
            conversation_id: r.get(4)?,
            user_id: r.get(5)?,
            input_messages: r.get(6)?,
            output_messages: r.get(7)?,
        })
    }
}

impl FromRow for FeedbackItem {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.get(0)?,
            timestamp: ts(r, 1)?,
            trace_id: r.get(2)?,
            span_id: r.get(3)?,
            conversation_id: r.get(4)?,
            name: r.get(5)?,
            value_type: r.get(6)?,
            score: r.get(7)?,
            label: r.get(8)?,
            text: r.get(9)?,
            comment: r.get(10)?,
            source: r.get(11)?,
        })
    }
}

impl FromRow for SignalItem {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.get(0)?,
            timestamp: ts(r, 1)?,
            trace_id: r.get(2)?,
            span_id: r.get(3)?,
            conversation_id: r.get(4)?,
            signal_type: r.get(5)?,
            source: r.get(6)?,
            discarded_trace_id: r.get(7)?,
            discarded_span_id: r.get(8)?,
            tokens_received: r.get(9)?,
            ms_since_start: r.get(10)?,
            edit_ratio: r.get(11)?,
            edited_text: r.get(12)?,
            text: r.get(13)?,
            turn_count: r.get(14)?,
        })
    }
}

#[async_trait::async_trait]
impl Engine for DuckDbStore {
    const DIALECT: Dialect = Dialect::DuckDb;
    const NAME: &'static str = "duckdb";

    async fn probe(&self) -> Result<(), StoreError> {
        self.run(|c| Ok(c.execute_batch("SELECT 1")?)).await
    }

    async fn rows<T: Readable>(&self, sql: Sql) -> Result<Vec<T>, StoreError> {
        self.fetch(sql).await
    }

    async fn count(&self, sql: Sql) -> Result<u64, StoreError> {
        self.run(move |c| {
            let (text, params) = expand(&sql);
            let n: i64 = c.query_row(&text, duckdb::params_from_iter(params), |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// One transaction: the token first (a stored token ends it: nothing else is written),
    /// then every table.
    async fn insert_batch(&self, batch: &RowBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = batch.clone();
        let writes = self.writes.clone();
        self.run(move |c| {
            let _one_writer = writes.lock().map_err(lock_poisoned)?;
            let tx = c.transaction()?;
            let fresh = tx.execute(
                "INSERT INTO insert_tokens (token) VALUES (?) ON CONFLICT DO NOTHING",
                [&batch.token],
            )?;
            if fresh == 0 {
                tracing::debug!(token = %batch.token, "batch already stored");
                return Ok(());
            }
            write::otel_traces(&tx, &batch.otel_traces)?;
            write::llm_calls(&tx, &batch.llm_calls)?;
            write::feedback(&tx, &batch.feedback)?;
            write::signals(&tx, &batch.signals)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// One transaction under the store's write lock.
    async fn append_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = rows.to_vec();
        let writes = self.writes.clone();
        self.run(move |c| {
            let _one_writer = writes.lock().map_err(lock_poisoned)?;
            let tx = c.transaction()?;
            write::alerts(&tx, &rows)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests;
