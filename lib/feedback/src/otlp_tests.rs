use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use proptest::prelude::*;

use super::*;
use crate::pb::feedback_value::Kind;
use crate::Limits;

const NOW: i64 = 1_796_000_000_000_000_000;
const EVENT_TIME: i64 = 1_795_900_000_123_456_789;
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}
fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}
fn d(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}
fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn ctx() -> EventContext {
    EventContext {
        trace_id: TRACE.into(),
        span_id: SPAN.into(),
        conversation_id: "conv-1".into(),
        user_id: "user-1".into(),
        time_unix_nano: EVENT_TIME,
        index: 2,
        origin: pb::Origin::OtlpSpanEvent,
    }
}

fn convert(name: &str, attributes: &[KeyValue]) -> Option<Result<OtlpItem, ItemError>> {
    let limits = Limits::default();
    let v = Validator {
        limits: &limits,
        definitions: None,
        now_unix_nano: NOW,
    };
    from_event(name, attributes, &ctx(), &v)
}

fn feedback(name: &str, attributes: &[KeyValue]) -> pb::Feedback {
    match convert(name, attributes) {
        Some(Ok(OtlpItem::Feedback(f))) => f,
        other => panic!("not feedback: {other:?}"),
    }
}

#[test]
fn other_events_are_not_converted() {
    assert!(convert("gen_ai.content.prompt", &[]).is_none());
    assert!(convert("exception", &[s("exception.message", "x")]).is_none());
}

#[test]
fn semconv_evaluation_result_is_model_feedback() {
    let f = feedback(
        EVENT_EVALUATION_RESULT,
        &[
            s("gen_ai.evaluation.name", "relevance"),
            d("gen_ai.evaluation.score.value", 0.82),
            s("gen_ai.evaluation.score.label", "relevant"),
            s("gen_ai.evaluation.explanation", "answers the question"),
            s("gen_ai.response.id", "chatcmpl-1"),
        ],
    );
    assert_eq!(f.name, "relevance");
    let value = f.value.as_ref().unwrap();
    assert_eq!(value.kind, Some(Kind::Number(0.82)));
    assert_eq!(value.number_label, "relevant");
    assert_eq!(f.comment, "answers the question");
    assert_eq!(f.source(), pb::Source::Model);
    assert_eq!(f.origin(), pb::Origin::OtlpSpanEvent);
    assert_eq!(
        f.time_unix_nano, EVENT_TIME,
        "the event's own time, to the ns"
    );
    assert_eq!(f.attributes["gen_ai.response.id"], "chatcmpl-1");
    let subject = f.subject.unwrap();
    assert_eq!(
        (subject.trace_id.as_str(), subject.span_id.as_str()),
        (TRACE, SPAN)
    );
    assert_eq!(subject.conversation_id, "conv-1");
    assert_eq!(f.id, format!("otlp:{TRACE}:{SPAN}:{EVENT_TIME}:2"));

    // A label alone is the value.
    let l = feedback(
        EVENT_EVALUATION_RESULT,
        &[
            s("gen_ai.evaluation.name", "toxicity"),
            s("gen_ai.evaluation.score.label", "safe"),
        ],
    );
    assert_eq!(l.value.unwrap().kind, Some(Kind::Label("safe".into())));
}

#[test]
fn flywheel_feedback_event_uses_prefixed_fields() {
    let f = feedback(
        EVENT_FEEDBACK,
        &[
            s("flywheel.feedback.name", "thumbs"),
            kv(
                "flywheel.feedback.value",
                any_value::Value::BoolValue(false),
            ),
            s("flywheel.feedback.source", "human"),
            s("flywheel.feedback.id", "ui-123"),
            s("flywheel.feedback.user_id", "someone-else"),
            s("app.screen", "chat"),
        ],
    );
    assert_eq!(f.id, "ui-123");
    assert_eq!(f.value.as_ref().unwrap().kind, Some(Kind::Boolean(false)));
    assert_eq!(f.source(), pb::Source::Human);
    assert_eq!(f.subject.unwrap().user_id, "someone-else");
    assert_eq!(f.attributes["app.screen"], "chat");
}

