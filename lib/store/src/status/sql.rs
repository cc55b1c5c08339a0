//! The status queries, written once: each function returns the SQL of one query in the dialect
//! of a backend, with its binds. The dialects differ only in the spellings of [`Spelling`]
//! (table in the module doc of [`crate::status`]); column names and order are what the row
//! types of [`crate::status`] read.

use super::{bucket_limit, TimeRange, NEGATIVE_FEEDBACK, NEGATIVE_SIGNALS};
use crate::model::Ids;
use crate::sql::{Bind, Dialect, Sql};

/// The status queries' differences between the dialects.
trait Spelling {
    /// `col` in `[?, ?)`, two binds of Unix milliseconds.
    fn in_range(self, col: &str) -> String;
    /// Unix milliseconds (Int64) of a timestamp.
    fn ms(self, col: &str) -> String;
    /// The start of the bucket of `col`, Unix ms, with two binds of the step.
    fn bucket(self, col: &str) -> String;
    /// How many rows of the group satisfy `cond`.
    fn count_if(self, cond: &str) -> String;
    /// Exact, interpolated (type 7) quantiles of `x` at `levels`, NULLs skipped: an array.
    fn quantiles(self, levels: &str, x: &str) -> String;
    /// [`Self::quantiles`] at one level of a nullable `x`: a number, NULL without a value.
    fn quantile(self, level: &str, x: &str) -> String;
    /// `x` of the row with the greatest `t` (rows with `x` NULL skipped).
    fn arg_max(self, x: &str, t: &str) -> String;
}

impl Spelling for Dialect {
    fn in_range(self, col: &str) -> String {
        match self {
            Self::ClickHouse => format!(
                "{col} >= fromUnixTimestamp64Milli(?) AND {col} < fromUnixTimestamp64Milli(?)"
            ),
            Self::DuckDb => format!(
                "{col} >= make_timestamp_ns(? * 1000000) AND {col} < make_timestamp_ns(? * 1000000)"
            ),
        }
    }

    fn ms(self, col: &str) -> String {
        match self {
            Self::ClickHouse => format!("toInt64(toUnixTimestamp64Milli({col}))"),
            Self::DuckDb => format!("epoch_ms({col})"),
        }
    }

    fn bucket(self, col: &str) -> String {
        match self {
            Self::ClickHouse => format!("toInt64(intDiv(toUnixTimestamp64Milli({col}), ?) * ?)"),
            Self::DuckDb => format!("(epoch_ms({col}) // ?) * ?"),
        }
    }

    fn count_if(self, cond: &str) -> String {
        match self {
            Self::ClickHouse => format!("countIf({cond})"),
            Self::DuckDb => format!("count(*) FILTER (WHERE {cond})"),
        }
    }

    fn quantiles(self, levels: &str, x: &str) -> String {
        match self {
            Self::ClickHouse => {
                format!("quantilesExactInclusiveIf({levels})(coalesce({x}, 0), {x} IS NOT NULL)")
            }
            Self::DuckDb => format!("quantile_cont({x}, [{levels}])"),
        }
    }

    fn quantile(self, level: &str, x: &str) -> String {
        match self {
            // Over a Nullable column: Nullable, NULL when no value (the -Null adapter).
            Self::ClickHouse => format!("quantileExactInclusive({level})({x})"),
            Self::DuckDb => format!("quantile_cont({x}, {level})"),
        }
    }

    fn arg_max(self, x: &str, t: &str) -> String {
        match self {
            Self::ClickHouse => format!("argMax({x}, {t})"),
            Self::DuckDb => format!("arg_max({x}, {t})"),
        }
    }
}

fn s(v: &str) -> Bind {
    Bind::Str(v.to_string())
}

fn i(v: impl TryInto<i64>) -> Bind {
    Bind::I64(v.try_into().unwrap_or(i64::MAX))
}

/// The binds of `project = ? AND <in_range>`.
fn scope(project: &str, range: TimeRange) -> [Bind; 3] {
    [s(project), i(range.since_ms), i(range.until_ms)]
}

fn negative_signals() -> Bind {
    Bind::Strs(NEGATIVE_SIGNALS.iter().map(|t| t.to_string()).collect())
}

const LEVELS: &str = "0.5, 0.95, 0.99";

