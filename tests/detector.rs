//! End-to-end tests of `flywheel detector` against the real broker, ClickHouse engine and a
//! real Alertmanager: an injected error burst on one model pages (Alertmanager lists the alert,
//! the webhook hears it once), resolves once the traffic is clean again, and a restart of the
//! detector in the middle of the incident does not page a second time.
//!
//! Event time is the wall clock here (calls are produced as they "happen"); the SLO has short
//! windows (1 m / 20 s at 5x, objective 90%) so an incident is detected within tens of seconds.
//! Timeouts are upper bounds for progress, never the asserted quantity.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::detector::{calls, detector_config, Alertmanager, Detector, WebhookReceiver};
use common::ingest::{clickhouse_url, Ingester, Pipeline};
use common::{kafka_brokers, wait_until};
use prost::Message;

const SLO: &str = "availability-test";
const SLOS: &str = "\
slos:
  - name: availability-test
    selector: { project: acme, model: gpt-test }
    sli: availability
    objective: 0.9
    window: 1h
    alerting:
      windows:
        - { long: 1m, short: 20s, burn_rate: 5, severity: page }
      resolve_below: 0.5
      resolve_for: 10s
";
const PROGRESS: Duration = Duration::from_secs(180);

/// Calls to `gpt-test` produced every 200 ms, failing while `failing` is set.
struct Traffic {
    failing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(p: &Pipeline) -> Self {
        let failing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let producer = p.producer();
        let (p, f, s) = (p.clone(), failing.clone(), stop.clone());
        static SEQ: AtomicU64 = AtomicU64::new(1);
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let seq = SEQ.fetch_add(1, Ordering::Relaxed);
                let req = calls(seq, 5, "gpt-test", f.load(Ordering::Relaxed));
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
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self {
            failing,
            stop,
            task,
        }
    }

    fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::Relaxed);
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

