use super::*;
use crate::slo::{At, Dur};

fn at<T>(value: T) -> At<T> {
    At {
        value,
        line: 0,
        column: 0,
    }
}

fn key(model: &str) -> SliKey {
    SliKey {
        project: "p".into(),
        service: "s".into(),
        model: model.into(),
        operation: "chat".into(),
    }
}

fn call(cost_usd: f64, tokens: u64) -> CallEvent {
    CallEvent {
        error: false,
        duration_ms: 100.0,
        ttft_ms: None,
        tpot_ms: None,
        cost_usd: Some(cost_usd),
        tokens: Some(tokens),
    }
}

fn spend_policy(budget_usd: f64, lookback: Dur) -> CostPolicy {
    CostPolicy {
        name: at("daily".to_string()),
        selector: Selector {
            project: Some("p".into()),
            ..Selector::default()
        },
        severity: Severity::Ticket,
        spend: Some(at(SpendPolicy {
            period: BudgetPeriod::Day,
            budget_usd,
            lookback,
            alert_at: 1.0,
            per: SpendPer::Project,
            max_users: 1000,
        })),
        change: None,
    }
}

// 2026-11-28T12:00:00Z: half the UTC day is left.
const NOON: i64 = 1_795_867_200_000;

#[test]
fn spend_projection_per_project_by_hand() {
    let mut s = CostState::new(vec![spend_policy(100.0, Dur::hours(1))], 100);
    // Two models of one project share the project's budget: one series, model not pinned.
    // $10 at 09:00 (in the day, before the lookback), $2 + $1 in the last hour.
    s.record(&key("a"), "", NOON - 3 * 3_600_000, &call(10.0, 1));
    s.record(&key("a"), "", NOON - 1_800_000, &call(2.0, 1));
    s.record(&key("b"), "", NOON - 600_000, &call(1.0, 1));
    // After the end: not counted yet.
    s.record(&key("b"), "", NOON + 5_000, &call(50.0, 1));
    let e = s.evaluate(NOON);
    assert_eq!(e.len(), 1);
    let e = &e[0];
    assert_eq!((e.key.project.as_str(), e.key.model.as_str()), ("p", ""));
    // spent 13, rate $3/h, 12 h left: 13 + 36 = 49 of 100.
    assert!((e.value - 49.0).abs() < 1e-9, "{}", e.value);
    assert!((e.score - 0.49).abs() < 1e-9);
    assert!(!e.breaching);
    assert!((e.budget_remaining - 0.87).abs() < 1e-9);
    assert_eq!(e.labels["alertname"], alert::ALERTNAME_SPEND);
    assert_eq!(e.labels["slo"], "daily");

    // $5 at 12:05, evaluated at 12:10.
    s.record(&key("a"), "", NOON + 300_000, &call(5.0, 1));
    let e = &s.evaluate(NOON + 600_000)[0];
    // Lookback [11:10, 12:10): $2 + $1 + $50 + $5 = $58/h; spent 10 + 58 = 68; 11 h 50 min
    // left: 68 + 58 x 11.83 = 754.33.
    let want = 68.0 + 58.0 * (11.0 + 50.0 / 60.0);
    assert!((e.value - want).abs() < 1e-6, "{} {want}", e.value);
    assert!(e.breaching);

    // A new day: yesterday's spend is folded away; nothing spent today yet.
    let e = &s.evaluate(NOON + 12 * 3_600_000 + 3_600_000)[0];
    assert_eq!(e.value, 0.0);
    assert!(!e.breaching);
}

#[test]
fn late_and_unpriced_calls() {
    let mut s = CostState::new(vec![spend_policy(1.0, Dur::mins(10))], 100);
    let mut unpriced = call(0.0, 5);
    unpriced.cost_usd = None;
    s.record(&key("a"), "", NOON, &unpriced);
    assert!(
        s.evaluate(NOON).is_empty(),
        "an unpriced call opens no series"
    );
    s.record(&key("a"), "", NOON, &call(0.5, 5));
    s.evaluate(NOON + 3_600_000);
    // Before the lookback's start and folded into the same day: still counted.
    s.record(&key("a"), "", NOON + 60_000, &call(0.25, 5));
    assert_eq!(s.late, 0);
    let e = &s.evaluate(NOON + 3_600_000)[0];
    assert!((e.budget_remaining - 0.25).abs() < 1e-9);
    // From the previous day, once folded into today: late.
    s.record(&key("a"), "", NOON - 86_400_000, &call(0.25, 5));
    assert_eq!(s.late, 1);
}

