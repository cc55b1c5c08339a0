use std::collections::HashMap;

use flywheel_feedback::pb::{self, feedback_value::Kind, Origin, SignalType, Source};
use proptest::prelude::*;

use super::*;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

fn subject() -> Option<pb::Subject> {
    Some(pb::Subject {
        trace_id: TRACE.into(),
        span_id: SPAN.into(),
        conversation_id: "conv-1".into(),
        user_id: "user-1".into(),
    })
}

fn feedback(kind: Kind) -> pb::Feedback {
    pb::Feedback {
        id: "fb-1".into(),
        subject: subject(),
        name: "helpfulness".into(),
        value: Some(pb::FeedbackValue {
            kind: Some(kind),
            number_label: "good".into(),
        }),
        comment: "nice".into(),
        source: Source::Human as i32,
        time_unix_nano: 1_700_000_000_000_000_000,
        attributes: HashMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
        origin: Origin::Api as i32,
    }
}

#[test]
fn number_feedback_maps_every_column() {
    let row = feedback_row(feedback(Kind::Number(0.75)), "p1", 42).unwrap();
    assert_eq!(
        row,
        FeedbackRow {
            id: "fb-1".into(),
            project: "p1".into(),
            timestamp: 1_700_000_000_000_000_000,
            trace_id: TRACE.into(),
            span_id: SPAN.into(),
            conversation_id: "conv-1".into(),
            user_id: "user-1".into(),
            name: "helpfulness".into(),
            value_type: "number".into(),
            score: Some(0.75),
            label: "good".into(),
            text: String::new(),
            comment: "nice".into(),
            source: "human".into(),
            origin: "api".into(),
            attributes: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            received_at: 42,
        }
    );
}

#[test]
fn boolean_label_and_text_values() {
    let t = feedback_row(feedback(Kind::Boolean(true)), "p", 1).unwrap();
    assert_eq!(
        (t.value_type.as_str(), t.score, t.label.as_str()),
        ("boolean", Some(1.0), "")
    );
    let f = feedback_row(feedback(Kind::Boolean(false)), "p", 1).unwrap();
    assert_eq!(f.score, Some(0.0));
    let l = feedback_row(feedback(Kind::Label("off_topic".into())), "p", 1).unwrap();
    assert_eq!(
        (l.value_type.as_str(), l.score, l.label.as_str()),
        ("label", None, "off_topic")
    );
    let x = feedback_row(feedback(Kind::Text("too long".into())), "p", 1).unwrap();
    assert_eq!(
        (x.value_type.as_str(), x.score, x.text.as_str()),
        ("text", None, "too long")
    );
}

#[test]
fn missing_time_is_the_receive_time_and_unspecified_source_is_api() {
    let mut f = feedback(Kind::Number(1.0));
    f.time_unix_nano = 0;
    f.source = Source::Unspecified as i32;
    f.origin = Origin::Unspecified as i32;
    let row = feedback_row(f, "p", 99).unwrap();
    assert_eq!(
        (row.timestamp, row.source.as_str(), row.origin.as_str()),
        (99, "api", "api")
    );
}

#[test]
fn unstorable_feedback_is_refused() {
    let mut f = feedback(Kind::Number(1.0));
    f.id.clear();
    assert_eq!(feedback_row(f, "p", 1), Err(Invalid::NoId("feedback")));
    let mut f = feedback(Kind::Number(1.0));
    f.value = None;
    assert_eq!(feedback_row(f, "p", 1), Err(Invalid::NoValue));
    let mut f = feedback(Kind::Number(1.0));
    f.subject = Some(pb::Subject {
        user_id: "u".into(),
        ..Default::default()
    });
    assert_eq!(feedback_row(f, "p", 1), Err(Invalid::NoSubject("feedback")));
    // A conversation alone is a subject.
    let mut f = feedback(Kind::Number(1.0));
    f.subject = Some(pb::Subject {
        conversation_id: "c".into(),
        ..Default::default()
    });
    assert!(feedback_row(f, "p", 1).is_ok());
}

fn signal(t: SignalType) -> pb::Signal {
    pb::Signal {
        id: "s-1".into(),
        subject: subject(),
        r#type: t as i32,
        source: Source::Api as i32,
        origin: Origin::OtlpSpanEvent as i32,
        time_unix_nano: 5,
        ..Default::default()
    }
}

#[test]
fn stop_signal_keeps_its_fields() {
    let mut s = signal(SignalType::Stop);
    s.tokens_received = Some(17);
    s.ms_since_start = Some(850.5);
    let row = signal_row(s, "p", 9).unwrap();
    assert_eq!(row.signal_type, "stop");
    assert_eq!(
        (row.tokens_received, row.ms_since_start),
        (Some(17), Some(850.5))
    );
    assert_eq!(
        (row.origin.as_str(), row.source.as_str()),
        ("otlp_span_event", "api")
    );
    assert_eq!((row.timestamp, row.received_at), (5, 9));
    assert_eq!(row.turn_count, None);
}

#[test]
fn regenerate_names_the_discarded_answer() {
    let mut s = signal(SignalType::Regenerate);
    s.discarded = Some(pb::SpanRef {
        trace_id: TRACE.into(),
        span_id: SPAN.into(),
    });
    let row = signal_row(s, "p", 1).unwrap();
    assert_eq!(
        (
            row.signal_type.as_str(),
            row.discarded_trace_id.as_str(),
            row.discarded_span_id.as_str()
        ),
        ("regenerate", TRACE, SPAN)
    );
}

#[test]
fn signal_type_names() {
    let cases = [
        (SignalType::Edit, "edit"),
        (SignalType::Copy, "copy"),
        (SignalType::Retry, "retry"),
        (SignalType::Rephrase, "rephrase"),
        (SignalType::Continue, "continue"),
        (SignalType::Abandon, "abandon"),
        (SignalType::ConversationEnd, "conversation_end"),
    ];
    for (t, name) in cases {
        assert_eq!(signal_row(signal(t), "p", 1).unwrap().signal_type, name);
    }
    let mut custom = signal(SignalType::Custom);
    custom.custom_name = "shared_link".into();
    assert_eq!(
        signal_row(custom, "p", 1).unwrap().signal_type,
        "custom:shared_link"
    );
    assert_eq!(
        signal_row(signal(SignalType::Custom), "p", 1),
        Err(Invalid::NoCustomName)
    );
    assert_eq!(
        signal_row(signal(SignalType::Unspecified), "p", 1),
        Err(Invalid::NoType)
    );
    let mut unknown = signal(SignalType::Stop);
    unknown.r#type = 999; // a type added by a newer producer
    assert_eq!(signal_row(unknown, "p", 1), Err(Invalid::NoType));
}

proptest! {
    /// Any decodable feedback either maps or is refused; a mapped row keeps id and subject.
    #[test]
    fn arbitrary_feedback_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        use prost::Message as _;
        if let Ok(f) = pb::Feedback::decode(bytes.as_slice()) {
            let (id, subject) = (f.id.clone(), f.subject.clone().unwrap_or_default());
            if let Ok(row) = feedback_row(f, "p", 1) {
                prop_assert_eq!(row.id, id);
                prop_assert_eq!(row.trace_id, subject.trace_id);
                prop_assert!(["number", "boolean", "label", "text"].contains(&row.value_type.as_str()));
            }
        }
        if let Ok(s) = pb::Signal::decode(bytes.as_slice()) {
            if let Ok(row) = signal_row(s, "p", 1) {
                prop_assert!(!row.signal_type.is_empty() && !row.id.is_empty());
            }
        }
    }
}
