//! `flywheel demo`: `flywheel up` plus the traffic simulator with scheduled incidents
//! (`deploy/demo/scenario.toml`, SLOs with windows in seconds in `deploy/demo/slos.yaml`). Each
//! alert is printed as it fires and resolves; at the end a table gives per incident the
//! detection time beside the exact minimum: the first moment the SLO's windows allowed it on
//! the traffic actually received (`flywheel_detector::oracle`, over the bus's own record of it).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use flywheel_detector::oracle::{self, Recorded};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The demo's scenario and SLO file, built in.
pub const SCENARIO: &str = include_str!("../deploy/demo/scenario.toml");
pub const SLOS: &str = include_str!("../deploy/demo/slos.yaml");

/// Where the running system answers.
pub struct Target {
    /// Collector base URL (OTLP/HTTP, feedback and signals).
    pub collector: String,
    /// Detector API base URL (`/v1/alerts`).
    pub detector: String,
}

/// An alert as first seen firing.
#[derive(Debug, Clone)]
struct Seen {
    slo: String,
    model: String,
    fired: Instant,
    fired_ns: i64,
}

/// One incident of the ground truth.
#[derive(Debug, Clone)]
struct Incident {
    name: String,
    kind: String,
    start_ns: i64,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// The SLO (or cost policy) of `deploy/demo/slos.yaml` an incident kind breaks.
fn slo_of(kind: &str) -> Option<&'static str> {
    match kind {
        "error_burst" => Some("availability"),
        "ttft_regression" => Some("ttft"),
        "thumbs_down_surge" => Some("thumbs-down"),
        "cost_spike" => Some("cost-per-call"),
        _ => None,
    }
}

/// Runs the scenario against `target`, printing alerts as they change, then the summary.
/// `recorded` reads back everything the bus received (for the exact minimum).
pub async fn drive(
    target: &Target,
    dir: &Path,
    recorded: impl FnOnce() -> anyhow::Result<Vec<Recorded>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let scenario = dir.join("demo-scenario.toml");
    std::fs::write(&scenario, SCENARIO).context("cannot write the demo scenario")?;
    let truth = dir.join("demo-truth.jsonl");
    let args = flywheel_loadgen::LoadgenArgs {
        scenario: Some(scenario),
        endpoint: Some(target.collector.clone()),
        ground_truth: Some(truth.clone()),
        ..Default::default()
    };
    let started = Instant::now();
    println!(
        "demo: 190 s of simulated LLM traffic with 4 incidents; alerts as they fire and resolve:"
    );
    let stop_polling = CancellationToken::new();
    let poller = tokio::spawn(poll_alerts(
        target.detector.clone(),
        started,
        stop_polling.clone(),
    ));
    let loadgen = flywheel_loadgen::cli::main(args, shutdown.clone()).await;
    if let Err(e) = &loadgen {
        eprintln!("demo: the simulator stopped: {e}");
    }
    // Let the last incident's alerts fire and resolve.
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(30)) => {}
        () = shutdown.cancelled() => {}
    }
    stop_polling.cancel();
    let seen = poller.await.unwrap_or_default();
    let incidents = read_incidents(&truth)?;
    let file = flywheel_detector::slo::parse(SLOS).context("the demo's SLO file")?;
    let slos: Vec<_> = file.slos.into_iter().map(|s| s.value).collect();
    let policies: Vec<_> = file.cost_policies.into_iter().map(|p| p.value).collect();
    let prices = flywheel_pricing::PriceTable::load(None).map_err(anyhow::Error::msg)?;
    let recorded = recorded()?;
    let (mut breaches, _) = oracle::breaches(&slos, &prices, &recorded);
    breaches.extend(oracle::cost_breaches(&policies, &prices, &recorded));
    println!();
    println!(
        "{:<40} {:<14} {:>11} {:>11} {:>10}",
        "incident", "SLO", "detected in", "exact min", "overhead"
    );
    for (i, inc) in incidents.iter().enumerate() {
        let next = incidents.get(i + 1).map_or(i64::MAX, |n| n.start_ns);
        let inside = |t: i64| t >= inc.start_ns && t < next;
        let slo = slo_of(&inc.kind).unwrap_or("-");
        let detected = seen
            .iter()
            .filter(|s| s.slo == slo && inside(s.fired_ns))
            .map(|s| s.fired_ns)
            .min();
        let exact = breaches
            .iter()
            .filter(|b| b.slo == slo && inside(b.breach_ns))
            .map(|b| b.breach_ns)
            .min();
        let secs = |t: Option<i64>| {
            t.map_or_else(
                || "-".to_string(),
                |t| format!("{:.1} s", (t - inc.start_ns) as f64 / 1e9),
            )
        };
        let overhead = match (detected, exact) {
            (Some(d), Some(e)) => format!("{:.2} s", (d - e) as f64 / 1e9),
            _ => "-".to_string(),
        };
        println!(
            "{:<40} {:<14} {:>11} {:>11} {:>10}",
            inc.name,
            slo,
            secs(detected),
            secs(exact),
            overhead
        );
    }
    // Alerts the incidents do not explain: before the first one, or of another SLO than the
    // incident running when they fired (false alerts, or a side effect worth knowing).
    let explained = |a: &Seen| {
        incidents.iter().enumerate().any(|(i, inc)| {
            let next = incidents.get(i + 1).map_or(i64::MAX, |n| n.start_ns);
            a.fired_ns >= inc.start_ns && a.fired_ns < next && slo_of(&inc.kind) == Some(&a.slo)
        })
    };
    let other: Vec<String> = seen
        .iter()
        .filter(|a| !explained(a))
        .map(|a| format!("{} {}", a.slo, a.model))
        .collect();
    println!(
        "\nother alerts (outside any incident's SLO and time): {}{}",
        other.len(),
        if other.is_empty() {
            String::new()
        } else {
            format!(" ({})", other.join(", "))
        }
    );
    println!(
        "\nexact min: the first moment the SLO's windows breached on the traffic received \
         (continuous windows, every arrival; the cost policy: its CUSUM judging each 5 s \
         interval as soon as a later call arrived, no lateness); detected: when the 100 ms \
         poll of /v1/alerts first saw it; overhead = detection - exact \
         min."
    );
    loadgen.map(|_| ()).map_err(anyhow::Error::from)
}

