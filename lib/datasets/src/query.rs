//! SQL against `llm_calls`, `feedback` and `signals`, always restricted to the request's project
//! and always through `FINAL` (a resent feedback item, a re-delivered span count once).
//!
//! Calls are read in pages by key range: `ORDER BY model, timestamp, trace_id, span_id` (the
//! table's sorting key after `project`) with `LIMIT page`, the next page starting after the last
//! key seen. Each page is a complete, small query, so neither Flywheel nor ClickHouse holds more
//! than a page, and the side queries of a page (feedback and signals of its calls) can run
//! between pages on any server.

use clickhouse::{Client, Row};
use serde::Deserialize;

use crate::request::{ExportRequest, FeedbackValue};
use crate::DatasetError;

/// The columns of `llm_calls` an export reads.
#[derive(Debug, Clone, Default, PartialEq, Row, Deserialize)]
pub struct CallRow {
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub model: String,
    pub conversation_id: String,
    pub user_id: String,
    pub input_messages: String,
    pub output_messages: String,
}

const CALL_COLUMNS: &str = "timestamp, trace_id, span_id, model, conversation_id, user_id, \
                            input_messages, output_messages";

/// The columns of `feedback` an export reads.
#[derive(Debug, Clone, Default, PartialEq, Row, Deserialize)]
pub struct FeedbackItem {
    pub id: String,
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    pub name: String,
    pub value_type: String,
    pub score: Option<f64>,
    pub label: String,
    pub text: String,
    pub comment: String,
    pub source: String,
}

const FEEDBACK_COLUMNS: &str = "id, timestamp, trace_id, span_id, conversation_id, name, \
                                value_type, score, label, text, comment, source";

/// The columns of `signals` an export reads.
#[derive(Debug, Clone, Default, PartialEq, Row, Deserialize)]
pub struct SignalItem {
    pub id: String,
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
    pub conversation_id: String,
    #[serde(rename = "type")]
    pub signal_type: String,
    pub source: String,
    pub discarded_trace_id: String,
    pub discarded_span_id: String,
    pub tokens_received: Option<u64>,
    pub ms_since_start: Option<f64>,
    pub edit_ratio: Option<f64>,
    pub edited_text: String,
    pub text: String,
    pub turn_count: Option<u32>,
}

const SIGNAL_COLUMNS: &str = "id, timestamp, trace_id, span_id, conversation_id, type, source, \
                              discarded_trace_id, discarded_span_id, tokens_received, \
                              ms_since_start, edit_ratio, edited_text, text, turn_count";

/// A value bound to a `?` of the SQL (escaped by the clickhouse client).
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Str(String),
    I64(i64),
    F64(f64),
    Strs(Vec<String>),
}

/// SQL text with its bound values, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    fn push(&mut self, text: &str, binds: impl IntoIterator<Item = Bind>) {
        self.text.push_str(text);
        self.binds.extend(binds);
    }

    fn query(&self, client: &Client) -> clickhouse::query::Query {
        let mut q = client.query(&self.text);
        for b in &self.binds {
            q = match b {
                Bind::Str(s) => q.bind(s.as_str()),
                Bind::I64(i) => q.bind(*i),
                Bind::F64(f) => q.bind(*f),
                Bind::Strs(v) => q.bind(v.as_slice()),
            };
        }
        q
    }

    pub async fn fetch<T>(&self, client: &Client) -> Result<Vec<T>, DatasetError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let started = std::time::Instant::now();
        let rows = self.query(client).fetch_all::<T>().await?;
        tracing::debug!(
            rows = rows.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            sql = %self.text.chars().take(60).collect::<String>(),
            "query"
        );
        Ok(rows)
    }
}

fn s(v: &str) -> Bind {
    Bind::Str(v.to_string())
}

/// Most ids bound into one `IN ?` list where their length is not known in advance (preference
/// mining: trace ids of signals and feedback).
pub const MAX_IDS_PER_QUERY: usize = 1000;

/// Bytes of bound ids per side query: ClickHouse parses at most `max_query_size` (256 KiB by
/// default) of SQL, and the signals query binds the trace ids twice plus the conversation ids.
const ID_BYTES_PER_QUERY: usize = 240 * 1024;

/// Length of a string as a quoted, escaped list element with its separator.
fn quoted_len(s: &str) -> usize {
    s.len() + s.bytes().filter(|b| matches!(b, b'\'' | b'\\')).count() + 3
}

