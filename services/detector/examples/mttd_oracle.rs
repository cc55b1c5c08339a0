//! The yardstick of the MTTD benchmark (bench/mttd.sh): the earliest moment each SLO's alerting
//! rules could have fired on the traffic that was actually sent, computed exactly from the
//! topics after the run by [`flywheel_detector::oracle`] (see there for the method). Prints one
//! JSON line per breach: `{"slo", "project", "service", "model", "operation", "breach_ns"}`.
//!
//! `cargo run --release -p flywheel-detector --example mttd_oracle -- BROKERS SLOS.yaml`

use std::time::Duration;

use flywheel_bus::inspect::{read_all, TopicMessage};
use flywheel_bus::KafkaConfig;
use flywheel_core::wire;
use flywheel_detector::oracle::{breaches, Recorded, Topic};
use flywheel_detector::slo::{self, Slo};

fn header<'a>(m: &'a TopicMessage, name: &str) -> Option<&'a str> {
    m.header(name).and_then(|v| std::str::from_utf8(v).ok())
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
    let mut recorded = Vec::new();
    for (name, topic) in [
        (wire::TOPIC_SPANS, Topic::Spans),
        (wire::TOPIC_FEEDBACK, Topic::Feedback),
        (wire::TOPIC_SIGNALS, Topic::Signals),
    ] {
        for m in read_all(&kafka, name, timeout)? {
            let Some(received_ns) =
                header(&m, wire::HEADER_RECEIVED_AT_NS).and_then(|v| v.parse().ok())
            else {
                continue;
            };
            let project = header(&m, wire::HEADER_PROJECT)
                .filter(|p| !p.is_empty())
                .unwrap_or("default")
                .to_string();
            recorded.push(Recorded {
                topic,
                project,
                received_ns,
                payload: m.payload,
            });
        }
    }
    let prices = flywheel_pricing::PriceTable::load(None)?;
    let (found, stats) = breaches(&slos, &prices, &recorded);
    eprintln!(
        "mttd_oracle: {} calls, {} feedback items and signals ({} unattributed), {} SLOs",
        stats.calls,
        stats.items,
        stats.unattributed,
        slos.len()
    );
    for b in found {
        println!("{}", serde_json::to_string(&b)?);
    }
    Ok(())
}
