//! The detector's SQL in both dialects. The ClickHouse text is the detector's own, as it was in
//! `services/detector/src/history.rs`, but for one fix found by comparing the backends: [`firing`]
//! read `toInt64(argMax(starts_at, sent_at))`, which is whole *seconds* of a `DateTime64(9)`
//! (restored alerts started in 1970 and were last sent in 1970: re-sent at once); it reads
//! `toUnixTimestamp64Nano` now. The DuckDB text asks the same: no `FINAL` (tables hold
//! one row per key, adr/0009), `arg_max` for `argMax`, timestamps from bound milliseconds or
//! nanoseconds with `make_timestamp_ns`, the event time of a call (its end) with `epoch_ns`.

use super::{SpendQuery, OTHER_USER};
use crate::model::Ids;
use crate::sql::{Bind, Dialect, Sql};

/// Latest state per fingerprint, `firing` only. Columns: fingerprint, labels, annotations,
/// starts_at, event_time, state (DuckDB: maps as JSON `[{"key", "value"}]`, times as
/// `TIMESTAMP_NS`).
pub fn firing(d: Dialect) -> &'static str {
    match d {
        Dialect::ClickHouse => {
            "SELECT fingerprint, argMax(labels, sent_at) AS labels, \
             argMax(annotations, sent_at) AS annotations, \
             toUnixTimestamp64Nano(argMax(starts_at, sent_at)) AS starts_at, \
             toUnixTimestamp64Nano(argMax(event_time, sent_at)) AS event_time, \
             argMax(state, sent_at) AS state \
             FROM alerts GROUP BY fingerprint HAVING state = 'firing'"
        }
        Dialect::DuckDb => {
            "SELECT fingerprint, \
             CAST(to_json(map_entries(arg_max(labels, sent_at))) AS VARCHAR) AS labels, \
             CAST(to_json(map_entries(arg_max(annotations, sent_at))) AS VARCHAR) AS annotations, \
             arg_max(starts_at, sent_at) AS starts_at, \
             arg_max(event_time, sent_at) AS event_time, \
             arg_max(state, sent_at) AS state \
             FROM alerts GROUP BY fingerprint HAVING arg_max(state, sent_at) = 'firing'"
        }
    }
}

/// The DuckDB columns of `alerts` in [`flywheel_schema::rows::AlertRow`]'s order (maps as
/// JSON entries).
pub const DUCKDB_ALERT_COLUMNS: &str = "fingerprint, alertname, slo, project, severity, state, \
    announced, CAST(to_json(map_entries(labels)) AS VARCHAR), \
    CAST(to_json(map_entries(annotations)) AS VARCHAR), starts_at, ends_at, long_burn_rate, \
    short_burn_rate, sli, budget_remaining, event_time, sent_at";

/// Announced rows of a project, newest first.
pub fn recent(d: Dialect, project: &str, limit: u64) -> Sql {
    let columns = match d {
        Dialect::ClickHouse => "?fields",
        Dialect::DuckDb => DUCKDB_ALERT_COLUMNS,
    };
    Sql {
        text: format!(
            "SELECT {columns} FROM alerts WHERE project = ? AND announced \
             ORDER BY sent_at DESC LIMIT ?"
        ),
        binds: vec![
            Bind::Str(project.to_string()),
            Bind::I64(i64::try_from(limit).unwrap_or(i64::MAX)),
        ],
    }
}

