//! What the detector asks the store, as one trait with two implementations,
//! [`DetectorStore`]: the alert history it writes (`alerts`) and reads back (alerts firing at
//! start-up or after a reassignment, recent history for `GET /v1/alerts`), the stored calls,
//! feedback and signals it replays at start-up, the month-to-date spend that seeds its budget
//! series, and the lookup that attributes late feedback and signals to their call's key
//! (adr/0008, History and restart).
//!
//! The rows are the store's (this crate does not know the detector): the detector turns them
//! into its alerts, keys and events. The SQL is written once per dialect in [`sql`]: the
//! ClickHouse text is the detector's own (reads `FINAL`), the DuckDB text reads the
//! deduplicated tables as they are (adr/0009). Both return the same rows in the same order:
//! results whose order the SQL leaves open (groups, unions, ties) are sorted here.

mod on_duckdb;
pub mod sql;

use std::cmp::Ordering;

use clickhouse::Row;
use flywheel_schema::rows::AlertRow;
use serde::Deserialize;

use crate::engine::Engine;
use crate::model::Ids;
use crate::sql::Sql;
use crate::StoreError;

/// The user series of a per-user spend policy past its `max_users` (the detector's label).
pub const OTHER_USER: &str = "(other)";

/// An alert whose latest row in `alerts` (by `sent_at`) is `firing`.
#[derive(Debug, Clone, PartialEq)]
pub struct FiringAlert {
    /// Hexadecimal, as written.
    pub fingerprint: String,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// Unix nanoseconds.
    pub starts_at: i64,
    /// The event time it was last sent at, Unix nanoseconds.
    pub event_time: i64,
}

/// A stored call, for the rebuild: `ts` is its end (start + duration) in Unix milliseconds,
/// the event time the detector counts it at.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct StoredCall {
    pub ts: i64,
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
    pub status_code: String,
    pub duration_ns: u64,
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub cost_usd: Option<f64>,
    /// Input plus output tokens; `None` when neither is known.
    pub tokens: Option<u64>,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    pub user_id: String,
}

/// A stored feedback item or signal, for the rebuild: `ts` in Unix milliseconds; a signal's
/// `name` is its type (its `value_type`, `score` and `label` are empty).
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct StoredItem {
    pub ts: i64,
    pub project: String,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    pub name: String,
    pub value_type: String,
    pub score: Option<f64>,
    pub label: String,
}

/// A stored event of the rebuild.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredEvent {
    Call(StoredCall),
    Feedback(StoredItem),
    Signal(StoredItem),
}

impl StoredEvent {
    /// Event time, Unix milliseconds.
    pub fn ts(&self) -> i64 {
        match self {
            Self::Call(c) => c.ts,
            Self::Feedback(i) | Self::Signal(i) => i.ts,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Call(_) => 0,
            Self::Feedback(_) => 1,
            Self::Signal(_) => 2,
        }
    }
}

/// The key and subject of a stored call (a lookup's answer).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Row, Deserialize)]
pub struct CallKey {
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
}

/// One spend policy's question at start-up: the spend of the calls whose event time (end) is
/// in the current period (from `period_start_ms`) and whose start is before the replay's,
/// per series: project, the dimensions the selector pins (`Some`: only that value, and a
/// series per value), per user when `per_user` (users past the `max_users` biggest as
/// [`OTHER_USER`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpendQuery {
    /// Returned as is in [`SpendRow::policy`].
    pub policy: u32,
    pub project: Option<String>,
    pub service: Option<String>,
    pub model: Option<String>,
    pub operation: Option<String>,
    pub per_user: bool,
    pub max_users: u64,
    pub period_start_ms: i64,
}

/// The period's spend before the replay of one series: unpinned dimensions are `""`, so is
/// the user of a per-project policy or of calls without one.
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct SpendRow {
    pub policy: u32,
    pub project: String,
    pub k_service: String,
    pub k_model: String,
    pub k_operation: String,
    pub k_user: String,
    pub usd: f64,
    pub calls: u64,
}

/// The detector's store: alert history, rebuild, lookups. Reads of `llm_calls`, `feedback`
/// and `signals` see deduplicated rows (except [`Self::lookup_keys`], where a duplicate call
/// names the same key).
#[async_trait::async_trait]
pub trait DetectorStore: Send + Sync {
    /// `clickhouse` or `duckdb`.
    fn backend(&self) -> &'static str;

    /// Appends notifications to `alerts`.
    async fn write_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError>;

    /// Alerts whose latest row is `firing`, by fingerprint.
    async fn firing_alerts(&self) -> Result<Vec<FiringAlert>, StoreError>;

    /// The latest `limit` announced rows (new alerts, resolutions) of `project`, newest first.
    async fn recent_alerts(&self, project: &str, limit: u64) -> Result<Vec<AlertRow>, StoreError>;

    /// Calls (by their end), feedback and signals with event time at or after `from_ms`
    /// received before `cut_ns`, in event-time order; at equal times calls first, then
    /// feedback, then signals, each in a fixed order.
    async fn stored_events(
        &self,
        from_ms: i64,
        cut_ns: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Calls with one of these trace ids or (non-empty) conversation ids, oldest first, at
    /// most 100 000, each key and subject once.
    async fn lookup_keys(
        &self,
        traces: &Ids,
        conversations: &Ids,
    ) -> Result<Vec<CallKey>, StoreError>;

    /// Period-to-date spend per series before the replay (see [`SpendQuery`]), received
    /// before `cut_ns`, each query capped at `limit` rows; sorted by policy and series.
    async fn period_spend(
        &self,
        queries: &[SpendQuery],
        replay_from_ms: i64,
        cut_ns: i64,
        limit: u64,
    ) -> Result<Vec<SpendRow>, StoreError>;
}

/// An alert's latest row (by `sent_at`) in `alerts`, as [`sql::firing`] selects it.
#[derive(Debug, Row, Deserialize)]
pub(crate) struct LastState {
    fingerprint: String,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    /// Unix nanoseconds.
    starts_at: i64,
    /// Unix nanoseconds.
    event_time: i64,
    state: String,
}

/// Both backends: the queries of [`sql`] in the engine's dialect.
#[async_trait::async_trait]
impl<E: Engine> DetectorStore for E {
    fn backend(&self) -> &'static str {
        E::NAME
    }

