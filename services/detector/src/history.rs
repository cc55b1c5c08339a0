//! ClickHouse, for the detector: the alert history it writes (`alerts`, migration 0005) and
//! reads back at start-up, the window state it rebuilds from stored calls, feedback and
//! signals, and the lookups that attribute late feedback and signals to their call's key.
//!
//! Rebuild (adr/0008): at start-up, with `cut` = the wall clock, read `llm_calls FINAL`,
//! `feedback FINAL` and `signals FINAL` received before `cut` whose event time lies within the
//! longest alerting window, in event-time order; the consumer then skips messages received
//! before `cut` (header `flywheel.received_at_ns`), so nothing is counted twice. Messages
//! received before `cut` that the ingester had not stored yet are missed (its lag, about a
//! second); the SLO-window budget is rebuilt over the same bounded span, not 30 days.
//!
//! Spend series need their whole budget period (a month), not only the replayed window: before
//! the replay, [`period_spend`] reads, in one aggregate query, the spend of the calls received
//! before `cut` whose event time (end) is in the current period and whose start is before the
//! replay's start (exactly the calls the replay leaves out), per spend series; the engine folds
//! it into the series' period sums (`CostState::seed`).

use clickhouse::{Client, Row};
use flywheel_schema::rows::AlertRow;
use serde::Deserialize;

use crate::alert::{Alert, Fingerprint, Labels, Notify};
use crate::cost::series::{SpendSeed, SpendSeedQuery, OTHER_USER};
use crate::engine::Outgoing;
use crate::join::Subject;
use crate::sli::CallEvent;
use crate::SliKey;

/// The alert-history row of a notification.
pub fn alert_row(o: &Outgoing, sent_at_ms: i64) -> AlertRow {
    let a = o.alert();
    let label = |k: &str| a.labels.get(k).cloned().unwrap_or_default();
    AlertRow {
        fingerprint: a.fingerprint.to_string(),
        alertname: label("alertname"),
        slo: o.slo.clone(),
        project: label("project"),
        severity: o.severity.as_str().to_string(),
        state: match o.notify {
            Notify::Firing(_) => "firing",
            Notify::Resolved(_) => "resolved",
        }
        .to_string(),
        announced: o.announce,
        labels: a.labels.clone().into_iter().collect(),
        annotations: a.annotations.clone().into_iter().collect(),
        starts_at: a.starts_at_ms * 1_000_000,
        ends_at: a.ends_at_ms.map(|e| e * 1_000_000),
        long_burn_rate: o.long_burn.filter(|b| b.is_finite()),
        short_burn_rate: o.short_burn.filter(|b| b.is_finite()),
        sli: o.sli,
        budget_remaining: o.budget_remaining,
        event_time: o.event_ms * 1_000_000,
        sent_at: sent_at_ms * 1_000_000,
    }
}

/// Appends notifications to `alerts`.
pub async fn write(client: &Client, rows: &[AlertRow]) -> clickhouse::error::Result<()> {
    let mut insert = client.insert::<AlertRow>("alerts").await?;
    for r in rows {
        insert.write(r).await?;
    }
    insert.end().await
}

#[derive(Debug, Row, Deserialize)]
struct LastState {
    fingerprint: String,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    starts_at: i64,
    event_time: i64,
    state: String,
}

/// Alerts whose latest row is `firing`, with the event time they were last sent at.
pub async fn firing(client: &Client) -> clickhouse::error::Result<Vec<(Alert, i64)>> {
    let rows: Vec<LastState> = client
        .query(
            "SELECT fingerprint, argMax(labels, sent_at) AS labels, \
             argMax(annotations, sent_at) AS annotations, \
             toInt64(argMax(starts_at, sent_at)) AS starts_at, \
             toInt64(argMax(event_time, sent_at)) AS event_time, \
             argMax(state, sent_at) AS state \
             FROM alerts GROUP BY fingerprint HAVING state = 'firing'",
        )
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .filter(|r| r.state == "firing")
        .filter_map(|r| {
            let fp = u64::from_str_radix(&r.fingerprint, 16).ok()?;
            let labels: Labels = r.labels.into_iter().collect();
            let annotations: Labels = r.annotations.into_iter().collect();
            let url = annotations.get("calls_url").cloned().unwrap_or_default();
            Some((
                Alert {
                    fingerprint: Fingerprint(fp),
                    labels,
                    annotations,
                    starts_at_ms: r.starts_at / 1_000_000,
                    ends_at_ms: None,
                    generator_url: url,
                },
                r.event_time / 1_000_000,
            ))
        })
        .collect())
}

