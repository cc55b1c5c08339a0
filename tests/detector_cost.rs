//! End-to-end tests of the detector's cost policies against the real broker, ClickHouse and
//! Alertmanager: calls carry token counts, the detector prices them with the shared price
//! table, and
//! - a prompt-length blow-up on one model (input tokens x8) raises a cost-per-call change
//!   alert for that model only, heard by the webhook and listed by Alertmanager;
//! - a daily budget the traffic overspends raises a spend-rate alert;
//! - `GET /v1/slos` shows latency quantiles per key from the sketches;
//! - a per-user daily budget (`per: user`) alerts for the heavy user only, with a `user` label;
//! - after a start-up, a monthly budget sees the month's spend older than the replayed window
//!   (seeded from `llm_calls`) and alerts on it alone.
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

/// Requests of 4 `gpt-4o-mini` calls each: `heavy` (100,000 input tokens a call, $0.015, user
/// on the spans), `light` (1 input token, $0.00000015, user `enduser.id` on the resource) and
/// no user (1 input token), every 200 ms.
fn user_traffic(p: &Pipeline) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let producer = p.producer();
    let (p, s) = (p.clone(), stop.clone());
    static SEQ: AtomicU64 = AtomicU64::new(2_000_000);
    let task = tokio::spawn(async move {
        while !s.load(Ordering::Relaxed) {
            for who in ["heavy", "light", ""] {
                let seq = SEQ.fetch_add(1, Ordering::Relaxed);
                let mut req = calls(seq, 4, "gpt-4o-mini", false);
                let rs = &mut req.resource_spans[0];
                if who == "light" {
                    if let Some(r) = rs.resource.as_mut() {
                        r.attributes
                            .push(kv("enduser.id", Value::StringValue(who.into())));
                    }
                }
                for span in rs.scope_spans[0].spans.iter_mut() {
                    let input = if who == "heavy" { 100_000 } else { 1 };
                    span.attributes
                        .push(kv("gen_ai.usage.input_tokens", Value::IntValue(input)));
                    if who == "heavy" {
                        span.attributes
                            .push(kv("user.id", Value::StringValue(who.into())));
                    }
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
    (stop, task)
}

/// The cost views of `policy` on `GET /v1/slos`.
async fn cost_views(d: &Detector, policy: &str) -> Vec<serde_json::Value> {
    slos(d).await["cost"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["policy"] == policy)
        .collect()
}

const USER_SLOS: &str = "\
cost_policies:
  - name: user-daily-spend
    selector: { project: acme, model: gpt-4o-mini }
    spend: { period: day, budget_usd: 1, lookback: 1m, per: user }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_user_daily_budget_alerts_for_the_heavy_user_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let am = Alertmanager::start(dir.path());
    let hook = WebhookReceiver::start();
    let config = detector_config(dir.path(), &p, USER_SLOS, &am.url, &hook.url);
    let (stop, task) = user_traffic(&p);
    let detector = Detector::start(&p, &config);

    // heavy spends $0.06 a request: over the $1 budget within a few seconds, whatever the time
    // of day. light and the calls without a user spend $0.0000006 a request: at most 5 a
    // second, a day's worth projects to $0.26 at most.
    wait("Alertmanager lists the heavy user's spend alert", || {
        !am.alerts_of("user-daily-spend").is_empty()
    });
    let a = am.alerts_of("user-daily-spend").remove(0);
    assert_eq!(a["labels"]["alertname"], "FlywheelCostSpendRate");
    assert_eq!(a["labels"]["user"], "heavy");
    assert_eq!(a["labels"]["project"], "acme");
    assert_eq!(a["labels"]["model"], "gpt-4o-mini");
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("for user heavy of acme"), "{summary}");

    // All three users have their series, each judged against the whole budget.
    let deadline = std::time::Instant::now() + PROGRESS;
    let views = loop {
        let v = cost_views(&detector, "user-daily-spend").await;
        let seen = |u: &str| {
            v.iter()
                .any(|c| c["user"] == u && c["spent_usd"].as_f64().unwrap_or(0.0) > 0.0)
        };
        if seen("heavy") && seen("light") && seen("(none)") {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no per-user views: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let _ = task.await;
    for c in &views {
        let (user, projected) = (
            c["user"].as_str().unwrap(),
            c["projected_usd"].as_f64().unwrap(),
        );
        assert_eq!(c["budget_usd"], 1.0, "{c}");
        if user != "heavy" {
            assert_eq!(c["breaching"], false, "{c}");
            assert!(projected < 0.5, "{c}");
        }
        assert!(c["folded_calls"].is_null(), "{c}");
    }
    // Everything the webhook heard for the policy is the heavy user's.
    let heard: Vec<serde_json::Value> = hook
        .all()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["slo"] == "user-daily-spend")
        .collect();
    assert!(!heard.is_empty());
    assert!(
        heard.iter().all(|a| a["labels"]["user"] == "heavy"),
        "{heard:?}"
    );
    assert!(am
        .alerts_of("user-daily-spend")
        .iter()
        .all(|a| a["labels"]["user"] == "heavy"));
    assert_eq!(detector.terminate().code(), Some(0));
    p.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_budget_sees_the_month_before_the_replayed_window() {
    use flywheel_detector::cost::period_bounds;
    use flywheel_detector::slo::BudgetPeriod;
    use flywheel_schema::rows::LlmCallRow;

    const MIN: i64 = 60_000;
    let now_ms = common::now_ns() / 1_000_000;
    let (month_start, _) = period_bounds(BudgetPeriod::Month, now_ms);
    let elapsed = now_ms - month_start;
    // The detector replays its longest alerting window (the SRE workbook's 3 days). Early in
    // a month there are not 3 days of it before the replay: the SLO then alerts over a shorter
    // window, half the month so far, so that calls of this month still lie before the replay.
    let window_min = if elapsed > (72 * 60 + 120) * MIN {
        72 * 60
    } else {
        (elapsed / MIN - 10) / 2
    };
    if window_min < 2 {
        eprintln!(
            "skipped: {} s into the month, no room for calls of this month before a replayed \
             window; run again a few minutes later",
            elapsed / 1000
        );
        return;
    }
    let replay_from = now_ms - window_min * MIN - 1_000;
    // This month's calls, before the replay's start: $2.50 x 4, never replayed. Last month's
    // $1,000 call counts nowhere.
    let seeded_at = month_start + (replay_from - month_start) / 2;
    let row = |n: u32, ts_ms: i64, usd: f64| LlmCallRow {
        timestamp: ts_ms * 1_000_000,
        project: "acme".into(),
        service: "svc".into(),
        model: "gpt-4o".into(),
        operation: "chat".into(),
        trace_id: format!("{n:032x}"),
        span_id: format!("{n:016x}"),
        status_code: "Ok".into(),
        duration_ns: 300_000_000,
        cost_usd: Some(usd),
        received_at: ts_ms * 1_000_000 + 1_000_000_000,
        ..LlmCallRow::default()
    };
    let rows = [
        row(1, seeded_at, 2.5),
        row(2, seeded_at + MIN, 2.5),
        row(3, seeded_at + 2 * MIN, 2.5),
        row(4, seeded_at + 3 * MIN, 2.5),
        row(5, month_start - 3_600_000, 1000.0),
    ];

    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    p.migrate();
    let client = p.client();
    let mut insert = client.insert::<LlmCallRow>("llm_calls").await.unwrap();
    for r in &rows {
        insert.write(r).await.unwrap();
    }
    insert.end().await.unwrap();

    let slo_file = format!(
        "\
slos:
  - name: mini-availability
    selector: {{ project: acme, model: gpt-4o-mini }}
    sli: availability
    objective: 0.99
    window: 30d
    alerting:
      windows: [ {{ long: {window_min}m, short: 1m, burn_rate: 10, severity: ticket }} ]
cost_policies:
  - name: gpt-4o-monthly
    selector: {{ project: acme, model: gpt-4o }}
    spend: {{ period: month, budget_usd: 5, lookback: 1h }}
"
    );
    let am = Alertmanager::start(dir.path());
    let hook = WebhookReceiver::start();
    let config = detector_config(dir.path(), &p, &slo_file, &am.url, &hook.url);
    // Live calls of another model move event time; none is gpt-4o's.
    let (stop, task) = user_traffic(&p);
    let detector = Detector::start(&p, &config);

    wait("Alertmanager lists the monthly spend alert", || {
        !am.alerts_of("gpt-4o-monthly").is_empty()
    });
    let a = am.alerts_of("gpt-4o-monthly").remove(0);
    assert_eq!(a["labels"]["model"], "gpt-4o");
    assert!(a["labels"]["user"].is_null(), "{a}");
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("month budget"), "{summary}");
    // Spent: exactly the seeded $10 (nothing of gpt-4o was replayed or is live), no rate, so
    // the projection is the spend.
    let view = cost_views(&detector, "gpt-4o-monthly").await.remove(0);
    stop.store(true, Ordering::Relaxed);
    let _ = task.await;
    assert!(
        (view["spent_usd"].as_f64().unwrap() - 10.0).abs() < 1e-9,
        "{view}"
    );
    assert!(
        (view["projected_usd"].as_f64().unwrap() - 10.0).abs() < 1e-9,
        "{view}"
    );
    assert_eq!(view["rate_usd_per_hour"], 0.0, "{view}");
    assert_eq!(view["breaching"], true, "{view}");
    assert_eq!(
        detector.metric("flywheel_detector_seeded_spend_series"),
        1.0
    );
    assert_eq!(detector.terminate().code(), Some(0));
    p.drop_database().await;
}