fn change_policy(metric: CostMetric) -> CostPolicy {
    CostPolicy {
        name: at("per-call".to_string()),
        selector: Selector::default(),
        severity: Severity::Page,
        spend: None,
        change: Some(at(ChangePolicy {
            metric,
            interval: Dur::secs(10),
            baseline: Dur::mins(5),
            min_calls: 5,
            ..ChangePolicy::default()
        })),
    }
}

#[test]
fn tokens_per_call_jump_alerts_for_its_model_only() {
    let mut s = CostState::new(vec![change_policy(CostMetric::TokensPerCall)], 100);
    let mut fired_at = None;
    // 10 calls per 10 s interval for two models; model a's prompts grow x4 from interval 20.
    for i in 0..40_i64 {
        for j in 0..10_i64 {
            let ts = NOON + i * 10_000 + j * 1_000;
            let wobble = 1000 + 50 * ((i + j) % 3) as u64;
            let a = if i >= 20 { wobble * 4 } else { wobble };
            s.record(&key("a"), "", ts, &call(0.0, a));
            s.record(&key("b"), "", ts, &call(0.0, wobble));
        }
        let evals = s.evaluate(NOON + (i + 1) * 10_000);
        for e in &evals {
            assert!(e.key.model == "a" || !e.breaching, "model b never alerts");
            if e.breaching && fired_at.is_none() {
                fired_at = Some(i);
                assert_eq!(e.labels["alertname"], alert::ALERTNAME_COST_CHANGE);
                assert_eq!(e.labels["severity"], "page");
                assert!(e.view.relative_change.unwrap() > 2.0);
            }
        }
        if i < 20 {
            assert!(
                evals.iter().all(|e| !e.breaching),
                "no alert before the jump"
            );
        }
    }
    // z is capped at 4 and k = 1.5: the CUSUM passes h = 8 on the 4th shifted interval.
    assert_eq!(fired_at, Some(23));
}

#[test]
fn a_closed_interval_takes_no_more_calls() {
    let mut s = CostState::new(vec![change_policy(CostMetric::CostPerCall)], 1);
    s.record(&key("a"), "", NOON, &call(0.1, 1));
    s.evaluate(NOON + 10_000);
    s.record(&key("a"), "", NOON + 5_000, &call(0.1, 1));
    assert_eq!(s.late, 1);
    // One series at most: another key overflows.
    s.record(&key("b"), "", NOON + 20_000, &call(0.1, 1));
    assert_eq!(s.overflow, 1);
}

fn per_user_policy(budget_usd: f64, max_users: usize) -> CostPolicy {
    let mut p = spend_policy(budget_usd, Dur::hours(1));
    p.name = at("per-user".to_string());
    if let Some(s) = &mut p.spend {
        s.value.per = SpendPer::User;
        s.value.max_users = max_users;
    }
    p
}

const HOUR: i64 = 3_600_000;

