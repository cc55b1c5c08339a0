//! Data retention (`clickhouse.ttl_days`, on both store backends): every
//! `ingester.expire_interval_s`, and once at start-up, [`run_once`] asks the store to delete the
//! rows of each configured table older than its days ([`IngestStore::expire`]). On DuckDB that
//! is a `DELETE` per table; on ClickHouse it does nothing, the tables' `TTL` clause expires rows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flywheel_store::{Expired, IngestStore, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Expires the rows older than `ttl_days` at `now_ns`, counts them in the metrics and logs
/// them (at info when the store deleted anything).
pub async fn run_once(
    store: &dyn IngestStore,
    ttl_days: &BTreeMap<String, u32>,
    now_ns: i64,
    metrics: &Metrics,
) -> Result<Vec<Expired>, StoreError> {
    let result = store.expire(ttl_days, now_ns).await;
    match &result {
        Ok(expired) => {
            for e in expired {
                metrics
                    .expired_rows
                    .with_label_values(&[e.table])
                    .inc_by(e.rows as u64);
            }
            if expired.iter().any(|e| e.rows > 0) {
                let deleted: Vec<_> = expired.iter().map(|e| (e.table, e.rows)).collect();
                tracing::info!(?deleted, "expired rows older than clickhouse.ttl_days");
            } else {
                tracing::debug!(?expired, "no rows to expire");
            }
        }
        Err(e) => {
            metrics.expire_errors.inc();
            tracing::warn!(error = %e, "expiring old rows failed; next run retries");
        }
    }
    result
}

/// Runs [`run_once`] at start-up and every `interval` until `shutdown` (with `ttl_days` empty
/// too: DuckDB still forgets week-old batch tokens; ClickHouse answers at once).
pub async fn run_periodically(
    interval: Duration,
    ttl_days: BTreeMap<String, u32>,
    store: Arc<dyn IngestStore>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = run_once(&*store, &ttl_days, crate::message::now_ns(), &metrics) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use flywheel_schema::rows::{IngestBatchRow, LlmCallRow};
    use flywheel_store::{DuckDbStore, RowBatch};
    use prometheus::Registry;

    use super::*;

    const DAY: i64 = 86_400 * 1_000_000_000;
    const NOW: i64 = 1_717_200_000 * 1_000_000_000;

    #[tokio::test]
    async fn a_run_counts_the_deleted_rows_by_table() {
        let store = DuckDbStore::in_memory().unwrap();
        let mut batch = RowBatch::new("b");
        for (i, age) in [40 * DAY, DAY].into_iter().enumerate() {
            batch.llm_calls.push(LlmCallRow {
                project: "p".into(),
                trace_id: format!("t{i}"),
                timestamp: NOW - age,
                ..LlmCallRow::default()
            });
        }
        store
            .ingest(&IngestBatchRow::default(), &batch)
            .await
            .unwrap();
        let metrics = Metrics::register(&Registry::new()).unwrap();
        let ttl: BTreeMap<String, u32> = [("llm_calls".to_string(), 30)].into();
        let expired = run_once(&store, &ttl, NOW, &metrics).await.unwrap();
        assert_eq!(
            expired,
            vec![Expired {
                table: "llm_calls",
                rows: 1
            }]
        );
        let counted = |t: &str| metrics.expired_rows.with_label_values(&[t]).get();
        assert_eq!(counted("llm_calls"), 1);
        assert_eq!(counted("otel_traces"), 0);
        assert_eq!(metrics.expire_errors.get(), 0);
        let unknown: BTreeMap<String, u32> = [("alerts".to_string(), 1)].into();
        assert!(run_once(&store, &unknown, NOW, &metrics).await.is_err());
        assert_eq!(metrics.expire_errors.get(), 1);
    }
}
