//! Durable publishing shared by every receiver (spans, feedback, signals): admission under the
//! in-flight byte budget, the Flywheel headers, one wait for every delivery report, and the
//! publish metrics.
//!
//! A request is admitted only if its bytes fit `collector.max_in_flight_bytes` (else 429 before
//! anything is produced); `publish` returns `Ok` only once every record of every batch is
//! durable (adr/0002).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use flywheel_bus::{Publisher, Record};
use flywheel_core::{wire, ErrorCode, ProjectId};
use tokio::sync::Semaphore;

use crate::error::IngestError;
use crate::metrics::{Metrics, Transport};

/// Records bound for one topic, all with the same payload encoding.
#[derive(Debug)]
pub struct TopicBatch<'a> {
    pub topic: &'a str,
    /// Value of the `flywheel.encoding` header.
    pub encoding: &'static str,
    pub records: Vec<Record>,
}

/// The publisher behind every receiver, with the shared in-flight byte budget.
pub struct Durable<P> {
    publisher: P,
    in_flight: Arc<Semaphore>,
    in_flight_kib: u32,
    metrics: Metrics,
}

impl<P: Publisher> Durable<P> {
    pub fn new(publisher: P, max_in_flight_bytes: usize, metrics: Metrics) -> Self {
        let kib = u32::try_from(max_in_flight_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        Self {
            publisher,
            in_flight: Arc::new(Semaphore::new(kib as usize)),
            in_flight_kib: kib,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts a request by its outcome: `Ok` or the code it was refused with.
    pub fn count_request(&self, transport: Transport, outcome: Result<(), ErrorCode>) {
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(code) => code.reason(),
        };
        self.metrics
            .requests
            .with_label_values(&[transport.label(), outcome])
            .inc();
    }

    /// Publishes every batch for `project` under one admission, and resolves once every record
    /// is durable, or with the first error (then nothing may be acknowledged to the client).
    pub async fn publish(
        &self,
        project: &ProjectId,
        batches: Vec<TopicBatch<'_>>,
    ) -> Result<(), IngestError> {
        if batches.iter().all(|b| b.records.is_empty()) {
            return Ok(());
        }
        let bytes: usize = batches
            .iter()
            .flat_map(|b| &b.records)
            .map(Record::size)
            .sum();
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.in_flight_kib);
        let _permit = self.in_flight.clone().try_acquire_many_owned(kib).map_err(|_| {
            IngestError::new(
                ErrorCode::InFlightLimit,
                "the collector is at its in-flight byte limit (collector.max_in_flight_bytes); retry later",
            )
        })?;
        let in_flight = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.metrics.in_flight_bytes.add(in_flight);
        let started = Instant::now();
        let received_at = received_at_ns();
        let mut result = Ok(());
        for batch in batches.into_iter().filter(|b| !b.records.is_empty()) {
            let headers = [
                (wire::HEADER_PROJECT, project.as_str().as_bytes().to_vec()),
                (wire::HEADER_RECEIVED_AT_NS, received_at.clone()),
                (wire::HEADER_ENCODING, batch.encoding.as_bytes().to_vec()),
            ];
            result = self
                .publisher
                .publish(batch.topic, &headers, batch.records)
                .await;
            if result.is_err() {
                break;
            }
        }
        self.metrics.in_flight_bytes.sub(in_flight);
        self.metrics
            .producer_queue_depth
            .set(i64::try_from(self.publisher.queue_depth()).unwrap_or(i64::MAX));
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .produce_duration
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|e| {
            tracing::warn!(error = %e, "publish failed");
            IngestError::from(e)
        })
    }
}

/// The receive time header value: Unix nanoseconds as decimal ASCII.
fn received_at_ns() -> Vec<u8> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().to_string())
        .unwrap_or_default()
        .into_bytes()
}
