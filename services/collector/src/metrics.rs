//! Every metric the collector exports, by name, in one place. Dashboards use these names.

use flywheel_core::ErrorCode;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
};

pub const SPANS_RECEIVED: &str = "flywheel_collector_spans_received_total";
pub const SPANS_PUBLISHED: &str = "flywheel_collector_spans_published_total";
pub const SPANS_REJECTED: &str = "flywheel_collector_spans_rejected_total";
pub const REQUESTS: &str = "flywheel_collector_requests_total";
pub const REQUEST_DURATION: &str = "flywheel_collector_request_duration_seconds";
pub const PRODUCE_DURATION: &str = "flywheel_collector_produce_duration_seconds";
pub const PRODUCER_QUEUE_DEPTH: &str = "flywheel_collector_producer_queue_depth";
pub const IN_FLIGHT_BYTES: &str = "flywheel_collector_in_flight_bytes";
pub const ITEMS_ACCEPTED: &str = "flywheel_collector_items_accepted_total";
pub const ITEMS_REJECTED: &str = "flywheel_collector_items_rejected_total";

/// The receiver a request came through (the `transport` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `POST /v1/traces`, protobuf.
    HttpProtobuf,
    /// `POST /v1/traces`, JSON.
    HttpJson,
    /// `TraceService/Export`.
    Grpc,
    /// `POST /v1/feedback`.
    HttpFeedback,
    /// `POST /v1/signals`.
    HttpSignals,
    /// `POST /v1/logs`, protobuf.
    HttpLogsProtobuf,
    /// `POST /v1/logs`, JSON.
    HttpLogsJson,
    /// `LogsService/Export`.
    GrpcLogs,
}

impl Transport {
    pub const ALL: [Transport; 8] = [
        Self::HttpProtobuf,
        Self::HttpJson,
        Self::Grpc,
        Self::HttpFeedback,
        Self::HttpSignals,
        Self::HttpLogsProtobuf,
        Self::HttpLogsJson,
        Self::GrpcLogs,
    ];

    /// Receivers of spans.
    pub const TRACES: [Transport; 3] = [Self::HttpProtobuf, Self::HttpJson, Self::Grpc];

    /// Receivers of feedback and signals.
    pub const FEEDBACK: [Transport; 5] = [
        Self::HttpFeedback,
        Self::HttpSignals,
        Self::HttpLogsProtobuf,
        Self::HttpLogsJson,
        Self::GrpcLogs,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http_protobuf",
            Self::HttpJson => "http_json",
            Self::Grpc => "grpc",
            Self::HttpFeedback => "http_feedback",
            Self::HttpSignals => "http_signals",
            Self::HttpLogsProtobuf => "http_logs_protobuf",
            Self::HttpLogsJson => "http_logs_json",
            Self::GrpcLogs => "grpc_logs",
        }
    }
}

/// `kind` label values of the item counters: feedback, signals, and OTLP log records that are
/// neither.
pub const ITEM_KINDS: [&str; 3] = ["feedback", "signal", "log_record"];

/// `reason` of a log record refused because it is no feedback or signal event.
pub const REASON_NOT_FEEDBACK_EVENT: &str = "not_feedback_event";

/// The collector's metric handles.
#[derive(Clone)]
pub struct Metrics {
    /// Spans decoded from requests, by transport.
    pub spans_received: IntCounterVec,
    /// Spans confirmed durable on Kafka, by transport.
    pub spans_published: IntCounterVec,
    /// Spans refused, by transport and reason (see `ErrorCode::reason`).
    pub spans_rejected: IntCounterVec,
    /// Requests by transport and outcome (`ok` or a rejection reason).
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub produce_duration: HistogramVec,
    pub producer_queue_depth: IntGauge,
    pub in_flight_bytes: IntGauge,
    /// Feedback and signal items confirmed durable on Kafka, by kind and transport.
    pub items_accepted: IntCounterVec,
    /// Items refused, by kind, transport and reason (`invalid_item`, a publish failure's
    /// reason, or `not_feedback_event` for OTLP log records).
    pub items_rejected: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let latency = exponential_buckets(0.0005, 2.0, 16)?; // 0.5 ms .. 16 s
        let m = Self {
            spans_received: IntCounterVec::new(
                Opts::new(SPANS_RECEIVED, "Spans decoded from OTLP requests."),
                &["transport"],
            )?,
            spans_published: IntCounterVec::new(
                Opts::new(SPANS_PUBLISHED, "Spans confirmed durable on Kafka."),
                &["transport"],
            )?,
            spans_rejected: IntCounterVec::new(
                Opts::new(SPANS_REJECTED, "Spans refused, by reason."),
                &["transport", "reason"],
            )?,
            requests: IntCounterVec::new(
                Opts::new(REQUESTS, "OTLP requests by outcome."),
                &["transport", "outcome"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(REQUEST_DURATION, "OTLP request latency.")
                    .buckets(latency.clone()),
                &["transport"],
            )?,
            produce_duration: HistogramVec::new(
                HistogramOpts::new(
                    PRODUCE_DURATION,
                    "Time from handing a request's records to Kafka to the last delivery report.",
                )
                .buckets(latency),
                &["outcome"],
            )?,
            producer_queue_depth: IntGauge::new(
                PRODUCER_QUEUE_DEPTH,
                "Messages handed to the Kafka producer and not yet confirmed.",
            )?,
            in_flight_bytes: IntGauge::new(
                IN_FLIGHT_BYTES,
                "Bytes of requests currently being published.",
            )?,
            items_accepted: IntCounterVec::new(
                Opts::new(
                    ITEMS_ACCEPTED,
                    "Feedback and signal items confirmed durable on Kafka.",
                ),
                &["kind", "transport"],
            )?,
            items_rejected: IntCounterVec::new(
                Opts::new(
                    ITEMS_REJECTED,
                    "Feedback and signal items refused, by reason.",
                ),
                &["kind", "transport", "reason"],
            )?,
        };
        registry.register(Box::new(m.spans_received.clone()))?;
        registry.register(Box::new(m.spans_published.clone()))?;
        registry.register(Box::new(m.spans_rejected.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.produce_duration.clone()))?;
        registry.register(Box::new(m.producer_queue_depth.clone()))?;
        registry.register(Box::new(m.in_flight_bytes.clone()))?;
        registry.register(Box::new(m.items_accepted.clone()))?;
        registry.register(Box::new(m.items_rejected.clone()))?;
        // Pre-create label sets so that zero counts are visible before the first rejection.
        for t in Transport::ALL.map(Transport::label) {
            m.requests.with_label_values(&[t, "ok"]);
            for code in ErrorCode::ALL {
                m.requests.with_label_values(&[t, code.reason()]);
            }
        }
        for t in Transport::TRACES.map(Transport::label) {
            m.spans_received.with_label_values(&[t]);
            m.spans_published.with_label_values(&[t]);
            for code in ErrorCode::ALL {
                m.spans_rejected.with_label_values(&[t, code.reason()]);
            }
        }
        for t in Transport::FEEDBACK.map(Transport::label) {
            for kind in &ITEM_KINDS[..2] {
                m.items_accepted.with_label_values(&[kind, t]);
                m.items_rejected
                    .with_label_values(&[kind, t, ErrorCode::InvalidItem.reason()]);
            }
        }
        Ok(m)
    }

    /// Observes the latency of a request that started at `started`.
    pub fn observe_request(&self, transport: Transport, started: std::time::Instant) {
        self.request_duration
            .with_label_values(&[transport.label()])
            .observe(started.elapsed().as_secs_f64());
    }
}
