//! Copies messages that cannot be stored (undecodable, or feedback / signals that cannot be
//! stored meaningfully) to the dead-letter topic, with their source topic, partition, offset
//! and error in headers, retrying until they are there so that committing past them never
//! loses them.

use std::time::Duration;

use flywheel_bus::{Headers, Publisher, Record};
use flywheel_core::{wire, ProjectId};
use tokio_util::sync::CancellationToken;

use crate::message::Undecodable;
use crate::metrics::Metrics;
use crate::IngesterConfig;

/// Where a dead letter came from.
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub project: &'a ProjectId,
}

/// Publishes `bad` to `config.dead_letter_topic`; returns when it is there or on shutdown.
pub async fn send<P: Publisher>(
    publisher: &P,
    config: &IngesterConfig,
    metrics: &Metrics,
    from: Origin<'_>,
    bad: Undecodable,
    shutdown: &CancellationToken,
) {
    tracing::error!(topic = from.topic, partition = from.partition, offset = from.offset, error = %bad.error, "message cannot be stored, sending to dead letters");
    let headers: &Headers = &[
        ("flywheel.dlq.source_topic", from.topic.as_bytes().to_vec()),
        (
            "flywheel.dlq.partition",
            from.partition.to_string().into_bytes(),
        ),
        ("flywheel.dlq.offset", from.offset.to_string().into_bytes()),
        ("flywheel.dlq.error", bad.error.into_bytes()),
        (
            wire::HEADER_PROJECT,
            from.project.as_str().as_bytes().to_vec(),
        ),
    ];
    let record = Record {
        key: bad.key,
        payload: bad.payload,
    };
    let mut delay = Duration::from_millis(config.retry_initial_ms);
    loop {
        match publisher
            .publish(&config.dead_letter_topic, headers, vec![record.clone()])
            .await
        {
            Ok(()) => {
                metrics.dead_letters.with_label_values(&[from.topic]).inc();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write dead letter, will retry");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_millis(config.retry_max_ms));
            }
        }
    }
}
