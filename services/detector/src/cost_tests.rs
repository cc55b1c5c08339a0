use super::synthetic::{self, Traffic};
use super::*;
use crate::slo::{CostMetric, Dur};

const HOUR: i64 = 3_600_000;

/// 2026-11-28T12:00:00Z
const NOON: i64 = 1_795_867_200_000;

#[test]
fn period_bounds_are_utc_days_and_months() {
    assert_eq!(
        period_bounds(BudgetPeriod::Day, NOON),
        (NOON - 12 * HOUR, NOON + 12 * HOUR)
    );
    // November has 30 days: from Nov 1 00:00 to Dec 1 00:00.
    let (s, e) = period_bounds(BudgetPeriod::Month, NOON);
    assert_eq!(s, NOON - (27 * 24 + 12) * HOUR);
    assert_eq!(e - s, 30 * 24 * HOUR);
    // December rolls over into January.
    let dec = NOON + 10 * 24 * HOUR;
    let (s, e) = period_bounds(BudgetPeriod::Month, dec);
    assert_eq!((e - s) / HOUR, 31 * 24);
}

#[test]
fn spend_projection_by_hand() {
    let p = SpendPolicy {
        period: BudgetPeriod::Day,
        budget_usd: 500.0,
        lookback: Dur::hours(1),
        alert_at: 1.0,
        per: crate::slo::SpendPer::Project,
        max_users: 1000,
    };
    // Noon: $300 spent today, $30 in the last hour -> $30/h for 12 more hours -> 300 + 360 = 660.
    let s = project_spend(&p, NOON, 300.0, 30.0);
    assert!((s.rate_usd_per_hour - 30.0).abs() < 1e-9);
    assert!((s.projected_usd - 660.0).abs() < 1e-6);
    assert!((s.ratio - 1.32).abs() < 1e-9);
    assert!(s.alert);
    // $10 in the last hour: 300 + 120 = 420 < 500.
    assert!(!project_spend(&p, NOON, 300.0, 10.0).alert);
    // alert_at 0.8: 420 > 400.
    assert!(
        project_spend(
            &SpendPolicy {
                alert_at: 0.8,
                ..p.clone()
            },
            NOON,
            300.0,
            10.0
        )
        .alert
    );
    // Already over budget with no current spend: still alerts.
    assert!(project_spend(&p, NOON, 501.0, 0.0).alert);
}

fn policy(metric: CostMetric) -> ChangePolicy {
    ChangePolicy {
        metric,
        ..ChangePolicy::default()
    }
}

/// 10 warm-up + 45 judged intervals of 100 calls with means cycling through $0.0100, $0.0101,
/// ..., $0.0110.
fn warmed_up() -> ChangeDetector {
    let mut d = ChangeDetector::new(&policy(CostMetric::CostPerCall));
    for i in 0..55 {
        let v = d.observe(100, 1.0 + 0.01 * (i % 11) as f64);
        assert_eq!(v.is_none(), i < WARMUP_INTERVALS, "{i}");
        assert!(v.as_ref().is_none_or(|v| !v.alert), "{v:?}");
    }
    d
}

#[test]
fn change_detector_accumulates_evidence_by_hand() {
    let mut d = warmed_up();
    // Baseline: 5 of each of the 11 levels; median ln .0105. Deviations |ln(level / 1.05)|:
    // 0 (x5), .00948, .00957, .01887, .01923, .02817 (x5 each), ...: the 28th of 55 is
    // ln(1.08 / 1.05) = .02817; all n are equal, so the scale is 1.4826 * .02817 = .041765.
    // Tripling to $0.03: z = ln(.03 / .0105) / .041765 = 1.04982 / .041765 = 25.14, capped at
    // 4: S = 0 + 4 - 1.5 = 2.5, and the run's mean is +185.7%.
    let v = d.observe(100, 3.0).unwrap();
    assert!((v.z - 25.14).abs() < 0.01, "{v:?}");
    assert!((v.relative_change - 1.857).abs() < 0.001, "{v:?}");
    assert_eq!((v.cusum, v.alert), (2.5, false));
    // S = 5, 7.5, then 10 > h = 8: alert on the 4th interval.
    assert_eq!(d.observe(100, 3.0).unwrap().cusum, 5.0);
    assert_eq!(d.observe(100, 3.0).unwrap().cusum, 7.5);
    let v = d.observe(100, 3.0).unwrap();
    assert_eq!((v.cusum, v.alert), (10.0, true));
    // Back to normal: z about 0 drains k = 1.5 a minute: 8.5 (still alerting), then under 8.
    let v = d.observe(100, 1.05).unwrap();
    assert!(v.alert && (v.cusum - 8.5).abs() < 0.1, "{v:?}");
    assert!(!d.observe(100, 1.05).unwrap().alert);
}

