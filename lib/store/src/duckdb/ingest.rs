//! [`IngestStore`] on DuckDB: token, marker and rows in one transaction.

use std::collections::BTreeMap;
use std::time::Instant;

use flywheel_pricing::Price;
use flywheel_schema::rows::{IngestBatchRow, SignalRow};

use super::{lock_poisoned, write, DuckDbStore};
use crate::derive::{Rule, Window};
use crate::ingest::{Cutoff, Expired, IngestStore, TableWrite};
use crate::reprice;
use crate::sql::Dialect;
use crate::{RowBatch, StoreError};

#[async_trait::async_trait]
impl IngestStore for DuckDbStore {
    /// One transaction: the token (a stored token ends it: the batch, marker included, was
    /// stored whole before), the marker (kept unless a stored one has a higher
    /// `first_offset`, as ClickHouse's ReplacingMergeTree(first_offset)), every table, commit.
    /// Any failure rolls all of it back.
    async fn ingest(
        &self,
        marker: &IngestBatchRow,
        batch: &RowBatch,
    ) -> Result<Vec<TableWrite>, StoreError> {
        let (marker, batch) = (marker.clone(), batch.clone());
        let writes = self.writes.clone();
        self.run(move |c| {
            let _one_writer = writes.lock().map_err(lock_poisoned)?;
            let tx = c.transaction()?;
            let fresh = tx.execute(
                "INSERT INTO insert_tokens (token) VALUES (?) ON CONFLICT DO NOTHING",
                [&batch.token],
            )?;
            if fresh == 0 {
                tracing::debug!(token = %batch.token, "batch already stored");
                return Ok(Vec::new());
            }
            tx.execute(
                "INSERT INTO ingest_batches \
                   (consumer_group, topic, \"partition\", first_offset, last_offset) \
                 VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (consumer_group, topic, \"partition\") DO UPDATE SET \
                   first_offset = excluded.first_offset, last_offset = excluded.last_offset, \
                   written_at = now() \
                 WHERE excluded.first_offset >= ingest_batches.first_offset",
                duckdb::params![
                    marker.consumer_group,
                    marker.topic,
                    marker.partition,
                    marker.first_offset,
                    marker.last_offset
                ],
            )?;
            let mut written = Vec::new();
            let mut timed = |table: &'static str,
                             rows: usize,
                             f: &dyn Fn() -> Result<(), StoreError>|
             -> Result<(), StoreError> {
                if rows > 0 {
                    let started = Instant::now();
                    f()?;
                    written.push(TableWrite {
                        table,
                        rows,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
                Ok(())
            };
            timed("otel_traces", batch.otel_traces.len(), &|| {
                write::otel_traces(&tx, &batch.otel_traces)
            })?;
            timed("llm_calls", batch.llm_calls.len(), &|| {
                write::llm_calls(&tx, &batch.llm_calls)
            })?;
            timed("feedback", batch.feedback.len(), &|| {
                write::feedback(&tx, &batch.feedback)
            })?;
            timed("signals", batch.signals.len(), &|| {
                write::signals(&tx, &batch.signals)
            })?;
            tx.commit()?;
            Ok(written)
        })
        .await
    }

    async fn last_marker(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let (group, topic) = (group.to_string(), topic.to_string());
        self.run(move |c| {
            let mut stmt = c.prepare(
                "SELECT first_offset, last_offset FROM ingest_batches \
                 WHERE consumer_group = ? AND topic = ? AND \"partition\" = ? \
                 ORDER BY first_offset DESC LIMIT 1",
            )?;
            let mut rows = stmt.query(duckdb::params![group, topic, partition])?;
            Ok(match rows.next()? {
                Some(r) => Some((r.get(0)?, r.get(1)?)),
                None => None,
            })
        })
        .await
    }

    async fn derive(&self, rule: Rule, window: &Window) -> Result<Vec<SignalRow>, StoreError> {
        let sql = rule.new_rows(Dialect::DuckDb, window);
        self.run(move |c| {
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(signal_row(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn reprice(&self, prices: &[(String, Price)], since_ns: i64) -> Result<(), StoreError> {
        let Some(sql) = reprice::statement(Dialect::DuckDb, prices, since_ns) else {
            return Ok(());
        };
        let writes = self.writes.clone();
        self.run(move |c| {
            let _one_writer = writes.lock().map_err(lock_poisoned)?;
            let (text, params) = super::expand(&sql);
            let rows = c.execute(&text, duckdb::params_from_iter(params))?;
            tracing::info!(rows, "repriced llm_calls");
            Ok(())
        })
        .await
    }

    /// One `DELETE` per configured table (each its own transaction) under the write lock, then,
    /// if any row went, a `CHECKPOINT` so that the file reuses the freed blocks (it does not
    /// shrink). A failed checkpoint is only logged: DuckDB checkpoints by itself later.
    async fn expire(
        &self,
        ttl_days: &BTreeMap<String, u32>,
        now_ns: i64,
    ) -> Result<Vec<Expired>, StoreError> {
        let cutoffs = crate::ingest::expiry_cutoffs(ttl_days, now_ns)?;
        let writes = self.writes.clone();
        self.run(move |c| {
            let _one_writer = writes.lock().map_err(lock_poisoned)?;
            let mut expired = Vec::with_capacity(cutoffs.len() + 1);
            // Batch tokens older than a week: the ingester replays from its committed offset
            // (minutes back), and ClickHouse's own deduplication window is 10,000 inserts.
            let tokens = c.execute(
                "DELETE FROM insert_tokens WHERE inserted_at < make_timestamp_ns(?)",
                [now_ns.saturating_sub(TOKEN_DAYS * 86_400 * 1_000_000_000)],
            )?;
            if tokens > 0 {
                expired.push(Expired {
                    table: "insert_tokens",
                    rows: tokens,
                });
            }
            for Cutoff {
                table,
                column,
                before_ns,
            } in cutoffs
            {
                let rows = match before_ns {
                    Some(cutoff) => c.execute(
                        &format!(
                            "DELETE FROM \"{table}\" WHERE \"{column}\" < make_timestamp_ns(?)"
                        ),
                        [cutoff],
                    )?,
                    None => 0,
                };
                expired.push(Expired { table, rows });
            }
            if expired.iter().any(|e| e.rows > 0) {
                if let Err(e) = c.execute_batch("CHECKPOINT") {
                    tracing::warn!(error = %e, "checkpoint after expiring rows failed");
                }
            }
            Ok(expired)
        })
        .await
    }
}

/// How long a stored batch's token is kept (a replay of that batch is refused meanwhile).
const TOKEN_DAYS: i64 = 7;

/// A row of [`crate::derive::duckdb::only_new`].
fn signal_row(r: &duckdb::Row<'_>) -> Result<SignalRow, StoreError> {
    Ok(SignalRow {
        id: r.get(0)?,
        project: r.get(1)?,
        timestamp: r.get(2)?,
        trace_id: r.get(3)?,
        span_id: r.get(4)?,
        conversation_id: r.get(5)?,
        user_id: r.get(6)?,
        signal_type: r.get(7)?,
        source: r.get(8)?,
        origin: r.get(9)?,
        discarded_trace_id: r.get(10)?,
        discarded_span_id: r.get(11)?,
        tokens_received: r.get(12)?,
        ms_since_start: r.get(13)?,
        edit_ratio: r.get(14)?,
        edited_text: r.get(15)?,
        text: r.get(16)?,
        turn_count: r.get(17)?,
        attributes: super::json_map(r, 18)?,
        received_at: r.get(19)?,
    })
}

#[cfg(test)]
mod tests {
    use flywheel_schema::rows::{FeedbackRow, LlmCallRow, OtelTraceRow};

    use super::*;
    use crate::Store;

    async fn count(store: &DuckDbStore, sql: &'static str) -> i64 {
        store
            .run(move |c| Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap()
    }

    fn marker(first: i64) -> IngestBatchRow {
        IngestBatchRow {
            consumer_group: "g".into(),
            topic: "t".into(),
            partition: 0,
            first_offset: first,
            last_offset: first + 9,
        }
    }

    #[tokio::test]
    async fn a_failed_batch_leaves_neither_marker_nor_rows() {
        let store = DuckDbStore::in_memory().unwrap();
        // Writing `signals` fails after the marker and the calls were written.
        store
            .run(|c| Ok(c.execute_batch("DROP TABLE signals")?))
            .await
            .unwrap();
        let mut batch = RowBatch::new("t:0:0-9");
        batch.llm_calls = vec![LlmCallRow {
            project: "p".into(),
            trace_id: "t1".into(),
            ..LlmCallRow::default()
        }];
        batch.signals = vec![SignalRow {
            id: "s".into(),
            project: "p".into(),
            ..SignalRow::default()
        }];
        assert!(store.ingest(&marker(0), &batch).await.is_err());
        assert_eq!(store.last_marker("g", "t", 0).await.unwrap(), None);
        assert_eq!(count(&store, "SELECT count() FROM llm_calls").await, 0);
        assert_eq!(count(&store, "SELECT count() FROM insert_tokens").await, 0);
        assert_eq!(count(&store, "SELECT count() FROM ingest_batches").await, 0);
        assert!(store.ping().await.is_ok());
    }

    /// Week-old batch tokens go with every expiry run, whatever the table TTLs; newer ones
    /// stay (a replay of their batch is still refused).
    #[tokio::test]
    async fn expire_forgets_week_old_batch_tokens_only() {
        let store = DuckDbStore::in_memory().unwrap();
        store
            .run(|c| {
                c.execute_batch(
                    "INSERT INTO insert_tokens (token, inserted_at) VALUES \
                     ('old', TIMESTAMP '2024-05-24 23:59:59'), \
                     ('recent', TIMESTAMP '2024-05-25 00:00:01')",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        // NOW is 2024-06-01T00:00:00Z: the cut is 2024-05-25T00:00:00.
        let expired = store.expire(&BTreeMap::new(), NOW).await.unwrap();
        assert_eq!(
            expired,
            vec![Expired {
                table: "insert_tokens",
                rows: 1
            }]
        );
        assert_eq!(
            count(
                &store,
                "SELECT count() FROM insert_tokens WHERE token = 'recent'"
            )
            .await,
            1
        );
        assert_eq!(count(&store, "SELECT count() FROM insert_tokens").await, 1);
        assert!(store
            .expire(&BTreeMap::new(), NOW)
            .await
            .unwrap()
            .is_empty());
    }

    const DAY: i64 = 86_400 * 1_000_000_000;
    /// A fixed "now" (2024-06-01T00:00:00Z): no test depends on the wall clock.
    const NOW: i64 = 1_717_200_000 * 1_000_000_000;

    fn call(trace_id: &str, timestamp: i64) -> LlmCallRow {
        LlmCallRow {
            project: "p".into(),
            trace_id: trace_id.into(),
            timestamp,
            ..LlmCallRow::default()
        }
    }

    /// Rows of every TTL table at `NOW` minus the given ages (ns).
    async fn store_with_ages(ages: &[i64]) -> DuckDbStore {
        let store = DuckDbStore::in_memory().unwrap();
        let mut batch = RowBatch::new("ages");
        for (i, age) in ages.iter().enumerate() {
            let ts = NOW - age;
            batch.otel_traces.push(OtelTraceRow {
                timestamp: ts,
                trace_id: format!("t{i}"),
                span_id: format!("s{i}"),
                ..OtelTraceRow::default()
            });
            batch.llm_calls.push(call(&format!("t{i}"), ts));
            batch.feedback.push(FeedbackRow {
                id: format!("f{i}"),
                project: "p".into(),
                timestamp: ts,
                ..FeedbackRow::default()
            });
            batch.signals.push(SignalRow {
                id: format!("s{i}"),
                project: "p".into(),
                timestamp: ts,
                ..SignalRow::default()
            });
        }
        store.ingest(&marker(0), &batch).await.unwrap();
        store
    }

    fn ttl(entries: &[(&str, u32)]) -> BTreeMap<String, u32> {
        entries.iter().map(|(t, d)| (t.to_string(), *d)).collect()
    }

    #[tokio::test]
    async fn expire_deletes_old_rows_of_configured_tables_only() {
        // Ages: 40 days, 31 days, 30 days minus 1 ns (kept at 30 days), 1 day, now.
        let store = store_with_ages(&[40 * DAY, 31 * DAY, 30 * DAY - 1, DAY, 0]).await;
        let expired = store
            .expire(&ttl(&[("llm_calls", 30), ("signals", 2)]), NOW)
            .await
            .unwrap();
        assert_eq!(
            expired,
            vec![
                Expired {
                    table: "llm_calls",
                    rows: 2
                },
                Expired {
                    table: "signals",
                    rows: 3
                },
            ]
        );
        assert_eq!(count(&store, "SELECT count() FROM llm_calls").await, 3);
        assert_eq!(
            count(
                &store,
                "SELECT count() FROM llm_calls WHERE trace_id IN ('t2', 't3', 't4')"
            )
            .await,
            3
        );
        assert_eq!(count(&store, "SELECT count() FROM signals").await, 2);
        assert_eq!(
            count(
                &store,
                "SELECT count() FROM signals WHERE id IN ('s3', 's4')"
            )
            .await,
            2
        );
        // Not configured: untouched.
        assert_eq!(count(&store, "SELECT count() FROM otel_traces").await, 5);
        assert_eq!(count(&store, "SELECT count() FROM feedback").await, 5);
        assert_eq!(count(&store, "SELECT count() FROM ingest_batches").await, 1);
        // Again at the same time: nothing left to delete.
        let again = store
            .expire(&ttl(&[("llm_calls", 30), ("signals", 2)]), NOW)
            .await
            .unwrap();
        assert!(again.iter().all(|e| e.rows == 0), "{again:?}");
        assert_eq!(again.len(), 2);
    }

    #[tokio::test]
    async fn expire_uses_each_tables_time_column() {
        let store = store_with_ages(&[10 * DAY, 0]).await;
        let expired = store
            .expire(&ttl(&[("otel_traces", 5), ("feedback", 5)]), NOW)
            .await
            .unwrap();
        let rows: Vec<_> = expired.iter().map(|e| (e.table, e.rows)).collect();
        assert_eq!(rows, vec![("otel_traces", 1), ("feedback", 1)]);
        assert_eq!(
            count(
                &store,
                "SELECT count() FROM otel_traces WHERE TraceId = 't1'"
            )
            .await,
            1
        );
        assert_eq!(
            count(&store, "SELECT count() FROM feedback WHERE id = 'f1'").await,
            1
        );
        assert_eq!(count(&store, "SELECT count() FROM llm_calls").await, 2);
        assert_eq!(count(&store, "SELECT count() FROM signals").await, 2);
    }

    #[tokio::test]
    async fn expire_without_tables_or_with_a_huge_ttl_deletes_nothing() {
        let store = store_with_ages(&[3650 * DAY]).await;
        assert_eq!(store.expire(&BTreeMap::new(), NOW).await.unwrap(), vec![]);
        let expired = store
            .expire(&ttl(&[("llm_calls", u32::MAX)]), NOW)
            .await
            .unwrap();
        assert_eq!(
            expired,
            vec![Expired {
                table: "llm_calls",
                rows: 0
            }]
        );
        assert_eq!(count(&store, "SELECT count() FROM llm_calls").await, 1);
        assert!(store.expire(&ttl(&[("alerts", 1)]), NOW).await.is_err());
    }

    #[tokio::test]
    async fn an_older_marker_does_not_replace_a_newer_one() {
        let store = DuckDbStore::in_memory().unwrap();
        store
            .ingest(&marker(10), &RowBatch::new("a"))
            .await
            .unwrap();
        store.ingest(&marker(0), &RowBatch::new("b")).await.unwrap();
        assert_eq!(
            store.last_marker("g", "t", 0).await.unwrap(),
            Some((10, 19))
        );
    }
}
