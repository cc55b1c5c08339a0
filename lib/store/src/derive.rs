//! Derived signals (docs/SIGNALS.md): the rules inferring `regenerate`, `stop` and
//! `conversation_end` from stored `llm_calls`, as queries returning `signals` rows (the columns
//! of [`flywheel_schema::rows::SignalRow`], in order), in both dialects. docs/SIGNALS.md
//! explains every rule, its parameters and where it is wrong.
//!
//! Every query reads deduplicated calls (`llm_calls FINAL` on ClickHouse; DuckDB stores one
//! row per key), so a span delivered twice is one call, and every id is deterministic
//! (`h:<type>:...`), so deriving the same thing again is the same row (`signals` keeps one row
//! per `(project, id)`). The ClickHouse text is the ingester's of before issue 6, unchanged;
//! the DuckDB text is its translation (`lagInFrame` -> `lag`, `argMax` -> `arg_max`,
//! `uniqExact` -> `count(DISTINCT)`, `cityHash64(x) = cityHash64(y)` -> `x = y`, maps as
//! `MAP {...}`), and the same crafted calls give the same rows on both (tests/store_ingest.rs).

use crate::sql::Dialect;

/// What one run looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Calls that started at or after this time (Unix ns).
    pub since_ns: i64,
    /// The time the run considers "now" (Unix ns): conversations idle since before
    /// `now_ns - conversation_idle_ns` have ended.
    pub now_ns: i64,
    pub regenerate_window_ns: i64,
    pub conversation_idle_ns: i64,
}

/// One derivation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Regenerate,
    Stop,
    ConversationEnd,
}

impl Rule {
    /// Every rule, in the order runs apply and report them.
    pub const ALL: [Rule; 3] = [Rule::Regenerate, Rule::Stop, Rule::ConversationEnd];

    /// The signal type it derives.
    pub fn signal_type(self) -> &'static str {
        match self {
            Self::Regenerate => "regenerate",
            Self::Stop => "stop",
            Self::ConversationEnd => "conversation_end",
        }
    }

    /// The rule's query over `w` in dialect `d`.
    pub fn query(self, d: Dialect, w: &Window) -> String {
        match (self, d) {
            (Self::Regenerate, Dialect::ClickHouse) => regenerate(w),
            (Self::Stop, Dialect::ClickHouse) => stop(w),
            (Self::ConversationEnd, Dialect::ClickHouse) => conversation_end(w),
            (Self::Regenerate, Dialect::DuckDb) => duckdb::regenerate(w),
            (Self::Stop, Dialect::DuckDb) => duckdb::stop(w),
            (Self::ConversationEnd, Dialect::DuckDb) => duckdb::conversation_end(w),
        }
    }

    /// The rows of the rule over `w` not stored yet ([`only_new`]), in `(project, id)` order.
    pub fn new_rows(self, d: Dialect, w: &Window) -> String {
        let rule = self.query(d, w);
        match d {
            Dialect::ClickHouse => only_new(&rule, w),
            Dialect::DuckDb => duckdb::only_new(&rule, w),
        }
    }
}

/// The nullable and type-specific columns a rule does not set.
const NO_STOP: &str = "CAST(NULL AS Nullable(UInt64)) AS tokens_received, \
                       CAST(NULL AS Nullable(Float64)) AS ms_since_start";
const NO_EDIT: &str =
    "CAST(NULL AS Nullable(Float64)) AS edit_ratio, '' AS edited_text, '' AS text";
const NO_TURNS: &str = "CAST(NULL AS Nullable(UInt32)) AS turn_count";

fn ts(ns: i64) -> String {
    format!("fromUnixTimestamp64Nano(toInt64({ns}))")
}

