//! What the status page reads from the store, behind [`StatusQueries`], and its ClickHouse
//! implementation [`ClickHouseStatus`].
//!
//! Every query is restricted to one project, bounded in time (`[since, until)` on the event
//! time) and ends with a `LIMIT`; the ClickHouse implementation is in [`clickhouse`], whose
//! doc lists what another engine (DuckDB) would spell differently.

use std::future::Future;

use serde::Serialize;

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
    fn of(v: &[f64]) -> Self {
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
    pub labels: std::collections::BTreeMap<String, String>,
    pub summary: String,
}

/// Why a status query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The store cannot be reached; retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("query failed: {0}")]
    Failed(String),
}

impl From<::clickhouse::error::Error> for QueryError {
    fn from(e: ::clickhouse::error::Error) -> Self {
        match e {
            ::clickhouse::error::Error::Network(_) => Self::Unavailable(e.to_string()),
            e => Self::Failed(e.to_string()),
        }
    }
}

pub mod clickhouse;

pub use self::clickhouse::ClickHouseStatus;

/// Signal types counted as negative (the user threw the answer away, cut it or fixed it).
pub const NEGATIVE_SIGNALS: [&str; 6] =
    ["regenerate", "stop", "edit", "retry", "rephrase", "abandon"];

/// Explicit feedback counted as negative: a boolean `false` (thumbs down) or a number below 0.5
/// (scores on a 0-1 scale).
pub(crate) const NEGATIVE_FEEDBACK: &str =
    "((value_type = 'boolean' AND score = 0) OR (value_type = 'number' AND score < 0.5))";

/// The status page's reads. Implementations bound every query by the range and the limit.
pub trait StatusQueries: Send + Sync + 'static {
    /// Per model: calls, errors, cost, tokens, TTFT / TPOT / duration quantiles; the
    /// `limit` most expensive.
    fn models(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ModelStats>, QueryError>> + Send;

    /// Calls per bucket of `step_ms` (buckets without calls are absent).
    fn call_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> impl Future<Output = Result<Vec<CallBucket>, QueryError>> + Send;

    /// Negative feedback and signals per bucket of `step_ms`.
    fn negative_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> impl Future<Output = Result<Vec<NegativeBucket>, QueryError>> + Send;

    /// The `limit` most recent negative feedback items and the `limit` most recent negative
    /// signals (newest first each).
    fn negative_items(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> impl Future<Output = Result<(Vec<NegativeItem>, Vec<NegativeItem>), QueryError>> + Send;

    /// Calls of the given traces (at most `limit`), for the items' model and snippet.
    fn calls_of_traces(
        &self,
        project: &str,
        range: TimeRange,
        trace_ids: Vec<String>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<CallBrief>, QueryError>> + Send;

    /// The `limit` most recently notified alert episodes.
    fn alerts(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AlertEpisode>, QueryError>> + Send;
}

/// The most buckets `range` can hold at `step_ms` (the `LIMIT` of bucketed queries).
pub fn bucket_limit(range: TimeRange, step_ms: i64) -> u64 {
    let n = (range.until_ms - range.since_ms).max(0) / step_ms.max(1) + 2;
    u64::try_from(n).unwrap_or(0)
}