#[test]
fn per_user_series_and_the_other_fold_by_hand() {
    let mut s = CostState::new(vec![per_user_policy(10.0, 2)], 100);
    // No user: $2 at 10:00 (its own series, `(none)`, not counted against max_users).
    s.record(&key("m1"), "", NOON - 2 * HOUR, &call(2.0, 1));
    // Two users fill the cap; one model or another, a user's spend is one series.
    s.record(&key("m1"), "a", NOON - 3 * HOUR, &call(4.0, 1));
    s.record(&key("m2"), "a", NOON - HOUR / 2, &call(1.0, 1));
    s.record(&key("m1"), "b", NOON - HOUR / 4, &call(0.5, 1));
    // Past the cap: c and d share `(other)`; a known user keeps its series.
    s.record(&key("m1"), "c", NOON - 50 * 60_000, &call(3.0, 1));
    s.record(&key("m2"), "d", NOON - 40 * 60_000, &call(0.25, 1));
    s.record(&key("m1"), "a", NOON - 10 * 60_000, &call(1.0, 1));
    let e = s.evaluate(NOON);
    let got: Vec<(&str, f64, bool)> = e
        .iter()
        .map(|e| (e.user.as_deref().unwrap(), e.value, e.breaching))
        .collect();
    // 12 h left. (none): spent 2, nothing in the last hour: 2.
    // (other): spent 3.25, $3.25/h: 3.25 + 39 = 42.25.
    // a: spent 6, $2/h (11:30, 11:50): 6 + 24 = 30.
    // b: spent 0.5, $0.5/h: 0.5 + 6 = 6.5.
    let want = [
        ("(none)", 2.0, false),
        ("(other)", 42.25, true),
        ("a", 30.0, true),
        ("b", 6.5, false),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0, g.2), (w.0, w.2));
        assert!((g.1 - w.1).abs() < 1e-9, "{g:?} {w:?}");
    }
    // Every series is one project's (the model is not pinned) and carries its user as a label.
    for e in &e {
        assert_eq!((e.key.project.as_str(), e.key.model.as_str()), ("p", ""));
        assert_eq!(e.labels["user"], *e.user.as_ref().unwrap());
        assert_eq!(e.view.user, e.user);
    }
    assert!(e[2].annotations["summary"].contains("for user a of p"));
    assert_eq!(e[1].view.folded_calls, Some(2));
    assert_eq!(e[2].view.folded_calls, None);
    // The user is part of the fingerprint.
    assert_ne!(
        alert::fingerprint(&e[2].labels),
        alert::fingerprint(&e[3].labels)
    );
    assert_eq!((s.overflow, s.late), (0, 0));

    // The next day: yesterday's spend is folded away, then the series are forgotten, so the
    // cap is free again.
    let next = NOON + 13 * HOUR;
    assert!(s.evaluate(next).iter().all(|e| e.value == 0.0));
    assert!(s.evaluate(next).is_empty());
    s.record(&key("m1"), "e", next + 1_000, &call(1.0, 1));
    s.record(&key("m1"), "f", next + 2_000, &call(1.0, 1));
    s.record(&key("m1"), "g", next + 3_000, &call(1.0, 1));
    let users: Vec<String> = s
        .evaluate(next + 60_000)
        .into_iter()
        .filter_map(|e| e.user)
        .collect();
    assert_eq!(users, ["(other)", "e", "f"]);
}

#[test]
fn a_policy_per_project_has_no_user_label() {
    let mut s = CostState::new(vec![spend_policy(10.0, Dur::hours(1))], 100);
    s.record(&key("m1"), "a", NOON - HOUR / 2, &call(1.0, 1));
    s.record(&key("m1"), "b", NOON - HOUR / 2, &call(1.0, 1));
    let e = s.evaluate(NOON);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].user.as_ref(), e[0].labels.get("user")), (None, None));
    assert!((e[0].view.spent_usd.unwrap() - 2.0).abs() < 1e-12);
}

