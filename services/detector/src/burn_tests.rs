use super::*;

fn o(v: f64) -> Objective {
    Objective::new(v).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn burn_rate_and_budget_by_hand() {
    // 99.9%: budget 0.001. 50 bad of 10,000 = 0.005 -> burn 0.005 / 0.001 = 5.
    assert!(close(
        burn_rate(Counts::new(50, 10_000), o(0.999)).unwrap(),
        5.0
    ));
    // 99%: 144 bad of 1,000 = 0.144 -> 14.4, exactly the workbook's fast-burn factor.
    assert!(close(
        burn_rate(Counts::new(144, 1_000), o(0.99)).unwrap(),
        14.4
    ));
    // No bad: 0; no traffic: no burn rate at all.
    assert_eq!(burn_rate(Counts::new(0, 10), o(0.99)), Some(0.0));
    assert_eq!(burn_rate(Counts::default(), o(0.99)), None);

    // 30-day period, 99.9%: 1,000,000 calls allow 1,000 bad. 250 bad -> 75% left.
    assert!(close(
        budget_remaining(Counts::new(250, 1_000_000), o(0.999)),
        0.75
    ));
    // 3,000 bad -> spent three budgets: -2.
    assert!(close(
        budget_remaining(Counts::new(3_000, 1_000_000), o(0.999)),
        -2.0
    ));
    // No traffic: untouched.
    assert_eq!(budget_remaining(Counts::default(), o(0.999)), 1.0);
}

fn page_1h() -> BurnWindow {
    AlertPolicy::sre_workbook()[0].value
}

#[test]
fn a_rule_needs_both_windows_over_the_factor() {
    let w = page_1h(); // 1 h / 5 m, 14.4x
    let obj = o(0.99); // threshold ratio 14.4 * 0.01 = 0.144
                       // Long 150/1000 = 0.15 -> 15; short 20/100 = 0.2 -> 20: both > 14.4.
    let e = evaluate_rule(&w, Counts::new(150, 1000), Counts::new(20, 100), obj, 1);
    assert!(e.breaching);
    assert!(close(e.long_burn.unwrap(), 15.0) && close(e.short_burn.unwrap(), 20.0));
    // Long 0.15 but the short window recovered to 0.1 -> 10: not breaching (incident over).
    assert!(!evaluate_rule(&w, Counts::new(150, 1000), Counts::new(10, 100), obj, 1).breaching);
    // Short 0.2 but long 0.1 -> 10: a blip, not breaching.
    assert!(!evaluate_rule(&w, Counts::new(100, 1000), Counts::new(20, 100), obj, 1).breaching);
    // Exactly at the factor is not over it: 144/1000 = 14.4.
    assert!(!evaluate_rule(&w, Counts::new(144, 1000), Counts::new(20, 100), obj, 1).breaching);
}

#[test]
fn windows_without_traffic_never_breach() {
    let w = page_1h();
    let obj = o(0.99);
    // Long window full of errors, short window empty: no data is not burning.
    let e = evaluate_rule(&w, Counts::new(500, 1000), Counts::default(), obj, 1);
    assert_eq!((e.short_burn, e.breaching), (None, false));
    // Both empty.
    assert!(!evaluate_rule(&w, Counts::default(), Counts::default(), obj, 1).breaching);
    // min_events: 3 of 4 bad in the short window is a 7,500% error ratio but too few events.
    assert!(!evaluate_rule(&w, Counts::new(300, 1000), Counts::new(3, 4), obj, 5).breaching);
    assert!(evaluate_rule(&w, Counts::new(300, 1000), Counts::new(3, 5), obj, 5).breaching);
}

#[test]
fn evaluate_asks_for_each_rules_windows() {
    let policy = AlertPolicy::default();
    let mut asked = Vec::new();
    // 2% errors everywhere on a 99.9% SLO: burn 20 > 14.4 and > 6 and > 1: every rule breaches.
    let evals = evaluate(&policy, o(0.999), |d| {
        asked.push(d.to_string());
        Counts::new(20, 1000)
    });
    assert_eq!(asked, ["1h", "5m", "6h", "30m", "3d", "6h"]);
    assert!(evals.iter().all(|e| e.breaching));
    // 0.5% errors: burn 5, only the 1x ticket rule.
    let evals = evaluate(&policy, o(0.999), |_| Counts::new(5, 1000));
    let b: Vec<_> = evals.iter().map(|e| e.breaching).collect();
    assert_eq!(b, [false, false, true]);
}

#[test]
fn minimum_detection_time_of_a_step_incident_by_hand() {
    let policy = AlertPolicy::default();
    let inc = StepIncident {
        bad_ratio: 0.1,
        baseline_ratio: 0.0,
    };
    // 99.9%, 10% errors (burn 100). 1 h rule: threshold 14.4 * 0.001 = 0.0144; the long window
    // crosses it after 3600 * 0.0144 / 0.1 = 518.4 s (the workbook's "detection time" for this
    // case), the 5 m window after 300 * 0.144 = 43.2 s: the rule fires at 518.4 s.
    let w = &policy.windows;
    assert!(close(
        rule_detection_time(&w[0], o(0.999), inc).unwrap(),
        518.4
    ));
    // 6 h rule: 21600 * 0.006 / 0.1 = 1296 s. 3 d rule: 259200 * 0.001 / 0.1 = 2592 s.
    assert!(close(
        rule_detection_time(&w[1], o(0.999), inc).unwrap(),
        1296.0
    ));
    assert!(close(
        rule_detection_time(&w[2], o(0.999), inc).unwrap(),
        2592.0
    ));
    let (t, sev) = min_detection_time(&policy, o(0.999), inc).unwrap();
    assert!(close(t, 518.4));
    assert_eq!(sev, Severity::Page);

    // A baseline of 0.05% errors shortens it: 3600 * (0.0144 - 0.0005) / (0.1 - 0.0005)
    // = 3600 * 0.0139 / 0.0995 = 502.91... s.
    let with_base = StepIncident {
        bad_ratio: 0.1,
        baseline_ratio: 0.0005,
    };
    assert!(close(
        min_detection_time(&policy, o(0.999), with_base).unwrap().0,
        3600.0 * 0.0139 / 0.0995
    ));

    // 0.8% errors (burn 8): the 14.4x rule never fires; 6x fires after 21600 * 0.006 / 0.008
    // = 16200 s (4.5 h); the 1x ticket after 259200 * 0.001 / 0.008 = 32400 s.
    let slow = StepIncident {
        bad_ratio: 0.008,
        baseline_ratio: 0.0,
    };
    assert_eq!(rule_detection_time(&w[0], o(0.999), slow), None);
    assert_eq!(
        min_detection_time(&policy, o(0.999), slow).map(|(t, s)| (t.round(), s)),
        Some((16200.0, Severity::Page))
    );

    // 0.05% errors (burn 0.5): nothing ever fires.
    let tiny = StepIncident {
        bad_ratio: 0.0005,
        baseline_ratio: 0.0,
    };
    assert_eq!(min_detection_time(&policy, o(0.999), tiny), None);
}

#[test]
fn hysteresis_resolves_after_staying_low_and_ignores_no_data() {
    let policy = AlertPolicy::default(); // resolve below 0.5 x factor for 5 min
    let f = 14.4;
    let min = 60_000;
    let mut h = Hysteresis::default();
    // Still burning above 7.2: keeps firing.
    assert!(!h.resolve(0, Some(10.0), f, &policy));
    // Below 7.2 from t = 1 min ...
    assert!(!h.resolve(min, Some(7.0), f, &policy));
    assert!(!h.resolve(3 * min, Some(2.0), f, &policy));
    // ... a flap back up to 9 (below the factor, above the resolve threshold) resets the hold.
    assert!(!h.resolve(4 * min, Some(9.0), f, &policy));
    assert!(!h.resolve(5 * min, Some(1.0), f, &policy));
    assert!(!h.resolve(9 * min, Some(1.0), f, &policy));
    // No data neither resets nor starts the hold; 5 min after 5 min it resolves.
    assert!(!h.resolve(9 * min + 59_000, None, f, &policy));
    assert!(h.resolve(10 * min, None, f, &policy));
    // No data alone never resolves.
    let mut h = Hysteresis::default();
    assert!(!h.resolve(0, None, f, &policy));
    assert!(!h.resolve(60 * min, None, f, &policy));
}

/// The windows of [`crate::window`] and the math above agree: a step incident through the
/// store is detected at the theoretical minimum, rounded up to the next bucket boundary.
#[test]
fn a_simulated_step_is_detected_at_the_theoretical_minimum_plus_one_bucket() {
    use crate::window::{WindowConfig, WindowStore};
    let mut store: WindowStore<()> = WindowStore::new(WindowConfig::default()).unwrap();
    let policy = AlertPolicy::default();
    let obj = o(0.999);
    // 10 calls a second; from t0 = 2 h every 10th call fails (10%, burn 100).
    let t0: i64 = 2 * 3_600_000;
    let mut detected_end = None;
    for i in 0..(t0 + 900_000) / 100 {
        let t = i * 100;
        let bad = t >= t0 && i % 10 == 0;
        store.record(&(), t, Counts::one(bad));
        // Evaluate on every bucket boundary, over closed buckets (ending at the watermark).
        if t % 10_000 == 0 && detected_end.is_none() {
            let end = store.closed_end().unwrap();
            let evals = evaluate(&policy, obj, |d| store.sum(&(), end, d));
            if evals[0].breaching {
                detected_end = Some(end);
            }
        }
    }
    let theory = min_detection_time(
        &policy,
        obj,
        StepIncident {
            bad_ratio: 0.1,
            baseline_ratio: 0.0,
        },
    )
    .unwrap()
    .0;
    assert!(close(theory, 518.4));
    // The 1 h window ending 510 s in holds 510 bad of 36000 (0.01417 < 0.0144); ending 520 s
    // in, 520 of 36000 (0.01444 > 0.0144). Event time then is 30 s (the lateness) later.
    assert_eq!(detected_end, Some(t0 + 520_000));
}
