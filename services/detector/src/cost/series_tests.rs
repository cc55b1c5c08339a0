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