/// Recent alert history for `GET /v1/alerts`, newest first.
pub async fn recent(
    client: &Client,
    project: &str,
    limit: u64,
) -> clickhouse::error::Result<Vec<AlertRow>> {
    client
        .query(
            "SELECT ?fields FROM alerts WHERE project = ? AND announced \
             ORDER BY sent_at DESC LIMIT ?",
        )
        .bind(project)
        .bind(limit)
        .fetch_all()
        .await
}

/// A stored event, for the rebuild.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Call {
        key: SliKey,
        event: CallEvent,
        subject: Subject,
        user: String,
    },
    Feedback {
        project: String,
        subject: Subject,
        name: String,
        value_type: String,
        score: Option<f64>,
        label: String,
    },
    Signal {
        project: String,
        subject: Subject,
        signal_type: String,
    },
}

#[derive(Debug, Row, Deserialize)]
struct CallRow {
    ts: i64,
    project: String,
    service: String,
    model: String,
    operation: String,
    status_code: String,
    duration_ns: u64,
    ttft_ms: Option<f64>,
    tpot_ms: Option<f64>,
    cost_usd: Option<f64>,
    tokens: Option<u64>,
    trace_id: String,
    span_id: String,
    conversation_id: String,
    user_id: String,
}

#[derive(Debug, Row, Deserialize)]
struct ItemRow {
    ts: i64,
    project: String,
    trace_id: String,
    span_id: String,
    conversation_id: String,
    name: String,
    value_type: String,
    score: Option<f64>,
    label: String,
}

/// Calls, feedback and signals with event time in `[from_ms, cut)` received before `cut_ns`,
/// sorted by event time (ms).
pub async fn stored_events(
    client: &Client,
    from_ms: i64,
    cut_ns: i64,
) -> clickhouse::error::Result<Vec<(i64, Stored)>> {
    let calls: Vec<CallRow> = client
        .query(
            "SELECT toInt64(toUnixTimestamp64Milli(timestamp)) + toInt64(intDiv(duration_ns, 1000000)) AS ts, \
             project, service, model, \
             operation, status_code, duration_ns, ttft_ms, tpot_ms, cost_usd, \
             if(isNull(input_tokens) AND isNull(output_tokens), NULL, \
             ifNull(input_tokens, 0) + ifNull(output_tokens, 0)) AS tokens, trace_id, span_id, \
             conversation_id, user_id FROM llm_calls FINAL \
             WHERE timestamp >= fromUnixTimestamp64Milli(toInt64(?)) \
             AND received_at < fromUnixTimestamp64Nano(toInt64(?))",
        )
        .bind(from_ms)
        .bind(cut_ns)
        .fetch_all()
        .await?;
    let feedback: Vec<ItemRow> = client
        .query(
            "SELECT toInt64(toUnixTimestamp64Milli(timestamp)) AS ts, project, trace_id, span_id, \
             conversation_id, name, value_type, score, label FROM feedback FINAL \
             WHERE timestamp >= fromUnixTimestamp64Milli(toInt64(?)) \
             AND received_at < fromUnixTimestamp64Nano(toInt64(?))",
        )
        .bind(from_ms)
        .bind(cut_ns)
        .fetch_all()
        .await?;
    let signals: Vec<ItemRow> = client
        .query(
            "SELECT toInt64(toUnixTimestamp64Milli(timestamp)) AS ts, project, trace_id, span_id, \
             conversation_id, type AS name, '' AS value_type, CAST(NULL, 'Nullable(Float64)') AS score, \
             '' AS label FROM signals FINAL \
             WHERE timestamp >= fromUnixTimestamp64Milli(toInt64(?)) \
             AND received_at < fromUnixTimestamp64Nano(toInt64(?))",
        )
        .bind(from_ms)
        .bind(cut_ns)
        .fetch_all()
        .await?;
    let subject = |t: String, s: String, c: String| Subject {
        trace_id: t,
        span_id: s,
        conversation_id: c,
    };
    let mut out: Vec<(i64, Stored)> = Vec::new();
    for c in calls {
        out.push((
            c.ts,
            Stored::Call {
                key: SliKey {
                    project: c.project,
                    service: c.service,
                    model: c.model,
                    operation: c.operation,
                },
                event: CallEvent {
                    error: c.status_code == "Error",
                    duration_ms: c.duration_ns as f64 / 1e6,
                    ttft_ms: c.ttft_ms,
                    tpot_ms: c.tpot_ms,
                    cost_usd: c.cost_usd,
                    tokens: c.tokens,
                },
                subject: subject(c.trace_id, c.span_id, c.conversation_id),
                user: c.user_id,
            },
        ));
    }
    for f in feedback {
        out.push((
            f.ts,
            Stored::Feedback {
                project: f.project,
                subject: subject(f.trace_id, f.span_id, f.conversation_id),
                name: f.name,
                value_type: f.value_type,
                score: f.score,
                label: f.label,
            },
        ));
    }
    for s in signals {
        out.push((
            s.ts,
            Stored::Signal {
                project: s.project,
                subject: subject(s.trace_id, s.span_id, s.conversation_id),
                signal_type: s.name,
            },
        ));
    }
    // Calls first at equal times, so items about them resolve.
    out.sort_by_key(|(ts, s)| (*ts, !matches!(s, Stored::Call { .. })));
    Ok(out)
}

