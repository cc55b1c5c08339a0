use super::*;

fn p(pairs: &[(&str, &str)]) -> Result<ExportRequest, ParamError> {
    parse("proj", pairs.iter().copied())
}

#[test]
fn defaults() {
    let r = p(&[]).unwrap();
    assert_eq!(r, ExportRequest::new("proj"));
    assert!(r.redact && r.dedup);
    assert_eq!((r.shape, r.format), (Shape::Sft, Format::Jsonl));
}

#[test]
fn full_request() {
    let r = p(&[
        ("shape", "eval"),
        ("format", "parquet"),
        ("from", "2026-11-01"),
        ("to", "2026-11-02T12:00:00Z"),
        ("model", "a,b"),
        ("model", "c"),
        ("feedback", "thumbs"),
        ("feedback_value", "true"),
        ("signal", "custom:copied_code"),
        ("redact", "false"),
        ("limit", "10"),
    ])
    .unwrap();
    assert_eq!(r.models, ["a", "b", "c"]);
    assert_eq!(r.from, Some(1_793_491_200_000_000_000));
    assert_eq!(
        r.feedback,
        Some(FeedbackFilter {
            name: "thumbs".into(),
            value: FeedbackValue::Score(1.0)
        })
    );
    assert!(!r.redact);
    assert_eq!(r.limit, Some(10));
}

#[test]
fn errors_name_the_parameter() {
    for (pairs, param) in [
        (vec![("shape", "dpo")], "shape"),
        (vec![("format", "csv")], "format"),
        (vec![("from", "yesterday")], "from"),
        (vec![("from", "2026-11-02"), ("to", "2026-11-01")], "to"),
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "-3")], "limit"),
        (vec![("signal", "like")], "signal"),
        (vec![("redact", "maybe")], "redact"),
        (vec![("feedback_min", "1")], "feedback"),
        (
            vec![("feedback", "x"), ("feedback_min", "nan")],
            "feedback_min",
        ),
        (
            vec![
                ("feedback", "x"),
                ("feedback_min", "3"),
                ("feedback_max", "1"),
            ],
            "feedback_max",
        ),
        (
            vec![
                ("feedback", "x"),
                ("feedback_value", "1"),
                ("feedback_label", "a"),
            ],
            "feedback_value",
        ),
        (vec![("shape", "preference"), ("signal", "edit")], "signal"),
        (vec![("pair_sources", "edit")], "pair_sources"),
        (
            vec![("shape", "preference"), ("pair_sources", "votes")],
            "pair_sources",
        ),
        (vec![("limit", "1"), ("limit", "2")], "limit"),
        (vec![("projectt", "x")], "projectt"),
        (vec![("project", "x")], "project"),
    ] {
        let e = p(&pairs).unwrap_err();
        assert_eq!(e.param, param, "{pairs:?}: {e}");
        assert!(e.to_string().starts_with(&format!("parameter `{param}`")));
    }
}