/// Calls, feedback and signals of the rebuild (in that order), each with the binds
/// `from_ms`, `cut_ns`.
pub fn stored_events(d: Dialect, from_ms: i64, cut_ns: i64) -> [Sql; 3] {
    let texts: [&str; 3] = match d {
        Dialect::ClickHouse => [
            "SELECT toInt64(toUnixTimestamp64Milli(timestamp)) + toInt64(intDiv(duration_ns, 1000000)) AS ts, \
             project, service, model, \
             operation, status_code, duration_ns, ttft_ms, tpot_ms, cost_usd, \
             if(isNull(input_tokens) AND isNull(output_tokens), NULL, \
             ifNull(input_tokens, 0) + ifNull(output_tokens, 0)) AS tokens, trace_id, span_id, \
             conversation_id, user_id FROM llm_calls FINAL \
             WHERE timestamp >= fromUnixTimestamp64Milli(toInt64(?)) \
             AND received_at < fromUnixTimestamp64Nano(toInt64(?))",
            "SELECT toInt64(toUnixTimestamp64Milli(timestamp)) AS ts, project, trace_id, span_id, \
             conversation_id, name, value_type, score, label FROM feedback FINAL \
             WHERE timestamp >= fromUnixTimestamp64Milli(toInt64(?)) \
             AND received_at < fromUnixTimestamp64Nano(toInt64(?))",
            "SELECT toInt64(toUnixTimestamp64Milli(timestamp)) AS ts, project, trace_id, span_id, \
             conversation_id, type AS name, '' AS value_type, CAST(NULL, 'Nullable(Float64)') AS score, \
             '' AS label FROM signals FINAL \
             WHERE timestamp >= fromUnixTimestamp64Milli(toInt64(?)) \
             AND received_at < fromUnixTimestamp64Nano(toInt64(?))",
        ],
        Dialect::DuckDb => [
            "SELECT CAST(epoch_ns(timestamp) // 1000000 + duration_ns // 1000000 AS BIGINT) AS ts, \
             project, service, model, \
             operation, status_code, duration_ns, ttft_ms, tpot_ms, cost_usd, \
             CASE WHEN input_tokens IS NULL AND output_tokens IS NULL THEN NULL \
             ELSE coalesce(input_tokens, 0) + coalesce(output_tokens, 0) END AS tokens, \
             trace_id, span_id, conversation_id, user_id FROM llm_calls \
             WHERE timestamp >= make_timestamp_ns(CAST(? AS BIGINT) * 1000000) \
             AND received_at < make_timestamp_ns(CAST(? AS BIGINT))",
            "SELECT CAST(epoch_ns(timestamp) // 1000000 AS BIGINT) AS ts, project, trace_id, \
             span_id, conversation_id, name, value_type, score, label FROM feedback \
             WHERE timestamp >= make_timestamp_ns(CAST(? AS BIGINT) * 1000000) \
             AND received_at < make_timestamp_ns(CAST(? AS BIGINT))",
            "SELECT CAST(epoch_ns(timestamp) // 1000000 AS BIGINT) AS ts, project, trace_id, \
             span_id, conversation_id, type AS name, '' AS value_type, \
             CAST(NULL AS DOUBLE) AS score, '' AS label FROM signals \
             WHERE timestamp >= make_timestamp_ns(CAST(? AS BIGINT) * 1000000) \
             AND received_at < make_timestamp_ns(CAST(? AS BIGINT))",
        ],
    };
    texts.map(|t| Sql {
        text: t.to_string(),
        binds: vec![Bind::I64(from_ms), Bind::I64(cut_ns)],
    })
}

/// Calls named by these traces or conversations; `None` when both are empty. The same text
/// in both dialects (`IN ?` binds a list).
pub fn lookup_keys(traces: &Ids, conversations: &Ids) -> Option<Sql> {
    let mut cond = Vec::new();
    let mut binds = Vec::new();
    if !traces.as_slice().is_empty() {
        cond.push("trace_id IN ?");
        binds.push(Bind::Strs(traces.as_slice().to_vec()));
    }
    if !conversations.as_slice().is_empty() {
        cond.push("(conversation_id != '' AND conversation_id IN ?)");
        binds.push(Bind::Strs(conversations.as_slice().to_vec()));
    }
    if cond.is_empty() {
        return None;
    }
    Some(Sql {
        text: format!(
            "SELECT project, service, model, operation, trace_id, span_id, conversation_id \
             FROM llm_calls WHERE {} ORDER BY timestamp LIMIT 100000",
            cond.join(" OR ")
        ),
        binds,
    })
}

