//! The exact earliest breach of every SLO on a recorded stream of calls, feedback and signals:
//! the yardstick of the MTTD benchmark (`examples/mttd_oracle.rs`, bench/mttd.sh) and of
//! `flywheel demo`'s closing table.
//!
//! Events are replayed in the order the collector received them (`flywheel.received_at_ns`);
//! after each arrival every rule of every SLO is evaluated over **continuous** windows
//! `(frontier - W, frontier]` of event time, where the frontier is the newest event time
//! received so far, counting every event received by then (feedback and signals from the moment
//! both they and their call had arrived). A series going from no rule breaching to some rule
//! breaching is a [`Breach`].
//!
//! It shares with the detector what an event is and how it counts (`extract`, `sli`, the
//! consumer's item decoding) and the burn-rate math (`burn::evaluate`), and nothing of the
//! pipeline being measured: no consumer lag, no window store buckets, no evaluation cadence, no
//! alert tracker and no delivery. Detection minus the breach is the pipeline's overhead.
//!
//! Cost policies ([`cost_breaches`]) the same way: the calls in arrival order into the
//! detector's own cost series (`cost::series`: the CUSUM over closed intervals, the spend
//! projection), evaluated after every arrival at the frontier of event time with no lateness,
//! so an interval is judged as soon as any call past its end has arrived.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde::Serialize;

use crate::consumer::{feedback_item, signal_item, Item, Value};
use crate::cost::series::CostState;
use crate::join::Joins;
use crate::sli::{self, FeedbackValue};
use crate::slo::CostPolicy;
use crate::slo::{self, Slo};
use crate::window::Counts;
use crate::{burn, extract, SliKey};

/// Which topic a recorded message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Spans,
    Feedback,
    Signals,
}

/// One recorded message: its topic, project header, receive time and payload.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub topic: Topic,
    pub project: String,
    pub received_ns: i64,
    pub payload: Vec<u8>,
}

/// A series starting to breach.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub slo: String,
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
    pub breach_ns: i64,
}

/// What was replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    pub calls: u64,
    pub items: u64,
    pub unattributed: u64,
}

enum What {
    Call(sli::CallEvent),
    Item(Item),
}

struct Event {
    arrival_ns: i64,
    ts_ms: i64,
    key: SliKey,
    what: What,
}

fn counts(slo: &Slo, what: &What) -> Option<Counts> {
    match what {
        What::Call(c) => sli::call_counts(&slo.sli, c),
        What::Item(Item::Feedback { name, value }) => {
            let v = match value {
                Value::Boolean(b) => FeedbackValue::Boolean(*b),
                Value::Number(n) => FeedbackValue::Number(*n),
                Value::Label(l) => FeedbackValue::Label(l),
                Value::Text => FeedbackValue::Text,
            };
            sli::feedback_counts(&slo.sli, name, v)
        }
        What::Item(Item::Signal { signal_type }) => sli::signal_counts(&slo.sli, signal_type),
    }
}

/// Every breach of `slos` on `messages`, in arrival order.
pub fn breaches(
    slos: &[Slo],
    prices: &flywheel_pricing::PriceTable,
    messages: &[Recorded],
) -> (Vec<Breach>, Replayed) {
    let mut stats = Replayed::default();
    // Calls first: every item is attributed through them (exactly: all calls are known).
    let mut events = Vec::new();
    let mut call_arrival: HashMap<String, i64> = HashMap::new();
    let mut joins = Joins::new(messages.len() * 4 + 16);
    for m in messages.iter().filter(|m| m.topic == Topic::Spans) {
        let Ok(req) = ExportTraceServiceRequest::decode(&*m.payload) else {
            continue;
        };
        for c in extract::calls(&m.project, &req, prices) {
            stats.calls += 1;
            joins.remember(&c.key, &c.trace_id, &c.span_id, &c.conversation_id);
            for id in [&c.trace_id, &c.conversation_id] {
                if !id.is_empty() {
                    let e = call_arrival.entry(id.clone()).or_insert(m.received_ns);
                    *e = (*e).min(m.received_ns);
                }
            }
            events.push(Event {
                arrival_ns: m.received_ns,
                ts_ms: c.ts_ms,
                key: c.key,
                what: What::Call(c.event),
            });
        }
    }
    for m in messages.iter().filter(|m| m.topic != Topic::Spans) {
        let at = m.received_ns;
        let p = if m.topic == Topic::Feedback {
            feedback_item(m.project.clone(), &m.payload, Some(at))
        } else {
            signal_item(m.project.clone(), &m.payload, Some(at))
        };
        let Some(p) = p else { continue };
        stats.items += 1;
        let Some(key) = joins.resolve(&p.subject).filter(|k| k.project == p.project) else {
            stats.unattributed += 1;
            continue;
        };
        let call_at = [&p.subject.trace_id, &p.subject.conversation_id]
            .into_iter()
            .filter_map(|id| call_arrival.get(id))
            .min()
            .copied()
            .unwrap_or(at);
        events.push(Event {
            arrival_ns: at.max(call_at),
            ts_ms: p.ts_ms,
            key: key.clone(),
            what: What::Item(p.item),
        });
    }
    events.sort_by_key(|e| e.arrival_ns);
    (replay(slos, &events), stats)
}

