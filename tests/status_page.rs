//! End to end: the api's status page (`GET /`) in headless Chromium, on real data, on both
//! stacks: `flywheel all` (collector, ingester, api, detector with an SLO file) against the real
//! broker and ClickHouse engine, and `flywheel up` on its write-ahead log and DuckDB file (the
//! same configuration file, no server). In each, `flywheel loadgen` sends a minute of simulated traffic in real time with
//! an error burst on one provider, so an availability SLO pages; then
//! `tests/browser/status_page.mjs` (playwright-core driving Debian's `chromium`, both installed
//! by `deploy/local/browser.sh`) opens the page, gives it the project's key, waits for the SLO
//! table, the models table and the charts to show the data, checks them against what was
//! sent, and keeps screenshots in `target/test-artifacts/` (`status-page*.png` for servers,
//! `status-page-embedded*.png` for `up`). Last, on servers, an api alone with no detector
//! behind it: the page shows the data and says "detector not running".
//!
//! Timeouts are upper bounds for progress, never the asserted quantity.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::detector::WebhookReceiver;
use common::ingest::{clickhouse_url, Pipeline};
use common::{free_port, http_get_status, kafka_brokers, wait_until};

const KEY: &str = "status-page-secret-key";
const PROJECT: &str = "demo";
const PROGRESS: Duration = Duration::from_secs(180);

/// Three SLOs on the project; short windows so that a 35 s burst pages.
const SLOS: &str = "\
slos:
  - name: availability
    selector: { project: demo }
    sli: availability
    objective: 0.95
    window: 1h
    alerting:
      windows:
        - { long: 30s, short: 10s, burn_rate: 5, severity: page }
      min_events: 5
      resolve_below: 0.5
      resolve_for: 10s
  - name: ttft-2s
    selector: { project: demo }
    sli:
      latency: { metric: ttft, threshold: 2s }
    objective: 0.9
    window: 1h
    alerting:
      windows:
        - { long: 30s, short: 10s, burn_rate: 5, severity: page }
      min_events: 5
  - name: thumbs-down
    selector: { project: demo }
    sli:
      negative_feedback: { name: thumbs, negative: { boolean: false } }
    objective: 0.8
    window: 1h
    alerting:
      windows:
        - { long: 30s, short: 10s, burn_rate: 3, severity: ticket }
      min_events: 5
";
const SLO_NAMES: [&str; 3] = ["availability", "ttft-2s", "thumbs-down"];

/// A minute of traffic in real time, every client streaming; openai fails 80 % of its calls
/// from 20 s to 55 s.
const SCENARIO: &str = r#"
rate = 6.0
duration = "70s"
seed = 23
streaming_share = 1.0

[feedback]
thumbs_rate = 0.4
thumbs_down_ratio = 0.2

[[incident]]
name = "openai errors 80%"
kind = "error_burst"
start = "20s"
duration = "35s"
provider = "openai"
error_ratio = 0.8
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `flywheel all` (Kafka + ClickHouse of `p`) or `flywheel up --data-dir` (embedded) with
/// `--config <file>`; killed on drop.
struct All {
    child: Child,
    collector: String,
    api: String,
    admin: String,
}