#[test]
fn quiet_intervals_are_pooled() {
    let mut d = warmed_up();
    // min_calls 20: 8 + 8 calls are not enough, the third interval makes 24 calls.
    assert_eq!(d.observe(8, 0.08), None);
    assert_eq!(d.observe(8, 0.08), None);
    let v = d.observe(8, 0.09).unwrap();
    assert!((v.mean - 0.25 / 24.0).abs() < 1e-12, "{v:?}");
}

#[test]
fn drops_and_single_outliers_never_alert() {
    let mut d = warmed_up();
    // A 100x minute adds at most Z_CAP - k = 2.5.
    let v = d.observe(100, 100.0).unwrap();
    assert_eq!((v.cusum, v.alert), (2.5, false));
    // A drop only drains the sum.
    for _ in 0..20 {
        let v = d.observe(100, 0.2).unwrap();
        assert!(!v.alert && v.cusum == 0.0 && v.z < 0.0, "{v:?}");
    }
}

#[test]
fn small_but_significant_shifts_do_not_alert() {
    let mut d = ChangeDetector::new(&policy(CostMetric::CostPerCall));
    for _ in 0..20 {
        d.observe(100, 1.0);
    }
    // A flat baseline: the scale floor (1%) applies. +10% is z = ln 1.1 / 0.01 = 9.5, the sum
    // passes h after 4 intervals, but +10% is under min_relative_change (20%).
    for _ in 0..8 {
        let v = d.observe(100, 1.1).unwrap();
        assert!(v.z > 4.0 && !v.alert, "{v:?}");
    }
    assert!(d.observe(100, 1.1).unwrap().cusum > 8.0);
}

#[test]
fn clean_synthetic_week_raises_no_alert_and_a_blow_up_is_caught() {
    let p = policy(CostMetric::CostPerCall);
    let week = 7 * 1440;
    let fp = synthetic::false_positives(&p, &Traffic::default(), 42, week);
    // Night minutes under min_calls are skipped.
    assert!(fp.judged > 6000, "{fp:?}");
    // Single-minute outliers happen on clean traffic (the test would be vacuous otherwise) ...
    assert!(fp.outliers > 0, "{fp:?}");
    // ... but none becomes an alert.
    assert_eq!((fp.alerts, fp.alerting), (0, 0), "{fp:?}");

    // The same traffic with prompts 3x longer from day 2 noon: cost per call about doubles.
    let mut rng = fastrand::Rng::with_seed(7);
    let mut d = ChangeDetector::new(&p);
    let start = 1440 + 720;
    let mut detected = None;
    for m in 0..start + 60 {
        let mult = if m >= start { 3.0 } else { 1.0 };
        let i = synthetic::interval(&mut rng, &Traffic::default(), m, mult);
        if d.observe(i.calls, i.cost_usd).is_some_and(|v| v.alert) && detected.is_none() {
            detected = Some(m);
        }
    }
    let at = detected.expect("the blow-up is detected") as i64 - start as i64;
    // Not before it started, and within 10 minutes (h / (4 - k) = 3.2: the 4th interval).
    assert!((0..10).contains(&at), "{at}");
}
