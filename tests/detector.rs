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

use common::detector::{
    calls, detector_config, detector_config_with, Alertmanager, Detector, WebhookReceiver,
};
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
    // The webhook refuses its first two deliveries: the sender retries.
    let hook = WebhookReceiver::failing_first(2);
    let slack = WebhookReceiver::start();
    let config = detector_config_with(
        dir.path(),
        &p,
        SLOS,
        &am.url,
        &hook.url,
        &format!("slack_webhook_urls = [\"{}\"]", slack.url),
    );
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
    assert_eq!(
        detector.metric("flywheel_detector_delivery_retries_total{sender=\"webhook\"}"),
        2.0
    );
    // Slack: one message for the page, one for the resolution.
    let texts: Vec<String> = slack
        .all()
        .iter()
        .map(|b| b["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].starts_with("[FIRING] availability-test (page)"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("[RESOLVED] availability-test (page)"),
        "{texts:?}"
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

const QUALITY_SLOS: &str = "\
slos:
  - name: thumbs-test
    selector: { project: acme, model: gpt-test }
    sli: { negative_feedback: { name: thumbs, negative: { boolean: false } } }
    objective: 0.9
    window: 1h
    alerting:
      windows: [ { long: 1m, short: 20s, burn_rate: 5, severity: page } ]
  - name: regenerate-test
    selector: { project: acme, model: gpt-test }
    sli: { signal: { signal: regenerate } }
    objective: 0.9
    window: 1h
    alerting:
      windows: [ { long: 1m, short: 20s, burn_rate: 5, severity: page } ]
";

fn feedback(trace_id: &str, span_id: &str, thumbs_up: bool) -> Vec<u8> {
    use flywheel_feedback::pb;
    pb::Feedback {
        id: common::unique("fb"),
        subject: Some(pb::Subject {
            trace_id: trace_id.into(),
            span_id: span_id.into(),
            ..Default::default()
        }),
        name: "thumbs".into(),
        value: Some(pb::FeedbackValue {
            kind: Some(pb::feedback_value::Kind::Boolean(thumbs_up)),
            ..Default::default()
        }),
        time_unix_nano: common::now_ns(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Commits `group`'s offsets at the end of the span topic.
fn commit_to_end(p: &Pipeline, group: &str) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(20);
    let md = c.fetch_metadata(Some(&p.topic), timeout).unwrap();
    let mut tpl = TopicPartitionList::new();
    for part in md.topics()[0].partitions() {
        let (_, high) = c.fetch_watermarks(&p.topic, part.id(), timeout).unwrap();
        tpl.add_partition_offset(&p.topic, part.id(), Offset::Offset(high))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

/// Feedback about calls the detector never saw live is attributed through a ClickHouse lookup,
/// a regenerate signal about a live call through memory, and an item about an unknown call is
/// counted as unattributed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_and_signals_join_to_model_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let am = Alertmanager::start(dir.path());
    let hook = WebhookReceiver::start();
    let producer = p.producer();
    let ingester = Ingester::start(&p, &[]);
    // Four calls stored before the detector starts (it will not replay them: no history).
    let old = calls(1_000_001, 4, "gpt-test", false);
    let old_spans: Vec<(String, String)> = old.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| (hex::encode(&s.trace_id), hex::encode(&s.span_id)))
        .collect();
    let now = common::now_ns();
    p.produce(
        &producer,
        &p.topic,
        "acme",
        now,
        b"old",
        old.encode_to_vec(),
    )
    .await;
    p.wait_count("SELECT count() FROM llm_calls", 4, PROGRESS)
        .await;
    // The detector's group starts after them: it never sees these calls live (else it would
    // count them and join the feedback from memory, depending on when it reads them).
    commit_to_end(&p, &format!("test-detector-{}", p.group));
    let config = detector_config_with(
        dir.path(),
        &p,
        QUALITY_SLOS,
        &am.url,
        &hook.url,
        "rebuild_from_history = false",
    );
    let detector = Detector::start(&p, &config);

    // Thumbs down on two old calls, up on two: resolved by lookup.
    for (i, (t, s)) in old_spans.iter().enumerate() {
        let payload = feedback(t, s, i % 2 == 0);
        p.produce(
            &producer,
            &p.feedback_topic,
            "acme",
            common::now_ns(),
            t.as_bytes(),
            payload,
        )
        .await;
    }
    // One about a call nobody stored.
    let unknown = feedback(&"ab".repeat(16), &"cd".repeat(8), false);
    p.produce(
        &producer,
        &p.feedback_topic,
        "acme",
        common::now_ns(),
        b"x",
        unknown,
    )
    .await;
    // A live call, then a regenerate that discards it: resolved from memory.
    let live = calls(1_000_002, 1, "gpt-test", false);
    let (lt, ls) = {
        let s = &live.resource_spans[0].scope_spans[0].spans[0];
        (hex::encode(&s.trace_id), hex::encode(&s.span_id))
    };
    p.produce(
        &producer,
        &p.topic,
        "acme",
        common::now_ns(),
        lt.as_bytes(),
        live.encode_to_vec(),
    )
    .await;
    wait("the live call counted", || {
        detector.metric("flywheel_detector_events_total{kind=\"call\",outcome=\"counted\"}") >= 1.0
    });
    let signal = flywheel_feedback::pb::Signal {
        id: common::unique("sig"),
        r#type: flywheel_feedback::pb::SignalType::Regenerate as i32,
        discarded: Some(flywheel_feedback::pb::SpanRef {
            trace_id: lt.clone(),
            span_id: ls.clone(),
        }),
        time_unix_nano: common::now_ns(),
        ..Default::default()
    };
    p.produce(
        &producer,
        &p.signals_topic,
        "acme",
        common::now_ns(),
        lt.as_bytes(),
        signal.encode_to_vec(),
    )
    .await;

    wait("feedback attributed through the lookup", || {
        detector.metric("flywheel_detector_events_total{kind=\"feedback\",outcome=\"counted\"}")
            >= 4.0
    });
    wait(
        "the unknown call's feedback counted as unattributed",
        || detector.metric("flywheel_detector_unattributed_total{kind=\"feedback\"}") >= 1.0,
    );
    wait("the signal attributed from memory", || {
        detector.metric("flywheel_detector_events_total{kind=\"signal\",outcome=\"counted\"}")
            >= 1.0
    });
    assert_eq!(
        detector.metric("flywheel_detector_events_total{kind=\"feedback\",outcome=\"counted\"}"),
        4.0
    );
    assert_eq!(
        detector.metric("flywheel_detector_unattributed_total{kind=\"feedback\"}"),
        1.0
    );
    // The SLIs, once evaluated past the items' buckets.
    let url = format!("{}/v1/slos", detector.api);
    let deadline = std::time::Instant::now() + PROGRESS;
    loop {
        let (_, slos) = get_json(&url, "acme-secret-key").await;
        let view = |name: &str| {
            slos["slos"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["slo"] == name)
                .cloned()
                .unwrap_or_default()
        };
        let (thumbs, regen) = (view("thumbs-test"), view("regenerate-test"));
        if thumbs["events"] == 4 && regen["bad_events"] == 1 {
            assert_eq!(thumbs["bad_events"], 2, "{slos}");
            assert_eq!(thumbs["model"], "gpt-test");
            // The regenerate SLI's total is the calls: the live one.
            assert_eq!(regen["events"], 1, "{slos}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{slos}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(detector.terminate().code(), Some(0));
    let _ = ingester.terminate();
    p.drop_database().await;
}

/// The (SLO, key) views an instance's `GET /v1/slos` shows for project acme.
async fn views(d: &Detector) -> Vec<serde_json::Value> {
    let (_, slos) = get_json(&format!("{}/v1/slos", d.api), "acme-secret-key").await;
    slos["slos"].as_array().cloned().unwrap_or_default()
}

/// The value of `series` in each instance.
fn per_instance(ds: &[&Detector], series: &str) -> Vec<f64> {
    ds.iter().map(|d| d.metric(series)).collect()
}

/// Waits until the group is stable and one instance owns the key (only its API shows it, with
/// at least 30 events); whether that is `a`.
async fn owner_is_first(a: &Detector, b: &Detector) -> bool {
    let deadline = std::time::Instant::now() + PROGRESS;
    loop {
        let (va, vb) = (views(a).await, views(b).await);
        let owns =
            |v: &[serde_json::Value]| v.len() == 1 && v[0]["events"].as_u64().unwrap_or(0) >= 30;
        if owns(&va) && vb.is_empty() {
            return true;
        }
        if owns(&vb) && va.is_empty() {
            return false;
        }
        assert!(std::time::Instant::now() < deadline, "{va:?} {vb:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Two instances in one group with the keyed topic (adr/0008): both read part of the spans,
/// one owns the key and counts everything both forwarded, and the incident pages once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_compute_one_global_sli() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let am = Alertmanager::start(dir.path());
    let hook = WebhookReceiver::start();
    let keyed = format!("{}.keyed", p.topic);
    let config = detector_config_with(
        dir.path(),
        &p,
        SLOS,
        &am.url,
        &hook.url,
        &format!("keyed_topic = \"{keyed}\""),
    );
    let traffic = Traffic::start(&p);
    // Events of one key reach its owner through both instances' stage 1, whose lags differ
    // (more so on a busy test machine): allow 15 s of lateness so none is dropped as late.
    let env = [
        ("FLYWHEEL_DETECTOR__LATENESS_MS", "15000"),
        ("FLYWHEEL_DETECTOR__IDLE_ADVANCE_MS", "20000"),
    ];
    let a = Detector::start_with(&p, &config, &env);
    let b = Detector::start_with(&p, &config, &env);
    let both = [&a, &b];
    const FORWARDED: &str = "flywheel_detector_events_total{kind=\"call\",outcome=\"forwarded\"}";
    // Spans are keyed by trace: each instance reads (and forwards) part of the calls.
    wait("both instances forward calls", || {
        per_instance(&both, FORWARDED).iter().all(|n| *n >= 10.0)
    });
    // Once the group is stable, one instance owns the key: only its API shows it.
    let owner_is_a = owner_is_first(&a, &b).await;
    eprintln!(
        "key owned by instance {}",
        if owner_is_a { "a" } else { "b" }
    );

    traffic.fail(true);
    wait("Alertmanager lists the page", || {
        !am.alerts_of(SLO).is_empty()
    });
    wait("the webhook hears it", || hook.count("firing") == 1);
    traffic.fail(false);
    wait("resolved once", || hook.count("resolved") == 1);
    wait("Alertmanager resolves it", || am.alerts_of(SLO).is_empty());
    traffic.stop().await;
    // Global: the owner's SLI covers every call either instance forwarded (its windows were
    // rebuilt by replaying the keyed topic after each rebalance, so compare windows, not the
    // cumulative counter).
    // (A rebalance may move the key meanwhile: look at whichever instance shows it.)
    let deadline = std::time::Instant::now() + PROGRESS;
    loop {
        // Read both each time: stage 1 may still be forwarding the last calls.
        let forwarded: f64 = per_instance(&both, FORWARDED).iter().sum();
        let (va, vb) = (views(&a).await, views(&b).await);
        let shown: Vec<f64> = va
            .iter()
            .chain(&vb)
            .filter_map(|v| v["events"].as_f64())
            .collect();
        if shown == [forwarded] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "forwarded {forwarded}, late {:?}: {va:?} {vb:?}",
            per_instance(
                &both,
                "flywheel_detector_events_total{kind=\"call\",outcome=\"late\"}"
            )
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(hook.count("firing"), 1, "paged by both instances");
    assert_eq!(a.terminate().code(), Some(0));
    assert_eq!(b.terminate().code(), Some(0));
    p.drop_database().await;
}

/// Keyed mode, the owner of the key stops while its alert is firing: the other
/// instance takes the key over, replays the keyed topic, picks the firing alert up from the
/// history table and neither pages again nor loses the resolution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_stopping_during_an_incident_does_not_page_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let am = Alertmanager::start(dir.path());
    let hook = WebhookReceiver::start();
    let keyed = format!("{}.keyed", p.topic);
    let config = detector_config_with(
        dir.path(),
        &p,
        SLOS,
        &am.url,
        &hook.url,
        &format!("keyed_topic = \"{keyed}\""),
    );
    let traffic = Traffic::start(&p);
    let env = [
        ("FLYWHEEL_DETECTOR__LATENESS_MS", "15000"),
        ("FLYWHEEL_DETECTOR__IDLE_ADVANCE_MS", "20000"),
    ];
    let a = Detector::start_with(&p, &config, &env);
    let b = Detector::start_with(&p, &config, &env);
    let owner_is_a = owner_is_first(&a, &b).await;
    let (owner, survivor) = if owner_is_a { (a, b) } else { (b, a) };

    traffic.fail(true);
    wait("the webhook hears the page", || hook.count("firing") == 1);
    let fingerprint = am.alerts_of(SLO)[0]["fingerprint"].clone();
    // The firing row is in the history table before the owner dies.
    p.wait_count(
        "SELECT count() FROM alerts WHERE state = 'firing'",
        1,
        PROGRESS,
    )
    .await;
    // The owner stops (SIGTERM: it leaves the group without resolving anything) and the survivor
    // takes its partitions. With SIGKILL the takeover waits for the broker to evict the dead
    // member after its session timeout, which tansu 0.6 did not always do (2 of 6 runs never
    // rebalanced within 3 minutes): the alert handover tested here is the same either way.
    assert_eq!(owner.terminate().code(), Some(0));

    // The survivor now owns the key (its view shows it) and keeps the same alert alive.
    let deadline = std::time::Instant::now() + PROGRESS;
    loop {
        let v = views(&survivor).await;
        let (_, alerts) = get_json(&format!("{}/v1/alerts", survivor.api), "acme-secret-key").await;
        if v.len() == 1 && alerts["firing"][0]["fingerprint"] == fingerprint {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not taken over: {v:?} {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait("the survivor re-sends the alert to Alertmanager", || {
        survivor.metric(
            "flywheel_detector_notifications_total{outcome=\"sent\",sender=\"alertmanager\"}",
        ) >= 1.0
    });
    assert_eq!(hook.count("firing"), 1, "paged again after the takeover");

    traffic.fail(false);
    wait("resolved once", || hook.count("resolved") == 1);
    wait("Alertmanager resolves it", || am.alerts_of(SLO).is_empty());
    traffic.stop().await;
    assert_eq!(hook.count("firing"), 1);
    assert_eq!(survivor.terminate().code(), Some(0));
    p.drop_database().await;
}
