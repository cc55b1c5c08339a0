//! Incidents change the traffic exactly within their window: scenarios without noise (sigma 0,
//! no base rate of the thing the incident raises) so that every effect can be attributed.

use std::time::Duration;

use super::*;
use crate::config::{LogNormalSpec, Scenario};
use crate::event::{Event, Outcome};
use crate::sim::tests::{calls, events, START};

const MIN: i64 = 60_000_000_000;

/// Default traffic without randomness in latencies and input, and without base errors,
/// regenerations and thumbs down: 40 minutes at 20 calls/s, incident from 15 to 25 min.
fn quiet(incident: &str) -> Scenario {
    let mut s = Scenario {
        rate: 20.0,
        duration: Duration::from_secs(40 * 60),
        seed: 5,
        ..Scenario::default()
    };
    s.provider_error_rate.clear();
    s.signals.regenerate = 0.0;
    s.feedback.thumbs_down_ratio = 0.0;
    s.feedback.thumbs_rate = 0.5;
    for m in &mut s.models {
        m.ttft_ms = LogNormalSpec::new(m.ttft_ms.mean, 0.0);
        m.tpot_ms = LogNormalSpec::new(m.tpot_ms.mean, 0.0);
        m.input_tokens = LogNormalSpec::new(m.input_tokens.mean, 0.0);
    }
    let text = format!("[[incident]]\nstart = \"15m\"\nduration = \"10m\"\n{incident}");
    let with: Scenario = toml::from_str(&text).unwrap();
    s.incidents = with.incidents;
    s.validate().unwrap();
    s
}

fn inside(t: i64) -> bool {
    (START + 15 * MIN..START + 25 * MIN).contains(&t)
}

fn close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got}, want {want} ± {tolerance}"
    );
}

#[test]
fn ttft_regression_slows_one_model_exactly_in_the_window() {
    let s = quiet("kind = \"ttft_regression\"\nmodel = \"gpt-4o\"\nmultiplier = 3.0");
    let means: Vec<f64> = s.models.iter().map(|m| m.ttft_ms.mean).collect();
    let all = events(s);
    let (mut slow, mut normal) = (0, 0);
    for c in calls(&all) {
        let Some(ttft) = c.ttft_ms else { continue };
        let factor = if c.model == 0 && inside(c.start_ns) {
            slow += 1;
            3.0
        } else {
            normal += 1;
            1.0
        };
        close(ttft, means[c.model] * factor, 1e-6, "ttft");
    }
    assert!(slow > 500 && normal > 5000, "{slow} slow, {normal} normal");
}

#[test]
fn error_burst_fails_one_provider_only_in_the_window() {
    let s = quiet("kind = \"error_burst\"\nprovider = \"anthropic\"\nerror_ratio = 0.5");
    let all = events(s);
    let cs = calls(&all);
    let failed = |c: &crate::event::Call| matches!(c.outcome, Outcome::Failed { .. });
    assert!(cs
        .iter()
        .filter(|c| failed(c))
        .all(|c| c.model == 2 && inside(c.start_ns)));
    let in_window: Vec<_> = cs
        .iter()
        .filter(|c| c.model == 2 && inside(c.start_ns))
        .collect();
    let n_failed = in_window.iter().filter(|c| failed(c)).count();
    // Failed calls are retried (and may fail again), so they are a bit more than half.
    close(
        n_failed as f64 / in_window.len() as f64,
        0.5,
        0.06,
        "error ratio",
    );
}

#[test]
fn thumbs_down_surge_changes_feedback_timestamped_in_the_window() {
    let s = quiet("kind = \"thumbs_down_surge\"\nratio = 0.4\nmodel = \"gpt-4o-mini\"");
    let all = events(s);
    let (mut down, mut total) = (0, 0);
    for e in &all {
        let Event::Feedback(f) = e else { continue };
        if f.name != "thumbs" {
            continue;
        }
        let is_down = f.value == serde_json::Value::Bool(false);
        if f.model == 1 && inside(f.time_ns) {
            total += 1;
            down += usize::from(is_down);
        } else {
            assert!(!is_down, "thumbs down outside the surge at {}", f.timestamp);
        }
    }
    close(down as f64 / total as f64, 0.4, 0.05, "thumbs down ratio");
}