/// regenerate: a call whose input hashes equal to the previous call of the same conversation
/// (calls with captured input only), within the window, and whose earlier call did not fail:
/// the earlier answer was discarded. Subject and `discarded` = the earlier call; the time is
/// the later call's start; attributes name the replacing call.
pub fn regenerate(w: &Window) -> String {
    let since = ts(w.since_ns);
    let from = ts(w.since_ns.saturating_sub(w.regenerate_window_ns));
    let window = w.regenerate_window_ns;
    // Inner names differ from the output columns: ClickHouse aliases are visible in the whole
    // SELECT, so `prev_trace_id AS trace_id` would shadow the column `trace_id`.
    format!(
        "SELECT concat('h:regenerate:', prev_trace, ':', prev_span) AS id, project, \
           call_time AS timestamp, prev_trace AS trace_id, prev_span AS span_id, \
           conversation_id, prev_user AS user_id, 'regenerate' AS type, \
           'heuristic' AS source, 'derived' AS origin, prev_trace AS discarded_trace_id, \
           prev_span AS discarded_span_id, {NO_STOP}, {NO_EDIT}, {NO_TURNS}, \
           map('replaced_by_trace_id', call_trace, 'replaced_by_span_id', call_span, \
               'seconds_between', toString(intDiv(gap_ns, 1000000000))) AS attributes, \
           now64(9) AS received_at \
         FROM ( \
           SELECT *, toUnixTimestamp64Nano(call_time) - toUnixTimestamp64Nano(prev_time) AS gap_ns \
           FROM ( \
             SELECT project, conversation_id, call_trace, call_span, call_time, input_hash, \
               row_number() OVER w AS n, \
               lagInFrame(call_trace) OVER w AS prev_trace, \
               lagInFrame(call_span) OVER w AS prev_span, \
               lagInFrame(call_user) OVER w AS prev_user, \
               lagInFrame(call_time) OVER w AS prev_time, \
               lagInFrame(input_hash) OVER w AS prev_hash, \
               lagInFrame(failed) OVER w AS prev_failed \
             FROM ( \
               SELECT project, conversation_id, trace_id AS call_trace, span_id AS call_span, \
                 user_id AS call_user, timestamp AS call_time, \
                 cityHash64(input_messages) AS input_hash, status_code = 'Error' AS failed \
               FROM llm_calls FINAL \
               WHERE conversation_id != '' AND input_messages != '' AND timestamp >= {from} \
             ) \
             WINDOW w AS (PARTITION BY project, conversation_id \
                          ORDER BY call_time, call_trace, call_span \
                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) \
           ) \
           WHERE n > 1 AND input_hash = prev_hash AND NOT prev_failed AND call_time >= {since} \
         ) \
         WHERE gap_ns <= {window}"
    )
}

/// stop: a streaming call that was aborted, or ended without a finish reason and without an
/// error. The time is the call's end; `tokens_received` its output tokens (when reported),
/// `ms_since_start` its duration.
pub fn stop(w: &Window) -> String {
    let since = ts(w.since_ns);
    format!(
        "SELECT concat('h:stop:', trace_id, ':', span_id) AS id, project, \
           end_time AS timestamp, trace_id, span_id, conversation_id, user_id, 'stop' AS type, \
           'heuristic' AS source, 'derived' AS origin, \
           '' AS discarded_trace_id, '' AS discarded_span_id, \
           output_tokens AS tokens_received, \
           CAST(duration_ns / 1e6 AS Nullable(Float64)) AS ms_since_start, {NO_EDIT}, {NO_TURNS}, \
           map('finish_reasons', arrayStringConcat(finish_reasons, ','), \
               'status_code', status_code) AS attributes, \
           now64(9) AS received_at \
         FROM ( \
           SELECT *, \
             fromUnixTimestamp64Nano(toUnixTimestamp64Nano(timestamp) + toInt64(duration_ns)) AS end_time \
           FROM llm_calls FINAL \
           WHERE streaming AND (aborted OR (empty(finish_reasons) AND status_code != 'Error')) \
             AND timestamp >= {since} \
         )"
    )
}

/// conversation_end: a conversation whose last call is in view and older than the idle time.
/// `turn_count` = distinct traces of the whole conversation (one trace per user turn is how
/// chat SDKs trace); subject = the last call. A conversation that resumes is derived again,
/// later, with the same id: the newer row replaces the older.
pub fn conversation_end(w: &Window) -> String {
    let since = ts(w.since_ns);
    let idle_before = ts(w.now_ns.saturating_sub(w.conversation_idle_ns));
    format!(
        "SELECT concat('h:conversation_end:', conversation_id) AS id, project, \
           last_timestamp AS timestamp, last_trace_id AS trace_id, last_span_id AS span_id, \
           conversation_id, last_user_id AS user_id, 'conversation_end' AS type, \
           'heuristic' AS source, 'derived' AS origin, \
           '' AS discarded_trace_id, '' AS discarded_span_id, {NO_STOP}, {NO_EDIT}, \
           CAST(turns AS Nullable(UInt32)) AS turn_count, \
           map('calls', toString(calls)) AS attributes, now64(9) AS received_at \
         FROM ( \
           SELECT project, conversation_id, max(timestamp) AS last_timestamp, \
             argMax(trace_id, timestamp) AS last_trace_id, \
             argMax(span_id, timestamp) AS last_span_id, \
             argMax(user_id, timestamp) AS last_user_id, \
             uniqExact(trace_id) AS turns, count() AS calls \
           FROM llm_calls FINAL \
           WHERE conversation_id != '' AND (project, conversation_id) IN ( \
             SELECT project, conversation_id FROM llm_calls \
             WHERE conversation_id != '' AND timestamp >= {since}) \
           GROUP BY project, conversation_id \
           HAVING last_timestamp >= {since} AND last_timestamp < {idle_before} \
         )"
    )
}