async fn get_json(url: &str, key: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn wait(what: &str, f: impl FnMut() -> bool) {
    tokio::task::block_in_place(|| wait_until(PROGRESS, what, f));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_burst_pages_once_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let am = Alertmanager::start(dir.path());
    let hook = WebhookReceiver::start();
    let config = detector_config(dir.path(), &p, SLOS, &am.url, &hook.url);
    let traffic = Traffic::start(&p);
    let detector = Detector::start(&p, &config);

    // Clean traffic first: the SLO is met, nothing fires.
    wait("clean calls evaluated", || {
        detector.metric("flywheel_detector_events_total{kind=\"call\",outcome=\"counted\"}") >= 50.0
    });
    let (status, slos) = get_json(&format!("{}/v1/slos", detector.api), "acme-secret-key").await;
    assert_eq!(status, 200, "{slos}");
    let view = &slos["slos"][0];
    assert_eq!(view["slo"], SLO);
    assert_eq!(
        (view["model"].as_str(), view["service"].as_str()),
        (Some("gpt-test"), Some("svc"))
    );
    assert_eq!(view["bad_events"], 0);
    assert!(am.alerts_of(SLO).is_empty());

    // The incident: every call fails.
    traffic.fail(true);
    wait("Alertmanager lists the page", || {
        !am.alerts_of(SLO).is_empty()
    });
    let alert = am.alerts_of(SLO).remove(0);
    assert_eq!(alert["labels"]["severity"], "page");
    assert_eq!(alert["labels"]["model"], "gpt-test");
    assert_eq!(alert["labels"]["project"], "acme");
    assert_eq!(alert["labels"]["alertname"], "FlywheelSLOBurnRate");
    let description = alert["annotations"]["description"].as_str().unwrap();
    assert!(description.contains("burn rate"), "{description}");
    wait("the webhook hears the page", || hook.count("firing") == 1);

    // The API shows it, to the right project only.
    let (_, alerts) = get_json(&format!("{}/v1/alerts", detector.api), "acme-secret-key").await;
    assert_eq!(
        alerts["firing"][0]["fingerprint"], alert["fingerprint"],
        "{alerts}"
    );
    let (_, other) = get_json(&format!("{}/v1/alerts", detector.api), "other-secret-key").await;
    assert_eq!(other["firing"].as_array().map(Vec::len), Some(0), "{other}");
    let (_, other) = get_json(&format!("{}/v1/slos", detector.api), "other-secret-key").await;
    assert_eq!(other["slos"].as_array().map(Vec::len), Some(0), "{other}");
    let (status, _) = get_json(&format!("{}/v1/slos", detector.api), "not-a-key-at-all").await;
    assert_eq!(status, 401);
    let (_, slos) = get_json(&format!("{}/v1/slos", detector.api), "acme-secret-key").await;
    let rule = &slos["slos"][0]["rules"][0];
    assert!(rule["breaching"].as_bool().unwrap(), "{slos}");
    assert!(rule["short_burn_rate"].as_f64().unwrap() > 5.0, "{slos}");
    assert!(slos["slos"][0]["budget_remaining"].as_f64().unwrap() < 1.0);

    // Clean again: resolved in Alertmanager (no longer listed) and announced once.
    traffic.fail(false);
    wait("Alertmanager resolves it", || am.alerts_of(SLO).is_empty());
    wait("the webhook hears the resolution", || {
        hook.count("resolved") == 1
    });
    traffic.stop().await;
    assert_eq!(hook.count("firing"), 1, "paged more than once");
    let resolved = hook
        .bodies
        .lock()
        .unwrap()
        .iter()
        .find(|b| b["status"] == "resolved")
        .cloned()
        .unwrap();
    assert_eq!(resolved["alerts"][0]["fingerprint"], alert["fingerprint"]);
    assert!(
        detector.metric(
            "flywheel_detector_notifications_total{outcome=\"sent\",sender=\"alertmanager\"}"
        ) >= 2.0
    );
    // History in ClickHouse: the page and its resolution.
    let (_, alerts) = get_json(&format!("{}/v1/alerts", detector.api), "acme-secret-key").await;
    let states: Vec<&str> = alerts["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["resolved", "firing"], "{alerts}");
    assert_eq!(detector.terminate().code(), Some(0));
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_incident_does_not_page_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let am = Alertmanager::start(dir.path());
    let hook = WebhookReceiver::start();
    let config = detector_config(dir.path(), &p, SLOS, &am.url, &hook.url);
    // The ingester stores the calls the restarted detector rebuilds its windows from.
    let ingester = Ingester::start(&p, &[]);
    let traffic = Traffic::start(&p);
    let detector = Detector::start(&p, &config);
    wait("clean calls evaluated", || {
        detector.metric("flywheel_detector_events_total{kind=\"call\",outcome=\"counted\"}") >= 25.0
    });
    traffic.fail(true);
    wait("the page", || hook.count("firing") == 1);
    let fingerprint = am.alerts_of(SLO)[0]["fingerprint"].clone();
    p.wait_count(
        "SELECT count() FROM llm_calls WHERE status_code = 'Error'",
        5,
        PROGRESS,
    )
    .await;

    // Restart in the middle of the incident.
    assert_eq!(detector.terminate().code(), Some(0));
    let detector = Detector::start(&p, &config);
    // It restored the alert from history and keeps it alive in Alertmanager by re-sending
    // (Alertmanager hears it, the webhook does not).
    let url = format!("{}/v1/alerts", detector.api);
    let deadline = std::time::Instant::now() + PROGRESS;
    loop {
        let (_, alerts) = get_json(&url, "acme-secret-key").await;
        if alerts["firing"][0]["fingerprint"] == fingerprint {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not restored: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(detector.metric("flywheel_detector_restored_alerts"), 1.0);
    assert!(detector.metric("flywheel_detector_rebuilt_events") >= 5.0);
    wait("the restarted detector re-sends the alert", || {
        detector.metric(
            "flywheel_detector_notifications_total{outcome=\"sent\",sender=\"alertmanager\"}",
        ) >= 1.0
    });
    wait("the restarted detector counts live calls", || {
        detector.metric("flywheel_detector_events_total{kind=\"call\",outcome=\"counted\"}") >= 25.0
    });
    assert_eq!(am.alerts_of(SLO)[0]["fingerprint"], fingerprint);
    assert_eq!(hook.count("firing"), 1, "paged again after the restart");

    traffic.fail(false);
    wait("resolved once", || hook.count("resolved") == 1);
    wait("Alertmanager resolves it", || am.alerts_of(SLO).is_empty());
    traffic.stop().await;
    assert_eq!(hook.count("firing"), 1);
    assert_eq!(detector.terminate().code(), Some(0));
    let _ = ingester.terminate();
    p.drop_database().await;
}
