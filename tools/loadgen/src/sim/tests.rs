//! Statistical tests with fixed seeds: the generated traffic has the configured rates and
//! means, within tolerances far wider than the sampling error of these sizes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::*;
use crate::event::{Call, Outcome};

pub(crate) const START: i64 = 1_764_000_000_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

pub(crate) fn events(s: Scenario) -> Vec<Event> {
    Generator::new(s, START).unwrap().collect()
}

pub(crate) fn calls(events: &[Event]) -> Vec<&Call> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Call(c) => Some(c.as_ref()),
            _ => None,
        })
        .collect()
}

fn ratio(part: usize, whole: usize) -> f64 {
    part as f64 / whole.max(1) as f64
}

fn close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got}, want {want} ± {tolerance}"
    );
}

/// Three hours at 10 calls/s: about 100 000 calls (generated once for every test).
fn big() -> &'static [Event] {
    static BIG: std::sync::OnceLock<Vec<Event>> = std::sync::OnceLock::new();
    BIG.get_or_init(|| {
        events(Scenario {
            rate: 10.0,
            duration: Duration::from_secs(3 * 3600),
            seed: 3,
            ..Scenario::default()
        })
    })
}

#[test]
fn the_same_seed_gives_the_same_traffic_and_another_start_other_ids() {
    let s = Scenario {
        duration: Duration::from_secs(600),
        ..Scenario::default()
    };
    let a: Vec<Event> = Generator::new(s.clone(), START).unwrap().collect();
    let b: Vec<Event> = Generator::new(s.clone(), START).unwrap().collect();
    assert!(a.len() > 1000);
    assert_eq!(a, b);
    let c: Vec<Event> = Generator::new(s, START + 1).unwrap().collect();
    let (ca, cc) = (calls(&a), calls(&c));
    assert_eq!(ca.len(), cc.len(), "same traffic");
    assert!(ca.iter().zip(&cc).all(|(x, y)| x.trace_id != y.trace_id));
}

#[test]
fn events_are_in_time_order_within_the_period_with_unique_ids() {
    let all = big();
    let end = START + 3 * HOUR;
    assert!(all.windows(2).all(|w| w[0].time_ns() <= w[1].time_ns()));
    assert!(all.iter().all(|e| (START..end).contains(&e.time_ns())));
    let cs = calls(all);
    let spans: HashSet<_> = cs.iter().map(|c| (c.trace_id, c.span_id)).collect();
    assert_eq!(spans.len(), cs.len());
    let ids: HashSet<String> = all
        .iter()
        .filter_map(|e| match e {
            Event::Feedback(f) => Some(f.id.clone()),
            Event::Signal(s) => Some(s.id.clone()),
            Event::Call(_) => None,
        })
        .collect();
    assert_eq!(ids.len(), all.len() - cs.len());
}

#[test]
fn call_rate_is_the_configured_rate_from_the_first_minute() {
    let all = big();
    let cs = calls(all);
    // Warm start: conversations are in progress when the period begins.
    let first_10_min = cs.iter().filter(|c| c.start_ns < START + HOUR / 6).count();
    close(
        ratio(first_10_min, 600),
        10.0,
        0.6,
        "calls per second, first 10 min",
    );
    close(ratio(cs.len(), 3 * 3600), 10.0, 0.3, "calls per second");
    // Calls in flight at the start began before it; every item is about a call that is sent.
    assert!(cs.iter().any(|c| c.start_ns < START));
    let sent: HashSet<String> = cs.iter().map(|c| hex::encode(c.span_id)).collect();
    for e in all {
        match e {
            Event::Feedback(f) => assert!(sent.contains(&f.span_id)),
            Event::Signal(s) => assert!(sent.contains(&s.span_id)),
            Event::Call(_) => {}
        }
    }
}

#[test]
fn models_streaming_and_errors_follow_the_configuration() {
    let all = big();
    let cs = calls(all);
    let s = Scenario::default();
    for (i, m) in s.models.iter().enumerate() {
        let of: Vec<&&Call> = cs.iter().filter(|c| c.model == i).collect();
        close(ratio(of.len(), cs.len()), m.weight, 0.03, &m.name);
        let failed = of
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed { .. }))
            .count();
        let base = s.provider_error_rate[&m.provider];
        close(
            ratio(failed, of.len()),
            base,
            0.004,
            &format!("{} errors", m.name),
        );
    }
    let streaming = cs.iter().filter(|c| c.streaming).count();
    close(ratio(streaming, cs.len()), 0.7, 0.03, "streaming share");
}

