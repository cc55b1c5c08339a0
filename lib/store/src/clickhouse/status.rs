//! [`StatusStore`] on ClickHouse: the queries of [`crate::status::sql`] in the ClickHouse
//! dialect, rows read by name; alert rows inserted as the detector does.

use flywheel_schema::rows::AlertRow;

use super::{ClickHouseStore, D};
use crate::model::Ids;
use crate::status::sql;
use crate::status::{
    AlertEpisode, CallBrief, CallBucket, ModelStats, NegativeBucket, NegativeItem, StatusStore,
    TimeRange,
};
use crate::StoreError;

#[async_trait::async_trait]
impl StatusStore for ClickHouseStore {
    async fn model_stats(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<ModelStats>, StoreError> {
        let rows = self
            .fetch::<crate::status::ModelRow>(sql::model_stats(D, project, range, limit))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn call_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<CallBucket>, StoreError> {
        let rows = self
            .fetch::<crate::status::CallBucketRow>(sql::call_buckets(D, project, range, step_ms))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn negative_buckets(
        &self,
        project: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<NegativeBucket>, StoreError> {
        let rows = self
            .fetch::<crate::status::NegativeBucketRow>(sql::negative_buckets(
                D, project, range, step_ms,
            ))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn negative_items(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<(Vec<NegativeItem>, Vec<NegativeItem>), StoreError> {
        let feedback = self
            .fetch::<crate::status::FeedbackHit>(sql::negative_feedback(D, project, range, limit))
            .await?;
        let signals = self
            .fetch::<crate::status::SignalHit>(sql::negative_signals_of(D, project, range, limit))
            .await?;
        Ok((
            feedback.into_iter().map(Into::into).collect(),
            signals.into_iter().map(Into::into).collect(),
        ))
    }

    async fn call_briefs(
        &self,
        project: &str,
        range: TimeRange,
        traces: &Ids,
        limit: u32,
    ) -> Result<Vec<CallBrief>, StoreError> {
        let Some(sql) = sql::call_briefs(D, project, range, traces, limit) else {
            return Ok(Vec::new());
        };
        let rows = self.fetch::<crate::status::CallBriefRow>(sql).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn alert_episodes(
        &self,
        project: &str,
        range: TimeRange,
        limit: u32,
    ) -> Result<Vec<AlertEpisode>, StoreError> {
        let rows = self
            .fetch::<crate::status::EpisodeRow>(sql::alert_episodes(D, project, range, limit))
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// One insert, no deduplication token: the detector's history is events, and each row
    /// carries its own `sent_at`.
    async fn insert_alerts(&self, rows: &[AlertRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<AlertRow>("alerts").await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}