/// Every breach of the cost `policies` on the calls of `messages`, in arrival order: a series
/// (policy, key, user) going from not breaching to breaching.
pub fn cost_breaches(
    policies: &[CostPolicy],
    prices: &flywheel_pricing::PriceTable,
    messages: &[Recorded],
) -> Vec<Breach> {
    let mut calls = Vec::new();
    for m in messages.iter().filter(|m| m.topic == Topic::Spans) {
        let Ok(req) = ExportTraceServiceRequest::decode(&*m.payload) else {
            continue;
        };
        calls.extend(
            extract::calls(&m.project, &req, prices)
                .into_iter()
                .map(|c| (m.received_ns, c)),
        );
    }
    calls.sort_by_key(|(at, _)| *at);
    let mut state = CostState::new(policies.to_vec(), usize::MAX);
    let mut breaching: HashMap<(String, SliKey, Option<String>), bool> = HashMap::new();
    let (mut out, mut frontier, mut i) = (Vec::new(), i64::MIN, 0);
    while i < calls.len() {
        let at = calls[i].0;
        while i < calls.len() && calls[i].0 == at {
            let c = &calls[i].1;
            state.record(&c.key, &c.user, c.ts_ms, &c.event);
            frontier = frontier.max(c.ts_ms);
            i += 1;
        }
        for e in state.evaluate(frontier) {
            let was = breaching.insert(
                (e.policy.clone(), e.key.clone(), e.user.clone()),
                e.breaching,
            );
            if e.breaching && was != Some(true) {
                out.push(Breach {
                    slo: e.policy,
                    project: e.key.project,
                    service: e.key.service,
                    model: e.key.model,
                    operation: e.key.operation,
                    breach_ns: at,
                });
            }
        }
    }
    out
}

/// Per series: event times seen so far (ms -> counts), the frontier, breaching or not.
struct Series {
    seen: BTreeMap<i64, Counts>,
    frontier: i64,
    breaching: bool,
}

