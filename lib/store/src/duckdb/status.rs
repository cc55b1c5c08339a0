//! [`StatusStore`] on DuckDB: the queries of [`crate::status::sql`] in the DuckDB dialect, rows
//! read by position (lists and maps from DuckDB values); alert rows appended in one
//! transaction.

use duckdb::types::Value;
use duckdb::Row;
use flywheel_schema::rows::AlertRow;

use super::{lock_poisoned, write, DuckDbStore, FromRow, D};
use crate::model::Ids;
use crate::status::{
    sql, AlertEpisode, CallBrief, CallBriefRow, CallBucket, CallBucketRow, EpisodeRow, FeedbackHit,
    ModelRow, ModelStats, NegativeBucket, NegativeBucketRow, NegativeItem, SignalHit, StatusStore,
    TimeRange,
};
use crate::StoreError;

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

#[async_trait::async_trait]
impl StatusStore for DuckDbStore {
    async fn model_stats(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<ModelStats>, StoreError> {
        let rows = self
            .fetch::<ModelRow>(sql::model_stats(D, project, range, limit))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn call_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<CallBucket>, StoreError> {
        let rows = self
            .fetch::<CallBucketRow>(sql::call_buckets(D, project, range, step_ms))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn negative_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<NegativeBucket>, StoreError> {
        let rows = self
            .fetch::<NegativeBucketRow>(sql::negative_buckets(D, project, range, step_ms))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn negative_items(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<(Vec<NegativeItem>, Vec<NegativeItem>), StoreError> {
        let feedback = self
            .fetch::<FeedbackHit>(sql::negative_feedback(D, project, range, limit))
            .await?;
        let signals = self
            .fetch::<SignalHit>(sql::negative_signals_of(D, project, range, limit))
            .await?;
        Ok((
            feedback.into_iter().map(Into::into).collect(),
            signals.into_iter().map(Into::into).collect(),
        ))
    }

    async fn call_briefs(
        &self,
        project: &str,
        range: TimeRange,
        traces: &Ids,
        limit: u32,
    ) -> Result<Vec<CallBrief>, StoreError> {
        let Some(sql) = sql::call_briefs(D, project, range, traces, limit) else {
            return Ok(Vec::new());
        };
        let rows = self.fetch::<CallBriefRow>(sql).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn alert_episodes(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<AlertEpisode>, StoreError> {
        let rows = self
            .fetch::<EpisodeRow>(sql::alert_episodes(D, project, range, limit))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn insert_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError> {
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
