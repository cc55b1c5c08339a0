//! [`IngestStore`] on DuckDB: token, marker and rows in one transaction.

use std::time::Instant;

use flywheel_pricing::Price;
use flywheel_schema::rows::{IngestBatchRow, SignalRow};

use super::{lock_poisoned, write, DuckDbStore};
use crate::derive::{Rule, Window};
use crate::ingest::{IngestStore, TableWrite};
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
}

#[derive(serde::Deserialize)]
struct Entry {
    key: String,
    value: String,
}

/// A row of [`crate::derive::duckdb::only_new`].
fn signal_row(r: &duckdb::Row<'_>) -> Result<SignalRow, StoreError> {
    let attributes: String = r.get(18)?;
    let attributes: Vec<Entry> = serde_json::from_str(&attributes)?;
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
        attributes: attributes.into_iter().map(|e| (e.key, e.value)).collect(),
        received_at: r.get(19)?,
    })
}

#[cfg(test)]
mod tests {
    use flywheel_schema::rows::LlmCallRow;

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