/// Polls `GET /v1/alerts` every 100 ms (the resolution of "detected in"), printing firing and
/// resolved alerts.
async fn poll_alerts(detector: String, started: Instant, stop: CancellationToken) -> Vec<Seen> {
    let client = reqwest::Client::new();
    let url = format!("{detector}/v1/alerts");
    let mut firing: BTreeMap<String, Seen> = BTreeMap::new();
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return seen,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let Ok(resp) = client.get(&url).send().await else {
            continue;
        };
        let Ok(body) = resp.json::<Value>().await else {
            continue;
        };
        let now: BTreeMap<String, (String, String)> = body["firing"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let fp = a["fingerprint"].as_str()?.to_string();
                let labels = &a["labels"];
                let slo = labels["slo"].as_str().unwrap_or_default().to_string();
                let model = labels["model"].as_str().unwrap_or_default().to_string();
                Some((fp, (slo, model)))
            })
            .collect();
        let t = started.elapsed().as_secs_f64();
        for (fp, (slo, model)) in &now {
            if !firing.contains_key(fp) {
                println!("  {t:>6.1}s  FIRING    {slo:<14} {model}");
                let s = Seen {
                    slo: slo.clone(),
                    model: model.clone(),
                    fired: Instant::now(),
                    fired_ns: now_ns(),
                };
                seen.push(s.clone());
                firing.insert(fp.clone(), s);
            }
        }
        let gone: Vec<String> = firing
            .keys()
            .filter(|fp| !now.contains_key(*fp))
            .cloned()
            .collect();
        for fp in gone {
            if let Some(s) = firing.remove(&fp) {
                println!(
                    "  {t:>6.1}s  RESOLVED  {:<14} {} (fired for {:.0} s)",
                    s.slo,
                    s.model,
                    s.fired.elapsed().as_secs_f64()
                );
            }
        }
    }
}

fn read_incidents(truth: &Path) -> anyhow::Result<Vec<Incident>> {
    let text = std::fs::read_to_string(truth)
        .with_context(|| format!("cannot read the ground truth {}", truth.display()))?;
    let mut out: Vec<Incident> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "incident")
        .filter_map(|v| {
            Some(Incident {
                name: v["name"].as_str()?.to_string(),
                kind: v["kind"].as_str()?.to_string(),
                start_ns: v["start_unix_ns"]
                    .as_i64()
                    .or_else(|| v["start_ns"].as_i64())?,
            })
        })
        .collect();
    out.sort_by_key(|i| i.start_ns);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_files_parse_and_every_incident_has_its_slo() {
        let file = flywheel_detector::slo::parse(SLOS).unwrap();
        let names: Vec<&str> = file
            .slos
            .iter()
            .map(|s| s.value.name.value.as_str())
            .chain(
                file.cost_policies
                    .iter()
                    .map(|c| c.value.name.value.as_str()),
            )
            .collect();
        let scenario = flywheel_loadgen::config::Scenario::from_toml(SCENARIO).unwrap();
        scenario.validate().unwrap();
        assert_eq!(scenario.incidents.len(), 4);
        for inc in &scenario.incidents {
            let kind = serde_json::to_value(inc.kind).unwrap();
            let kind = kind.as_str().unwrap();
            let slo = slo_of(kind).unwrap_or_else(|| panic!("no SLO for {kind}"));
            assert!(names.contains(&slo), "{slo} not in the demo SLO file");
        }
    }
}