impl All {
    fn start(stack: &Stack, config: &Path) -> Self {
        let (http, grpc, admin, api) = (free_port(), free_port(), free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flywheel"));
        match stack {
            Stack::Servers(p) => cmd.arg("all").envs(p.env()),
            Stack::Embedded(dir) => cmd.arg("up").arg("--data-dir").arg(dir.path()),
        };
        let child = cmd
            .arg("--config")
            .arg(config)
            .env(
                "FLYWHEEL_COLLECTOR__HTTP_LISTEN",
                format!("127.0.0.1:{http}"),
            )
            .env(
                "FLYWHEEL_COLLECTOR__GRPC_LISTEN",
                format!("127.0.0.1:{grpc}"),
            )
            .env("FLYWHEEL_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
            .env("FLYWHEEL_API__LISTEN", format!("127.0.0.1:{api}"))
            .env("RUST_LOG", "warn,flywheel=info")
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start flywheel");
        let me = Self {
            child,
            collector: format!("http://127.0.0.1:{http}"),
            api: format!("http://127.0.0.1:{api}"),
            admin: format!("http://127.0.0.1:{admin}"),
        };
        wait_until(Duration::from_secs(90), "flywheel ready", || {
            http_get_status(&format!("{}/readyz", me.admin)) == Some(200)
        });
        me
    }
}

impl Drop for All {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the system under test keeps its data.
enum Stack {
    /// The real broker and ClickHouse engine (this test's topics and database).
    Servers(Pipeline),
    /// `flywheel up`'s data directory: write-ahead log and DuckDB file.
    Embedded(tempfile::TempDir),
}

/// The configuration file: auth, the SLO file, a fast detector; on servers, this test's
/// topics and consumer group (the embedded stack keeps the default topic names).
fn config(dir: &Path, stack: &Stack, detector_port: u16, webhook: &str) -> PathBuf {
    let slo_file = dir.join("slos.yaml");
    std::fs::write(&slo_file, SLOS).unwrap();
    let path = dir.join("flywheel.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[auth]
required = true
[auth.keys]
"{KEY}" = "{PROJECT}"

[detector]
{topics}
slo_file = "{slo_file}"
listen = "127.0.0.1:{detector_port}"
evaluation_interval_ms = 250
# Generous: on 2 shared cores the detector may fall seconds behind the wall clock, and events
# more than lateness behind the newest event time are refused as late.
lateness_ms = 20000
idle_advance_ms = 30000
resend_interval_ms = 5000
webhook_urls = ["{webhook}"]
"#,
            topics = match stack {
                Stack::Servers(p) => format!(
                    "group_id = \"test-status-{}\"\nspans_topic = \"{}\"\n\
                     feedback_topic = \"{}\"\nsignals_topic = \"{}\"",
                    p.group, p.topic, p.feedback_topic, p.signals_topic
                ),
                Stack::Embedded(_) => String::new(),
            },
            slo_file = slo_file.display(),
        ),
    )
    .unwrap();
    path
}

async fn get_json(url: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    r.json().await.unwrap()
}

fn chromium() -> String {
    std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Each browser run takes Chromium alone (two at once on 2 cores only slow each other).
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_on_kafka_and_clickhouse() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    let stack = Stack::Servers(p);
    status_page_shows_simulated_traffic_slos_and_the_alert(&stack, "status-page").await;
    if let Stack::Servers(p) = stack {
        p.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_on_flywheel_up() {
    let stack = Stack::Embedded(tempfile::tempdir().unwrap());
    status_page_shows_simulated_traffic_slos_and_the_alert(&stack, "status-page-embedded").await;
}

/// The page on `stack`: traffic with an incident, the JSON checked against the ground truth,
/// then the browser; screenshots named `shots`.
async fn status_page_shows_simulated_traffic_slos_and_the_alert(stack: &Stack, shots: &str) {
    let browser_dir = repo().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir() && Path::new(&chromium()).exists(),
        "playwright-core or chromium missing: run deploy/local/browser.sh (deploy/local/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let hook = WebhookReceiver::start();
    let config = config(dir.path(), stack, free_port(), &hook.url);
    let all = All::start(stack, &config);

    // Before any traffic the page's JSON answers, empty, and refuses a request without a key.
    let status = reqwest::get(format!("{}/v1/status/models", all.api))
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
    let page = reqwest::get(format!("{}/", all.api)).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("/status/app.js"));

    // A minute of real-time traffic with the incident.
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let truth = dir.path().join("truth.jsonl");
    let out = tokio::task::spawn_blocking({
        let (scenario, truth, endpoint) = (scenario.clone(), truth.clone(), all.collector.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_flywheel"))
                .arg("loadgen")
                .arg("--scenario")
                .arg(&scenario)
                .args(["--endpoint", &endpoint, "--api-key", KEY])
                .arg("--ground-truth")
                .arg(&truth)
                .env("RUST_LOG", "warn")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    let calls = summary["calls"].as_u64().unwrap();
    assert!(calls > 100, "{summary}");

    // Everything stored (on servers: ClickHouse counts them), and the page's JSON lists every
    // call the simulator sent, no more.
    if let Stack::Servers(p) = stack {
        p.wait_count("SELECT count() FROM llm_calls FINAL", calls, PROGRESS)
            .await;
    }
    let models_url = format!("{}/v1/status/models?minutes=15", all.api);
    let listed = |models: &serde_json::Value| -> u64 {
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["calls"].as_u64().unwrap())
            .sum()
    };
    let mut models = get_json(&models_url).await;
    for _ in 0..PROGRESS.as_secs() {
        if listed(&models) >= calls {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        models = get_json(&models_url).await;
    }
    assert_eq!(models["project"], PROJECT);
    assert_eq!(listed(&models), calls, "{models}");
    let names: Vec<String> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|m| m == "gpt-4o"), "{names:?}");

    // The burst paged: the alert history has it.
    let alerts_url = format!("{}/v1/status/alerts?minutes=60", all.api);
    let mut alerts = serde_json::Value::Null;
    for _ in 0..PROGRESS.as_secs() {
        alerts = get_json(&alerts_url).await;
        if alerts["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["slo"] == "availability"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let alert = alerts["alerts"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["slo"] == "availability"))
        .unwrap_or_else(|| {
            let metrics =
                common::http_get_body(&format!("{}/metrics", all.admin)).unwrap_or_default();
            let detector: Vec<&str> = metrics
                .lines()
                .filter(|l| {
                    l.starts_with("flywheel_detector_events_total")
                        || l.starts_with("flywheel_detector_slo")
                })
                .collect();
            panic!("no availability alert in {alerts}\n{}", detector.join("\n"))
        });
    assert!(
        alert["peak_short_burn_rate"].as_f64().unwrap() >= 5.0,
        "{alert}"
    );
    let slos = get_json(&format!("{}/v1/status/slos", all.api)).await;
    assert_eq!(slos["detector"]["status"], "ok", "{slos}");

    // The page, in the browser.
    let browser = BROWSER.lock().await;
    let artifacts = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = tokio::task::spawn_blocking({
        let (api, artifacts) = (all.api.clone(), artifacts.clone());
        let names = serde_json::to_string(&names).unwrap();
        let shots = shots.to_string();
        move || {
            Command::new("node")
                .arg("status_page.mjs")
                .current_dir(repo().join("tests/browser"))
                .env("STATUS_URL", format!("{api}/"))
                .env("STATUS_KEY", KEY)
                .env("STATUS_PROJECT", PROJECT)
                .env("EXPECT_MODELS", names)
                .env("SHOTS", shots)
                .env("EXPECT_SLOS", serde_json::to_string(&SLO_NAMES).unwrap())
                .env("EXPECT_ALERT", "availability")
                .env("CHROMIUM_BIN", chromium())
                .env("ARTIFACTS", &artifacts)
                .output()
                .expect("cannot run node (installed by deploy/local/browser.sh)")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("status page ok"), "{stdout}\n{stderr}");
    for shot in [format!("{shots}.png"), format!("{shots}-dark.png")] {
        let len = std::fs::metadata(artifacts.join(&shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "{shot}: {len} bytes");
    }

    // Without a detector (an api alone, pointed at a port nothing listens on) the page still
    // shows the stored data and says the detector is not running. On servers only: a second
    // process cannot open the DuckDB file `up` holds.
    let Stack::Servers(p) = stack else {
        return;
    };
    let api_port = free_port();
    let mut api_only = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .arg("api")
        .arg("--config")
        .arg(&config)
        .envs(p.env())
        .env("FLYWHEEL_API__LISTEN", format!("127.0.0.1:{api_port}"))
        .env(
            "FLYWHEEL_API__DETECTOR_URL",
            format!("http://127.0.0.1:{}", free_port()),
        )
        .env(
            "FLYWHEEL_ADMIN__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("cannot start flywheel api");
    let api = format!("http://127.0.0.1:{api_port}");
    wait_until(Duration::from_secs(60), "api up", || {
        http_get_status(&format!("{api}/")) == Some(200)
    });
    let slos = get_json(&format!("{api}/v1/status/slos")).await;
    assert_eq!(slos["detector"]["status"], "not_running", "{slos}");
    let out = tokio::task::spawn_blocking({
        let (api, artifacts) = (api.clone(), artifacts.clone());
        let names = serde_json::to_string(&names).unwrap();
        move || {
            Command::new("node")
                .arg("status_page.mjs")
                .current_dir(repo().join("tests/browser"))
                .env("STATUS_URL", format!("{api}/"))
                .env("STATUS_KEY", KEY)
                .env("STATUS_PROJECT", PROJECT)
                .env("EXPECT_MODELS", names)
                .env("EXPECT_DETECTOR_DOWN", "1")
                .env("CHROMIUM_BIN", chromium())
                .env("ARTIFACTS", &artifacts)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let _ = api_only.kill();
    let _ = api_only.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("status page ok"),
        "browser test without a detector failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    drop(browser);
    drop(all);
}
