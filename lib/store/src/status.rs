//! What the live status page reads (adr/0010), as one trait, [`StatusStore`], implemented once
//! for both backends over [`crate::engine::Engine`] (DuckDB's row decoders in
//! `duckdb/status.rs`), plus the write of the alert
//! history it shows ([`StatusStore::insert_alerts`], the detector's rows of `alerts`).
//!
//! Every read is restricted to one project, bounded in time (`[since, until)` on the event
//! time) and ends with a `LIMIT`. The SQL is written once per query ([`sql`], in the
//! [`Dialect`](crate::sql::Dialect) of the backend); the dialects differ in:
//!
//! | what | ClickHouse | DuckDB |
//! |---|---|---|
//! | deduplicated rows | `FINAL` | nothing (one row per key already) |
//! | conditional count | `countIf(c)` | `count(*) FILTER (WHERE c)` |
//! | quantiles | `quantilesExactInclusiveIf(p, ..)(coalesce(x, 0), x IS NOT NULL)` | `quantile_cont(x, [p, ..])` |
//! | one quantile | `quantileExactInclusive(p)(x)` | `quantile_cont(x, p)` |
//! | value at the latest time | `argMax(x, t)` | `arg_max(x, t)` |
//! | Unix ms of a timestamp | `toInt64(toUnixTimestamp64Milli(ts))` | `epoch_ms(ts)` |
//! | timestamp of Unix ms | `fromUnixTimestamp64Milli(?)` | `make_timestamp_ns(? * 1000000)` |
//! | bucket start | `intDiv(ms, step) * step` | `(ms // step) * step` |
//!
//! Quantiles are exact and interpolated on both (type 7, Excel's `PERCENTILE.INC`): the same
//! numbers from both stores. Both aggregates skip NULL (a call without TTFT does not count as
//! 0), and both `argMax` / `arg_max` skip rows whose value is NULL.

pub(crate) mod sql;

use std::collections::BTreeMap;

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::model::Ids;
use crate::StoreError;

/// A row of `alerts` (one notification of the detector), as [`StatusStore::insert_alerts`]
/// takes it.
pub use flywheel_schema::rows::AlertRow;

/// Event-time range `[since_ms, until_ms)`, Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub since_ms: i64,
    pub until_ms: i64,
}

impl TimeRange {
    /// The last `minutes` before `now_ms`, plus one minute ahead for clock skew between
    /// clients and this server.
    pub fn last_minutes(now_ms: i64, minutes: u32) -> Self {
        Self {
            since_ms: now_ms - i64::from(minutes) * 60_000,
            until_ms: now_ms + 60_000,
        }
    }
}

/// p50 / p95 / p99 of one metric; `None` when no call reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Quantiles {
    /// From `[p50, p95, p99]`; missing or non-finite values (ClickHouse: NaN of an empty set)
    /// are `None`.
    pub fn of(v: &[f64]) -> Self {
        let at = |i: usize| v.get(i).copied().filter(|x| x.is_finite());
        Self {
            p50: at(0),
            p95: at(1),
            p99: at(2),
        }
    }
}

/// One model's figures over the range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStats {
    pub model: String,
    pub calls: u64,
    pub errors: u64,
    pub error_ratio: f64,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub ttft_ms: Quantiles,
    pub tpot_ms: Quantiles,
    pub duration_ms: Quantiles,
}

/// One time bucket of calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallBucket {
    /// Bucket start, Unix ms.
    pub t: i64,
    pub calls: u64,
    pub errors: u64,
    pub ttft_p95_ms: Option<f64>,
    pub cost_usd: f64,
}

/// Negative items per bucket: `feedback` (explicit) or `signal` (implicit).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NegativeBucket {
    pub kind: String,
    pub t: i64,
    pub n: u64,
}

/// A negative explicit feedback item or an implicit signal.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NegativeItem {
    /// `feedback` or `signal`.
    pub kind: String,
    pub time_ms: i64,
    /// Feedback name (`thumbs`) or signal type (`regenerate`).
    pub name: String,
    /// The value or what happened, short (`false`, `0.21`, `edited 40%`).
    pub detail: String,
    /// The user's comment or text, if any.
    pub comment: String,
    pub source: String,
    pub conversation_id: String,
    pub trace_id: String,
    pub span_id: String,
    pub user_id: String,
}

/// The call a negative item points at (for its model and a snippet of the conversation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallBrief {
    pub trace_id: String,
    pub span_id: String,
    pub model: String,
    pub input_messages: String,
    pub output_messages: String,
}

