//! Mapping messages to rows: every span becomes an `otel_traces` row ([`otel`]); model
//! calls also become an `llm_calls` row ([`genai`]); feedback and signal protobufs (from their
//! topics, or converted from span events by [`events`]) become `feedback` / `signals` rows
//! ([`feedback`]).

pub mod events;
pub mod feedback;
pub mod genai;
pub mod otel;
pub mod value;

use flywheel_core::ProjectId;
use flywheel_schema::rows::{FeedbackRow, LlmCallRow, OtelTraceRow, SignalRow};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::config::IngesterConfig;
use crate::metrics::Metrics;
use crate::pricing::PriceTable;
use value::{as_string, attribute_map, Attrs};

/// Rows from one message, or from a batch of them: every table the ingester writes.
#[derive(Debug, Default, PartialEq)]
pub struct Rows {
    pub traces: Vec<OtelTraceRow>,
    pub calls: Vec<LlmCallRow>,
    pub feedback: Vec<FeedbackRow>,
    pub signals: Vec<SignalRow>,
}

impl Rows {
    pub fn extend(&mut self, other: Rows) {
        self.traces.extend(other.traces);
        self.calls.extend(other.calls);
        self.feedback.extend(other.feedback);
        self.signals.extend(other.signals);
    }

    /// Items: spans, feedback and signals (a call is a span seen twice, not counted again).
    pub fn items(&self) -> usize {
        self.traces.len() + self.feedback.len() + self.signals.len()
    }
}

/// Maps requests to rows with the configured prices and content capture.
pub struct Mapper {
    prices: PriceTable,
    config: IngesterConfig,
    /// Size limits of feedback carried by span events (the API's defaults).
    limits: flywheel_feedback::Limits,
}

impl Mapper {
    pub fn new(prices: PriceTable, config: IngesterConfig) -> Self {
        Self {
            prices,
            config,
            limits: flywheel_feedback::Limits::default(),
        }
    }

    /// Maps every span of `request`. `received_at_ns` is the collector's receipt time (0 when
    /// unknown, e.g. a message from a stock OTel Collector).
    pub fn map(
        &self,
        request: ExportTraceServiceRequest,
        project: &ProjectId,
        received_at_ns: i64,
        metrics: &Metrics,
    ) -> Rows {
        let mut rows = Rows::default();
        let capture = self.config.captures_content(project.as_str());
        for rs in request.resource_spans {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default();
            let resource_attributes = attribute_map(resource);
            let service_name = Attrs(resource)
                .get("service.name")
                .map(|v| as_string(Some(v)))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                let scope = ss.scope.as_ref();
                let ctx = otel::SpanContext {
                    service_name: &service_name,
                    resource_attributes: &resource_attributes,
                    scope_name: scope.map_or("", |s| s.name.as_str()),
                    scope_version: scope.map_or("", |s| s.version.as_str()),
                    project: project.as_str(),
                };
                let call_ctx = genai::CallContext {
                    project: project.as_str(),
                    service: &service_name,
                    resource: Attrs(resource),
                    received_at_ns,
                    prices: &self.prices,
                    capture_content: capture,
                };
                let events_ctx = events::EventsContext {
                    project: project.as_str(),
                    resource: Attrs(resource),
                    received_at_ns: if received_at_ns > 0 {
                        received_at_ns
                    } else {
                        crate::message::now_ns()
                    },
                    limits: &self.limits,
                };
                for span in ss.spans {
                    events::from_span(&span, &events_ctx, &mut rows, metrics);
                    if let Some(call) = genai::llm_call(&span, &call_ctx) {
                        if call.cost_usd.is_none()
                            && (call.input_tokens.is_some() || call.output_tokens.is_some())
                        {
                            metrics.unpriced_calls.inc();
                        }
                        rows.calls.push(call);
                    }
                    rows.traces.push(otel::trace_row(span, &ctx));
                }
            }
        }
        rows
    }
}