/// Columns of [`super::ModelRow`].
pub fn model_stats(d: Dialect, project: &str, range: TimeRange, limit: u32) -> Sql {
    let (fin, in_range) = (d.final_(), d.in_range("timestamp"));
    let errors = d.count_if("status_code = 'Error'");
    let ttft = d.quantiles(LEVELS, "ttft_ms");
    let tpot = d.quantiles(LEVELS, "tpot_ms");
    let duration = d.quantiles(LEVELS, "duration_ns / 1000000");
    let mut binds = scope(project, range).to_vec();
    binds.push(i(limit));
    Sql {
        text: format!(
            "SELECT model, count() AS calls, {errors} AS errors, \
             sum(coalesce(cost_usd, 0)) AS cost_total, \
             sum(coalesce(input_tokens, 0)) AS input_total, \
             sum(coalesce(output_tokens, 0)) AS output_total, \
             {ttft} AS ttft_q, {tpot} AS tpot_q, {duration} AS duration_q \
             FROM llm_calls{fin} WHERE project = ? AND {in_range} \
             GROUP BY model ORDER BY cost_total DESC, calls DESC, model LIMIT ?"
        ),
        binds,
    }
}

/// Columns of [`super::CallBucketRow`].
pub fn call_buckets(d: Dialect, project: &str, range: TimeRange, step_ms: i64) -> Sql {
    let (fin, in_range) = (d.final_(), d.in_range("timestamp"));
    let bucket = d.bucket("timestamp");
    let errors = d.count_if("status_code = 'Error'");
    let ttft = d.quantile("0.95", "ttft_ms");
    let mut binds = vec![i(step_ms), i(step_ms)];
    binds.extend(scope(project, range));
    binds.push(i(bucket_limit(range, step_ms)));
    Sql {
        text: format!(
            "SELECT {bucket} AS t, count() AS calls, {errors} AS errors, {ttft} AS ttft_p95, \
             sum(coalesce(cost_usd, 0)) AS cost_total \
             FROM llm_calls{fin} WHERE project = ? AND {in_range} \
             GROUP BY t ORDER BY t LIMIT ?"
        ),
        binds,
    }
}

/// Columns of [`super::NegativeBucketRow`]. The `ORDER BY` and `LIMIT` apply to the whole
/// union (ClickHouse would apply them to its last part only without the sub-select).
pub fn negative_buckets(d: Dialect, project: &str, range: TimeRange, step_ms: i64) -> Sql {
    let (fin, in_range) = (d.final_(), d.in_range("timestamp"));
    let bucket = d.bucket("timestamp");
    let mut binds = vec![i(step_ms), i(step_ms)];
    binds.extend(scope(project, range));
    binds.extend([i(step_ms), i(step_ms)]);
    binds.extend(scope(project, range));
    binds.push(negative_signals());
    binds.push(i(2 * bucket_limit(range, step_ms)));
    Sql {
        text: format!(
            "SELECT kind, t, n FROM (\
             SELECT 'feedback' AS kind, {bucket} AS t, count() AS n FROM feedback{fin} \
             WHERE project = ? AND {in_range} AND {NEGATIVE_FEEDBACK} GROUP BY t \
             UNION ALL \
             SELECT 'signal' AS kind, {bucket} AS t, count() AS n FROM signals{fin} \
             WHERE project = ? AND {in_range} AND type IN ? GROUP BY t\
             ) ORDER BY kind, t LIMIT ?"
        ),
        binds,
    }
}

/// Columns of [`super::FeedbackHit`].
pub fn negative_feedback(d: Dialect, project: &str, range: TimeRange, limit: u32) -> Sql {
    let (fin, in_range) = (d.final_(), d.in_range("timestamp"));
    let time_ms = d.ms("timestamp");
    let mut binds = scope(project, range).to_vec();
    binds.push(i(limit));
    Sql {
        text: format!(
            "SELECT {time_ms} AS time_ms, name, value_type, score, label, text, comment, \
             source, conversation_id, trace_id, span_id, user_id \
             FROM feedback{fin} WHERE project = ? AND {in_range} AND {NEGATIVE_FEEDBACK} \
             ORDER BY timestamp DESC, id DESC LIMIT ?"
        ),
        binds,
    }
}

