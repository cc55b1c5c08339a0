//! The trace pipeline shared by both receivers: validate -> split per trace -> admit under the
//! in-flight byte budget -> publish -> answer.
//!
//! `export` returns `Ok` only when every accepted span is durable on the log; spans refused
//! individually come back as an OTLP partial success. Every span and request is counted by
//! outcome in [`Metrics`].

use std::sync::Arc;

use flywheel_bus::{Publisher, Record};
use flywheel_core::{wire, ErrorCode, ProjectId};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use crate::error::IngestError;
use crate::metrics::Metrics;
pub use crate::metrics::Transport;
use crate::publish::{Durable, TopicBatch};
use crate::spans::{count_spans, drop_invalid, split_by_trace, Rejections};

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
    durable: Arc<Durable<P>>,
    topic: String,
    max_message_bytes: usize,
}

impl<P: Publisher> TraceSink<P> {
    /// Spans go to `topic` in messages of at most `max_message_bytes`, through `durable`
    /// (whose in-flight budget every receiver shares).
    pub fn new(durable: Arc<Durable<P>>, topic: String, max_message_bytes: usize) -> Self {
        Self {
            durable,
            topic,
            max_message_bytes,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        self.durable.metrics()
    }

    /// Counts a request refused before its spans could be decoded.
    pub fn count_refused(&self, transport: Transport, code: ErrorCode) {
        self.durable.count_request(transport, Err(code));
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
        let metrics = self.metrics();
        let received = count_spans(&request) + rejections.count();
        metrics
            .spans_received
            .with_label_values(&[t])
            .inc_by(received);

        drop_invalid(&mut request, &mut rejections);
        let messages = split_by_trace(request, self.max_message_bytes, &mut rejections);
        let refused = rejections.count();
        if refused > 0 {
            metrics
                .spans_rejected
                .with_label_values(&[t, ErrorCode::InvalidItem.reason()])
                .inc_by(refused);
        }
        let accepted: u64 = messages.iter().map(|m| m.spans).sum();

        let result = self.publish(project, messages).await;
        match &result {
            Ok(()) => {
                metrics
                    .spans_published
                    .with_label_values(&[t])
                    .inc_by(accepted);
                self.durable.count_request(transport, Ok(()));
            }
            Err(e) => {
                metrics
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
        let records = messages
            .into_iter()
            .map(|m| Record {
                key: hex::encode(m.trace_id).into_bytes(),
                payload: m.payload,
            })
            .collect();
        let batch = TopicBatch {
            topic: &self.topic,
            encoding: wire::ENCODING_OTLP_PROTO,
            records,
        };
        self.durable.publish(project, vec![batch]).await
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
