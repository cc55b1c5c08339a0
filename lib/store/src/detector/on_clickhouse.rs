//! [`DetectorStore`] on ClickHouse: the detector's queries as they were (`FINAL` reads,
//! `argMax` per fingerprint); alert rows inserted as they come (plain MergeTree, no token).

use clickhouse::Row;
use flywheel_schema::rows::AlertRow;
use serde::Deserialize;

use super::{
    by_fingerprint, distinct_keys, events_in_order, spend_in_order, sql, CallKey, DetectorStore,
    FiringAlert, SpendQuery, SpendRow, StoredCall, StoredEvent, StoredItem,
};
use crate::model::Ids;
use crate::sql::Dialect;
use crate::{ClickHouseStore, StoreError};

const D: Dialect = Dialect::ClickHouse;

#[derive(Debug, Row, Deserialize)]
struct LastState {
    fingerprint: String,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    starts_at: i64,
    event_time: i64,
    state: String,
}

#[async_trait::async_trait]
impl DetectorStore for ClickHouseStore {
    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    async fn write_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError> {
        let mut insert = self.client().insert::<AlertRow>("alerts").await?;
        for r in rows {
            insert.write(r).await?;
        }
        insert.end().await?;
        Ok(())
    }

    async fn firing_alerts(&self) -> Result<Vec<FiringAlert>, StoreError> {
        let rows: Vec<LastState> = self.client().query(sql::firing(D)).fetch_all().await?;
        Ok(by_fingerprint(
            rows.into_iter()
                .filter(|r| r.state == "firing")
                .map(|r| FiringAlert {
                    fingerprint: r.fingerprint,
                    labels: r.labels,
                    annotations: r.annotations,
                    starts_at: r.starts_at,
                    event_time: r.event_time,
                })
                .collect(),
        ))
    }

    async fn recent_alerts(&self, project: &str, limit: u64) -> Result<Vec<AlertRow>, StoreError> {
        self.fetch(sql::recent(D, project, limit)).await
    }

    async fn stored_events(
        &self,
        from_ms: i64,
        cut_ns: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let [calls, feedback, signals] = sql::stored_events(D, from_ms, cut_ns);
        let calls: Vec<StoredCall> = self.fetch(calls).await?;
        let feedback: Vec<StoredItem> = self.fetch(feedback).await?;
        let signals: Vec<StoredItem> = self.fetch(signals).await?;
        Ok(events_in_order(calls, feedback, signals))
    }

    async fn lookup_keys(
        &self,
        traces: &Ids,
        conversations: &Ids,
    ) -> Result<Vec<CallKey>, StoreError> {
        let Some(sql) = sql::lookup_keys(traces, conversations) else {
            return Ok(Vec::new());
        };
        Ok(distinct_keys(self.fetch(sql).await?))
    }

    async fn period_spend(
        &self,
        queries: &[SpendQuery],
        replay_from_ms: i64,
        cut_ns: i64,
        limit: u64,
    ) -> Result<Vec<SpendRow>, StoreError> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let sql = sql::period_spend(D, queries, replay_from_ms, cut_ns, limit);
        Ok(spend_in_order(self.fetch(sql).await?))
    }
}