/// A stored call: start (ms), duration (ms), USD, user.
type Stored = (i64, i64, f64, &'static str);

#[test]
fn the_seed_and_the_replay_give_the_period_to_date_spend_exactly() {
    let mut month = spend_policy(1000.0, Dur::hours(1));
    month.name = at("monthly".to_string());
    if let Some(s) = &mut month.spend {
        s.value.period = BudgetPeriod::Month;
    }
    let mut per_user = per_user_policy(1000.0, 1);
    if let Some(s) = &mut per_user.spend {
        s.value.period = BudgetPeriod::Month;
    }
    let daily = spend_policy(1000.0, Dur::hours(1));
    let mut s = CostState::new(vec![month, per_user, daily], 100);

    // The detector starts at NOON (2026-11-28) and replays 3 days (+1 s lateness).
    let cut = NOON;
    let from = cut - 72 * HOUR - 1_000;
    let (nov1, _) = period_bounds(BudgetPeriod::Month, cut);
    let calls: [Stored; 8] = [
        // Ends before the month: in neither.
        (nov1 - 10_000, 5_000, 100.0, "a"),
        // Starts in October, ends in November: the month's (event time is the end).
        (nov1 - 500, 1_000, 1.0, "a"),
        (nov1 + 4 * 24 * HOUR, 1_000, 2.0, "a"),
        (nov1 + 10 * 24 * HOUR, 1_000, 4.0, "b"),
        // Starts just before the replay's start and ends after it: the seed's only.
        (from - 1, 2_000, 8.0, "b"),
        // Starts at the replay's start: the replay's only.
        (from, 1_000, 16.0, "a"),
        (cut - 2 * HOUR, 1_000, 32.0, "b"),
        (cut - HOUR / 2, 1_000, 64.0, "b"),
    ];
    // The daily policy's period begins after the replay's start: nothing to seed.
    let queries = s.seed_queries(cut, from);
    let seeded: Vec<(usize, bool, i64)> = queries
        .iter()
        .map(|q| (q.policy, q.per_user, q.period_start_ms))
        .collect();
    assert_eq!(seeded, [(0, false, nov1), (1, true, nov1)]);
    assert_eq!(queries[1].max_users, 1);

    // What ClickHouse answers (history::period_spend): end in the period, start before
    // `from`; per user for policy 1, its top user by spend (b: 12 > a: 3) on its own.
    let in_seed = |c: &&Stored| c.0 + c.1 >= nov1 && c.0 < from;
    let sum = |user: Option<&str>| -> f64 {
        calls
            .iter()
            .filter(in_seed)
            .filter(|c| user.is_none_or(|u| c.3 == u))
            .map(|c| c.2)
            .sum()
    };
    assert_eq!(
        (sum(None), sum(Some("a")), sum(Some("b"))),
        (15.0, 3.0, 12.0)
    );
    let k = SliKey {
        project: "p".into(),
        ..SliKey::default()
    };
    let row = |policy: usize, user: &str, usd: f64, calls: u64| SpendSeed {
        policy,
        key: k.clone(),
        user: user.into(),
        usd,
        calls,
    };
    let rows = vec![
        row(0, "", sum(None), 4),
        row(1, "b", sum(Some("b")), 2),
        row(1, OTHER_USER, sum(Some("a")), 2),
    ];
    assert_eq!(s.seed(cut, rows), 3);

    // The replay (history::stored_events): start from `from` on, at the end's event time.
    let mut replay: Vec<&Stored> = calls.iter().filter(|c| c.0 >= from).collect();
    replay.sort_by_key(|c| c.0 + c.1);
    for c in replay {
        s.record(&key("m"), c.3, c.0 + c.1, &call(c.2, 1));
    }
    let e = s.evaluate(cut);
    let spent = |policy: &str, user: Option<&str>| {
        e.iter()
            .find(|e| e.policy == policy && e.user.as_deref() == user)
            .and_then(|e| e.view.spent_usd)
    };
    // Everything that ended in November, once: 1 + 2 + 4 + 8 + 16 + 32 + 64.
    assert_eq!(spent("monthly", None), Some(127.0));
    // Per user: b seeded (4 + 8) plus replayed (32 + 64); a's seeded spend is in (other) (the
    // seed kept one user), and a's replayed call goes there too: the cap is full.
    assert_eq!(spent("per-user", Some("b")), Some(108.0));
    assert_eq!(spent("per-user", Some(OTHER_USER)), Some(19.0));
    assert_eq!(spent("per-user", Some("a")), None);
    // The daily policy: today's replayed calls only.
    assert_eq!(spent("daily", None), Some(96.0));
    // $64 in the last hour, 2026-11-28 12:00 -> 12 h of the day, 2.5 days of the month left.
    let monthly = e.iter().find(|e| e.policy == "monthly").unwrap();
    assert!((monthly.value - (127.0 + 64.0 * 60.0)).abs() < 1e-9);
    let other = e
        .iter()
        .find(|e| e.user.as_deref() == Some(OTHER_USER))
        .unwrap();
    // Folded: the 2 seeded calls of a and its replayed one.
    assert_eq!(other.view.folded_calls, Some(3));

    // A second seed row for the same series adds up (a policy part and its `(other)` row can
    // meet), and a series the seed opened stays while the period lasts.
    let mut t = CostState::new(vec![per_user_policy(10.0, 5)], 100);
    let r = row(0, "x", 1.0, 1);
    t.seed(cut, vec![r.clone(), r]);
    let e = t.evaluate(cut);
    assert_eq!(e[0].view.spent_usd, Some(2.0));
    assert_eq!(t.evaluate(cut + 6 * HOUR).len(), 1);
    assert!(t.evaluate(cut + 13 * HOUR).is_empty());
}
