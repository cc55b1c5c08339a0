//! Feedback and signals carried by span events (`gen_ai.evaluation.result`,
//! `flywheel.feedback`, `flywheel.signal`): converted by `flywheel_feedback::otlp` with the
//! span's ids, conversation and user, then mapped like topic items. They ride in the span
//! message's batch, so the same marker and deduplication token cover them, and their ids are
//! deterministic, so a span delivered twice yields the same items.
//!
//! An event that does not convert is counted and logged at debug level; the span itself is
//! stored regardless.

use flywheel_feedback::api::Validator;
use flywheel_feedback::otlp::{self, EventContext, OtlpItem};
use flywheel_feedback::{pb, Limits};
use opentelemetry_proto::tonic::trace::v1::Span;

use super::feedback::{feedback_row, signal_row};
use super::genai;
use super::value::Attrs;
use super::Rows;
use crate::metrics::Metrics;

/// The span's context for [`from_span`].
pub struct EventsContext<'a> {
    pub project: &'a str,
    pub resource: Attrs<'a>,
    /// Receive time of the span's message, or the ingester's clock when unknown.
    pub received_at_ns: i64,
    pub limits: &'a Limits,
}

/// Appends the span's feedback and signal events to `rows`.
pub fn from_span(span: &Span, ctx: &EventsContext<'_>, rows: &mut Rows, metrics: &Metrics) {
    let mut events = span
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| otlp::is_feedback_event(&e.name))
        .peekable();
    if events.peek().is_none() {
        return;
    }
    let attributes = Attrs(&span.attributes);
    let validator = Validator {
        limits: ctx.limits,
        definitions: None,
        now_unix_nano: ctx.received_at_ns,
    };
    let mut event_ctx = EventContext {
        trace_id: hex::encode(&span.trace_id),
        span_id: hex::encode(&span.span_id),
        conversation_id: genai::conversation_id(attributes, ctx.resource),
        user_id: genai::user_id(attributes, ctx.resource),
        time_unix_nano: 0,
        index: 0,
        origin: pb::Origin::OtlpSpanEvent,
    };
    for (index, event) in events {
        event_ctx.index = index;
        event_ctx.time_unix_nano = i64::try_from(event.time_unix_nano).unwrap_or(0);
        let item = otlp::from_event(&event.name, &event.attributes, &event_ctx, &validator);
        let stored = match item {
            None => continue,
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(OtlpItem::Feedback(f))) => feedback_row(f, ctx.project, ctx.received_at_ns)
                .map(|row| rows.feedback.push(row))
                .map_err(|e| e.to_string()),
            Some(Ok(OtlpItem::Signal(s))) => signal_row(s, ctx.project, ctx.received_at_ns)
                .map(|row| rows.signals.push(row))
                .map_err(|e| e.to_string()),
        };
        if let Err(error) = stored {
            metrics.invalid_span_events.inc();
            tracing::debug!(
                trace_id = %event_ctx.trace_id,
                span_id = %event_ctx.span_id,
                event = %event.name,
                index,
                error,
                "span event is not valid feedback; the span is stored without it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::span::Event;

    use super::*;

    fn kv(key: &str, v: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..KeyValue::default()
        }
    }
    fn s(key: &str, v: &str) -> KeyValue {
        kv(key, Value::StringValue(v.into()))
    }

    fn event(name: &str, attributes: Vec<KeyValue>) -> Event {
        Event {
            time_unix_nano: 1_795_900_000_000_000_007,
            name: name.into(),
            attributes,
            dropped_attributes_count: 0,
        }
    }

    #[test]
    fn evaluation_and_signal_events_become_rows_and_invalid_ones_are_counted() {
        let span = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            name: "chat gpt-4o".into(),
            attributes: vec![s("gen_ai.conversation.id", "conv-9")],
            events: vec![
                event("gen_ai.content.completion.chunk", vec![]),
                event(
                    "gen_ai.evaluation.result",
                    vec![
                        s("gen_ai.evaluation.name", "relevance"),
                        kv("gen_ai.evaluation.score.value", Value::DoubleValue(0.5)),
                    ],
                ),
                event("flywheel.signal", vec![s("flywheel.signal.type", "copy")]),
                event("flywheel.signal", vec![s("flywheel.signal.type", "like")]),
            ],
            ..Span::default()
        };
        let resource = [s("user.id", "u-1")];
        let limits = Limits::default();
        let ctx = EventsContext {
            project: "p",
            resource: Attrs(&resource),
            received_at_ns: 1_795_900_001_000_000_000,
            limits: &limits,
        };
        let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
        let mut rows = Rows::default();
        from_span(&span, &ctx, &mut rows, &metrics);

        assert_eq!(rows.feedback.len(), 1);
        let f = &rows.feedback[0];
        let trace = "ab".repeat(16);
        let span_id = "cd".repeat(8);
        assert_eq!(
            f.id,
            format!("otlp:{trace}:{span_id}:1795900000000000007:1")
        );
        assert_eq!(
            (f.trace_id.as_str(), f.span_id.as_str()),
            (trace.as_str(), span_id.as_str())
        );
        assert_eq!(
            (f.conversation_id.as_str(), f.user_id.as_str()),
            ("conv-9", "u-1")
        );
        assert_eq!((f.name.as_str(), f.score), ("relevance", Some(0.5)));
        assert_eq!(
            (f.source.as_str(), f.origin.as_str()),
            ("model", "otlp_span_event")
        );
        assert_eq!(f.received_at, 1_795_900_001_000_000_000);

        assert_eq!(rows.signals.len(), 1);
        assert_eq!(rows.signals[0].signal_type, "copy");
        assert_eq!(rows.signals[0].conversation_id, "conv-9");
        assert_eq!(metrics.invalid_span_events.get(), 1, "the `like` signal");
    }
}
