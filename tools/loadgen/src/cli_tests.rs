use super::*;
use crate::incident::IncidentKind;

const NOW: i64 = 1_764_000_000_000_000_000;
const DAY: i64 = 86_400_000_000_000;

fn args() -> LoadgenArgs {
    LoadgenArgs::default()
}

#[test]
fn real_time_by_default_starting_now() {
    let a = args();
    let s = a.scenario().unwrap();
    let o = a.options(&s, NOW).unwrap();
    assert_eq!(o.pace, Pace::Speedup(1.0));
    assert_eq!(o.start_ns, NOW);
}

#[test]
fn simulated_days_run_flat_out_and_end_now() {
    let a = LoadgenArgs {
        simulate_days: Some(7.0),
        ..args()
    };
    let s = a.scenario().unwrap();
    assert_eq!(s.duration, Duration::from_secs(7 * 86_400));
    let o = a.options(&s, NOW).unwrap();
    assert_eq!(o.pace, Pace::Unlimited);
    assert_eq!(o.start_ns, NOW - 7 * DAY);

    let a = LoadgenArgs {
        duration: Some("2h".into()),
        speedup: Some("60".into()),
        ..args()
    };
    let s = a.scenario().unwrap();
    let o = a.options(&s, NOW).unwrap();
    assert_eq!(o.pace, Pace::Speedup(60.0));
    assert_eq!(o.start_ns, NOW - 2 * 3600 * 1_000_000_000);
}

#[test]
fn a_simulated_clock_far_ahead_of_the_wall_clock_is_refused() {
    let a = LoadgenArgs {
        simulate_days: Some(1.0),
        start: Some("now".into()),
        ..args()
    };
    let s = a.scenario().unwrap();
    let e = a.options(&s, NOW).unwrap_err().to_string();
    assert!(
        e.contains("--start") && e.contains("ahead of the wall clock"),
        "{e}"
    );
    // Real time from now never runs ahead.
    let a = LoadgenArgs {
        duration: Some("7d".into()),
        ..args()
    };
    a.options(&a.scenario().unwrap(), NOW).unwrap();
    for bad in ["0", "-2", "fast"] {
        let a = LoadgenArgs {
            speedup: Some(bad.into()),
            ..args()
        };
        let e = a.options(&a.scenario().unwrap(), NOW).unwrap_err();
        assert!(e.to_string().contains("--speedup"));
    }
}

#[test]
fn flags_override_the_scenario_and_add_incidents() {
    let a = LoadgenArgs {
        scenario: Some(format!("{}/scenarios/incidents.toml", env!("CARGO_MANIFEST_DIR")).into()),
        rate: Some(3.5),
        seed: Some(99),
        endpoint: Some("http://collector:4318".into()),
        incidents: vec![
            "kind=error_burst,start=20m,duration=90,provider=openai,error_ratio=0.3".into(),
        ],
        ..args()
    };
    let s = a.scenario().unwrap();
    assert_eq!((s.rate, s.seed), (3.5, 99));
    assert_eq!(s.sink.endpoint, "http://collector:4318");
    assert_eq!(s.incidents.len(), 7);
    let added = &s.incidents[6];
    assert_eq!(added.kind, IncidentKind::ErrorBurst);
    assert_eq!(added.start, Duration::from_secs(1200));
    assert_eq!(added.duration, Duration::from_secs(90));
    assert_eq!(added.error_ratio, Some(0.3));
}

#[test]
fn bad_incident_flags_name_the_problem() {
    let e = parse_incident("kind=overload,start")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not key=value"), "{e}");
    let e = parse_incident("kind=overload,start=1m,duration=1m,speed=3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("speed"), "{e}");
    let a = LoadgenArgs {
        incidents: vec!["kind=ttft_regression,start=1m,duration=1m,multiplier=2".into()],
        ..args()
    };
    let e = a.scenario().unwrap_err().to_string();
    assert!(e.contains("`incident[0].model` is required"), "{e}");
}
