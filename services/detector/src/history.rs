//! The detector's store (`flywheel_store::DetectorStore`, ClickHouse or DuckDB, `[store]`): the
//! alert history it writes (`alerts`, migration 0005) and reads back at start-up, the window
//! state it rebuilds from stored calls, feedback and signals, and the lookups that attribute
//! late feedback and signals to their call's key. The store answers in its rows; this module
//! turns them into the detector's alerts, keys and events.
//!
//! Rebuild (adr/0008): at start-up, with `cut` = the wall clock, read the calls, feedback and
//! signals (deduplicated) received before `cut` whose event time lies within the longest
//! alerting window, in event-time order; the consumer then skips messages received before
//! `cut` (header `flywheel.received_at_ns`), so nothing is counted twice. Messages received
//! before `cut` that the ingester had not stored yet are missed (its lag, about a second); the
//! SLO-window budget is rebuilt over the same bounded span, not 30 days.
//!
//! Spend series need their whole budget period (a month), not only the replayed window: before
//! the replay, [`period_spend`] reads, in one aggregate query, the spend of the calls received
//! before `cut` whose event time (end) is in the current period and whose start is before the
//! replay's start (exactly the calls the replay leaves out), per spend series; the engine folds
//! it into the series' period sums (`CostState::seed`).

use std::sync::Arc;

use flywheel_schema::rows::AlertRow;
use flywheel_store::detector::{SpendQuery, StoredEvent};
use flywheel_store::{DetectorStore, Ids, StoreError};

use crate::alert::{Alert, Fingerprint, Labels, Notify};
use crate::cost::series::{SpendSeed, SpendSeedQuery};
use crate::engine::Outgoing;
use crate::join::Subject;
use crate::sli::CallEvent;
use crate::SliKey;

/// The store the detector reads and writes its history in.
pub type Store = Arc<dyn DetectorStore>;

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
pub async fn write(store: &dyn DetectorStore, rows: &[AlertRow]) -> Result<(), StoreError> {
    store.write_alerts(rows).await
}

