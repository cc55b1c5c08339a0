use super::*;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/slos.example.yaml"
);

#[test]
fn the_example_file_parses() {
    let f = load(std::path::Path::new(EXAMPLE)).unwrap();
    assert_eq!(f.slos.len(), 5);
    assert_eq!(f.cost_policies.len(), 5);

    let ttft = &f.slos[0];
    assert_eq!(ttft.name.as_str(), "chat-gpt-4o-ttft");
    assert_eq!(ttft.objective.get(), 0.99);
    assert_eq!(ttft.window.value, Dur::days(30));
    let Sli::Latency(l) = &ttft.sli else {
        panic!("{:?}", ttft.sli)
    };
    assert_eq!(l.metric, LatencyMetric::Ttft);
    assert_eq!(l.threshold.as_millis(), 1500);
    // No `alerting`: the SRE workbook table.
    assert_eq!(ttft.alerting, AlertPolicy::default());
    let w: Vec<_> = ttft
        .alerting
        .windows
        .iter()
        .map(|w| (w.long, w.short, w.burn_rate, w.severity))
        .collect();
    assert_eq!(
        w,
        [
            (Dur::hours(1), Dur::mins(5), 14.4, Severity::Page),
            (Dur::hours(6), Dur::mins(30), 6.0, Severity::Page),
            (Dur::days(3), Dur::hours(6), 1.0, Severity::Ticket),
        ]
    );
    assert_eq!(f.slos[1].sli, Sli::Availability);
    let thumbs = &f.slos[2];
    assert_eq!(thumbs.alerting.windows.len(), 2);
    assert_eq!(thumbs.alerting.resolve_for, Dur::mins(10));
    let Sli::NegativeFeedback(fb) = &thumbs.sli else {
        panic!()
    };
    assert_eq!(
        (fb.name.as_str(), &fb.negative),
        ("thumbs", &Negative::Boolean(false))
    );
    assert!(matches!(
        f.slos[3].sli,
        Sli::Signal(SignalSli {
            signal: SignalKind::Regenerate
        })
    ));
    let Sli::Goodput(g) = &f.slos[4].sli else {
        panic!()
    };
    assert_eq!(
        (g.ttft, g.tpot, g.duration),
        (Some(Dur::secs(2)), Some(Dur::parse("50ms").unwrap()), None)
    );

    let daily = f.cost_policies[0].spend.as_ref().unwrap();
    assert_eq!(
        (daily.period, daily.budget_usd, daily.alert_at),
        (BudgetPeriod::Day, 500.0, 1.0)
    );
    assert_eq!(f.cost_policies[0].severity, Severity::Ticket);
    assert_eq!(f.cost_policies[1].severity, Severity::Page);
    assert_eq!((daily.per, daily.max_users), (SpendPer::Project, 1000));
    let per_user = f.cost_policies[4].spend.as_ref().unwrap();
    assert_eq!(
        (per_user.per, per_user.max_users, per_user.budget_usd),
        (SpendPer::User, 1000, 5.0)
    );
    let ch = f.cost_policies[3].change.as_ref().unwrap();
    assert_eq!(ch.metric, CostMetric::TokensPerCall);
    assert_eq!(ch.value.interval, ChangePolicy::default().interval);
}

#[test]
fn selectors_match_absent_fields_as_wildcards() {
    let key = SliKey {
        project: "acme".into(),
        service: "bot".into(),
        model: "gpt-4o".into(),
        operation: "chat".into(),
    };
    let mut s = Selector::default();
    assert!(s.matches(&key));
    s.model = Some("gpt-4o".into());
    assert!(s.matches(&key));
    s.operation = Some("embeddings".into());
    assert!(!s.matches(&key));
}

const GOOD: &str = "\
slos:
  - name: a
    sli: availability
    objective: 0.99
    window: 30d
";

