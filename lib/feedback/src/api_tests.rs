use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::pb::feedback_value::Kind;
use crate::{FeedbackDefinition, ValueType};

const NOW: i64 = 1_796_000_000_000_000_000;
const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

fn limits() -> Limits {
    Limits::default()
}

fn definitions() -> BTreeMap<String, FeedbackDefinition> {
    let mut d = BTreeMap::new();
    d.insert(
        "helpfulness".to_string(),
        FeedbackDefinition {
            value_type: ValueType::Number,
            labels: vec![],
            min: Some(1.0),
            max: Some(5.0),
        },
    );
    d.insert(
        "verdict".to_string(),
        FeedbackDefinition {
            value_type: ValueType::Label,
            labels: vec!["correct".into(), "wrong".into()],
            min: None,
            max: None,
        },
    );
    d
}

fn raw(v: serde_json::Value) -> Box<RawValue> {
    RawValue::from_string(v.to_string()).unwrap()
}

fn feedback(v: serde_json::Value) -> Result<pb::Feedback, ItemError> {
    let (l, d) = (limits(), definitions());
    let validator = Validator {
        limits: &l,
        definitions: Some(&d),
        now_unix_nano: NOW,
    };
    validator.feedback(3, &raw(v))
}

fn signal(v: serde_json::Value) -> Result<pb::Signal, ItemError> {
    let l = limits();
    let validator = Validator {
        limits: &l,
        definitions: None,
        now_unix_nano: NOW,
    };
    validator.signal(0, &raw(v))
}

#[test]
fn splits_single_items_arrays_and_items_objects() {
    let one = br#"{"name": "thumbs", "value": true}"#;
    assert_eq!(split_batch(one, 10).unwrap().len(), 1);
    let array = br#" [{"a": 1}, {"b": 2}, 3]"#;
    assert_eq!(split_batch(array, 10).unwrap().len(), 3);
    let items = br#"{"items": [{"a": 1}, {"b": 2}]}"#;
    assert_eq!(split_batch(items, 10).unwrap().len(), 2);
    assert!(matches!(
        split_batch(array, 2),
        Err(BatchError::TooManyItems { count: 3, max: 2 })
    ));
    for bad in [&b"[]"[..], b"", b"\"x\"", b"[{", b"{\"items\": 3}"] {
        assert!(
            matches!(split_batch(bad, 10), Err(BatchError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn valid_feedback_of_every_type() {
    let f = feedback(json!({
        "id": "fb-1", "trace_id": TRACE.to_uppercase(), "span_id": SPAN, "name": "thumbs",
        "value": true, "source": "human", "comment": "great", "user_id": "u1",
        "timestamp": "2026-11-28T10:00:00Z", "attributes": {"plan": "pro", "seats": 3}
    }))
    .unwrap();
    assert_eq!(f.id, "fb-1");
    let subject = f.subject.as_ref().unwrap();
    assert_eq!(subject.trace_id, TRACE, "lowercased");
    assert_eq!(subject.span_id, SPAN);
    assert_eq!(f.value.as_ref().unwrap().kind, Some(Kind::Boolean(true)));
    assert_eq!(f.source(), pb::Source::Human);
    assert_eq!(f.origin(), pb::Origin::Api);
    assert_eq!(f.time_unix_nano, 1_795_860_000_000_000_000);
    assert_eq!(f.attributes["seats"], "3");

    let n =
        feedback(json!({"conversation_id": "c1", "name": "helpfulness", "value": 4.5})).unwrap();
    assert_eq!(n.value.as_ref().unwrap().kind, Some(Kind::Number(4.5)));
    assert_eq!(n.time_unix_nano, NOW, "receive time by default");
    assert_eq!(n.source(), pb::Source::Api);
    assert_eq!(n.id.len(), 32, "generated id");

    let l = feedback(json!({"trace_id": TRACE, "name": "verdict", "value": "wrong"})).unwrap();
    assert_eq!(l.value.unwrap().kind, Some(Kind::Label("wrong".into())));
    let t = feedback(
        json!({"trace_id": TRACE, "name": "note", "value": "a long remark",
        "value_type": "text", "timestamp": 1_795_000_000_000i64}),
    )
    .unwrap();
    assert_eq!(
        t.value.unwrap().kind,
        Some(Kind::Text("a long remark".into()))
    );
    assert_eq!(t.time_unix_nano, 1_795_000_000_000_000_000, "milliseconds");
}

#[test]
fn bad_feedback_names_the_field() {
    let cases = [
        (
            json!({"trace_id": "abc", "name": "x", "value": 1}),
            "trace_id",
        ),
        (
            json!({"trace_id": "0".repeat(32), "name": "x", "value": 1}),
            "trace_id",
        ),
        (
            json!({"trace_id": TRACE, "span_id": "xyz", "name": "x", "value": 1}),
            "span_id",
        ),
        (
            json!({"span_id": SPAN, "conversation_id": "c", "name": "x", "value": 1}),
            "span_id",
        ),
        (json!({"name": "x", "value": 1}), "trace_id"),
        (json!({"trace_id": TRACE, "value": 1}), "name"),
        (json!({"trace_id": TRACE, "name": "x"}), "value"),
        (
            json!({"trace_id": TRACE, "name": "x", "value": [1]}),
            "value",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "traceId": TRACE}),
            "traceId",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "source": "robot"}),
            "source",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "id": "a b"}),
            "id",
        ),
        (
            json!({"trace_id": TRACE, "name": "x y", "value": 1}),
            "name",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": "s", "value_type": "number"}),
            "value_type",
        ),
        // Contradicting the project's definitions.
        (
            json!({"trace_id": TRACE, "name": "helpfulness", "value": "good"}),
            "value",
        ),
        (
            json!({"trace_id": TRACE, "name": "helpfulness", "value": 9}),
            "value",
        ),
        (
            json!({"trace_id": TRACE, "name": "verdict", "value": "maybe"}),
            "value",
        ),
        (
            json!({"trace_id": TRACE, "name": "verdict", "value": true}),
            "value",
        ),
        // Time.
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "timestamp": "2999-01-01T00:00:00Z"}),
            "timestamp",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "timestamp": NOW}),
            "timestamp",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "timestamp": 1_795_000_000}),
            "timestamp",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "timestamp": "yesterday"}),
            "timestamp",
        ),
        // Sizes.
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "comment": "c".repeat(70_000)}),
            "comment",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": "l".repeat(300)}),
            "value",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "attributes": {"k": {"nested": 1}}}),
            "attributes.k",
        ),
        (
            json!({"trace_id": TRACE, "name": "x", "value": 1, "attributes": {"k": "v".repeat(5000)}}),
            "attributes.k",
        ),
    ];
    for (item, field) in cases {
        let e = feedback(item.clone()).unwrap_err();
        assert_eq!(e.field, field, "{item}: {e}");
        assert_eq!(e.index, 3);
        assert!(!e.message.is_empty());
    }
}