#[test]
fn regenerate_surge_regenerates_when_the_user_reacts_in_the_window() {
    let s = quiet("kind = \"regenerate_surge\"\nratio = 0.3");
    let all = events(s);
    let regenerates: Vec<i64> = all
        .iter()
        .filter_map(|e| match e {
            Event::Signal(s) if s.signal_type == "regenerate" => Some(s.time_ns),
            _ => None,
        })
        .collect();
    assert!(regenerates.len() > 500);
    assert!(regenerates.iter().all(|&t| inside(t)));
}

#[test]
fn cost_spike_multiplies_input_tokens_of_calls_starting_in_the_window() {
    let s = quiet("kind = \"cost_spike\"\nmultiplier = 8.0\nmodel = \"claude-sonnet-4\"");
    let means: Vec<f64> = s.models.iter().map(|m| m.input_tokens.mean).collect();
    let all = events(s);
    // No errors and no regenerations: no call resends an earlier input.
    let mut spiked = 0;
    for c in calls(&all) {
        let factor = if c.model == 2 && inside(c.start_ns) {
            spiked += 1;
            8.0
        } else {
            1.0
        };
        assert_eq!(c.input_tokens as f64, means[c.model] * factor);
    }
    assert!(spiked > 500, "{spiked}");
}

#[test]
fn overload_slows_everything_adds_errors_and_traffic() {
    let s =
        quiet("kind = \"overload\"\nmultiplier = 2.0\nerror_ratio = 0.2\nrate_multiplier = 3.0");
    let ttft: Vec<f64> = s.models.iter().map(|m| m.ttft_ms.mean).collect();
    let all = events(s);
    let cs = calls(&all);
    let mut inside_calls = 0;
    let mut inside_failed = 0;
    for c in &cs {
        let failed = matches!(c.outcome, Outcome::Failed { .. });
        if inside(c.start_ns) {
            inside_calls += 1;
            inside_failed += usize::from(failed);
        } else {
            assert!(!failed);
        }
        if let Some(t) = c.ttft_ms {
            let factor = if inside(c.start_ns) { 2.0 } else { 1.0 };
            close(t, ttft[c.model] * factor, 1e-6, "ttft");
        }
    }
    close(
        inside_failed as f64 / inside_calls as f64,
        0.2,
        0.03,
        "error ratio",
    );
    // New conversations per minute: three times as many in the window.
    let first_turns = |from: i64, to: i64| {
        let convs: std::collections::HashSet<&str> = cs
            .iter()
            .filter(|c| c.turn == 0 && (from..to).contains(&c.start_ns))
            .map(|c| c.conversation_id.as_str())
            .collect();
        convs.len() as f64 / ((to - from) / MIN) as f64
    };
    let before = first_turns(START + 5 * MIN, START + 15 * MIN);
    let during = first_turns(START + 15 * MIN, START + 25 * MIN);
    close(during / before, 3.0, 0.35, "arrival rate ratio");
}

#[test]
fn schedule_effects_at_the_window_edges() {
    let configs =
        quiet("kind = \"overload\"\nmultiplier = 2.0\nerror_ratio = 0.5\nrate_multiplier = 3.0")
            .incidents;
    let schedule = Schedule::new(&configs, START);
    let (start, end) = (START + 15 * MIN, START + 25 * MIN);
    assert_eq!(schedule.incidents[0].name, "overload-0");
    assert_eq!(
        (schedule.incidents[0].start_ns, schedule.incidents[0].end_ns),
        (start, end)
    );
    assert_eq!(schedule.tpot_multiplier(start - 1), 1.0);
    assert_eq!(schedule.tpot_multiplier(start), 2.0);
    assert_eq!(schedule.tpot_multiplier(end - 1), 2.0);
    assert_eq!(schedule.tpot_multiplier(end), 1.0);
    assert_eq!(schedule.rate_multiplier(start), 3.0);
    assert_eq!(schedule.max_rate_multiplier(), 3.0);
    // Independent causes: 1 - (1 - 0.1)(1 - 0.5).
    close(
        schedule.error_ratio(start, "openai", 0.1),
        0.55,
        1e-12,
        "combined",
    );
    assert_eq!(schedule.error_ratio(end, "openai", 0.1), 0.1);
    assert_eq!(schedule.thumbs_down_ratio(start, "gpt-4o", 0.1), 0.1);
}