/// Splits a page of calls into parts whose ids fit one side query (usually one part).
pub fn id_parts(calls: &[CallRow]) -> Vec<&[CallRow]> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, c) in calls.iter().enumerate() {
        let size = 2 * quoted_len(&c.trace_id) + quoted_len(&c.conversation_id);
        if i > start && bytes + size > ID_BYTES_PER_QUERY {
            parts.push(&calls[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < calls.len() {
        parts.push(&calls[start..]);
    }
    parts
}

/// A non-empty list for `IN ?` (ClickHouse refuses `IN []`): the `""` it always holds never
/// matches, because every query checks the compared column is not empty first.
pub fn id_list<'a>(ids: impl IntoIterator<Item = &'a str>) -> Bind {
    let mut v: Vec<String> = ids
        .into_iter()
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .collect();
    v.sort_unstable();
    v.dedup();
    v.push(String::new());
    Bind::Strs(v)
}

/// The call filters of `req` (time range, models, conversation, feedback, signal), each
/// starting with ` AND`.
pub fn call_filters(req: &ExportRequest) -> Sql {
    let mut sql = Sql::default();
    if let Some(from) = req.from {
        sql.push(
            " AND timestamp >= fromUnixTimestamp64Nano(?)",
            [Bind::I64(from)],
        );
    }
    if let Some(to) = req.to {
        sql.push(
            " AND timestamp < fromUnixTimestamp64Nano(?)",
            [Bind::I64(to)],
        );
    }
    if !req.models.is_empty() {
        sql.push(" AND model IN ?", [Bind::Strs(req.models.clone())]);
    }
    if let Some(c) = &req.conversation {
        sql.push(" AND conversation_id = ?", [s(c)]);
    }
    if let Some(f) = &req.feedback {
        let mut cond = Sql::default();
        cond.push(" AND name = ?", [s(&f.name)]);
        match &f.value {
            FeedbackValue::Any => {}
            FeedbackValue::Score(x) => cond.push(" AND score = ?", [Bind::F64(*x)]),
            FeedbackValue::Range { min, max } => {
                if let Some(m) = min {
                    cond.push(" AND score >= ?", [Bind::F64(*m)]);
                }
                if let Some(m) = max {
                    cond.push(" AND score <= ?", [Bind::F64(*m)]);
                }
            }
            FeedbackValue::Label(l) => cond.push(" AND label = ?", [s(l)]),
        }
        attached(&mut sql, "feedback", &req.project, &cond);
    }
    if let Some(t) = &req.signal {
        let mut cond = Sql::default();
        cond.push(" AND type = ?", [s(t)]);
        attached(&mut sql, "signals", &req.project, &cond);
    }
    sql
}

/// ` AND` the call has an item of `table` matching `cond` attached by the join rule: same trace
/// and span (span level), same trace with no span (trace level), or same conversation with no
/// trace (conversation level).
fn attached(sql: &mut Sql, table: &str, project: &str, cond: &Sql) {
    let levels = [
        (
            "(trace_id, span_id) IN (SELECT trace_id, span_id",
            "trace_id != '' AND span_id != ''",
        ),
        (
            "trace_id IN (SELECT trace_id",
            "trace_id != '' AND span_id = ''",
        ),
        (
            "(conversation_id != '' AND conversation_id IN (SELECT conversation_id",
            "trace_id = '' AND conversation_id != ''",
        ),
    ];
    sql.push(" AND (", []);
    for (i, (head, level)) in levels.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ", []);
        }
        sql.push(
            &format!("{head} FROM {table} FINAL WHERE project = ? AND {level}"),
            [s(project)],
        );
        sql.push(&cond.text, cond.binds.iter().cloned());
        sql.push(if i == 2 { "))" } else { ")" }, []);
    }
    sql.push(")", []);
}

/// The sorting key of the last call of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct PageKey {
    pub model: String,
    pub timestamp: i64,
    pub trace_id: String,
    pub span_id: String,
}

impl PageKey {
    pub fn of(c: &CallRow) -> Self {
        Self {
            model: c.model.clone(),
            timestamp: c.timestamp,
            trace_id: c.trace_id.clone(),
            span_id: c.span_id.clone(),
        }
    }
}

/// One page of calls after `after`, in sorting-key order. The key condition is spelled out as
/// nested comparisons, a form ClickHouse's primary-key analysis understands.
pub fn calls_page(req: &ExportRequest, filters: &Sql, after: Option<&PageKey>, limit: u64) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        &format!("SELECT {CALL_COLUMNS} FROM llm_calls FINAL WHERE project = ?"),
        [s(&req.project)],
    );
    if let Some(k) = after {
        let ts = "fromUnixTimestamp64Nano(?)";
        sql.push(
            &format!(
                " AND (model > ? OR (model = ? AND (timestamp > {ts} OR (timestamp = {ts} AND \
                 (trace_id > ? OR (trace_id = ? AND span_id > ?))))))"
            ),
            [
                s(&k.model),
                s(&k.model),
                Bind::I64(k.timestamp),
                Bind::I64(k.timestamp),
                s(&k.trace_id),
                s(&k.trace_id),
                s(&k.span_id),
            ],
        );
    }
    sql.push(&filters.text, filters.binds.iter().cloned());
    sql.push(
        " ORDER BY model, timestamp, trace_id, span_id LIMIT ?",
        [Bind::I64(i64::try_from(limit).unwrap_or(i64::MAX))],
    );
    sql
}

/// How many calls match (for a progress bar).
pub async fn count_calls(client: &Client, req: &ExportRequest) -> Result<u64, DatasetError> {
    let filters = call_filters(req);
    let mut sql = Sql::default();
    sql.push(
        "SELECT count() FROM llm_calls FINAL WHERE project = ?",
        [s(&req.project)],
    );
    sql.push(&filters.text, filters.binds.iter().cloned());
    Ok(sql.query(client).fetch_one::<u64>().await?)
}