#[derive(Debug, Row, Deserialize)]
struct SeedRow {
    policy: u32,
    project: String,
    k_service: String,
    k_model: String,
    k_operation: String,
    k_user: String,
    usd: f64,
    calls: u64,
}

/// The SQL of [`period_spend`] and its parameters in order: one `UNION ALL` part per query.
fn period_spend_sql(
    queries: &[SpendSeedQuery],
    replay_from_ms: i64,
    cut_ns: i64,
    limit: u64,
) -> (String, Vec<Param>) {
    let mut parts = Vec::new();
    let mut params = Vec::new();
    for q in queries {
        let sel = &q.selector;
        // Parameters in the order of their `?` in the text.
        params.push(Param::Int(q.policy as i64));
        params.push(Param::Int(q.max_users as i64));
        let mut cond = String::new();
        for (col, want) in [
            ("project", &sel.project),
            ("service", &sel.service),
            ("model", &sel.model),
            ("operation", &sel.operation),
        ] {
            if let Some(w) = want {
                cond.push_str(&format!(" AND {col} = ?"));
                params.push(Param::Str(w.clone()));
            }
        }
        // Event time is the call's end (as the replay's): in the period; its start before the
        // replay's start (the replay reads `timestamp >= from`). Calls last less than a day.
        params.extend([
            Param::Int(q.period_start_ms - 86_400_000),
            Param::Int(replay_from_ms),
            Param::Int(q.period_start_ms),
            Param::Int(cut_ns),
            Param::Int(limit as i64),
        ]);
        let pin =
            |want: &Option<String>, col: &'static str| if want.is_some() { col } else { "''" };
        parts.push(format!(
            "SELECT * FROM (SELECT toUInt32(?) AS policy, project, k_service, k_model, k_operation, \
             if(k_user_in = '' OR rn <= ?, k_user_in, '{OTHER_USER}') AS k_user, \
             sum(inner_usd) AS usd, toUInt64(sum(inner_calls)) AS calls FROM (\
             SELECT project, k_service, k_model, k_operation, k_user AS k_user_in, inner_usd, \
             inner_calls, row_number() OVER (ORDER BY k_user = '', inner_usd DESC, k_user) AS rn \
             FROM (SELECT project, {s} AS k_service, {m} AS k_model, {o} AS k_operation, \
             {u} AS k_user, sum(ifNull(cost_usd, 0)) AS inner_usd, count() AS inner_calls \
             FROM llm_calls FINAL WHERE isNotNull(cost_usd){cond} \
             AND timestamp >= fromUnixTimestamp64Milli(toInt64(?)) \
             AND timestamp < fromUnixTimestamp64Milli(toInt64(?)) \
             AND toInt64(toUnixTimestamp64Milli(timestamp)) + toInt64(intDiv(duration_ns, 1000000)) >= toInt64(?) \
             AND received_at < fromUnixTimestamp64Nano(toInt64(?)) \
             GROUP BY project, k_service, k_model, k_operation, k_user)) \
             GROUP BY project, k_service, k_model, k_operation, k_user LIMIT ?)",
            s = pin(&sel.service, "service"),
            m = pin(&sel.model, "model"),
            o = pin(&sel.operation, "operation"),
            u = if q.per_user { "user_id" } else { "''" },
        ));
    }
    (parts.join(" UNION ALL "), params)
}

