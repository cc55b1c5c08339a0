//! [`StatusQueries`] on ClickHouse (the `flywheel_schema` tables). The SQL is kept plain
//! (`count`, `sum`, `GROUP BY`, `ORDER BY`, `LIMIT`, `IN`); the ClickHouse-specific bits, to
//! translate for another engine (DuckDB), are:
//! - `FINAL` after the ReplacingMergeTree tables (`llm_calls`, `feedback`, `signals`), so a
//!   re-delivered span or a resent feedback item counts once (DuckDB: no equivalent needed with
//!   a primary key, or `QUALIFY row_number() OVER (PARTITION BY id ...) = 1`);
//! - `countIf`, `quantilesIf(p...)(x, cond)`, `quantileIf(p)(x, cond)` (DuckDB: `count(*) FILTER
//!   (WHERE ...)`, `quantile_cont(x, [p...]) FILTER (WHERE ...)`);
//! - `argMax(x, t)` (DuckDB: `arg_max(x, t)`);
//! - `fromUnixTimestamp64Milli(?)` / `toUnixTimestamp64Milli(ts)` between Unix milliseconds and
//!   `DateTime64` (DuckDB: `epoch_ms(?)` / `epoch_ms(ts)`); buckets are
//!   `intDiv(epoch_ms, step) * step` (DuckDB: `(epoch_ms // step) * step`);
//! - `ifNull` (DuckDB: `coalesce`), `Map` columns read as key-value arrays.

use ::clickhouse::{Client, Row};
use serde::Deserialize;

use super::{
    bucket_limit, AlertEpisode, CallBrief, CallBucket, ModelStats, NegativeBucket, NegativeItem,
    Quantiles, QueryError, StatusQueries, TimeRange, NEGATIVE_FEEDBACK, NEGATIVE_SIGNALS,
};

/// [`StatusQueries`] on ClickHouse (`flywheel_schema` tables).
#[derive(Clone)]
pub struct ClickHouseStatus {
    pub client: Client,
}

const RANGE: &str =
    "timestamp >= fromUnixTimestamp64Milli(?) AND timestamp < fromUnixTimestamp64Milli(?)";

#[derive(Row, Deserialize)]
struct ModelRow {
    model: String,
    calls: u64,
    errors: u64,
    cost_total: f64,
    input_total: u64,
    output_total: u64,
    ttft_q: Vec<f64>,
    tpot_q: Vec<f64>,
    duration_q: Vec<f64>,
}

#[derive(Row, Deserialize)]
struct CallBucketRow {
    t: i64,
    calls: u64,
    errors: u64,
    ttft_p95: f64,
    cost_total: f64,
}

#[derive(Row, Deserialize)]
struct NegativeBucketRow {
    kind: String,
    t: i64,
    n: u64,
}

#[derive(Row, Deserialize)]
struct CallBriefRow {
    trace_id: String,
    span_id: String,
    model: String,
    input_messages: String,
    output_messages: String,
}

#[derive(Row, Deserialize)]
struct FeedbackRow {
    time_ms: i64,
    name: String,
    value_type: String,
    score: Option<f64>,
    label: String,
    text: String,
    comment: String,
    source: String,
    conversation_id: String,
    trace_id: String,
    span_id: String,
    user_id: String,
}

#[derive(Row, Deserialize)]
struct SignalRow {
    time_ms: i64,
    kind: String,
    source: String,
    conversation_id: String,
    trace_id: String,
    span_id: String,
    user_id: String,
    tokens_received: Option<u64>,
    edit_ratio: Option<f64>,
    text: String,
}

#[derive(Row, Deserialize)]
struct AlertRow {
    fingerprint: String,
    start_ms: i64,
    name: String,
    slo_name: String,
    sev: String,
    last_state: String,
    label_map: Vec<(String, String)>,
    annotation_map: Vec<(String, String)>,
    end_ms: Option<i64>,
    last_sent_ms: i64,
    peak_long: Option<f64>,
    peak_short: Option<f64>,
    min_budget: f64,
}

fn feedback_detail(r: &FeedbackRow) -> String {
    match (r.value_type.as_str(), r.score) {
        ("boolean", Some(s)) => if s > 0.0 { "true" } else { "false" }.to_string(),
        ("number", Some(s)) => format!("{s:.2}"),
        ("label", _) => r.label.clone(),
        ("text", _) => "text".to_string(),
        _ => r.value_type.clone(),
    }
}

fn signal_detail(r: &SignalRow) -> String {
    match (r.tokens_received, r.edit_ratio) {
        (Some(n), _) if r.kind == "stop" => format!("after {n} tokens"),
        (_, Some(e)) if r.kind == "edit" => format!("edited {:.0}%", e * 100.0),
        _ => String::new(),
    }
}