    async fn write_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError> {
        self.append_alerts(rows).await
    }

    async fn firing_alerts(&self) -> Result<Vec<FiringAlert>, StoreError> {
        let sql = Sql {
            text: sql::firing(E::DIALECT).to_string(),
            binds: Vec::new(),
        };
        let rows: Vec<LastState> = self.rows(sql).await?;
        Ok(by_fingerprint(
            rows.into_iter()
                .filter(|r| r.state == "firing")
                .map(|r| FiringAlert {
                    fingerprint: r.fingerprint,
                    labels: r.labels,
                    annotations: r.annotations,
                    starts_at: r.starts_at,
                    event_time: r.event_time,
                })
                .collect(),
        ))
    }

    async fn recent_alerts(&self, project: &str, limit: u64) -> Result<Vec<AlertRow>, StoreError> {
        self.rows(sql::recent(E::DIALECT, project, limit)).await
    }

    async fn stored_events(
        &self,
        from_ms: i64,
        cut_ns: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let [calls, feedback, signals] = sql::stored_events(E::DIALECT, from_ms, cut_ns);
        let calls: Vec<StoredCall> = self.rows(calls).await?;
        let feedback: Vec<StoredItem> = self.rows(feedback).await?;
        let signals: Vec<StoredItem> = self.rows(signals).await?;
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
        Ok(distinct_keys(self.rows(sql).await?))
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
        let sql = sql::period_spend(E::DIALECT, queries, replay_from_ms, cut_ns, limit);
        Ok(spend_in_order(self.rows(sql).await?))
    }
}

/// One store as both traits: the reads of the api and export, and the detector's.
/// Firing alerts by fingerprint (the SQL groups without an order).
fn by_fingerprint(mut v: Vec<FiringAlert>) -> Vec<FiringAlert> {
    v.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    v
}

fn cmp_f64(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        _ => a.is_some().cmp(&b.is_some()),
    }
}

fn cmp_call(a: &StoredCall, b: &StoredCall) -> Ordering {
    let k = |c: &StoredCall| {
        (
            c.project.clone(),
            c.service.clone(),
            c.model.clone(),
            c.operation.clone(),
            c.trace_id.clone(),
            c.span_id.clone(),
            c.conversation_id.clone(),
            c.user_id.clone(),
            c.status_code.clone(),
            c.duration_ns,
            c.tokens,
        )
    };
    k(a).cmp(&k(b))
        .then_with(|| cmp_f64(a.cost_usd, b.cost_usd))
        .then_with(|| cmp_f64(a.ttft_ms, b.ttft_ms))
        .then_with(|| cmp_f64(a.tpot_ms, b.tpot_ms))
}

fn cmp_item(a: &StoredItem, b: &StoredItem) -> Ordering {
    let k = |i: &StoredItem| {
        (
            i.project.clone(),
            i.trace_id.clone(),
            i.span_id.clone(),
            i.conversation_id.clone(),
            i.name.clone(),
            i.value_type.clone(),
            i.label.clone(),
        )
    };
    k(a).cmp(&k(b)).then_with(|| cmp_f64(a.score, b.score))
}

/// The events of the rebuild in their order: event time, then calls before feedback before
/// signals (items about a call resolve), then by content (the SQL leaves ties open).
fn events_in_order(
    calls: Vec<StoredCall>,
    feedback: Vec<StoredItem>,
    signals: Vec<StoredItem>,
) -> Vec<StoredEvent> {
    let mut out: Vec<StoredEvent> = calls
        .into_iter()
        .map(StoredEvent::Call)
        .chain(feedback.into_iter().map(StoredEvent::Feedback))
        .chain(signals.into_iter().map(StoredEvent::Signal))
        .collect();
    out.sort_by(|a, b| {
        (a.ts(), a.rank())
            .cmp(&(b.ts(), b.rank()))
            .then_with(|| match (a, b) {
                (StoredEvent::Call(x), StoredEvent::Call(y)) => cmp_call(x, y),
                (StoredEvent::Feedback(x), StoredEvent::Feedback(y))
                | (StoredEvent::Signal(x), StoredEvent::Signal(y)) => cmp_item(x, y),
                _ => Ordering::Equal,
            })
    });
    out
}

/// Each key once, in first-seen order (ClickHouse may still hold a re-delivered call twice).
fn distinct_keys(rows: Vec<CallKey>) -> Vec<CallKey> {
    let mut seen = std::collections::HashSet::new();
    rows.into_iter()
        .filter(|k| seen.insert(k.clone()))
        .collect()
}

/// Spend rows by policy and series (the SQL's union and groups have no order).
fn spend_in_order(mut rows: Vec<SpendRow>) -> Vec<SpendRow> {
    rows.sort_by(|a, b| {
        (
            a.policy,
            &a.project,
            &a.k_service,
            &a.k_model,
            &a.k_operation,
            &a.k_user,
        )
            .cmp(&(
                b.policy,
                &b.project,
                &b.k_service,
                &b.k_model,
                &b.k_operation,
                &b.k_user,
            ))
    });
    rows
}

#[cfg(test)]
mod tests;