/// Alerts whose latest row is `firing`, with the event time they were last sent at.
pub async fn firing(store: &dyn DetectorStore) -> Result<Vec<(Alert, i64)>, StoreError> {
    Ok(store
        .firing_alerts()
        .await?
        .into_iter()
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
    store: &dyn DetectorStore,
    project: &str,
    limit: u64,
) -> Result<Vec<AlertRow>, StoreError> {
    store.recent_alerts(project, limit).await
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

fn subject(trace_id: String, span_id: String, conversation_id: String) -> Subject {
    Subject {
        trace_id,
        span_id,
        conversation_id,
    }
}

/// Calls (at their end), feedback and signals with event time in `[from_ms, cut)` received
/// before `cut_ns`, sorted by event time (ms); calls first at equal times, so items about them
/// resolve.
pub async fn stored_events(
    store: &dyn DetectorStore,
    from_ms: i64,
    cut_ns: i64,
) -> Result<Vec<(i64, Stored)>, StoreError> {
    Ok(store
        .stored_events(from_ms, cut_ns)
        .await?
        .into_iter()
        .map(|e| match e {
            StoredEvent::Call(c) => (
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
            ),
            StoredEvent::Feedback(f) => (
                f.ts,
                Stored::Feedback {
                    project: f.project,
                    subject: subject(f.trace_id, f.span_id, f.conversation_id),
                    name: f.name,
                    value_type: f.value_type,
                    score: f.score,
                    label: f.label,
                },
            ),
            StoredEvent::Signal(s) => (
                s.ts,
                Stored::Signal {
                    project: s.project,
                    subject: subject(s.trace_id, s.span_id, s.conversation_id),
                    signal_type: s.name,
                },
            ),
        })
        .collect())
}

/// The store's question for one seed query.
fn spend_query(q: &SpendSeedQuery) -> SpendQuery {
    let sel = &q.selector;
    SpendQuery {
        policy: u32::try_from(q.policy).unwrap_or(u32::MAX),
        project: sel.project.clone(),
        service: sel.service.clone(),
        model: sel.model.clone(),
        operation: sel.operation.clone(),
        per_user: q.per_user,
        max_users: q.max_users as u64,
        period_start_ms: q.period_start_ms,
    }
}

/// Period-to-date spend per spend series before the replay (see the module doc), one query;
/// each policy's part is capped at `limit` rows (the detector's `max_keys`).
pub async fn period_spend(
    store: &dyn DetectorStore,
    queries: &[SpendSeedQuery],
    replay_from_ms: i64,
    cut_ns: i64,
    limit: u64,
) -> Result<Vec<SpendSeed>, StoreError> {
    let queries: Vec<SpendQuery> = queries.iter().map(spend_query).collect();
    Ok(store
        .period_spend(&queries, replay_from_ms, cut_ns, limit)
        .await?
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

/// Keys of stored calls named by `subjects` (one query), as subjects with their keys.
pub async fn lookup_keys(
    store: &dyn DetectorStore,
    subjects: &[Subject],
) -> Result<Vec<(Subject, SliKey)>, StoreError> {
    let traces = Ids::of(subjects.iter().map(|s| s.trace_id.as_str()));
    let conversations = Ids::of(subjects.iter().map(|s| s.conversation_id.as_str()));
    Ok(store
        .lookup_keys(&traces, &conversations)
        .await?
        .into_iter()
        .map(|r| {
            (
                subject(r.trace_id, r.span_id, r.conversation_id),
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
    use crate::cost::series::OTHER_USER;
    use crate::slo::Selector;

    #[test]
    fn seed_queries_become_the_stores_questions() {
        let q = SpendSeedQuery {
            policy: 3,
            selector: Selector {
                project: Some("acme".into()),
                model: Some("gpt-4o".into()),
                ..Selector::default()
            },
            per_user: true,
            max_users: 7,
            period_start_ms: 1_000,
        };
        assert_eq!(
            spend_query(&q),
            SpendQuery {
                policy: 3,
                project: Some("acme".into()),
                service: None,
                model: Some("gpt-4o".into()),
                operation: None,
                per_user: true,
                max_users: 7,
                period_start_ms: 1_000,
            }
        );
        // The store folds users past the cap into the series the engine calls (other).
        assert_eq!(OTHER_USER, flywheel_store::detector::OTHER_USER);
    }

    /// The conversions from the store's rows, on an in-memory DuckDB store.
    #[tokio::test]
    async fn history_round_trips_through_the_store() {
        use flywheel_schema::rows::{LlmCallRow, SignalRow};
        use flywheel_store::{RowBatch, Store as _};

        let duck = Arc::new(flywheel_store::DuckDbStore::in_memory().unwrap());
        let store: Store = duck.clone();
        let row = AlertRow {
            fingerprint: format!("{:016x}", 0xabcu64),
            project: "acme".into(),
            state: "firing".into(),
            announced: true,
            labels: vec![("project".into(), "acme".into())],
            annotations: vec![("calls_url".into(), "http://api/calls".into())],
            starts_at: 1_700_000_000_123_000_000,
            event_time: 1_700_000_060_000_000_000,
            sent_at: 1_700_000_061_000_000_000,
            ..AlertRow::default()
        };
        write(store.as_ref(), std::slice::from_ref(&row))
            .await
            .unwrap();
        let firing = firing(store.as_ref()).await.unwrap();
        assert_eq!(firing.len(), 1);
        let (alert, last_sent_ms) = &firing[0];
        assert_eq!(alert.fingerprint, Fingerprint(0xabc));
        assert_eq!(alert.starts_at_ms, 1_700_000_000_123);
        assert_eq!(*last_sent_ms, 1_700_000_060_000);
        assert_eq!(alert.generator_url, "http://api/calls");
        assert_eq!(
            alert.labels.get("project").map(String::as_str),
            Some("acme")
        );
        assert_eq!(recent(store.as_ref(), "acme", 10).await.unwrap(), [row]);

        let mut batch = RowBatch::new("t");
        batch.llm_calls = vec![LlmCallRow {
            timestamp: 5_000_000_000,
            project: "acme".into(),
            model: "gpt".into(),
            trace_id: "t1".into(),
            span_id: "s1".into(),
            conversation_id: "c1".into(),
            status_code: "Error".into(),
            duration_ns: 250_000_000,
            output_tokens: Some(7),
            received_at: 6_000_000_000,
            ..LlmCallRow::default()
        }];
        batch.signals = vec![SignalRow {
            id: "g".into(),
            project: "acme".into(),
            timestamp: 5_250_000_000,
            conversation_id: "c1".into(),
            signal_type: "regenerate".into(),
            received_at: 6_000_000_000,
            ..SignalRow::default()
        }];
        duck.insert(&batch).await.unwrap();
        let events = stored_events(store.as_ref(), 0, 7_000_000_000)
            .await
            .unwrap();
        let key = SliKey {
            project: "acme".into(),
            model: "gpt".into(),
            ..SliKey::default()
        };
        let call_subject = subject("t1".into(), "s1".into(), "c1".into());
        assert_eq!(
            events,
            [
                (
                    5_250,
                    Stored::Call {
                        key: key.clone(),
                        event: CallEvent {
                            error: true,
                            duration_ms: 250.0,
                            ttft_ms: None,
                            tpot_ms: None,
                            cost_usd: None,
                            tokens: Some(7),
                        },
                        subject: call_subject.clone(),
                        user: String::new(),
                    }
                ),
                (
                    5_250,
                    Stored::Signal {
                        project: "acme".into(),
                        subject: subject(String::new(), String::new(), "c1".into()),
                        signal_type: "regenerate".into(),
                    }
                ),
            ]
        );
        // Received after the cut: not replayed.
        assert!(stored_events(store.as_ref(), 0, 6_000_000_000)
            .await
            .unwrap()
            .is_empty());
        let asked = [
            subject(String::new(), String::new(), "c1".into()),
            subject("t1".into(), String::new(), String::new()),
        ];
        assert_eq!(
            lookup_keys(store.as_ref(), &asked).await.unwrap(),
            [(call_subject, key)]
        );
        assert!(lookup_keys(store.as_ref(), &[]).await.unwrap().is_empty());
    }
}
