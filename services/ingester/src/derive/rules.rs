//! The derivation rules as ClickHouse queries over `llm_calls`, each returning `signals` rows
//! (the columns of [`flywheel_schema::rows::SignalRow`], in order). docs/SIGNALS.md explains
//! every rule, its parameters and where it is wrong.
//!
//! Every query reads `llm_calls FINAL`, so a span delivered twice is one call, and every id is
//! deterministic (`h:<type>:...`), so deriving the same thing again is the same row once
//! `signals` (a ReplacingMergeTree on `(project, id)`) has merged; readers use FINAL.

/// What one run looks at.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Calls that started at or after this time (Unix ns).
    pub since_ns: i64,
    /// The time the run considers "now" (Unix ns): conversations idle since before
    /// `now_ns - conversation_idle_ns` have ended.
    pub now_ns: i64,
    pub regenerate_window_ns: i64,
    pub conversation_idle_ns: i64,
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