#[test]
fn flywheel_signal_event() {
    let Some(Ok(OtlpItem::Signal(sig))) = convert(
        EVENT_SIGNAL,
        &[
            s("flywheel.signal.type", "stop"),
            i("flywheel.signal.tokens_received", 41),
            d("flywheel.signal.ms_since_start", 950.0),
        ],
    ) else {
        panic!("not a signal")
    };
    assert_eq!(sig.r#type(), pb::SignalType::Stop);
    assert_eq!(sig.tokens_received, Some(41));
    assert_eq!(sig.ms_since_start, Some(950.0));
    assert_eq!(sig.origin(), pb::Origin::OtlpSpanEvent);
}

#[test]
fn errors_name_the_attribute() {
    let err = |name: &str, attributes: &[KeyValue]| match convert(name, attributes) {
        Some(Err(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    };
    let e = err(
        EVENT_EVALUATION_RESULT,
        &[s("gen_ai.evaluation.name", "relevance")],
    );
    assert_eq!(e.field, "gen_ai.evaluation.score.value");
    assert_eq!(e.index, 2);
    let e = err(
        EVENT_EVALUATION_RESULT,
        &[d("gen_ai.evaluation.score.value", 1.0)],
    );
    assert_eq!(e.field, "gen_ai.evaluation.name");
    let e = err(
        EVENT_SIGNAL,
        &[
            s("flywheel.signal.type", "stop"),
            s("flywheel.signal.tokens_received", "many"),
        ],
    );
    assert_eq!(e.field, "flywheel.signal.tokens_received");
    let e = err(EVENT_SIGNAL, &[s("flywheel.signal.type", "like")]);
    assert_eq!(e.field, "flywheel.signal.type");
    let e = err(
        EVENT_SIGNAL,
        &[
            s("flywheel.signal.type", "copy"),
            s("flywheel.signal.colour", "red"),
        ],
    );
    assert_eq!(e.field, "flywheel.signal.colour");
    let e = err(
        EVENT_FEEDBACK,
        &[
            s("flywheel.feedback.name", "x"),
            i("flywheel.feedback.value", 1),
            s("flywheel.feedback.value_type", "label"),
        ],
    );
    assert_eq!(e.field, "flywheel.feedback.value_type");
}

proptest! {
    /// Arbitrary attributes on the three event names never panic.
    #[test]
    fn arbitrary_attributes_never_panic(
        name in prop_oneof![Just(EVENT_EVALUATION_RESULT), Just(EVENT_FEEDBACK), Just(EVENT_SIGNAL)],
        attributes in prop::collection::vec((
            prop_oneof![
                Just("gen_ai.evaluation.name".to_string()),
                Just("gen_ai.evaluation.score.value".to_string()),
                Just("gen_ai.evaluation.score.label".to_string()),
                Just("flywheel.feedback.name".to_string()),
                Just("flywheel.feedback.value".to_string()),
                Just("flywheel.signal.type".to_string()),
                Just("flywheel.signal.turn_count".to_string()),
                Just("flywheel.signal.edit_ratio".to_string()),
                "[a-z.]{1,20}",
            ],
            prop_oneof![
                any::<i64>().prop_map(any_value::Value::IntValue),
                any::<f64>().prop_map(any_value::Value::DoubleValue),
                any::<bool>().prop_map(any_value::Value::BoolValue),
                ".{0,20}".prop_map(any_value::Value::StringValue),
                Just(any_value::Value::StringValue("stop".into())),
            ],
        ), 0..8),
        time in any::<i64>(),
    ) {
        let attributes: Vec<KeyValue> = attributes.into_iter().map(|(k, v)| kv(&k, v)).collect();
        let limits = Limits::default();
        let v = Validator { limits: &limits, definitions: None, now_unix_nano: NOW };
        let c = EventContext { time_unix_nano: time, ..ctx() };
        prop_assert!(from_event(name, &attributes, &c, &v).is_some());
    }
}