#[test]
fn latencies_and_tokens_have_the_configured_means() {
    let all = big();
    let s = Scenario::default();
    for (i, m) in s.models.iter().enumerate() {
        let answered: Vec<&Call> = calls(all)
            .into_iter()
            .filter(|c| c.model == i && matches!(c.outcome, Outcome::Finished { .. }))
            .collect();
        let mean = |xs: Vec<f64>| xs.iter().sum::<f64>() / xs.len() as f64;
        let ttft = mean(answered.iter().filter_map(|c| c.ttft_ms).collect());
        close(ttft, m.ttft_ms.mean, m.ttft_ms.mean * 0.03, "ttft");
        // TPOT as the ingester computes it: (duration - ttft) / (output - 1).
        let tpot = mean(
            answered
                .iter()
                .filter(|c| c.streaming && c.output_tokens > Some(1))
                .map(|c| {
                    let ms = (c.end_ns - c.start_ns) as f64 / 1e6;
                    (ms - c.ttft_ms.unwrap()) / (c.output_tokens.unwrap() - 1) as f64
                })
                .collect(),
        );
        close(tpot, m.tpot_ms.mean, m.tpot_ms.mean * 0.03, "tpot");
        let first: Vec<&&Call> = answered.iter().filter(|c| c.turn == 0).collect();
        let input = mean(first.iter().map(|c| c.input_tokens as f64).collect());
        let mean_in = m.input_tokens.mean;
        close(input, mean_in, mean_in * 0.06, "input tokens");
        let output = mean(
            answered
                .iter()
                .map(|c| c.output_tokens.unwrap() as f64)
                .collect(),
        );
        let mean_out = m.output_tokens.mean;
        close(output, mean_out, mean_out * 0.04, "output tokens");
        assert!(answered.iter().all(|c| c.streaming == c.ttft_ms.is_some()));
    }
}

#[test]
fn feedback_and_signals_follow_their_base_rates() {
    let all = big();
    let cs = calls(all);
    let answered = cs
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Failed { .. }))
        .count();
    let mut feedback: HashMap<&str, Vec<&serde_json::Value>> = HashMap::new();
    let mut signals: HashMap<&str, usize> = HashMap::new();
    for e in all {
        match e {
            Event::Feedback(f) => feedback.entry(f.name).or_default().push(&f.value),
            Event::Signal(s) => *signals.entry(s.signal_type).or_default() += 1,
            Event::Call(_) => {}
        }
    }
    let thumbs = &feedback["thumbs"];
    close(ratio(thumbs.len(), answered), 0.15, 0.01, "thumbs rate");
    let down = thumbs.iter().filter(|v| v.as_bool() == Some(false)).count();
    close(ratio(down, thumbs.len()), 0.1, 0.01, "thumbs down ratio");
    let scores = &feedback["score"];
    close(ratio(scores.len(), answered), 0.2, 0.01, "score rate");
    let mean_score = scores.iter().filter_map(|v| v.as_f64()).sum::<f64>() / scores.len() as f64;
    close(mean_score, 0.8, 0.01, "mean score");
    close(
        ratio(signals["regenerate"], answered),
        0.04,
        0.004,
        "regenerate",
    );
    close(ratio(signals["copy"], answered), 0.1 * 0.96, 0.01, "copy");
    close(ratio(signals["edit"], answered), 0.02 * 0.96, 0.003, "edit");
    close(
        ratio(signals["abandon"], answered),
        0.05 * 0.96,
        0.004,
        "abandon",
    );
    let streamed = cs.iter().filter(|c| c.streaming).count();
    let stopped = cs.iter().filter(|c| c.outcome == Outcome::Stopped).count();
    assert_eq!(signals["stop"], stopped);
    close(ratio(stopped, streamed), 0.03 * 0.99, 0.004, "stop");
}

#[test]
fn a_regenerate_resends_the_same_input_in_the_same_conversation() {
    let all = big();
    let by_span: HashMap<String, &Call> = calls(all)
        .into_iter()
        .map(|c| (hex::encode(c.span_id), c))
        .collect();
    let mut checked = 0;
    for e in all {
        let Event::Signal(s) = e else { continue };
        if s.signal_type != "regenerate" {
            continue;
        }
        let discarded = by_span[&s.span_id];
        // The next call of the conversation starts when the user asked again.
        let Some(again) = calls(all)
            .into_iter()
            .find(|c| c.conversation_id == discarded.conversation_id && c.start_ns == s.time_ns)
        else {
            continue; // asked again after the end of the period
        };
        assert_eq!(again.turn, discarded.turn);
        assert_eq!(again.input_tokens, discarded.input_tokens);
        assert_eq!(again.model, discarded.model);
        assert_ne!(again.trace_id, discarded.trace_id);
        checked += 1;
        if checked == 50 {
            break;
        }
    }
    assert_eq!(checked, 50);
}

#[test]
fn expected_calls_per_conversation_matches_the_simulation() {
    let all = big();
    let cs = calls(all);
    let conversations: HashSet<&str> = cs.iter().map(|c| c.conversation_id.as_str()).collect();
    let per = ratio(cs.len(), conversations.len());
    close(
        per,
        expected_calls_per_conversation(&Scenario::default()),
        0.15,
        "calls per conversation",
    );
}

#[test]
fn without_explicit_regenerate_and_stop_only_the_spans_show_them() {
    let mut s = Scenario {
        rate: 10.0,
        duration: Duration::from_secs(1800),
        ..Scenario::default()
    };
    s.signals.explicit_regenerate_stop = false;
    let all = events(s);
    let types: HashSet<&str> = all
        .iter()
        .filter_map(|e| match e {
            Event::Signal(s) => Some(s.signal_type),
            _ => None,
        })
        .collect();
    assert_eq!(types, HashSet::from(["copy", "edit", "abandon"]));
    let cs = calls(&all);
    assert!(cs.iter().any(|c| c.outcome == Outcome::Stopped));
    // Regenerations still happen: the same conversation and turn, asked again.
    let mut turns = HashSet::new();
    assert!(cs
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Failed { .. }))
        .any(|c| !turns.insert((c.conversation_id.clone(), c.turn))));
}
