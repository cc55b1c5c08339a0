//! The detector's rows read from DuckDB by position, for [`super::DetectorStore`]'s one
//! implementation: maps read as JSON entries, timestamps as the store reads them (Unix
//! nanoseconds).

use duckdb::types::ValueRef;
use duckdb::Row;
use flywheel_schema::rows::AlertRow;

use super::{CallKey, LastState, SpendRow, StoredCall, StoredItem};
use crate::duckdb::{json_map, ts, FromRow};
use crate::StoreError;

/// A nullable timestamp column as Unix nanoseconds.
fn opt_ts(row: &Row<'_>, i: usize) -> Result<Option<i64>, StoreError> {
    match row.get_ref(i)? {
        ValueRef::Null => Ok(None),
        _ => ts(row, i).map(Some),
    }
}

impl FromRow for LastState {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            fingerprint: r.get(0)?,
            labels: json_map(r, 1)?,
            annotations: json_map(r, 2)?,
            starts_at: ts(r, 3)?,
            event_time: ts(r, 4)?,
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
            labels: json_map(r, 7)?,
            annotations: json_map(r, 8)?,
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
