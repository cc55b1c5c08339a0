//! The Kafka wire contract shared by every service.
//!
//! Span messages are OTLP `ExportTraceServiceRequest` protobufs (the `otlp_proto` encoding of the
//! OpenTelemetry Collector's Kafka exporter), one trace per message, keyed by the trace id in
//! lowercase hex (as the OTel Collector does with `partition_traces_by_id`). Flywheel metadata
//! travels in headers so that a stock OTel Collector can feed the same topic: a message without
//! the project header belongs to the `default` project.

/// Default topic for spans.
pub const TOPIC_SPANS: &str = "flywheel.spans.otlp";

/// Header carrying the project id (UTF-8).
pub const HEADER_PROJECT: &str = "flywheel.project";

/// Header carrying the collector's receive time, Unix nanoseconds as decimal ASCII. Used to
/// measure event-to-queryable latency downstream.
pub const HEADER_RECEIVED_AT_NS: &str = "flywheel.received_at_ns";

/// Header naming the payload encoding: `otlp_proto` for span messages, see below for feedback
/// and signals.
pub const HEADER_ENCODING: &str = "flywheel.encoding";

/// Value of [`HEADER_ENCODING`] for OTLP protobuf payloads.
pub const ENCODING_OTLP_PROTO: &str = "otlp_proto";

/// Default topic for explicit feedback: one `flywheel.v1.Feedback` protobuf per message
/// (`proto/flywheel/v1/feedback.proto`), keyed by trace id, else conversation id, else item id,
/// with the same project and receive-time headers as spans.
pub const TOPIC_FEEDBACK: &str = "flywheel.feedback";

/// Default topic for implicit signals: one `flywheel.v1.Signal` protobuf per message, keyed and
/// headed like feedback.
pub const TOPIC_SIGNALS: &str = "flywheel.signals";

/// Value of [`HEADER_ENCODING`] on the feedback topic.
pub const ENCODING_FEEDBACK_PROTO: &str = "flywheel_feedback_proto";

/// Value of [`HEADER_ENCODING`] on the signals topic.
pub const ENCODING_SIGNAL_PROTO: &str = "flywheel_signal_proto";
