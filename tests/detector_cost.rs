//! End-to-end tests of the detector's cost policies against the real broker, ClickHouse and
//! Alertmanager: calls carry token counts, the detector prices them with the shared price
//! table, and
//! - a prompt-length blow-up on one model (input tokens x8) raises a cost-per-call change
//!   alert for that model only, heard by the webhook and listed by Alertmanager;
//! - a daily budget the traffic overspends raises a spend-rate alert;
//! - `GET /v1/slos` shows latency quantiles per key from the sketches.
//!
//! Event time is the wall clock (calls are produced as they happen); the change policy judges
//! 2 s intervals against a 40 s baseline so the test takes tens of seconds. Timeouts are upper
//! bounds for progress, never the asserted quantity.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::detector::{calls, detector_config, Alertmanager, Detector, WebhookReceiver};
use common::ingest::{clickhouse_url, Pipeline};
use common::{kafka_brokers, kv, wait_until};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

const SLOS: &str = "\
cost_policies:
  - name: cost-per-call-test
    selector: { project: acme }
    severity: page
    change:
      metric: cost_per_call
      interval: 2s
      baseline: 40s
      min_calls: 5
  - name: mini-daily-spend
    selector: { project: acme, model: gpt-4o-mini }
    spend: { period: day, budget_usd: 0.001, lookback: 1m }
";
const PROGRESS: Duration = Duration::from_secs(180);

fn wait(what: &str, f: impl FnMut() -> bool) {
    tokio::task::block_in_place(|| wait_until(PROGRESS, what, f));
}

/// Calls to `gpt-4o` and `gpt-4o-mini` every 200 ms (4 of each), 1,000 input and 100 output
/// tokens each, with `gpt-4o`'s input multiplied while `blow_up` is set. Input counts wobble
/// by a few percent so the baseline has a spread.
struct Traffic {
    blow_up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(p: &Pipeline) -> Self {
        let blow_up = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let producer = p.producer();
        let (p, b, s) = (p.clone(), blow_up.clone(), stop.clone());
        static SEQ: AtomicU64 = AtomicU64::new(1_000_000);
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                for model in ["gpt-4o", "gpt-4o-mini"] {
                    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
                    let mut req = calls(seq, 4, model, false);
                    let factor = if model == "gpt-4o" && b.load(Ordering::Relaxed) {
                        8
                    } else {
                        1
                    };
                    for (i, span) in req.resource_spans[0].scope_spans[0]
                        .spans
                        .iter_mut()
                        .enumerate()
                    {
                        let input = (1000 + 40 * ((seq + i as u64) % 3) as i64) * factor;
                        span.attributes
                            .push(kv("gen_ai.usage.input_tokens", Value::IntValue(input)));
                        span.attributes
                            .push(kv("gen_ai.usage.output_tokens", Value::IntValue(100)));
                    }
                    let key = hex::encode(&req.resource_spans[0].scope_spans[0].spans[0].trace_id);
                    p.produce(
                        &producer,
                        &p.topic,
                        "acme",
                        common::now_ns(),
                        key.as_bytes(),
                        req.encode_to_vec(),
                    )
                    .await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            blow_up,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

async fn slos(d: &Detector) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}/v1/slos", d.api))
        .bearer_auth("acme-secret-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn change_alerts(hook: &WebhookReceiver) -> Vec<serde_json::Value> {
    hook.all()
        .iter()
        .filter(|b| b["status"] == "firing")
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == "FlywheelCostChange")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_blow_up_and_an_overspent_budget_alert() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let am = Alertmanager::start(dir.path());
    let hook = WebhookReceiver::start();
    let config = detector_config(dir.path(), &p, SLOS, &am.url, &hook.url);
    let traffic = Traffic::start(&p);
    let detector = Detector::start(&p, &config);

    // The budget: $0.0007 a call against $0.001 a day, overspent within a few calls whatever
    // the time of day.
    wait("Alertmanager lists the spend alert", || {
        !am.alerts_of("mini-daily-spend").is_empty()
    });
    let spend = am.alerts_of("mini-daily-spend").remove(0);
    assert_eq!(spend["labels"]["alertname"], "FlywheelCostSpendRate");
    assert_eq!(spend["labels"]["project"], "acme");
    assert_eq!(spend["labels"]["model"], "gpt-4o-mini");
    assert_eq!(spend["labels"]["severity"], "ticket");
    let summary = spend["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("day budget"), "{summary}");

    // Clean traffic until both models' change detectors have judged a full warm-up (10
    // intervals) and more: no change alert.
    let deadline = std::time::Instant::now() + PROGRESS;
    loop {
        let v = slos(&detector).await;
        let judged = v["cost"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "change" && c["baseline"].as_f64().is_some())
            .count();
        if judged == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "change detectors not warmed up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(change_alerts(&hook).is_empty(), "{:?}", hook.all());
    let view = slos(&detector).await;
    let per_call = view["cost"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "change" && c["model"] == "gpt-4o")
        .cloned()
        .unwrap();
    // gpt-4o: about 1,040 input tokens x $2.50 + 100 output x $10 per million.
    let mean = per_call["mean"].as_f64().unwrap();
    assert!((0.0035..0.0037).contains(&mean), "{per_call}");

    // The incident: gpt-4o's prompts grow x8 (cost per call about x6.5).
    traffic.blow_up.store(true, Ordering::Relaxed);
    wait("the webhook hears the cost change", || {
        !change_alerts(&hook).is_empty()
    });
    wait("Alertmanager lists it", || {
        !am.alerts_of("cost-per-call-test").is_empty()
    });

    // Latency quantiles from the sketches, once a whole minute of calls closed: every call
    // lasts 300 ms (DDSketch: within 1%).
    let deadline = std::time::Instant::now() + PROGRESS;
    let latency = loop {
        let v = slos(&detector).await;
        let found = v["latency"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["model"] == "gpt-4o")
            .cloned();
        if let Some(l) = found {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "no latency view: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for q in ["p50", "p90", "p99"] {
        let got = latency["duration_ms"][q].as_f64().unwrap();
        assert!((297.0..=303.0).contains(&got), "{q}: {latency}");
    }
    traffic.stop().await;
    let alerts = change_alerts(&hook);
    assert!(
        alerts.iter().all(|a| a["labels"]["model"] == "gpt-4o"),
        "only the blown-up model alerts: {alerts:?}"
    );
    let a = &alerts[0];
    assert_eq!(a["labels"]["slo"], "cost-per-call-test");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["labels"]["service"], "svc");
    let description = a["annotations"]["description"].as_str().unwrap();
    assert!(description.contains("cost_per_call"), "{description}");
    assert_eq!(detector.terminate().code(), Some(0));
    p.drop_database().await;
}