/// Calls of the project with these trace ids (matching the request's call filters).
pub fn calls_of_traces(req: &ExportRequest, filters: &Sql, traces: Bind) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {CALL_COLUMNS} FROM llm_calls FINAL WHERE project = ? AND trace_id != '' \
             AND trace_id IN ?"
        ),
        [s(&req.project), traces],
    );
    sql.push(&filters.text, filters.binds.iter().cloned());
    sql.push(" ORDER BY timestamp, trace_id, span_id", []);
    sql
}

/// Calls of the project in these conversations (matching the request's call filters).
pub fn calls_of_conversations(req: &ExportRequest, filters: &Sql, conversations: Bind) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {CALL_COLUMNS} FROM llm_calls FINAL WHERE project = ? \
             AND conversation_id != '' AND conversation_id IN ?"
        ),
        [s(&req.project), conversations],
    );
    sql.push(&filters.text, filters.binds.iter().cloned());
    sql.push(" ORDER BY timestamp, trace_id, span_id", []);
    sql
}

/// Feedback of the project attached to calls of these traces or conversations.
pub fn feedback_for(project: &str, traces: Bind, conversations: Bind) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {FEEDBACK_COLUMNS} FROM feedback FINAL WHERE project = ? \
             AND ((trace_id != '' AND trace_id IN ?) \
             OR (trace_id = '' AND conversation_id != '' AND conversation_id IN ?)) \
             ORDER BY timestamp, id"
        ),
        [s(project), traces, conversations],
    );
    sql
}

/// Signals of the project attached to calls of these traces or conversations (a regenerate
/// signal also by the trace of the answer it discarded).
pub fn signals_for(project: &str, traces: Bind, conversations: Bind) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals FINAL WHERE project = ? \
             AND ((trace_id != '' AND trace_id IN ?) \
             OR (discarded_trace_id != '' AND discarded_trace_id IN ?) \
             OR (trace_id = '' AND conversation_id != '' AND conversation_id IN ?)) \
             ORDER BY timestamp, id"
        ),
        [s(project), traces.clone(), traces, conversations],
    );
    sql
}

/// Signals of one type of the project, in time order (preference mining).
pub fn signals_of_type(project: &str, signal_type: &str) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals FINAL WHERE project = ? AND type = ? \
             ORDER BY timestamp, id"
        ),
        [s(project), s(signal_type)],
    );
    sql
}

/// Feedback of one name that rates a call or a trace positively or negatively.
pub fn rating_feedback(project: &str, name: &str, positive_min: f64, negative_max: f64) -> Sql {
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {FEEDBACK_COLUMNS} FROM feedback FINAL WHERE project = ? AND name = ? \
             AND trace_id != '' AND score IS NOT NULL AND (score >= ? OR score <= ?) \
             ORDER BY timestamp, id"
        ),
        [
            s(project),
            s(name),
            Bind::F64(positive_min),
            Bind::F64(negative_max),
        ],
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse;

    #[test]
    fn binds_match_placeholders() {
        let req = parse(
            "p",
            [
                ("from", "2026-01-01"),
                ("to", "2026-02-01"),
                ("model", "a"),
                ("conversation", "c"),
                ("feedback", "thumbs"),
                ("feedback_min", "0.5"),
                ("signal", "edit"),
            ],
        )
        .unwrap();
        let f = call_filters(&req);
        let key = PageKey {
            model: "m".into(),
            timestamp: 1,
            trace_id: "t".into(),
            span_id: "s".into(),
        };
        for sql in [
            f.clone(),
            calls_page(&req, &f, Some(&key), 10),
            calls_of_traces(&req, &f, id_list(["a"])),
            feedback_for("p", id_list([]), id_list([])),
            signals_for("p", id_list([]), id_list([])),
        ] {
            assert_eq!(
                sql.text.matches('?').count(),
                sql.binds.len(),
                "{}",
                sql.text
            );
            assert_eq!(sql.text.matches('(').count(), sql.text.matches(')').count());
        }
        // Every sub-select stays inside the project and reads FINAL.
        assert_eq!(f.text.matches("FINAL WHERE project = ?").count(), 6);
    }

    #[test]
    fn id_parts_stay_under_the_query_size() {
        let call = |conv: usize| CallRow {
            trace_id: "0".repeat(32),
            conversation_id: "c".repeat(conv),
            ..CallRow::default()
        };
        let short: Vec<CallRow> = (0..2000).map(|_| call(10)).collect();
        assert_eq!(id_parts(&short).len(), 1);
        let long: Vec<CallRow> = (0..2000).map(|_| call(200)).collect();
        let parts = id_parts(&long);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 2000);
        assert!(id_parts(&[]).is_empty());
    }

    #[test]
    fn id_lists_are_never_empty() {
        assert_eq!(id_list([]), Bind::Strs(vec![String::new()]));
        assert_eq!(
            id_list(["b", "a", "b", ""]),
            Bind::Strs(vec!["a".into(), "b".into(), String::new()])
        );
    }
}
