//! # Feedback and signals receivers
//!
//! Explicit feedback and implicit signals enter the collector three ways:
//! - `POST /v1/feedback` and `POST /v1/signals` ([`endpoints`]): JSON, one item or a batch, each
//!   item validated by [`flywheel_feedback::api::Validator`] with the project's feedback
//!   definitions (`collector.feedback_definitions`) and `collector.feedback_limits`;
//! - OTLP log records named `gen_ai.evaluation.result`, `flywheel.feedback` or
//!   `flywheel.signal` (`POST /v1/logs`, `LogsService/Export`, [`logs`]), converted by
//!   [`flywheel_feedback::otlp::from_event`].
//!
//! Valid items become one `flywheel.v1.Feedback` / `flywheel.v1.Signal` protobuf per Kafka
//! record on `collector.feedback_topic` / `collector.signals_topic`, keyed by trace id, else
//! conversation id, else item id ([`flywheel_feedback::api::record_key`]), with the same headers
//! and durability rule as spans: [`FeedbackSink::publish`] admits the request under the shared
//! in-flight byte budget ([`crate::publish::Durable`]) and returns only after every delivery
//! report. Every item is counted by kind and outcome (`crate::metrics::ITEMS_*`).

pub mod endpoints;
pub mod logs;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use flywheel_bus::{Publisher, Record};
use flywheel_core::{wire, ErrorCode, ProjectId};
use flywheel_feedback::api::{record_key, Limits, Validator};
use flywheel_feedback::otlp::OtlpItem;
use flywheel_feedback::{pb, Definitions};
use prost::Message;

use crate::error::IngestError;
use crate::metrics::{Metrics, Transport};
use crate::publish::{Durable, TopicBatch};

/// Feedback or signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Feedback,
    Signal,
}

impl Kind {
    /// The `kind` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Feedback => "feedback",
            Self::Signal => "signal",
        }
    }
}

/// A validated item, ready for Kafka.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Feedback(pb::Feedback),
    Signal(pb::Signal),
}

impl From<OtlpItem> for Item {
    fn from(item: OtlpItem) -> Self {
        match item {
            OtlpItem::Feedback(f) => Self::Feedback(f),
            OtlpItem::Signal(s) => Self::Signal(s),
        }
    }
}

impl Item {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Feedback(_) => Kind::Feedback,
            Self::Signal(_) => Kind::Signal,
        }
    }

    /// The item id (the client's, or the one generated for it).
    pub fn id(&self) -> &str {
        match self {
            Self::Feedback(f) => &f.id,
            Self::Signal(s) => &s.id,
        }
    }

    /// The Kafka record: keyed by trace id, else conversation id, else item id.
    pub fn to_record(&self) -> Record {
        let (subject, payload) = match self {
            Self::Feedback(f) => (f.subject.as_ref(), f.encode_to_vec()),
            Self::Signal(s) => (s.subject.as_ref(), s.encode_to_vec()),
        };
        Record {
            key: record_key(subject, self.id()).into_bytes(),
            payload,
        }
    }
}

/// Current time in Unix nanoseconds (for generated timestamps and the future-skew check).
pub fn now_unix_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Validation settings and durable publishing of feedback and signals.
pub struct FeedbackSink<P> {
    durable: Arc<Durable<P>>,
    feedback_topic: String,
    signals_topic: String,
    limits: Limits,
    definitions: Definitions,
}

impl<P: Publisher> FeedbackSink<P> {
    pub fn new(
        durable: Arc<Durable<P>>,
        feedback_topic: String,
        signals_topic: String,
        limits: Limits,
        definitions: Definitions,
    ) -> Self {
        Self {
            durable,
            feedback_topic,
            signals_topic,
            limits,
            definitions,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn metrics(&self) -> &Metrics {
        self.durable.metrics()
    }

    /// The validator for `project`'s items, with its feedback definitions.
    pub fn validator(&self, project: &ProjectId, now_unix_nano: i64) -> Validator<'_> {
        Validator {
            limits: &self.limits,
            definitions: self.definitions.get(project.as_str()),
            now_unix_nano,
        }
    }

    /// Counts a request by its outcome.
    pub fn count_request(&self, transport: Transport, outcome: Result<(), ErrorCode>) {
        self.durable.count_request(transport, outcome);
    }

    /// Counts `n` items of `kind` (a `metrics::ITEM_KINDS` label) refused for `reason`.
    pub fn count_rejected(&self, kind: &str, transport: Transport, reason: &str, n: u64) {
        if n > 0 {
            self.metrics()
                .items_rejected
                .with_label_values(&[kind, transport.label(), reason])
                .inc_by(n);
        }
    }

    /// Publishes `items` for `project` in one admission: `Ok` once every one is durable on its
    /// topic; on error nothing may be acknowledged.
    pub async fn publish(
        &self,
        project: &ProjectId,
        items: &[Item],
        transport: Transport,
    ) -> Result<(), IngestError> {
        let mut feedback = Vec::new();
        let mut signals = Vec::new();
        for item in items {
            match item.kind() {
                Kind::Feedback => feedback.push(item.to_record()),
                Kind::Signal => signals.push(item.to_record()),
            }
        }
        let counts = [
            (Kind::Feedback, feedback.len() as u64),
            (Kind::Signal, signals.len() as u64),
        ];
        let batches = vec![
            TopicBatch {
                topic: &self.feedback_topic,
                encoding: wire::ENCODING_FEEDBACK_PROTO,
                records: feedback,
            },
            TopicBatch {
                topic: &self.signals_topic,
                encoding: wire::ENCODING_SIGNAL_PROTO,
                records: signals,
            },
        ];
        let result = self.durable.publish(project, batches).await;
        for (kind, n) in counts {
            match &result {
                Ok(()) => self
                    .metrics()
                    .items_accepted
                    .with_label_values(&[kind.label(), transport.label()])
                    .inc_by(n),
                Err(e) => self.count_rejected(kind.label(), transport, e.code.reason(), n),
            }
        }
        result
    }
}

#[cfg(test)]
mod tests;
