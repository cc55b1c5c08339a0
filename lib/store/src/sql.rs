//! The read queries of both backends, written once: SQL against `llm_calls`, `feedback` and
//! `signals`, always restricted to one project and always over deduplicated rows (a resent
//! feedback item, a re-delivered span count once).
//!
//! The two dialects differ in two words only ([`Dialect`]): ClickHouse reads `FINAL` (its
//! ReplacingMergeTree folds duplicates at read time) where DuckDB's tables already hold one row
//! per key (upserts at write time), and the nanosecond-to-timestamp function. `IN ?` binds a
//! list ([`Bind::Strs`]): the ClickHouse client renders an array literal, the DuckDB store one
//! placeholder per element.
//!
//! Calls are read in pages by key range: `ORDER BY model, timestamp, trace_id, span_id` (the
//! table's sorting key after `project`) with `LIMIT page`, the next page starting after the last
//! key seen. Each page is a complete, small query, so neither Flywheel nor the store holds more
//! than a page, and the side queries of a page (feedback and signals of its calls) can run
//! between pages on any server.

use crate::model::{CallFilter, FeedbackValue, Ids, PageKey};

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    ClickHouse,
    DuckDb,
}

impl Dialect {
    /// After a table name: read deduplicated rows.
    pub(crate) fn final_(self) -> &'static str {
        match self {
            Self::ClickHouse => " FINAL",
            Self::DuckDb => "",
        }
    }

    /// A timestamp from bound Unix nanoseconds.
    pub(crate) fn ts_of_ns(self) -> &'static str {
        match self {
            Self::ClickHouse => "fromUnixTimestamp64Nano(?)",
            Self::DuckDb => "make_timestamp_ns(?)",
        }
    }
}

pub(crate) const CALL_COLUMNS: &str = "timestamp, trace_id, span_id, model, conversation_id, \
                                       user_id, input_messages, output_messages";

pub(crate) const FEEDBACK_COLUMNS: &str = "id, timestamp, trace_id, span_id, conversation_id, \
                                           name, value_type, score, label, text, comment, source";

pub(crate) const SIGNAL_COLUMNS: &str = "id, timestamp, trace_id, span_id, conversation_id, \
                                         type, source, discarded_trace_id, discarded_span_id, \
                                         tokens_received, ms_since_start, edit_ratio, \
                                         edited_text, text, turn_count";

/// A value bound to a `?` of the SQL.
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

    fn append(&mut self, other: &Sql) {
        self.push(&other.text, other.binds.iter().cloned());
    }
}

fn s(v: &str) -> Bind {
    Bind::Str(v.to_string())
}

/// A non-empty list for `IN ?` (ClickHouse refuses `IN []`): the `""` it always holds never
/// matches, because every query checks the compared column is not empty first.
fn id_list(ids: &Ids) -> Bind {
    let mut v = ids.as_slice().to_vec();
    v.push(String::new());
    Bind::Strs(v)
}

