//! [`DetectorStore`] on DuckDB: the same questions over tables that hold one row per key
//! already (no `FINAL`); alert rows appended in one transaction under the store's write lock.
//! Maps are read as JSON entries, timestamps as the store reads them (Unix nanoseconds).

use duckdb::types::ValueRef;
use duckdb::Row;
use flywheel_schema::rows::AlertRow;
use serde::Deserialize;

use super::{
    by_fingerprint, distinct_keys, events_in_order, spend_in_order, sql, CallKey, DetectorStore,
    FiringAlert, SpendQuery, SpendRow, StoredCall, StoredEvent, StoredItem,
};
use crate::duckdb::{lock_poisoned, ts, write, FromRow};
use crate::model::Ids;
use crate::sql::{Dialect, Sql};
use crate::{DuckDbStore, StoreError};

const D: Dialect = Dialect::DuckDb;

#[derive(Deserialize)]
struct Entry {
    key: String,
    value: String,
}

/// A map column read as `to_json(map_entries(...))`, entries in their stored order.
fn map(row: &Row<'_>, i: usize) -> Result<Vec<(String, String)>, StoreError> {
    let json: String = row.get(i)?;
    let entries: Vec<Entry> = serde_json::from_str(&json)?;
    Ok(entries.into_iter().map(|e| (e.key, e.value)).collect())
}

/// A nullable timestamp column as Unix nanoseconds.
fn opt_ts(row: &Row<'_>, i: usize) -> Result<Option<i64>, StoreError> {
    match row.get_ref(i)? {
        ValueRef::Null => Ok(None),
        _ => ts(row, i).map(Some),
    }
}

struct LastState {
    alert: FiringAlert,
    state: String,
}

impl FromRow for LastState {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            alert: FiringAlert {
                fingerprint: r.get(0)?,
                labels: map(r, 1)?,
                annotations: map(r, 2)?,
                starts_at: ts(r, 3)?,
                event_time: ts(r, 4)?,
            },
            state: r.get(5)?,
        })
    }
}

impl FromRow for AlertRow {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            fingerprint: r.get(0)?,
            alertname: r.get(1)?,
            slo: r.get(2)?,
            project: r.get(3)?,
            severity: r.get(4)?,
            state: r.get(5)?,
            announced: r.get(6)?,
            labels: map(r, 7)?,
            annotations: map(r, 8)?,
            starts_at: ts(r, 9)?,
            ends_at: opt_ts(r, 10)?,
            long_burn_rate: r.get(11)?,
            short_burn_rate: r.get(12)?,
            sli: r.get(13)?,
            budget_remaining: r.get(14)?,
            event_time: ts(r, 15)?,
            sent_at: ts(r, 16)?,
        })
    }
}

impl FromRow for StoredCall {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            ts: r.get(0)?,
            project: r.get(1)?,
            service: r.get(2)?,
            model: r.get(3)?,
            operation: r.get(4)?,
            status_code: r.get(5)?,
            duration_ns: r.get(6)?,
            ttft_ms: r.get(7)?,
            tpot_ms: r.get(8)?,
            cost_usd: r.get(9)?,
            tokens: r.get(10)?,
            trace_id: r.get(11)?,
            span_id: r.get(12)?,
            conversation_id: r.get(13)?,
            user_id: r.get(14)?,
        })
    }
}

impl FromRow for StoredItem {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            ts: r.get(0)?,
            project: r.get(1)?,
            trace_id: r.get(2)?,
            span_id: r.get(3)?,
            conversation_id: r.get(4)?,
            name: r.get(5)?,
            value_type: r.get(6)?,
            score: r.get(7)?,
            label: r.get(8)?,
        })
    }
}

impl FromRow for CallKey {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            project: r.get(0)?,
            service: r.get(1)?,
            model: r.get(2)?,
            operation: r.get(3)?,
            trace_id: r.get(4)?,
            span_id: r.get(5)?,
            conversation_id: r.get(6)?,
        })
    }
}

impl FromRow for SpendRow {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            policy: r.get(0)?,
            project: r.get(1)?,
            k_service: r.get(2)?,
            k_model: r.get(3)?,
            k_operation: r.get(4)?,
            k_user: r.get(5)?,
            usd: r.get(6)?,
            calls: r.get(7)?,
        })
    }
}

fn text(sql: &'static str) -> Sql {
    Sql {
        text: sql.to_string(),
        binds: Vec::new(),
    }
}

#[async_trait::async_trait]
impl DetectorStore for DuckDbStore {
    fn backend(&self) -> &'static str {
        "duckdb"
    }

    async fn write_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError> {
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

    async fn firing_alerts(&self) -> Result<Vec<FiringAlert>, StoreError> {
        let rows: Vec<LastState> = self.fetch(text(sql::firing(D))).await?;
        Ok(by_fingerprint(
            rows.into_iter()
                .filter(|r| r.state == "firing")
                .map(|r| r.alert)
                .collect(),
        ))
    }

    async fn recent_alerts(&self, project: &str, limit: u64) -> Result<Vec<AlertRow>, StoreError> {
        self.fetch(sql::recent(D, project, limit)).await
    }

    async fn stored_events(
        &self,
        from_ms: i64,
        cut_ns: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let [calls, feedback, signals] = sql::stored_events(D, from_ms, cut_ns);
        let calls: Vec<StoredCall> = self.fetch(calls).await?;
        let feedback: Vec<StoredItem> = self.fetch(feedback).await?;
        let signals: Vec<StoredItem> = self.fetch(signals).await?;
        Ok(events_in_order(calls, feedback, signals))
    }

    async fn lookup_keys(
        &self,
        traces: &Ids,
        conversations: &Ids,
    ) -> Result<Vec<CallKey>, StoreError> {
        let Some(sql) = sql::lookup_keys(traces, conversations) else {
            return Ok(Vec::new());
        };
        Ok(distinct_keys(self.fetch(sql).await?))
    }

    async fn period_spend(
        &self,
        queries: &[SpendQuery],
        replay_from_ms: i64,
        cut_ns: i64,
        limit: u64,
    ) -> Result<Vec<SpendRow>, StoreError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let sql = sql::period_spend(D, queries, replay_from_ms, cut_ns, limit);
        Ok(spend_in_order(self.fetch(sql).await?))
    }
}
