//! The status page's rows read from DuckDB by position (lists and maps from DuckDB values); the
//! queries are [`crate::status::sql`]'s, run by [`crate::StatusStore`]'s one implementation.

use super::FromRow;
use crate::status::{
    CallBriefRow, CallBucketRow, EpisodeRow, FeedbackHit, ModelRow, NegativeBucketRow, SignalHit,
};
use crate::StoreError;
use duckdb::types::Value;
use duckdb::Row;

fn decode_err(i: usize, v: &Value) -> StoreError {
    StoreError::Decode {
        column: i.to_string(),
        value: format!("{v:?}"),
    }
}

/// A `DOUBLE[]` column (NULL: empty); NULL elements become NaN (no value).
fn floats(r: &Row<'_>, i: usize) -> Result<Vec<f64>, StoreError> {
    match r.get::<_, Value>(i)? {
        Value::Null => Ok(Vec::new()),
        Value::List(items) | Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Double(x) => Ok(x),
                Value::Float(x) => Ok(f64::from(x)),
                Value::Null => Ok(f64::NAN),
                other => Err(decode_err(i, &other)),
            })
            .collect(),
        other => Err(decode_err(i, &other)),
    }
}

/// A `MAP(VARCHAR, VARCHAR)` column as pairs (NULL: empty).
fn pairs(r: &Row<'_>, i: usize) -> Result<Vec<(String, String)>, StoreError> {
    match r.get::<_, Value>(i)? {
        Value::Null => Ok(Vec::new()),
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| match (k, v) {
                (Value::Text(k), Value::Text(v)) => Ok((k.clone(), v.clone())),
                (k, _) => Err(decode_err(i, k)),
            })
            .collect(),
        other => Err(decode_err(i, &other)),
    }
}

impl FromRow for ModelRow {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            model: r.get(0)?,
            calls: r.get(1)?,
            errors: r.get(2)?,
            cost_total: r.get(3)?,
            input_total: r.get(4)?,
            output_total: r.get(5)?,
            ttft_q: floats(r, 6)?,
            tpot_q: floats(r, 7)?,
            duration_q: floats(r, 8)?,
        })
    }
}

impl FromRow for CallBucketRow {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            t: r.get(0)?,
            calls: r.get(1)?,
            errors: r.get(2)?,
            ttft_p95: r.get(3)?,
            cost_total: r.get(4)?,
        })
    }
}

impl FromRow for NegativeBucketRow {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            kind: r.get(0)?,
            t: r.get(1)?,
            n: r.get(2)?,
        })
    }
}

impl FromRow for FeedbackHit {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            time_ms: r.get(0)?,
            name: r.get(1)?,
            value_type: r.get(2)?,
            score: r.get(3)?,
            label: r.get(4)?,
            text: r.get(5)?,
            comment: r.get(6)?,
            source: r.get(7)?,
            conversation_id: r.get(8)?,
            trace_id: r.get(9)?,
            span_id: r.get(10)?,
            user_id: r.get(11)?,
        })
    }
}

impl FromRow for SignalHit {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            time_ms: r.get(0)?,
            kind: r.get(1)?,
            source: r.get(2)?,
            conversation_id: r.get(3)?,
            trace_id: r.get(4)?,
            span_id: r.get(5)?,
            user_id: r.get(6)?,
            tokens_received: r.get(7)?,
            edit_ratio: r.get(8)?,
            text: r.get(9)?,
        })
    }
}

impl FromRow for CallBriefRow {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            trace_id: r.get(0)?,
            span_id: r.get(1)?,
            model: r.get(2)?,
            input_messages: r.get(3)?,
            output_messages: r.get(4)?,
        })
    }
}

impl FromRow for EpisodeRow {
    fn from_row(r: &Row<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            fingerprint: r.get(0)?,
            start_ms: r.get(1)?,
            name: r.get(2)?,
            slo_name: r.get(3)?,
            sev: r.get(4)?,
            last_state: r.get(5)?,
            label_map: pairs(r, 6)?,
            annotation_map: pairs(r, 7)?,
            end_ms: r.get(8)?,
            last_sent_ms: r.get(9)?,
            peak_long: r.get(10)?,
            peak_short: r.get(11)?,
            min_budget: r.get(12)?,
        })
    }
}

#[cfg(test)]
mod tests;