/// The call filters of `f` (time range, models, conversation, feedback, signal), each
/// starting with ` AND`.
pub fn call_filters(d: Dialect, f: &CallFilter) -> Sql {
    let mut sql = Sql::default();
    let ts = d.ts_of_ns();
    if let Some(from) = f.from {
        sql.push(&format!(" AND timestamp >= {ts}"), [Bind::I64(from)]);
    }
    if let Some(to) = f.to {
        sql.push(&format!(" AND timestamp < {ts}"), [Bind::I64(to)]);
    }
    if !f.models.is_empty() {
        sql.push(" AND model IN ?", [Bind::Strs(f.models.clone())]);
    }
    if let Some(c) = &f.conversation {
        sql.push(" AND conversation_id = ?", [s(c)]);
    }
    if let Some(fb) = &f.feedback {
        let mut cond = Sql::default();
        cond.push(" AND name = ?", [s(&fb.name)]);
        match &fb.value {
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
        attached(d, &mut sql, "feedback", &f.project, &cond);
    }
    if let Some(t) = &f.signal {
        let mut cond = Sql::default();
        cond.push(" AND type = ?", [s(t)]);
        attached(d, &mut sql, "signals", &f.project, &cond);
    }
    sql
}

/// ` AND` the call has an item of `table` matching `cond` attached by the join rule: same trace
/// and span (span level), same trace with no span (trace level), or same conversation with no
/// trace (conversation level).
fn attached(d: Dialect, sql: &mut Sql, table: &str, project: &str, cond: &Sql) {
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
    let fin = d.final_();
    sql.push(" AND (", []);
    for (i, (head, level)) in levels.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ", []);
        }
        sql.push(
            &format!("{head} FROM {table}{fin} WHERE project = ? AND {level}"),
            [s(project)],
        );
        sql.append(cond);
        sql.push(if i == 2 { "))" } else { ")" }, []);
    }
    sql.push(")", []);
}

/// One page of calls after `after`, in sorting-key order. The key condition is spelled out as
/// nested comparisons, a form ClickHouse's primary-key analysis understands.
pub fn calls_page(d: Dialect, f: &CallFilter, after: Option<&PageKey>, limit: u64) -> Sql {
    let fin = d.final_();
    let mut sql = Sql::default();
    sql.push(
        &format!("SELECT {CALL_COLUMNS} FROM llm_calls{fin} WHERE project = ?"),
        [s(&f.project)],
    );
    if let Some(k) = after {
        let ts = d.ts_of_ns();
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
    sql.append(&call_filters(d, f));
    sql.push(
        " ORDER BY model, timestamp, trace_id, span_id LIMIT ?",
        [Bind::I64(i64::try_from(limit).unwrap_or(i64::MAX))],
    );
    sql
}

/// How many calls match.
pub fn count_calls(d: Dialect, f: &CallFilter) -> Sql {
    let fin = d.final_();
    let mut sql = Sql::default();
    sql.push(
        &format!("SELECT count() FROM llm_calls{fin} WHERE project = ?"),
        [s(&f.project)],
    );
    sql.append(&call_filters(d, f));
    sql
}

/// Calls of the project with these trace ids (matching the call filters).
pub fn calls_of_traces(d: Dialect, f: &CallFilter, traces: &Ids) -> Sql {
    let fin = d.final_();
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {CALL_COLUMNS} FROM llm_calls{fin} WHERE project = ? AND trace_id != '' \
             AND trace_id IN ?"
        ),
        [s(&f.project), id_list(traces)],
    );
    sql.append(&call_filters(d, f));
    sql.push(" ORDER BY timestamp, trace_id, span_id", []);
    sql
}

/// Calls of the project in these conversations (matching the call filters).
pub fn calls_of_conversations(d: Dialect, f: &CallFilter, conversations: &Ids) -> Sql {
    let fin = d.final_();
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {CALL_COLUMNS} FROM llm_calls{fin} WHERE project = ? \
             AND conversation_id != '' AND conversation_id IN ?"
        ),
        [s(&f.project), id_list(conversations)],
    );
    sql.append(&call_filters(d, f));
    sql.push(" ORDER BY timestamp, trace_id, span_id", []);
    sql
}

/// Feedback of the project attached to calls of these traces or conversations.
pub fn feedback_for(d: Dialect, project: &str, traces: &Ids, conversations: &Ids) -> Sql {
    let fin = d.final_();
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {FEEDBACK_COLUMNS} FROM feedback{fin} WHERE project = ? \
             AND ((trace_id != '' AND trace_id IN ?) \
             OR (trace_id = '' AND conversation_id != '' AND conversation_id IN ?)) \
             ORDER BY timestamp, id"
        ),
        [s(project), id_list(traces), id_list(conversations)],
    );
    sql
}