impl StatusQueries for ClickHouseStatus {
    async fn models(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<ModelStats>, QueryError> {
        let sql = format!(
            "SELECT model, count() AS calls, countIf(status_code = 'Error') AS errors, \
             sum(ifNull(cost_usd, 0)) AS cost_total, \
             sum(ifNull(input_tokens, 0)) AS input_total, \
             sum(ifNull(output_tokens, 0)) AS output_total, \
             quantilesIf(0.5, 0.95, 0.99)(ifNull(ttft_ms, 0), ttft_ms IS NOT NULL) AS ttft_q, \
             quantilesIf(0.5, 0.95, 0.99)(ifNull(tpot_ms, 0), tpot_ms IS NOT NULL) AS tpot_q, \
             quantiles(0.5, 0.95, 0.99)(duration_ns / 1000000) AS duration_q \
             FROM llm_calls FINAL WHERE project = ? AND {RANGE} \
             GROUP BY model ORDER BY cost_total DESC, calls DESC, model LIMIT ?"
        );
        let rows: Vec<ModelRow> = self
            .client
            .query(&sql)
            .bind(project)
            .bind(range.since_ms)
            .bind(range.until_ms)
            .bind(limit)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ModelStats {
                error_ratio: if r.calls == 0 {
                    0.0
                } else {
                    r.errors as f64 / r.calls as f64
                },
                model: r.model,
                calls: r.calls,
                errors: r.errors,
                cost_usd: r.cost_total,
                input_tokens: r.input_total,
                output_tokens: r.output_total,
                ttft_ms: Quantiles::of(&r.ttft_q),
                tpot_ms: Quantiles::of(&r.tpot_q),
                duration_ms: Quantiles::of(&r.duration_q),
            })
            .collect())
    }

    async fn call_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<CallBucket>, QueryError> {
        let sql = format!(
            "SELECT toInt64(intDiv(toUnixTimestamp64Milli(timestamp), ?) * ?) AS t, \
             count() AS calls, countIf(status_code = 'Error') AS errors, \
             quantileIf(0.95)(ifNull(ttft_ms, 0), ttft_ms IS NOT NULL) AS ttft_p95, \
             sum(ifNull(cost_usd, 0)) AS cost_total \
             FROM llm_calls FINAL WHERE project = ? AND {RANGE} \
             GROUP BY t ORDER BY t LIMIT ?"
        );
        let rows: Vec<CallBucketRow> = self
            .client
            .query(&sql)
            .bind(step_ms)
            .bind(step_ms)
            .bind(project)
            .bind(range.since_ms)
            .bind(range.until_ms)
            .bind(bucket_limit(range, step_ms))
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| CallBucket {
                t: r.t,
                calls: r.calls,
                errors: r.errors,
                ttft_p95_ms: Some(r.ttft_p95).filter(|x| x.is_finite()),
                cost_usd: r.cost_total,
            })
            .collect())
    }

    async fn negative_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<NegativeBucket>, QueryError> {
        let bucket = "toInt64(intDiv(toUnixTimestamp64Milli(timestamp), ?) * ?) AS t";
        let sql = format!(
            "SELECT 'feedback' AS kind, {bucket}, count() AS n FROM feedback FINAL \
             WHERE project = ? AND {RANGE} AND {NEGATIVE_FEEDBACK} GROUP BY t \
             UNION ALL \
             SELECT 'signal' AS kind, {bucket}, count() AS n FROM signals FINAL \
             WHERE project = ? AND {RANGE} AND type IN ? GROUP BY t \
             ORDER BY t LIMIT ?"
        );
        let limit = 2 * bucket_limit(range, step_ms);
        let rows: Vec<NegativeBucketRow> = self
            .client
            .query(&sql)
            .bind(step_ms)
            .bind(step_ms)
            .bind(project)
            .bind(range.since_ms)
            .bind(range.until_ms)
            .bind(step_ms)
            .bind(step_ms)
            .bind(project)
            .bind(range.since_ms)
            .bind(range.until_ms)
            .bind(NEGATIVE_SIGNALS.as_slice())
            .bind(limit)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| NegativeBucket {
                kind: r.kind,
                t: r.t,
                n: r.n,
            })
            .collect())
    }

    async fn negative_items(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<(Vec<NegativeItem>, Vec<NegativeItem>), QueryError> {
        let sql = format!(
            "SELECT toInt64(toUnixTimestamp64Milli(timestamp)) AS time_ms, name, value_type, \
             score, label, text, comment, source, conversation_id, trace_id, span_id, user_id \
             FROM feedback FINAL WHERE project = ? AND {RANGE} AND {NEGATIVE_FEEDBACK} \
             ORDER BY timestamp DESC LIMIT ?"
        );
        let feedback: Vec<FeedbackRow> = self
            .client
            .query(&sql)
            .bind(project)
            .bind(range.since_ms)
            .bind(range.until_ms)
            .bind(limit)
            .fetch_all()
            .await?;
        let sql = format!(
            "SELECT toInt64(toUnixTimestamp64Milli(timestamp)) AS time_ms, type AS kind, source, \
             conversation_id, trace_id, span_id, user_id, tokens_received, edit_ratio, text \
             FROM signals FINAL WHERE project = ? AND {RANGE} AND type IN ? \
             ORDER BY timestamp DESC LIMIT ?"
        );
        let signals: Vec<SignalRow> = self
            .client
            .query(&sql)
            .bind(project)
            .bind(range.since_ms)
            .bind(range.until_ms)
            .bind(NEGATIVE_SIGNALS.as_slice())
            .bind(limit)
            .fetch_all()
            .await?;
        let feedback = feedback
            .into_iter()
            .map(|r| NegativeItem {
                kind: "feedback".into(),
                time_ms: r.time_ms,
                detail: feedback_detail(&r),
                comment: if r.comment.is_empty() {
                    r.text
                } else {
                    r.comment
                },
                name: r.name,
                source: r.source,
                conversation_id: r.conversation_id,
                trace_id: r.trace_id,
                span_id: r.span_id,
                user_id: r.user_id,
            })
            .collect();
        let signals = signals
            .into_iter()
            .map(|r| NegativeItem {
                kind: "signal".into(),
                time_ms: r.time_ms,
                detail: signal_detail(&r),
                comment: r.text,
                name: r.kind,
                source: r.source,
                conversation_id: r.conversation_id,
                trace_id: r.trace_id,
                span_id: r.span_id,
                user_id: r.user_id,
            })
            .collect();
        Ok((feedback, signals))
    }

    async fn calls_of_traces(
        &self,
        project: &str,
        range: TimeRange,
        mut trace_ids: Vec<String>,
        limit: u32,
    ) -> Result<Vec<CallBrief>, QueryError> {
        trace_ids.retain(|t| !t.is_empty());
        if trace_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT trace_id, span_id, model, input_messages, output_messages \
             FROM llm_calls FINAL WHERE project = ? AND {RANGE} AND trace_id IN ? \
             ORDER BY timestamp DESC LIMIT ?"
        );
        let rows: Vec<CallBriefRow> = self
            .client
            .query(&sql)
            .bind(project)
            .bind(range.since_ms)
            .bind(range.until_ms)
            .bind(trace_ids.as_slice())
            .bind(limit)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| CallBrief {
                trace_id: r.trace_id,
                span_id: r.span_id,
                model: r.model,
                input_messages: r.input_messages,
                output_messages: r.output_messages,
            })
            .collect())
    }

    async fn alerts(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<AlertEpisode>, QueryError> {
        let rows: Vec<AlertRow> = self
            .client
            .query(
                "SELECT fingerprint, toInt64(toUnixTimestamp64Milli(starts_at)) AS start_ms, \
                 argMax(alertname, sent_at) AS name, argMax(slo, sent_at) AS slo_name, \
                 argMax(severity, sent_at) AS sev, argMax(state, sent_at) AS last_state, \
                 argMax(labels, sent_at) AS label_map, \
                 argMax(annotations, sent_at) AS annotation_map, \
                 toUnixTimestamp64Milli(argMax(ends_at, sent_at)) AS end_ms, \
                 toInt64(toUnixTimestamp64Milli(max(sent_at))) AS last_sent_ms, \
                 max(long_burn_rate) AS peak_long, max(short_burn_rate) AS peak_short, \
                 min(budget_remaining) AS min_budget \
                 FROM alerts WHERE project = ? \
                 AND sent_at >= fromUnixTimestamp64Milli(?) \
                 AND sent_at < fromUnixTimestamp64Milli(?) \
                 GROUP BY fingerprint, starts_at ORDER BY last_sent_ms DESC LIMIT ?",
            )
            .bind(project)
            .bind(range.since_ms)
            .bind(range.until_ms)
            .bind(limit)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let summary = r
                    .annotation_map
                    .iter()
                    .find(|(k, _)| k == "summary")
                    .or_else(|| r.annotation_map.iter().find(|(k, _)| k == "description"))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                AlertEpisode {
                    fingerprint: r.fingerprint,
                    alertname: r.name,
                    slo: r.slo_name,
                    severity: r.sev,
                    state: r.last_state,
                    starts_at_ms: r.start_ms,
                    ends_at_ms: r.end_ms,
                    last_sent_ms: r.last_sent_ms,
                    peak_long_burn_rate: r.peak_long,
                    peak_short_burn_rate: r.peak_short,
                    min_budget_remaining: r.min_budget,
                    labels: r.label_map.into_iter().collect(),
                    summary,
                }
            })
            .collect())
    }
}