/// Wraps a rule: only rows not already stored as they are (same id, time and turn count), so
/// that a run re-deriving what an earlier run found inserts nothing.
pub fn only_new(rule: &str, w: &Window) -> String {
    let since = ts(w.since_ns.saturating_sub(w.regenerate_window_ns));
    format!(
        "SELECT * FROM ({rule}) AS derived \
         WHERE (project, id, timestamp, ifNull(turn_count, 0)) NOT IN ( \
           SELECT project, id, timestamp, ifNull(turn_count, 0) FROM signals \
           WHERE origin = 'derived' AND timestamp >= {since}) \
         ORDER BY project, id"
    )
}

/// The same rules in DuckDB's dialect. `only_new` also converts the columns DuckDB's crate
/// cannot read as the row type (timestamps to Unix ns, the map to JSON entries).
pub mod duckdb {
    use super::Window;

    const NO_STOP: &str = "CAST(NULL AS UBIGINT) AS tokens_received, \
                           CAST(NULL AS DOUBLE) AS ms_since_start";
    const NO_EDIT: &str = "CAST(NULL AS DOUBLE) AS edit_ratio, '' AS edited_text, '' AS \"text\"";
    const NO_TURNS: &str = "CAST(NULL AS UINTEGER) AS turn_count";
    const NOW: &str = "CAST(now() AS TIMESTAMP_NS) AS received_at";

    fn ts(ns: i64) -> String {
        format!("make_timestamp_ns(CAST({ns} AS BIGINT))")
    }

    /// [`super::regenerate`]. Inputs are compared as text (ClickHouse compares their hashes).
    pub fn regenerate(w: &Window) -> String {
        let since = ts(w.since_ns);
        let from = ts(w.since_ns.saturating_sub(w.regenerate_window_ns));
        let window = w.regenerate_window_ns;
        format!(
            "SELECT concat('h:regenerate:', prev_trace, ':', prev_span) AS id, project, \
               call_time AS \"timestamp\", prev_trace AS trace_id, prev_span AS span_id, \
               conversation_id, prev_user AS user_id, 'regenerate' AS \"type\", \
               'heuristic' AS source, 'derived' AS origin, prev_trace AS discarded_trace_id, \
               prev_span AS discarded_span_id, {NO_STOP}, {NO_EDIT}, {NO_TURNS}, \
               MAP {{'replaced_by_trace_id': call_trace, 'replaced_by_span_id': call_span, \
                     'seconds_between': CAST(gap_ns // 1000000000 AS VARCHAR)}} AS attributes, \
               {NOW} \
             FROM ( \
               SELECT *, epoch_ns(call_time) - epoch_ns(prev_time) AS gap_ns \
               FROM ( \
                 SELECT project, conversation_id, call_trace, call_span, call_time, input_hash, \
                   row_number() OVER w AS n, \
                   lag(call_trace) OVER w AS prev_trace, \
                   lag(call_span) OVER w AS prev_span, \
                   lag(call_user) OVER w AS prev_user, \
                   lag(call_time) OVER w AS prev_time, \
                   lag(input_hash) OVER w AS prev_hash, \
                   lag(failed) OVER w AS prev_failed \
                 FROM ( \
                   SELECT project, conversation_id, trace_id AS call_trace, span_id AS call_span, \
                     user_id AS call_user, \"timestamp\" AS call_time, \
                     input_messages AS input_hash, status_code = 'Error' AS failed \
                   FROM llm_calls \
                   WHERE conversation_id != '' AND input_messages != '' AND \"timestamp\" >= {from} \
                 ) \
                 WINDOW w AS (PARTITION BY project, conversation_id \
                              ORDER BY call_time, call_trace, call_span) \
               ) \
               WHERE n > 1 AND input_hash = prev_hash AND NOT prev_failed AND call_time >= {since} \
             ) \
             WHERE gap_ns <= {window}"
        )
    }