/// One alert episode (a fingerprint from one `starts_at`), from the `alerts` history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEpisode {
    pub fingerprint: String,
    pub alertname: String,
    pub slo: String,
    pub severity: String,
    /// `firing` or `resolved`: the state of its latest notification.
    pub state: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    pub last_sent_ms: i64,
    pub peak_long_burn_rate: Option<f64>,
    pub peak_short_burn_rate: Option<f64>,
    pub min_budget_remaining: f64,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
}

/// Signal types counted as negative (the user threw the answer away, cut it or fixed it).
pub const NEGATIVE_SIGNALS: [&str; 6] =
    ["regenerate", "stop", "edit", "retry", "rephrase", "abandon"];

/// Explicit feedback counted as negative: a boolean `false` (thumbs down) or a number below 0.5
/// (scores on a 0-1 scale).
pub const NEGATIVE_FEEDBACK: &str =
    "((value_type = 'boolean' AND score = 0) OR (value_type = 'number' AND score < 0.5))";

/// The most buckets `range` can hold at `step_ms` (the `LIMIT` of bucketed queries).
pub fn bucket_limit(range: TimeRange, step_ms: i64) -> u64 {
    let n = (range.until_ms - range.since_ms).max(0) / step_ms.max(1) + 2;
    u64::try_from(n).unwrap_or(0)
}