/// Signals of the project attached to calls of these traces or conversations (a regenerate
/// signal also by the trace of the answer it discarded).
pub fn signals_for(d: Dialect, project: &str, traces: &Ids, conversations: &Ids) -> Sql {
    let fin = d.final_();
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals{fin} WHERE project = ? \
             AND ((trace_id != '' AND trace_id IN ?) \
             OR (discarded_trace_id != '' AND discarded_trace_id IN ?) \
             OR (trace_id = '' AND conversation_id != '' AND conversation_id IN ?)) \
             ORDER BY timestamp, id"
        ),
        [
            s(project),
            id_list(traces),
            id_list(traces),
            id_list(conversations),
        ],
    );
    sql
}

/// Signals of one type of the project, in time order.
pub fn signals_of_type(d: Dialect, project: &str, signal_type: &str) -> Sql {
    let fin = d.final_();
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {SIGNAL_COLUMNS} FROM signals{fin} WHERE project = ? AND type = ? \
             ORDER BY timestamp, id"
        ),
        [s(project), s(signal_type)],
    );
    sql
}

/// Feedback of one name that rates a call or a trace positively or negatively.
pub fn rating_feedback(
    d: Dialect,
    project: &str,
    name: &str,
    positive_min: f64,
    negative_max: f64,
) -> Sql {
    let fin = d.final_();
    let mut sql = Sql::default();
    sql.push(
        &format!(
            "SELECT {FEEDBACK_COLUMNS} FROM feedback{fin} WHERE project = ? AND name = ? \
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
    use crate::model::FeedbackFilter;

    fn filter() -> CallFilter {
        CallFilter {
            project: "p".into(),
            from: Some(1),
            to: Some(2),
            models: vec!["a".into()],
            conversation: Some("c".into()),
            feedback: Some(FeedbackFilter {
                name: "thumbs".into(),
                value: FeedbackValue::Range {
                    min: Some(0.5),
                    max: None,
                },
            }),
            signal: Some("edit".into()),
        }
    }

    #[test]
    fn binds_match_placeholders() {
        let f = filter();
        let key = PageKey {
            model: "m".into(),
            timestamp: 1,
            trace_id: "t".into(),
            span_id: "s".into(),
        };
        for d in [Dialect::ClickHouse, Dialect::DuckDb] {
            let ids = Ids::of(["a"]);
            for sql in [
                call_filters(d, &f),
                calls_page(d, &f, Some(&key), 10),
                count_calls(d, &f),
                calls_of_traces(d, &f, &ids),
                calls_of_conversations(d, &f, &ids),
                feedback_for(d, "p", &Ids::default(), &Ids::default()),
                signals_for(d, "p", &Ids::default(), &Ids::default()),
                signals_of_type(d, "p", "edit"),
                rating_feedback(d, "p", "thumbs", 1.0, 0.0),
            ] {
                assert_eq!(
                    sql.text.matches('?').count(),
                    sql.binds.len(),
                    "{}",
                    sql.text
                );
                assert_eq!(sql.text.matches('(').count(), sql.text.matches(')').count());
            }
        }
        // Every ClickHouse sub-select stays inside the project and reads FINAL.
        let ch = call_filters(Dialect::ClickHouse, &f);
        assert_eq!(ch.text.matches("FINAL WHERE project = ?").count(), 6);
        let duck = call_filters(Dialect::DuckDb, &f);
        assert_eq!(duck.text.matches("WHERE project = ?").count(), 6);
        assert!(!duck.text.contains("FINAL"), "{}", duck.text);
        assert!(!duck.text.contains("fromUnixTimestamp64Nano"));
    }

    #[test]
    fn id_lists_are_never_empty() {
        assert_eq!(id_list(&Ids::of([])), Bind::Strs(vec![String::new()]));
        assert_eq!(
            id_list(&Ids::of(["b", "a", "b", ""])),
            Bind::Strs(vec!["a".into(), "b".into(), String::new()])
        );
    }
}