/// The words of the seed query that differ between dialects.
struct SeedWords {
    policy: &'static str,
    calls: &'static str,
    fin: &'static str,
    has_cost: &'static str,
    ts_of_ms: &'static str,
    end_ms: &'static str,
    int: &'static str,
    ts_of_ns: &'static str,
}

fn seed_words(d: Dialect) -> SeedWords {
    match d {
        Dialect::ClickHouse => SeedWords {
            policy: "toUInt32(?)",
            calls: "toUInt64(sum(inner_calls))",
            fin: " FINAL",
            has_cost: "isNotNull(cost_usd)",
            ts_of_ms: "fromUnixTimestamp64Milli(toInt64(?))",
            end_ms:
                "toInt64(toUnixTimestamp64Milli(timestamp)) + toInt64(intDiv(duration_ns, 1000000))",
            int: "toInt64(?)",
            ts_of_ns: "fromUnixTimestamp64Nano(toInt64(?))",
        },
        Dialect::DuckDb => SeedWords {
            policy: "CAST(? AS UINTEGER)",
            calls: "CAST(sum(inner_calls) AS UBIGINT)",
            fin: "",
            has_cost: "cost_usd IS NOT NULL",
            ts_of_ms: "make_timestamp_ns(CAST(? AS BIGINT) * 1000000)",
            end_ms: "CAST(epoch_ns(timestamp) // 1000000 + duration_ns // 1000000 AS BIGINT)",
            int: "CAST(? AS BIGINT)",
            ts_of_ns: "make_timestamp_ns(CAST(? AS BIGINT))",
        },
    }
}

