//! The trace pipeline shared by both receivers: validate -> split per trace -> admit under the
//! in-flight byte budget -> publish -> answer.
//!
//! `export` returns `Ok` only when every accepted span is durable on the log; spans refused
//! individually come back as an OTLP partial success. Every span and request is counted by
//! outcome in [`Metrics`].

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use flywheel_bus::{Publisher, Record};
use flywheel_core::{wire, ErrorCode, ProjectId};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::Semaphore;

use crate::error::IngestError;
use crate::metrics::Metrics;
use crate::spans::{count_spans, drop_invalid, split_by_trace, Rejections};

/// The receiver a request came through (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http_protobuf",
            Self::HttpJson => "http_json",
            Self::Grpc => "grpc",
        }
    }
}

/// What the client is told on success.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExportOutcome {
    pub rejected_spans: i64,
    pub error_message: String,
}

impl ExportOutcome {
    /// The OTLP response: `partial_success` only when spans were refused.
    pub fn into_response(self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (self.rejected_spans > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: self.rejected_spans,
                error_message: self.error_message,
            }),
        }
    }
}

/// Validates, splits and durably publishes trace requests.
pub struct TraceSink<P> {
    publisher: P,
    topic: String,
    max_message_bytes: usize,
    in_flight: Arc<Semaphore>,
    in_flight_kib: u32,
    metrics: Metrics,
}

impl<P: Publisher> TraceSink<P> {
    pub fn new(
        publisher: P,
        topic: String,
        max_message_bytes: usize,
        max_in_flight_bytes: usize,
        metrics: Metrics,
    ) -> Self {
        let kib = u32::try_from(max_in_flight_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        Self {
            publisher,
            topic,
            max_message_bytes,
            in_flight: Arc::new(Semaphore::new(kib as usize)),
            in_flight_kib: kib,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts a request refused before its spans could be decoded.
    pub fn count_refused(&self, transport: Transport, code: ErrorCode) {
        self.metrics
            .requests
            .with_label_values(&[transport.label(), code.reason()])
            .inc();
    }

    /// Publishes `request` for `project`. `rejections` may already hold spans refused while
    /// decoding.
    pub async fn export(
        &self,
        project: &ProjectId,
        mut request: ExportTraceServiceRequest,
        mut rejections: Rejections,
        transport: Transport,
    ) -> Result<ExportOutcome, IngestError> {
        let t = transport.label();
        let received = count_spans(&request) + rejections.count();
        self.metrics
            .spans_received
            .with_label_values(&[t])
            .inc_by(received);

        drop_invalid(&mut request, &mut rejections);
        let messages = split_by_trace(request, self.max_message_bytes, &mut rejections);
        let refused = rejections.count();
        if refused > 0 {
            self.metrics
                .spans_rejected
                .with_label_values(&[t, ErrorCode::InvalidItem.reason()])
                .inc_by(refused);
        }
        let accepted: u64 = messages.iter().map(|m| m.spans).sum();

        let result = self.publish(project, messages).await;
        match &result {
            Ok(()) => {
                self.metrics
                    .spans_published
                    .with_label_values(&[t])
                    .inc_by(accepted);
                self.metrics.requests.with_label_values(&[t, "ok"]).inc();
            }
            Err(e) => {
                self.metrics
                    .spans_rejected
                    .with_label_values(&[t, e.code.reason()])
                    .inc_by(accepted);
                self.count_refused(transport, e.code);
            }
        }
        result.map(|()| ExportOutcome {
            rejected_spans: i64::try_from(refused).unwrap_or(i64::MAX),
            error_message: if refused > 0 {
                rejections.message()
            } else {
                String::new()
            },
        })
    }

    async fn publish(
        &self,
        project: &ProjectId,
        messages: Vec<crate::spans::TraceMessage>,
    ) -> Result<(), IngestError> {
        if messages.is_empty() {
            return Ok(());
        }
        let received_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos().to_string())
            .unwrap_or_default()
            .into_bytes();
        let headers = [
            (wire::HEADER_PROJECT, project.as_str().as_bytes().to_vec()),
            (wire::HEADER_RECEIVED_AT_NS, received_at),
            (
                wire::HEADER_ENCODING,
                wire::ENCODING_OTLP_PROTO.as_bytes().to_vec(),
            ),
        ];
        let records: Vec<Record> = messages
            .into_iter()
            .map(|m| Record {
                key: hex::encode(m.trace_id).into_bytes(),
                payload: m.payload,
            })
            .collect();
        let bytes: usize = records.iter().map(Record::size).sum();
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
        let result = self.publisher.publish(&self.topic, &headers, records).await;
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

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