/// Columns of [`super::SignalHit`].
pub fn negative_signals_of(d: Dialect, project: &str, range: TimeRange, limit: u32) -> Sql {
    let (fin, in_range) = (d.final_(), d.in_range("timestamp"));
    let time_ms = d.ms("timestamp");
    let mut binds = scope(project, range).to_vec();
    binds.push(negative_signals());
    binds.push(i(limit));
    Sql {
        text: format!(
            "SELECT {time_ms} AS time_ms, type AS kind, source, conversation_id, trace_id, \
             span_id, user_id, tokens_received, edit_ratio, text \
             FROM signals{fin} WHERE project = ? AND {in_range} AND type IN ? \
             ORDER BY timestamp DESC, id DESC LIMIT ?"
        ),
        binds,
    }
}

/// Columns of [`super::CallBriefRow`]; `None` when `traces` is empty (nothing to read).
pub fn call_briefs(
    d: Dialect,
    project: &str,
    range: TimeRange,
    traces: &Ids,
    limit: u32,
) -> Option<Sql> {
    if traces.as_slice().is_empty() {
        return None;
    }
    let (fin, in_range) = (d.final_(), d.in_range("timestamp"));
    let mut binds = scope(project, range).to_vec();
    binds.push(Bind::Strs(traces.as_slice().to_vec()));
    binds.push(i(limit));
    Some(Sql {
        text: format!(
            "SELECT trace_id, span_id, model, input_messages, output_messages \
             FROM llm_calls{fin} WHERE project = ? AND {in_range} AND trace_id IN ? \
             ORDER BY timestamp DESC, trace_id, span_id LIMIT ?"
        ),
        binds,
    })
}

/// Columns of [`super::EpisodeRow`] (maps as the backend reads them). `alerts` holds events
/// (no `FINAL`): an episode is a fingerprint's rows of one `starts_at`.
pub fn alert_episodes(d: Dialect, project: &str, range: TimeRange, limit: u32) -> Sql {
    let in_range = d.in_range("sent_at");
    let last = |x: &str| d.arg_max(x, "sent_at");
    let (name, slo, sev, state) = (
        last("alertname"),
        last("slo"),
        last("severity"),
        last("state"),
    );
    let (labels, annotations) = (last("labels"), last("annotations"));
    let start_ms = d.ms("starts_at");
    let end_ms = d.ms(&last("ends_at"));
    let last_sent_ms = d.ms("max(sent_at)");
    let mut binds = scope(project, range).to_vec();
    binds.push(i(limit));
    Sql {
        text: format!(
            "SELECT fingerprint, {start_ms} AS start_ms, {name} AS name, {slo} AS slo_name, \
             {sev} AS sev, {state} AS last_state, {labels} AS label_map, \
             {annotations} AS annotation_map, {end_ms} AS end_ms, \
             {last_sent_ms} AS last_sent_ms, \
             max(long_burn_rate) AS peak_long, max(short_burn_rate) AS peak_short, \
             min(budget_remaining) AS min_budget \
             FROM alerts WHERE project = ? AND {in_range} \
             GROUP BY fingerprint, starts_at \
             ORDER BY last_sent_ms DESC, fingerprint, start_ms LIMIT ?"
        ),
        binds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_match_placeholders() {
        let r = TimeRange {
            since_ms: 1,
            until_ms: 2,
        };
        let ids = Ids::of(["t"]);
        for d in [Dialect::ClickHouse, Dialect::DuckDb] {
            for sql in [
                model_stats(d, "p", r, 1),
                call_buckets(d, "p", r, 10),
                negative_buckets(d, "p", r, 10),
                negative_feedback(d, "p", r, 1),
                negative_signals_of(d, "p", r, 1),
                call_briefs(d, "p", r, &ids, 1).unwrap(),
                alert_episodes(d, "p", r, 1),
            ] {
                assert_eq!(
                    sql.text.matches('?').count(),
                    sql.binds.len(),
                    "{}",
                    sql.text
                );
                assert_eq!(sql.text.matches('(').count(), sql.text.matches(')').count());
                // Every part of every query stays inside the project.
                assert_eq!(
                    sql.text.matches("project = ?").count(),
                    sql.text.matches(" FROM ").count() - sql.text.matches("FROM (").count(),
                    "{}",
                    sql.text
                );
                let fin = sql.text.contains("FINAL");
                assert_eq!(
                    fin,
                    d == Dialect::ClickHouse && !sql.text.contains("FROM alerts"),
                    "{}",
                    sql.text
                );
            }
        }
        assert!(call_briefs(Dialect::DuckDb, "p", r, &Ids::default(), 1).is_none());
    }
}