/// A bound parameter of a generated query.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Str(String),
    Int(i64),
}

/// Period-to-date spend per spend series before the replay (see the module doc), one query;
/// each policy's part is capped at `limit` rows (the detector's `max_keys`).
pub async fn period_spend(
    client: &Client,
    queries: &[SpendSeedQuery],
    replay_from_ms: i64,
    cut_ns: i64,
    limit: u64,
) -> clickhouse::error::Result<Vec<SpendSeed>> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let (sql, params) = period_spend_sql(queries, replay_from_ms, cut_ns, limit);
    let mut q = client.query(&sql);
    for p in params {
        q = match p {
            Param::Str(s) => q.bind(s),
            Param::Int(i) => q.bind(i),
        };
    }
    let rows: Vec<SeedRow> = q.fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|r| SpendSeed {
            policy: r.policy as usize,
            key: SliKey {
                project: r.project,
                service: r.k_service,
                model: r.k_model,
                operation: r.k_operation,
            },
            user: r.k_user,
            usd: r.usd,
            calls: r.calls,
        })
        .collect())
}

#[derive(Debug, Row, Deserialize)]
struct KeyRow {
    project: String,
    service: String,
    model: String,
    operation: String,
    trace_id: String,
    span_id: String,
    conversation_id: String,
}

/// Keys of stored calls named by `subjects` (one query), as subjects with their keys.
pub async fn lookup_keys(
    client: &Client,
    subjects: &[Subject],
) -> clickhouse::error::Result<Vec<(Subject, SliKey)>> {
    let traces: Vec<&str> = subjects
        .iter()
        .map(|s| s.trace_id.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    let conversations: Vec<&str> = subjects
        .iter()
        .map(|s| s.conversation_id.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    let mut cond = Vec::new();
    if !traces.is_empty() {
        cond.push("trace_id IN ?");
    }
    if !conversations.is_empty() {
        cond.push("(conversation_id != '' AND conversation_id IN ?)");
    }
    if cond.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT project, service, model, operation, trace_id, span_id, conversation_id \
         FROM llm_calls WHERE {} ORDER BY timestamp LIMIT 100000",
        cond.join(" OR ")
    );
    let mut q = client.query(&sql);
    if !traces.is_empty() {
        q = q.bind(traces);
    }
    if !conversations.is_empty() {
        q = q.bind(conversations);
    }
    let rows: Vec<KeyRow> = q.fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                Subject {
                    trace_id: r.trace_id,
                    span_id: r.span_id,
                    conversation_id: r.conversation_id,
                },
                SliKey {
                    project: r.project,
                    service: r.service,
                    model: r.model,
                    operation: r.operation,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::Selector;

    /// The generated seed query with its parameters inlined (what ClickHouse runs).
    pub(crate) fn inlined(sql: &str, params: &[Param]) -> String {
        let mut out = String::new();
        let mut it = params.iter();
        for (i, piece) in sql.split('?').enumerate() {
            if i > 0 {
                match it.next() {
                    Some(Param::Str(s)) => out.push_str(&format!("'{}'", s.replace('\'', "\\'"))),
                    Some(Param::Int(n)) => out.push_str(&n.to_string()),
                    None => panic!("more placeholders than parameters"),
                }
            }
            out.push_str(piece);
        }
        assert!(it.next().is_none(), "more parameters than placeholders");
        out
    }

    #[test]
    fn the_seed_query_binds_every_placeholder() {
        let q = |policy, per_user, selector| SpendSeedQuery {
            policy,
            selector,
            per_user,
            max_users: 7,
            period_start_ms: 1_000,
        };
        let queries = [
            q(0, false, Selector::default()),
            q(
                3,
                true,
                Selector {
                    project: Some("acme".into()),
                    model: Some("gpt-4o".into()),
                    ..Selector::default()
                },
            ),
        ];
        let (sql, params) = period_spend_sql(&queries, 5_000, 9_000_000_000, 100);
        let text = inlined(&sql, &params);
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
        if let Ok(path) = std::env::var("FLYWHEEL_PRINT_SEED_SQL") {
            std::fs::write(path, text).unwrap();
        }
    }
}