#[test]
fn signals_of_every_type() {
    let r = signal(json!({"type": "regenerate", "trace_id": TRACE, "span_id": SPAN})).unwrap();
    assert_eq!(r.r#type(), pb::SignalType::Regenerate);
    assert_eq!(
        r.discarded,
        Some(pb::SpanRef {
            trace_id: TRACE.into(),
            span_id: SPAN.into()
        }),
        "the subject is the discarded answer by default"
    );
    let s = signal(
        json!({"type": "stop", "conversation_id": "c", "tokens_received": 17,
        "ms_since_start": 820.5}),
    )
    .unwrap();
    assert_eq!(
        (s.tokens_received, s.ms_since_start),
        (Some(17), Some(820.5))
    );
    let e = signal(
        json!({"type": "edit", "trace_id": TRACE, "edit_ratio": 0.25,
        "edited_text": "better"}),
    )
    .unwrap();
    assert_eq!(e.edited_text, "better");
    let c = signal(json!({"type": "conversation_end", "conversation_id": "c", "turn_count": 7}))
        .unwrap();
    assert_eq!(c.turn_count, Some(7));
    let x = signal(json!({"type": "custom:shared_link", "trace_id": TRACE})).unwrap();
    assert_eq!(
        (x.r#type(), x.custom_name.as_str()),
        (pb::SignalType::Custom, "shared_link")
    );
    assert_eq!(crate::names::signal_type(&x), "custom:shared_link");
    for t in ["copy", "retry", "rephrase", "continue", "abandon"] {
        signal(json!({"type": t, "conversation_id": "c"})).unwrap();
    }
}

#[test]
fn bad_signals_name_the_field() {
    let cases = [
        (json!({"conversation_id": "c"}), "type"),
        (json!({"type": "like", "conversation_id": "c"}), "type"),
        (json!({"type": "custom:", "conversation_id": "c"}), "type"),
        (
            json!({"type": "custom:a b", "conversation_id": "c"}),
            "type",
        ),
        (
            json!({"type": "regenerate", "conversation_id": "c"}),
            "discarded_trace_id",
        ),
        (
            json!({"type": "copy", "conversation_id": "c", "tokens_received": 3}),
            "tokens_received",
        ),
        (
            json!({"type": "stop", "conversation_id": "c", "tokens_received": -3}),
            "tokens_received",
        ),
        (
            json!({"type": "stop", "conversation_id": "c", "ms_since_start": -1.0}),
            "ms_since_start",
        ),
        (
            json!({"type": "edit", "conversation_id": "c"}),
            "edit_ratio",
        ),
        (
            json!({"type": "edit", "conversation_id": "c", "edit_ratio": 1.5}),
            "edit_ratio",
        ),
        (
            json!({"type": "edit", "conversation_id": "c", "edited_text": "e".repeat(70_000)}),
            "edited_text",
        ),
        (
            json!({"type": "conversation_end", "conversation_id": "c"}),
            "turn_count",
        ),
        (
            json!({"type": "stop", "conversation_id": "c", "turn_count": 3}),
            "turn_count",
        ),
        (
            json!({"type": "regenerate", "trace_id": TRACE, "discarded_span_id": "zz"}),
            "discarded_span_id",
        ),
    ];
    for (item, field) in cases {
        let e = signal(item.clone()).unwrap_err();
        assert_eq!(e.field, field, "{item}: {e}");
    }
}

#[test]
fn record_keys_prefer_trace_then_conversation() {
    let mut s = pb::Subject {
        conversation_id: "c".into(),
        ..Default::default()
    };
    assert_eq!(record_key(Some(&s), "id"), "c");
    s.trace_id = TRACE.into();
    assert_eq!(record_key(Some(&s), "id"), TRACE);
    assert_eq!(record_key(None, "id"), "id");
}

proptest! {
    /// Arbitrary JSON never panics the validator: an item is accepted or refused with a field.
    #[test]
    fn arbitrary_items_never_panic(item in arb_json(3)) {
        let text = item.to_string();
        if let Ok(raw) = RawValue::from_string(text) {
            let (l, d) = (limits(), definitions());
            let v = Validator { limits: &l, definitions: Some(&d), now_unix_nano: NOW };
            if let Err(e) = v.feedback(0, &raw) { prop_assert!(!e.field.is_empty()); }
            if let Err(e) = v.signal(0, &raw) { prop_assert!(!e.field.is_empty()); }
        }
    }

    /// Mutated valid items never panic either, and bodies never panic the splitter.
    #[test]
    fn mutated_bodies_never_panic(cut in 0usize..200, byte in any::<u8>(), at in 0usize..200) {
        let body = json!([{"trace_id": TRACE, "span_id": SPAN, "name": "thumbs", "value": true,
            "timestamp": "2026-11-28T10:00:00Z", "attributes": {"a": 1}},
            {"type": "stop", "conversation_id": "c", "tokens_received": 4}]).to_string();
        let mut bytes = body.into_bytes();
        if at < bytes.len() { bytes[at] = byte; }
        bytes.truncate(cut.max(1));
        if let Ok(items) = split_batch(&bytes, 10) {
            let l = limits();
            let v = Validator { limits: &l, definitions: None, now_unix_nano: NOW };
            for (i, raw) in items.iter().enumerate() {
                let _ = v.feedback(i, raw);
                let _ = v.signal(i, raw);
            }
        }
    }
}

fn arb_json(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("id".to_string()),
        Just("trace_id".to_string()),
        Just("span_id".to_string()),
        Just("conversation_id".to_string()),
        Just("name".to_string()),
        Just("value".to_string()),
        Just("value_type".to_string()),
        Just("type".to_string()),
        Just("timestamp".to_string()),
        Just("attributes".to_string()),
        Just("tokens_received".to_string()),
        Just("edit_ratio".to_string()),
        Just("turn_count".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::from(TRACE)),
        Just(serde_json::Value::from("stop")),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(depth, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