    /// [`super::stop`].
    pub fn stop(w: &Window) -> String {
        let since = ts(w.since_ns);
        format!(
            "SELECT concat('h:stop:', trace_id, ':', span_id) AS id, project, \
               end_time AS \"timestamp\", trace_id, span_id, conversation_id, user_id, \
               'stop' AS \"type\", 'heuristic' AS source, 'derived' AS origin, \
               '' AS discarded_trace_id, '' AS discarded_span_id, \
               output_tokens AS tokens_received, \
               CAST(duration_ns / 1e6 AS DOUBLE) AS ms_since_start, {NO_EDIT}, {NO_TURNS}, \
               MAP {{'finish_reasons': array_to_string(finish_reasons, ','), \
                     'status_code': status_code}} AS attributes, \
               {NOW} \
             FROM ( \
               SELECT *, \
                 make_timestamp_ns(epoch_ns(\"timestamp\") + CAST(duration_ns AS BIGINT)) AS end_time \
               FROM llm_calls \
               WHERE streaming AND (aborted OR (len(finish_reasons) = 0 AND status_code != 'Error')) \
                 AND \"timestamp\" >= {since} \
             )"
        )
    }

    /// [`super::conversation_end`].
    pub fn conversation_end(w: &Window) -> String {
        let since = ts(w.since_ns);
        let idle_before = ts(w.now_ns.saturating_sub(w.conversation_idle_ns));
        format!(
            "SELECT concat('h:conversation_end:', conversation_id) AS id, project, \
               last_timestamp AS \"timestamp\", last_trace_id AS trace_id, \
               last_span_id AS span_id, conversation_id, last_user_id AS user_id, \
               'conversation_end' AS \"type\", 'heuristic' AS source, 'derived' AS origin, \
               '' AS discarded_trace_id, '' AS discarded_span_id, {NO_STOP}, {NO_EDIT}, \
               CAST(turns AS UINTEGER) AS turn_count, \
               MAP {{'calls': CAST(calls AS VARCHAR)}} AS attributes, {NOW} \
             FROM ( \
               SELECT project, conversation_id, max(\"timestamp\") AS last_timestamp, \
                 arg_max(trace_id, \"timestamp\") AS last_trace_id, \
                 arg_max(span_id, \"timestamp\") AS last_span_id, \
                 arg_max(user_id, \"timestamp\") AS last_user_id, \
                 count(DISTINCT trace_id) AS turns, count(*) AS calls \
               FROM llm_calls \
               WHERE conversation_id != '' AND (project, conversation_id) IN ( \
                 SELECT project, conversation_id FROM llm_calls \
                 WHERE conversation_id != '' AND \"timestamp\" >= {since}) \
               GROUP BY project, conversation_id \
               HAVING max(\"timestamp\") >= {since} AND max(\"timestamp\") < {idle_before} \
             )"
        )
    }

    /// [`super::only_new`], selecting the columns of `SignalRow` in order with the timestamps
    /// as Unix ns and the attributes as JSON `[{"key": .., "value": ..}]`.
    pub fn only_new(rule: &str, w: &Window) -> String {
        let since = ts(w.since_ns.saturating_sub(w.regenerate_window_ns));
        format!(
            "SELECT id, project, epoch_ns(\"timestamp\"), trace_id, span_id, conversation_id, \
               user_id, \"type\", source, origin, discarded_trace_id, discarded_span_id, \
               tokens_received, ms_since_start, edit_ratio, edited_text, \"text\", turn_count, \
               CAST(to_json(map_entries(attributes)) AS VARCHAR), epoch_ns(received_at) \
             FROM ({rule}) AS derived \
             WHERE (project, id, \"timestamp\", ifnull(turn_count, 0)) NOT IN ( \
               SELECT project, id, \"timestamp\", ifnull(turn_count, 0) FROM signals \
               WHERE origin = 'derived' AND \"timestamp\" >= {since}) \
             ORDER BY project, id"
        )
    }
}