fn replay(slos: &[Slo], events: &[Event]) -> Vec<Breach> {
    let mut out = Vec::new();
    let mut series: HashMap<(usize, SliKey), Series> = HashMap::new();
    let mut i = 0;
    while i < events.len() {
        let at = events[i].arrival_ns;
        let mut touched = Vec::new();
        while i < events.len() && events[i].arrival_ns == at {
            let e = &events[i];
            for (n, slo) in slos.iter().enumerate() {
                if !slo.selector.matches(&e.key) {
                    continue;
                }
                let Some(c) = counts(slo, &e.what) else {
                    continue;
                };
                let s = series.entry((n, e.key.clone())).or_insert(Series {
                    seen: BTreeMap::new(),
                    frontier: i64::MIN,
                    breaching: false,
                });
                let cell = s.seen.entry(e.ts_ms).or_default();
                *cell = *cell + c;
                s.frontier = s.frontier.max(e.ts_ms);
                touched.push((n, e.key.clone()));
            }
            i += 1;
        }
        touched.sort();
        touched.dedup();
        for id in touched {
            let slo = &slos[id.0];
            let Some(s) = series.get_mut(&id) else {
                continue;
            };
            let end = s.frontier;
            let sum = |len: slo::Dur| {
                let from = end - len.as_millis() as i64;
                s.seen
                    .range(from + 1..=end)
                    .fold(Counts::default(), |a, (_, c)| a + *c)
            };
            let breaching = burn::evaluate(&slo.alerting, slo.objective, sum)
                .iter()
                .any(|r| r.breaching);
            if breaching && !s.breaching {
                let k = &id.1;
                out.push(Breach {
                    slo: slo.name.value.clone(),
                    project: k.project.clone(),
                    service: k.service.clone(),
                    model: k.model.clone(),
                    operation: k.operation.clone(),
                    breach_ns: at,
                });
            }
            s.breaching = breaching;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{
        status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
    };

    const FILE: &str = "\
slos:
  - name: avail
    sli: availability
    objective: 0.9
    window: 1h
    alerting:
      windows: [ { long: 1m, short: 20s, burn_rate: 5, severity: page } ]
";

    /// Test time 0 s, as Unix ns.
    const T0: i64 = 1_000_000 * 1_000_000_000;

    /// A chat call to `m` ending at `end_s` (test time), received then.
    fn call(end_s: i64, failed: bool) -> Recorded {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let end = T0 + end_s * 1_000_000_000;
        let span = Span {
            trace_id: (end_s as u128 + 1).to_be_bytes().to_vec(),
            span_id: vec![1; 8],
            start_time_unix_nano: (end - 500_000_000) as u64,
            end_time_unix_nano: end as u64,
            attributes: vec![
                kv("gen_ai.operation.name", "chat"),
                kv("gen_ai.request.model", "m"),
            ],
            status: Some(Status {
                code: if failed {
                    StatusCode::Error as i32
                } else {
                    StatusCode::Ok as i32
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Recorded {
            topic: Topic::Spans,
            project: "p".into(),
            received_ns: end,
            payload: req.encode_to_vec(),
        }
    }

    /// `call` with `tokens` output tokens.
    fn call_with_tokens(end_s: i64, tokens: i64) -> Recorded {
        let mut r = call(end_s, false);
        let mut req = ExportTraceServiceRequest::decode(r.payload.as_slice()).unwrap();
        req.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .push(KeyValue {
                key: "gen_ai.usage.output_tokens".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(tokens)),
                }),
                ..Default::default()
            });
        r.payload = req.encode_to_vec();
        r
    }

    #[test]
    fn a_token_blow_up_breaches_the_change_policy_after_it_starts_and_only_then() {
        let file = "\
cost_policies:
  - name: tokens-per-call
    change: { metric: tokens_per_call, interval: 5s, baseline: 2m, min_calls: 5 }
";
        let policies: Vec<CostPolicy> = slo::parse(file)
            .unwrap()
            .cost_policies
            .into_iter()
            .map(|p| p.value)
            .collect();
        let prices = flywheel_pricing::PriceTable::load(None).unwrap();
        // Two calls a second for 5 minutes, about 100 tokens each (a little noise); from
        // 240 s on, eight times as many.
        let stream = |blow_up: bool| -> Vec<Recorded> {
            (0..600)
                .map(|n| {
                    let s = n / 2;
                    let base = 100 + (n * 37 % 11) - 5;
                    let tokens = if blow_up && s >= 240 { base * 8 } else { base };
                    call_with_tokens(s, tokens)
                })
                .collect()
        };
        let found = cost_breaches(&policies, &prices, &stream(true));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].slo, "tokens-per-call");
        let after = (found[0].breach_ns - T0) as f64 / 1e9;
        // Judged at the close of an interval holding blown-up calls: after 240 s, and within
        // a few 5 s intervals (the CUSUM needs several z-scores over its allowance).
        assert!(after > 240.0 && after < 280.0, "breach at {after} s");
        assert!(cost_breaches(&policies, &prices, &stream(false)).is_empty());
    }

    #[test]
    fn a_step_incident_breaches_when_the_continuous_windows_allow_it() {
        let slos: Vec<Slo> = slo::parse(FILE)
            .unwrap()
            .slos
            .into_iter()
            .map(|s| s.value)
            .collect();
        let prices = flywheel_pricing::PriceTable::load(None).unwrap();
        // One call a second from 0 s to 200 s; every call from 60 s to 150 s fails.
        let msgs: Vec<Recorded> = (0..=200).map(|s| call(s, (60..150).contains(&s))).collect();
        let (found, stats) = breaches(&slos, &prices, &msgs);
        assert_eq!(stats.calls, 201);
        // The rule needs a bad ratio over 0.5 (5x a 10% budget) in both windows: the 1 min
        // window (t - 60, t] first holds 30 errors of 60 at t = 89 s (60..=89), exactly 5x, and
        // 1 - 0.9 is 0.0999.. in floating point, so it counts as over (the engine does the same);
        // the 20 s window is all errors by then. One breach, at the arrival of that call.
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].breach_ns, T0 + 89_000_000_000);
        assert_eq!(
            (found[0].slo.as_str(), found[0].model.as_str()),
            ("avail", "m")
        );
        // The call ending at 89 s arrives late (at 95.5 s): the windows first allow it at the
        // arrival of the call of 90 s, (30, 90] without it holding 30 errors of 59.
        let mut late = msgs.clone();
        late[89].received_ns = T0 + 95_500_000_000;
        let (found, _) = breaches(&slos, &prices, &late);
        assert_eq!(found[0].breach_ns, T0 + 90_000_000_000);
    }
}
