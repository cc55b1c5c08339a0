//! What one message of the log holds, by the topic it came from: decoded (and, for feedback
//! and signals, mapped to rows) while the payload is still the source's buffer (librdkafka's,
//! with Kafka), so that only a message that must be dead-lettered is ever copied.

use std::time::{SystemTime, UNIX_EPOCH};

use flywheel_bus::Delivery;
use flywheel_core::{wire, ProjectId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use crate::map::{feedback, Rows};
use crate::IngesterConfig;

/// The topics the ingester consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// OTLP `ExportTraceServiceRequest`s -> `otel_traces`, `llm_calls` (and span events ->
    /// `feedback`, `signals`).
    Spans,
    /// `flywheel.v1.Feedback` -> `feedback`.
    Feedback,
    /// `flywheel.v1.Signal` -> `signals`.
    Signals,
}

/// The configured topic names.
#[derive(Debug, Clone)]
pub struct Topics {
    spans: String,
    feedback: String,
    signals: String,
}

impl Topics {
    pub fn new(config: &IngesterConfig) -> Self {
        Self {
            spans: config.spans_topic.clone(),
            feedback: config.feedback_topic.clone(),
            signals: config.signals_topic.clone(),
        }
    }

    pub fn name(&self, kind: Kind) -> &str {
        match kind {
            Kind::Spans => &self.spans,
            Kind::Feedback => &self.feedback,
            Kind::Signals => &self.signals,
        }
    }

    pub fn kind(&self, topic: &str) -> Option<Kind> {
        [Kind::Spans, Kind::Feedback, Kind::Signals]
            .into_iter()
            .find(|k| self.name(*k) == topic)
    }

    pub fn names(&self) -> [&str; 3] {
        [&self.spans, &self.feedback, &self.signals]
    }
}

/// A decoded message.
pub enum Content {
    /// Mapped later (and only if the offset is not already committed).
    Spans(ExportTraceServiceRequest),
    /// Feedback or a signal, already a row.
    Rows(Rows),
}

/// A message that cannot be stored, kept whole for the dead-letter topic.
pub struct Undecodable {
    pub error: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A message's fields, out of the source's buffer.
pub struct Incoming {
    pub kind: Kind,
    pub partition: i32,
    pub offset: i64,
    pub content: Result<Content, Undecodable>,
    pub size: usize,
    pub project: ProjectId,
    pub received_at_ns: Option<u64>,
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Decodes `m`, a message of the `kind` topic.
pub fn incoming<M: Delivery + ?Sized>(m: &M, kind: Kind) -> Incoming {
    let payload = m.payload();
    let project = m
        .header(wire::HEADER_PROJECT)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| ProjectId::new(v).ok())
        .unwrap_or_else(ProjectId::default_project);
    let received_at_ns: Option<u64> = m
        .header(wire::HEADER_RECEIVED_AT_NS)
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
    // Feedback and signals without a receive time are stamped now: `received_at` is what
    // decides which copy of a resent item wins.
    let received_or_now = received_at_ns
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or_else(now_ns);
    let content = match kind {
        Kind::Spans => ExportTraceServiceRequest::decode(payload)
            .map(Content::Spans)
            .map_err(|e| e.to_string()),
        Kind::Feedback => item(payload, |f| {
            let row = feedback::feedback_row(f, project.as_str(), received_or_now)?;
            Ok(Rows {
                feedback: vec![row],
                ..Rows::default()
            })
        }),
        Kind::Signals => item(payload, |s| {
            let row = feedback::signal_row(s, project.as_str(), received_or_now)?;
            Ok(Rows {
                signals: vec![row],
                ..Rows::default()
            })
        }),
    };
    Incoming {
        kind,
        partition: m.partition(),
        offset: m.offset(),
        content: content.map_err(|error| Undecodable {
            error,
            key: m.key().to_vec(),
            payload: payload.to_vec(),
        }),
        size: payload.len(),
        project,
        received_at_ns,
    }
}

/// Decodes one feedback or signal protobuf and maps it to rows.
fn item<T: prost::Message + Default>(
    payload: &[u8],
    map: impl FnOnce(T) -> Result<Rows, feedback::Invalid>,
) -> Result<Content, String> {
    let decoded = T::decode(payload).map_err(|e| e.to_string())?;
    map(decoded).map(Content::Rows).map_err(|e| e.to_string())
}
