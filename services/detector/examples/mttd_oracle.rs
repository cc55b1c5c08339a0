//! The yardstick of the MTTD benchmark (bench/mttd.sh): the earliest moment each SLO's alerting
//! rules could have fired on the traffic that was actually sent, computed exactly from the
//! topics after the run.
//!
//! `cargo run --release -p flywheel-detector --example mttd_oracle -- BROKERS SLOS.yaml`
//!
//! Every call, feedback item and signal is read back from the span, feedback and signals topics
//! with the moment the collector received it (`flywheel.received_at_ns`). Events are replayed in
//! that order; after each arrival every rule of every SLO is evaluated over **continuous**
//! windows `(frontier - W, frontier]` of event time, where the frontier is the newest event
//! time received so far, counting every event received by then (feedback and signals from
//! the moment both they and their call had arrived). The first arrival at which a series goes
//! from no rule breaching to some rule breaching is printed as one JSON line:
//! `{"slo", "project", "service", "model", "operation", "breach_ns"}`.
//!
//! It shares with the detector what an event is and how it counts (`extract`, `sli`, the
//! consumer's item decoding) and the burn-rate math (`burn::evaluate`), and nothing of the
//! pipeline being measured: no Kafka consumer lag, no window store buckets, no evaluation
//! cadence, no alert tracker and no delivery. Detection minus this moment is the pipeline's
//! overhead; the nominal-ratio minimum (`burn::rule_detection_time`) is printed beside it by
//! bench/mttd/mttd.py.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use flywheel_bus::inspect::{read_all, TopicMessage};
use flywheel_bus::KafkaConfig;
use flywheel_core::wire;
use flywheel_detector::consumer::{feedback_item, signal_item, Item, Value};
use flywheel_detector::join::Joins;
use flywheel_detector::sli::{self, FeedbackValue};
use flywheel_detector::slo::{self, Slo};
use flywheel_detector::window::Counts;
use flywheel_detector::{burn, extract, SliKey};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

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

fn header<'a>(m: &'a TopicMessage, name: &str) -> Option<&'a str> {
    m.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

fn project(m: &TopicMessage) -> String {
    header(m, wire::HEADER_PROJECT)
        .filter(|p| !p.is_empty())
        .unwrap_or("default")
        .to_string()
}

fn arrival(m: &TopicMessage) -> Option<i64> {
    header(m, wire::HEADER_RECEIVED_AT_NS).and_then(|v| v.parse().ok())
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(brokers), Some(slo_path)) = (args.next(), args.next()) else {
        return Err("usage: mttd_oracle BROKERS SLOS.yaml".into());
    };
    let slos: Vec<Slo> = slo::load(std::path::Path::new(&slo_path))?
        .slos
        .into_iter()
        .map(|s| s.value)
        .collect();
    let kafka = KafkaConfig {
        brokers,
        ..KafkaConfig::default()
    };
    let timeout = Duration::from_secs(120);
    let prices = flywheel_pricing::PriceTable::load(None)?;

    // Calls first: every item is attributed through them (exactly: all calls are known).
    let mut events = Vec::new();
    let mut call_arrival: HashMap<String, i64> = HashMap::new();
    let spans = read_all(&kafka, wire::TOPIC_SPANS, timeout)?;
    let mut joins = Joins::new(spans.len() * 4 + 16);
    for m in &spans {
        let (Some(at), Ok(req)) = (arrival(m), ExportTraceServiceRequest::decode(&*m.payload))
        else {
            continue;
        };
        for c in extract::calls(&project(m), &req, &prices) {
            joins.remember(&c.key, &c.trace_id, &c.span_id, &c.conversation_id);
            for id in [&c.trace_id, &c.conversation_id] {
                if !id.is_empty() {
                    let e = call_arrival.entry(id.clone()).or_insert(at);
                    *e = (*e).min(at);
                }
            }
            events.push(Event {
                arrival_ns: at,
                ts_ms: c.ts_ms,
                key: c.key,
                what: What::Call(c.event),
            });
        }
    }
    let (mut unattributed, mut items) = (0u64, 0u64);
    for (topic, is_feedback) in [(wire::TOPIC_FEEDBACK, true), (wire::TOPIC_SIGNALS, false)] {
        for m in read_all(&kafka, topic, timeout)? {
            let Some(at) = arrival(&m) else { continue };
            let p = if is_feedback {
                feedback_item(project(&m), &m.payload, Some(at))
            } else {
                signal_item(project(&m), &m.payload, Some(at))
            };
            let Some(p) = p else { continue };
            items += 1;
            let Some(key) = joins.resolve(&p.subject).filter(|k| k.project == p.project) else {
                unattributed += 1;
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
    }
    events.sort_by_key(|e| e.arrival_ns);
    eprintln!(
        "mttd_oracle: {} calls, {items} feedback items and signals ({unattributed} unattributed), {} SLOs",
        spans.len(),
        slos.len()
    );

    // Per series: event times seen so far (ms -> counts), the frontier, breaching or not.
    struct Series {
        seen: BTreeMap<i64, Counts>,
        frontier: i64,
        breaching: bool,
    }
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
            let s = series.get_mut(&id).expect("touched series exist");
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
                println!(
                    "{}",
                    serde_json::json!({
                        "slo": slo.name.value, "project": k.project, "service": k.service,
                        "model": k.model, "operation": k.operation, "breach_ns": at,
                    })
                );
            }
            s.breaching = breaching;
        }
    }
    Ok(())
}
