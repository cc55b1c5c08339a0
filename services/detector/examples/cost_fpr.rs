//! Measures the cost change detector on synthetic traffic: false positives over clean weeks,
//! and detection delay of prompt-length blow-ups.
//!
//! `cargo run --release -p flywheel-detector --example cost_fpr [weeks]`

use flywheel_detector::cost::synthetic::{self, Traffic};
use flywheel_detector::cost::ChangeDetector;
use flywheel_detector::slo::{ChangePolicy, CostMetric};

fn main() {
    let weeks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let traffic = Traffic::default();
    println!(
        "clean traffic: {weeks} simulated weeks per row, 1-min intervals, {} calls/min at peak \
         ({} at night), lognormal tokens, {}% long-context calls, +-{}% diurnal prompt drift",
        traffic.peak_calls_per_min,
        traffic.peak_calls_per_min / 10.0,
        traffic.long_context * 100.0,
        traffic.drift * 100.0
    );
    println!(
        "{:<16} {:>5} {:>5} {:>10} {:>9} {:>14} {:>12} {:>15}",
        "metric", "k", "h", "judged", "z>4", "alert minutes", "alerts", "alerts/week"
    );
    for metric in [CostMetric::CostPerCall, CostMetric::TokensPerCall] {
        for (k, h) in [
            (1.0, 5.0),
            (1.0, 10.0),
            (1.5, 8.0),
            (1.5, 10.0),
            (2.0, 10.0),
        ] {
            let p = ChangePolicy {
                metric,
                allowance: k,
                decision: h,
                ..ChangePolicy::default()
            };
            let mut total = synthetic::FalsePositives::default();
            for seed in 0..weeks {
                let fp = synthetic::false_positives(&p, &traffic, 1000 + seed, 7 * 1440);
                total.judged += fp.judged;
                total.outliers += fp.outliers;
                total.alerting += fp.alerting;
                total.alerts += fp.alerts;
            }
            println!(
                "{:<16} {:>5} {:>5} {:>10} {:>9} {:>14} {:>12} {:>15.3}",
                format!("{metric:?}"),
                k,
                h,
                total.judged,
                total.outliers,
                format!(
                    "{} ({:.4}%)",
                    total.alerting,
                    100.0 * total.alerting as f64 / total.judged as f64
                ),
                total.alerts,
                total.alerts as f64 / weeks as f64
            );
        }
    }

    let p = ChangePolicy::default();
    println!(
        "\ndetection delay of cost_per_call (minutes after prompts grow; defaults k = {}, h = {}), \
         20 runs each starting at a different time of day:",
        p.allowance, p.decision
    );
    // Input is about half of the cost per call: prompts x2 is cost x1.5, x3 is cost x2.
    for mult in [1.3, 1.5, 2.0, 3.0] {
        let mut delays = Vec::new();
        let mut missed = 0;
        for seed in 0..20u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut d = ChangeDetector::new(&p);
            // Start at a random minute of day 2, so day and night both occur.
            let start = 1440 + (seed * 97) % 1440;
            let mut detected = None;
            for m in 0..start + 120 {
                let i =
                    synthetic::interval(&mut rng, &traffic, m, if m >= start { mult } else { 1.0 });
                if d.observe(i.calls, i.cost_usd).is_some_and(|v| v.alert)
                    && detected.is_none()
                    && m >= start
                {
                    detected = Some(m - start);
                }
            }
            match detected {
                Some(x) => delays.push(x),
                None => missed += 1,
            }
        }
        delays.sort_unstable();
        println!(
            "  prompts x{mult}: detected {}/20, median {:?} min, max {:?} min, missed within 2 h: {missed}",
            delays.len(),
            delays.get(delays.len() / 2),
            delays.last()
        );
    }
}