/// Parses `text`, expects a refusal, returns `(line, field, message)`.
fn refused(text: &str) -> (u64, String, String) {
    match parse(text) {
        Ok(f) => panic!("accepted: {f:?}"),
        Err(SloFileError::Invalid {
            line,
            field,
            message,
            ..
        }) => (line, field, message),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_good_minimal_file_parses() {
    let f = parse(GOOD).unwrap();
    assert_eq!(f.slos[0].line, 2);
    assert_eq!(f.slos[0].name.line, 2);
    assert_eq!(f.slos[0].window.line, 5);
}

#[test]
fn broken_files_name_line_and_field() {
    let cases: &[(&str, u64, &str, &str)] = &[
        // Unknown field (a typo).
        (&format!("{GOOD}    objectiv: 0.9\n"), 6, "slos[0].objectiv", "unknown field `objectiv`"),
        // Objective out of range.
        (&GOOD.replace("0.99", "1.5"), 4, "slos[0].objective", "strictly between 0 and 1"),
        // Objective as a malformed percentage.
        (&GOOD.replace("0.99", "\"99\""), 4, "slos[0].objective", "not a ratio"),
        // Duration without unit, and with an unknown unit.
        (&GOOD.replace("30d", "30"), 5, "slos[0].window", "has no unit"),
        (&GOOD.replace("30d", "30x"), 5, "slos[0].window", "unknown unit"),
        // Missing required field: reported where the SLO's mapping ends.
        (&GOOD.replace("    window: 30d\n", ""), 4, "slos[0]", "missing field `window`"),
        // Unknown SLI kind and unknown latency metric.
        (&GOOD.replace("availability", "uptime"), 3, "slos[0].sli", "unknown variant `uptime`"),
        (
            &GOOD.replace("sli: availability", "sli:\n      latency: { metric: ttfb, threshold: 1s }"),
            4,
            "slos[0].sli.latency.metric",
            "unknown variant `ttfb`",
        ),
        // Cross-field checks, located by At<T>.
        (
            &format!("{GOOD}    alerting:\n      windows:\n        - {{ long: 1h, short: 5m, burn_rate: 14.4, severity: page }}\n        - {{ long: 5m, short: 1h, burn_rate: 6, severity: page }}\n"),
            9,
            "slos[0].alerting.windows[1]",
            "shorter than the long window",
        ),
        (
            &GOOD.replace("30d", "2h"),
            5,
            "slos[0].window",
            "long window 6h is longer than the SLO window 2h (default alert policy)",
        ),
        (&format!("{GOOD}{}", &GOOD[6..]), 6, "slos[1].name", "used twice"),
        (&GOOD.replace("name: a", "name: Bad Name"), 2, "slos[0].name", "names are"),
        (
            &GOOD.replace("sli: availability", "sli:\n      goodput: {}"),
            4,
            "slos[0].sli.goodput",
            "at least one of",
        ),
        (
            &format!("{GOOD}    alerting: {{ severity: page }}\n"),
            6,
            "slos[0].alerting.severity",
            "unknown field",
        ),
        // YAML syntax error: an unterminated quote.
        (&GOOD.replace("0.99", "\"0.99"), 4, "slos[0]", "unclosed quote"),
        // Over-indented: `window` continues the objective's plain scalar.
        (&GOOD.replace("    window", "      window"), 4, "slos[0].objective", "`0.99 window` is not a ratio"),
        // Cost policies: neither kind, and an unknown field inside one.
        ("cost_policies:\n  - name: c\n    selector: { project: p }\n", 2, "cost_policies[0]", "exactly one of"),
        (
            "cost_policies:\n  - name: c\n    spend: { period: week, budget_usd: 5 }\n",
            3,
            "cost_policies[0].spend.period",
            "unknown variant `week`",
        ),
        ("cost_policies:\n  - name: c\n    spend: { period: day, budget_usd: 0 }\n", 3, "cost_policies[0].spend.budget_usd", "positive"),
        (
            "cost_policies:\n  - name: c\n    spend: { period: day, budget_usd: 5, per: team }\n",
            3,
            "cost_policies[0].spend.per",
            "unknown variant `team`",
        ),
        ("cost_policies:\n  - name: c\n    spend: { period: day, budget_usd: 5, per: user, max_users: 0 }\n", 3, "cost_policies[0].spend.max_users", "positive"),
        ("cost_policies:\n  - name: c\n    change: { interval: 1h, baseline: 2h }\n", 3, "cost_policies[0].change", "10 intervals"),
        // Top level.
        ("slo:\n  - name: a\n", 1, "slo", "unknown field `slo`"),
    ];
    let mut wrong = Vec::new();
    for (text, line, field, msg) in cases {
        let (l, f, m) = refused(text);
        if l != *line || f != *field || !m.contains(msg) {
            wrong.push(format!(
                "{text}-> got {l} {f:?} {m:?}, want {line} {field:?} {msg:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn the_error_reads_origin_line_column_field_message() {
    let e = parse(&GOOD.replace("1.5", "x").replace("0.99", "1.5")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<input>:4:16: slos[0].objective: objective 1.5 must be strictly between 0 and 1 (e.g. 0.99 or \"99%\")"
    );
    assert_eq!(e.line_and_field(), Some((4, "slos[0].objective")));
}

#[test]
fn an_unreadable_file_is_a_read_error() {
    let e = load(std::path::Path::new("/nonexistent/slos.yaml")).unwrap_err();
    assert!(matches!(e, SloFileError::Read { .. }), "{e}");
}
