use super::*;
use crate::extract::Call;
use crate::sli::CallEvent;
use crate::slo::parse;

const FILE: &str = "\
slos:
  - name: avail
    sli: availability
    objective: 0.9
    window: 1h
    alerting:
      windows: [ { long: 1m, short: 20s, burn_rate: 5, severity: page } ]
      resolve_for: 10s
";

fn engine() -> Engine {
    let slos = parse(FILE)
        .unwrap()
        .slos
        .into_iter()
        .map(|s| s.value)
        .collect();
    Engine::new(
        slos,
        EngineConfig {
            window: WindowConfig {
                lateness: Dur::secs(1),
                ..WindowConfig::default()
            },
            resend_interval: Dur::secs(30),
            join_capacity: 100,
            idle_advance_ms: 0,
            api_url: "http://api".into(),
        },
    )
    .unwrap()
}

fn call(ts_ms: i64, error: bool) -> Call {
    Call {
        key: SliKey {
            project: "p".into(),
            service: "s".into(),
            model: "m".into(),
            operation: "chat".into(),
        },
        ts_ms,
        event: CallEvent {
            error,
            duration_ms: 100.0,
            ttft_ms: None,
            tpot_ms: None,
            cost_usd: None,
            tokens: None,
        },
        trace_id: format!("{ts_ms:032x}"),
        span_id: "01".into(),
        conversation_id: String::new(),
    }
}

/// One call a second; errors from 60 s to 120 s; a tick after each second. Returns what each
/// tick sent, by the second it happened.
fn run(e: &mut Engine, until_s: i64) -> Vec<(i64, Outgoing)> {
    run_from(e, 0, until_s)
}

fn run_from(e: &mut Engine, from_s: i64, until_s: i64) -> Vec<(i64, Outgoing)> {
    let mut sent = Vec::new();
    for s in from_s..until_s {
        e.call(&call(s * 1000, (60..120).contains(&s)));
        for o in e.tick(0).outgoing {
            sent.push((s, o));
        }
    }
    sent
}

#[test]
fn an_error_burst_pages_once_is_resent_and_resolves() {
    let mut e = engine();
    let sent = run(&mut e, 240);
    let kinds: Vec<(i64, bool, bool)> = sent
        .iter()
        .map(|(s, o)| (*s, matches!(o.notify, Notify::Firing(_)), o.announce))
        .collect();
    // Fires once both windows are over 5x (bad ratio > 0.5): the 20 s short window is all
    // errors by 80 s, the 1 m long window passes half errors after 90 s; buckets close 1 s
    // (lateness) after their end.
    let first = kinds[0];
    assert!(first.1 && first.2, "{kinds:?}");
    assert!((90..=101).contains(&first.0), "{kinds:?}");
    // Re-sent (not announced) every 30 s of event time while firing; resolved (announced) once.
    let resolved: Vec<_> = kinds.iter().filter(|k| !k.1).collect();
    assert_eq!(resolved.len(), 1, "{kinds:?}");
    assert!(resolved[0].2);
    let resends = kinds.iter().filter(|k| k.1 && !k.2).count();
    assert!(resends >= 1, "{kinds:?}");
    // Resolves after the short window is clean (120 s + 20 s) plus the 10 s hold.
    assert!((140..=165).contains(&resolved[0].0), "{kinds:?}");
    assert!(e.firing().is_empty());
    assert_eq!(e.recent.len(), 1);
}

#[test]
fn a_restored_alert_is_not_announced_again() {
    let mut a = engine();
    let sent = run(&mut a, 110);
    let Notify::Firing(alert) = sent[0].1.notify.clone() else {
        panic!("not firing")
    };
    // A new engine (restart at 110 s) restores the alert, rebuilds its windows from the stored
    // calls (no ticks), then carries on live.
    let mut b = engine();
    b.restore(alert.clone(), sent[0].1.event_ms);
    for s in 0..110 {
        b.call(&call(s * 1000, (60..120).contains(&s)));
    }
    let again = run_from(&mut b, 110, 240);
    assert!(again
        .iter()
        .all(|(_, o)| !o.announce || matches!(o.notify, Notify::Resolved(_))));
    assert_eq!(
        again
            .iter()
            .filter(|(_, o)| matches!(o.notify, Notify::Resolved(_)))
            .count(),
        1
    );
    assert_eq!(
        again.last().unwrap().1.alert().starts_at_ms,
        alert.starts_at_ms
    );
}

#[test]
fn feedback_joins_to_the_call_key() {
    let mut e = engine();
    let c = call(1000, false);
    e.call(&c);
    let s = Subject {
        trace_id: c.trace_id.clone(),
        span_id: "01".into(),
        conversation_id: String::new(),
    };
    assert_eq!(e.resolve(&s), Some(c.key.clone()));
    // The availability SLO has no feedback SLI: nothing counted, nothing refused.
    assert_eq!(
        e.feedback(&c.key, 1000, "thumbs", FeedbackValue::Boolean(false)),
        Tally::default()
    );
}

#[test]
fn a_spend_policy_alerts_through_the_tracker_without_any_slo() {
    let file = parse(
        "cost_policies:\n  - name: tiny\n    selector: { project: p }\n    \
         spend: { period: day, budget_usd: 1, lookback: 1m }\n",
    )
    .unwrap();
    let policies = file.cost_policies.into_iter().map(|c| c.value).collect();
    let mut e = Engine::new(
        Vec::new(),
        EngineConfig {
            window: WindowConfig {
                lateness: Dur::secs(1),
                ..WindowConfig::default()
            },
            resend_interval: Dur::secs(30),
            join_capacity: 100,
            idle_advance_ms: 0,
            api_url: "http://api".into(),
        },
    )
    .unwrap()
    .with_cost_policies(policies);
    let mut fired = Vec::new();
    // $0.25 a second: spent alone passes the $1 budget after 4 s (plus the bucket closing).
    for s in 0..30 {
        let mut c = call(s * 1000, false);
        c.event.cost_usd = Some(0.25);
        e.call(&c);
        let t = e.tick(0);
        assert_eq!(t.cost_views.len(), usize::from(t.end_ms.is_some()));
        fired.extend(t.outgoing.into_iter().map(|o| (s, o)));
    }
    assert_eq!(fired.len(), 1, "one announcement, no resend yet: {fired:?}");
    let (s, o) = &fired[0];
    assert!(o.announce && matches!(o.notify, Notify::Firing(_)));
    // Evaluated at 10 s boundaries: the 10 s bucket holds $2.50 once it closes at 11 s.
    assert_eq!(*s, 11);
    let labels = &o.alert().labels;
    assert_eq!(labels["alertname"], alert::ALERTNAME_SPEND);
    assert_eq!(
        (labels["slo"].as_str(), labels["project"].as_str()),
        ("tiny", "p")
    );
    assert_eq!(labels["model"], "", "the selector pins no model");
    assert_eq!(o.slo, "tiny");
}