/// The period-spend query: one `UNION ALL` part per query (none when `queries` is empty).
pub fn period_spend(
    d: Dialect,
    queries: &[SpendQuery],
    replay_from_ms: i64,
    cut_ns: i64,
    limit: u64,
) -> Sql {
    let w = seed_words(d);
    let int = |v: u64| Bind::I64(i64::try_from(v).unwrap_or(i64::MAX));
    let mut parts = Vec::new();
    let mut binds = Vec::new();
    for q in queries {
        // Binds in the order of their `?` in the text.
        binds.push(Bind::I64(i64::from(q.policy)));
        binds.push(int(q.max_users));
        let mut cond = String::new();
        for (col, want) in [
            ("project", &q.project),
            ("service", &q.service),
            ("model", &q.model),
            ("operation", &q.operation),
        ] {
            if let Some(w) = want {
                cond.push_str(&format!(" AND {col} = ?"));
                binds.push(Bind::Str(w.clone()));
            }
        }
        // Event time is the call's end (as the replay's): in the period; its start before the
        // replay's start (the replay reads `timestamp >= from`). Calls last less than a day.
        binds.extend([
            Bind::I64(q.period_start_ms - 86_400_000),
            Bind::I64(replay_from_ms),
            Bind::I64(q.period_start_ms),
            Bind::I64(cut_ns),
            int(limit),
        ]);
        let pin =
            |want: &Option<String>, col: &'static str| if want.is_some() { col } else { "''" };
        parts.push(format!(
            "SELECT * FROM (SELECT {policy} AS policy, project, k_service, k_model, k_operation, \
             if(k_user_in = '' OR rn <= ?, k_user_in, '{OTHER_USER}') AS k_user, \
             sum(inner_usd) AS usd, {calls} AS calls FROM (\
             SELECT project, k_service, k_model, k_operation, k_user AS k_user_in, inner_usd, \
             inner_calls, row_number() OVER (ORDER BY k_user = '', inner_usd DESC, k_user) AS rn \
             FROM (SELECT project, {s} AS k_service, {m} AS k_model, {o} AS k_operation, \
             {u} AS k_user, sum(ifNull(cost_usd, 0)) AS inner_usd, count() AS inner_calls \
             FROM llm_calls{fin} WHERE {has_cost}{cond} \
             AND timestamp >= {ts_of_ms} \
             AND timestamp < {ts_of_ms} \
             AND {end_ms} >= {int} \
             AND received_at < {ts_of_ns} \
             GROUP BY project, k_service, k_model, k_operation, k_user)) \
             GROUP BY project, k_service, k_model, k_operation, k_user LIMIT ?)",
            policy = w.policy,
            calls = w.calls,
            fin = w.fin,
            has_cost = w.has_cost,
            ts_of_ms = w.ts_of_ms,
            end_ms = w.end_ms,
            int = w.int,
            ts_of_ns = w.ts_of_ns,
            s = pin(&q.service, "service"),
            m = pin(&q.model, "model"),
            o = pin(&q.operation, "operation"),
            u = if q.per_user { "user_id" } else { "''" },
        ));
    }
    Sql {
        text: parts.join(" UNION ALL "),
        binds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query with its parameters inlined (what ClickHouse runs).
    pub(crate) fn inlined(sql: &Sql) -> String {
        let mut out = String::new();
        let mut it = sql.binds.iter();
        for (i, piece) in sql.text.split('?').enumerate() {
            if i > 0 {
                match it.next() {
                    Some(Bind::Str(s)) => out.push_str(&format!("'{}'", s.replace('\'', "\\'"))),
                    Some(Bind::I64(n)) => out.push_str(&n.to_string()),
                    other => panic!("unexpected parameter {other:?}"),
                }
            }
            out.push_str(piece);
        }
        assert!(it.next().is_none(), "more parameters than placeholders");
        out
    }

    fn queries() -> [SpendQuery; 2] {
        let q = |policy, per_user| SpendQuery {
            policy,
            per_user,
            max_users: 7,
            period_start_ms: 1_000,
            ..SpendQuery::default()
        };
        [
            q(0, false),
            SpendQuery {
                project: Some("acme".into()),
                model: Some("gpt-4o".into()),
                ..q(3, true)
            },
        ]
    }

    #[test]
    fn the_seed_query_binds_every_placeholder() {
        let sql = period_spend(Dialect::ClickHouse, &queries(), 5_000, 9_000_000_000, 100);
        let text = inlined(&sql);
        assert_eq!(text.matches("UNION ALL").count(), 1);
        assert!(text.contains("toUInt32(3) AS policy"), "{text}");
        assert!(
            text.contains("AND project = 'acme' AND model = 'gpt-4o'"),
            "{text}"
        );
        assert!(text.contains("model AS k_model"), "{text}");
        assert!(text.contains("'' AS k_service"), "{text}");
        assert!(text.contains("user_id AS k_user"), "{text}");
        assert!(text.contains("rn <= 7"), "{text}");
        assert!(text.contains("FROM llm_calls FINAL WHERE isNotNull(cost_usd)"));
        if let Ok(path) = std::env::var("FLYWHEEL_PRINT_SEED_SQL") {
            std::fs::write(path, text).unwrap();
        }
    }

    #[test]
    fn both_dialects_bind_the_same_values() {
        for d in [Dialect::ClickHouse, Dialect::DuckDb] {
            let spend = period_spend(d, &queries(), 5_000, 9_000_000_000, 100);
            let [calls, feedback, signals] = stored_events(d, 1, 2);
            for sql in [spend, calls, feedback, signals, recent(d, "p", 3)] {
                let placeholders =
                    sql.text.matches('?').count() - usize::from(sql.text.contains("?fields"));
                assert_eq!(placeholders, sql.binds.len(), "{}", sql.text);
                assert_eq!(sql.text.matches('(').count(), sql.text.matches(')').count());
            }
        }
        let duck = period_spend(Dialect::DuckDb, &queries(), 5_000, 9_000_000_000, 100);
        assert_eq!(
            duck.binds,
            period_spend(Dialect::ClickHouse, &queries(), 5_000, 9_000_000_000, 100).binds
        );
        for word in ["FINAL", "toInt64", "Unix", "isNotNull", "toUInt"] {
            assert!(!duck.text.contains(word), "{word}: {}", duck.text);
        }
        assert!(lookup_keys(&Ids::default(), &Ids::default()).is_none());
        let both = lookup_keys(&Ids::of(["t"]), &Ids::of(["c"])).unwrap();
        assert_eq!(both.binds.len(), 2);
    }
}