/// The status page's reads (one method per panel) and the alert history's write. Every read
/// is bounded by the range and the limit and sees deduplicated rows.
#[async_trait::async_trait]
pub trait StatusStore: Send + Sync {
    /// Per model: calls, errors, cost, tokens, TTFT / TPOT / duration quantiles; the `limit`
    /// most expensive (then most called, then by name).
    async fn model_stats(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<ModelStats>, StoreError>;

    /// Calls per bucket of `step_ms`, in time order (buckets without calls are absent).
    async fn call_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<CallBucket>, StoreError>;

    /// Negative feedback and negative signals per bucket of `step_ms`, by kind then time.
    async fn negative_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<NegativeBucket>, StoreError>;

    /// The `limit` most recent negative feedback items and the `limit` most recent negative
    /// signals (newest first each; equal times by id, descending).
    async fn negative_items(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<(Vec<NegativeItem>, Vec<NegativeItem>), StoreError>;

    /// The `limit` most recent calls of these traces (for the items' model and snippet).
    async fn call_briefs(
        &self,
        project: &str,
        range: TimeRange,
        traces: &Ids,
        limit: u32,
    ) -> Result<Vec<CallBrief>, StoreError>;

    /// The `limit` most recently notified alert episodes (notifications sent in `range`).
    async fn alert_episodes(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<AlertEpisode>, StoreError>;

    /// Appends notifications to the alert history (`alerts`: events, never replaced, not
    /// deduplicated).
    async fn insert_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError>;
}

/// Both backends: the queries of [`sql`] in the engine's dialect.
#[async_trait::async_trait]
impl<E: Engine> StatusStore for E {
    async fn model_stats(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<ModelStats>, StoreError> {
        let sql = sql::model_stats(E::DIALECT, project, range, limit);
        Ok(self
            .rows::<ModelRow>(sql)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn call_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<CallBucket>, StoreError> {
        let sql = sql::call_buckets(E::DIALECT, project, range, step_ms);
        Ok(self
            .rows::<CallBucketRow>(sql)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn negative_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<NegativeBucket>, StoreError> {
        let sql = sql::negative_buckets(E::DIALECT, project, range, step_ms);
        Ok(self
            .rows::<NegativeBucketRow>(sql)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn negative_items(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<(Vec<NegativeItem>, Vec<NegativeItem>), StoreError> {
        let feedback = self
            .rows::<FeedbackHit>(sql::negative_feedback(E::DIALECT, project, range, limit))
            .await?;
        let signals = self
            .rows::<SignalHit>(sql::negative_signals_of(E::DIALECT, project, range, limit))
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
        let Some(sql) = sql::call_briefs(E::DIALECT, project, range, traces, limit) else {
            return Ok(Vec::new());
        };
        Ok(self
            .rows::<CallBriefRow>(sql)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn alert_episodes(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<AlertEpisode>, StoreError> {
        let sql = sql::alert_episodes(E::DIALECT, project, range, limit);
        Ok(self
            .rows::<EpisodeRow>(sql)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    async fn insert_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError> {
        self.append_alerts(rows).await
    }
}

// Rows as both backends read them (by name from ClickHouse, by position from DuckDB: the
// column order of `sql`), turned into the public types here, once.

#[derive(Debug, Row, Deserialize)]
pub(crate) struct ModelRow {
    pub model: String,
    pub calls: u64,
    pub errors: u64,
    pub cost_total: f64,
    pub input_total: u64,
    pub output_total: u64,
    pub ttft_q: Vec<f64>,
    pub tpot_q: Vec<f64>,
    pub duration_q: Vec<f64>,
}

impl From<ModelRow> for ModelStats {
    fn from(r: ModelRow) -> Self {
        Self {
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
        }
    }
}

#[derive(Debug, Row, Deserialize)]
pub(crate) struct CallBucketRow {
    pub t: i64,
    pub calls: u64,
    pub errors: u64,
    /// NULL without TTFT.
    pub ttft_p95: Option<f64>,
    pub cost_total: f64,
}

impl From<CallBucketRow> for CallBucket {
    fn from(r: CallBucketRow) -> Self {
        Self {
            t: r.t,
            calls: r.calls,
            errors: r.errors,
            ttft_p95_ms: r.ttft_p95.filter(|x| x.is_finite()),
            cost_usd: r.cost_total,
        }
    }
}

#[derive(Debug, Row, Deserialize)]
pub(crate) struct NegativeBucketRow {
    pub kind: String,
    pub t: i64,
    pub n: u64,
}

impl From<NegativeBucketRow> for NegativeBucket {
    fn from(r: NegativeBucketRow) -> Self {
        Self {
            kind: r.kind,
            t: r.t,
            n: r.n,
        }
    }
}

#[derive(Debug, Row, Deserialize)]
pub(crate) struct CallBriefRow {
    pub trace_id: String,
    pub span_id: String,
    pub model: String,
    pub input_messages: String,
    pub output_messages: String,
}

impl From<CallBriefRow> for CallBrief {
    fn from(r: CallBriefRow) -> Self {
        Self {
            trace_id: r.trace_id,
            span_id: r.span_id,
            model: r.model,
            input_messages: r.input_messages,
            output_messages: r.output_messages,
        }
    }
}

#[derive(Debug, Row, Deserialize)]
pub(crate) struct FeedbackHit {
    pub time_ms: i64,
    pub name: String,
    pub value_type: String,
    pub score: Option<f64>,
    pub label: String,
    pub text: String,
    pub comment: String,
    pub source: String,
    pub conversation_id: String,
    pub trace_id: String,
    pub span_id: String,
    pub user_id: String,
}

impl From<FeedbackHit> for NegativeItem {
    fn from(r: FeedbackHit) -> Self {
        let detail = match (r.value_type.as_str(), r.score) {
            ("boolean", Some(s)) => if s > 0.0 { "true" } else { "false" }.to_string(),
            ("number", Some(s)) => format!("{s:.2}"),
            ("label", _) => r.label.clone(),
            ("text", _) => "text".to_string(),
            _ => r.value_type.clone(),
        };
        Self {
            kind: "feedback".into(),
            time_ms: r.time_ms,
            detail,
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
        }
    }
}

#[derive(Debug, Row, Deserialize)]
pub(crate) struct SignalHit {
    pub time_ms: i64,
    pub kind: String,
    pub source: String,
    pub conversation_id: String,
    pub trace_id: String,
    pub span_id: String,
    pub user_id: String,
    pub tokens_received: Option<u64>,
    pub edit_ratio: Option<f64>,
    pub text: String,
}

impl From<SignalHit> for NegativeItem {
    fn from(r: SignalHit) -> Self {
        let detail = match (r.tokens_received, r.edit_ratio) {
            (Some(n), _) if r.kind == "stop" => format!("after {n} tokens"),
            (_, Some(e)) if r.kind == "edit" => format!("edited {:.0}%", e * 100.0),
            _ => String::new(),
        };
        Self {
            kind: "signal".into(),
            time_ms: r.time_ms,
            detail,
            comment: r.text,
            name: r.kind,
            source: r.source,
            conversation_id: r.conversation_id,
            trace_id: r.trace_id,
            span_id: r.span_id,
            user_id: r.user_id,
        }
    }
}

#[derive(Debug, Row, Deserialize)]
pub(crate) struct EpisodeRow {
    pub fingerprint: String,
    pub start_ms: i64,
    pub name: String,
    pub slo_name: String,
    pub sev: String,
    pub last_state: String,
    pub label_map: Vec<(String, String)>,
    pub annotation_map: Vec<(String, String)>,
    pub end_ms: Option<i64>,
    pub last_sent_ms: i64,
    pub peak_long: Option<f64>,
    pub peak_short: Option<f64>,
    pub min_budget: f64,
}

impl From<EpisodeRow> for AlertEpisode {
    fn from(r: EpisodeRow) -> Self {
        let summary = r
            .annotation_map
            .iter()
            .find(|(k, _)| k == "summary")
            .or_else(|| r.annotation_map.iter().find(|(k, _)| k == "description"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Self {
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
    }
}
