//! Harness for detector tests: a private Alertmanager (the Debian `prometheus-alertmanager`
//! binary installed by `deploy/local/services.sh`) on a free port with a temporary config, a
//! webhook receiver that records every post, `flywheel detector` processes, and crafted
//! model-call span messages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};

use super::ingest::Pipeline;
use super::{free_port, http_get_body, http_get_status, kv, wait_until};

/// The Alertmanager binary: `ALERTMANAGER_BIN`, else Debian's name, else upstream's.
fn alertmanager_bin() -> String {
    if let Ok(b) = std::env::var("ALERTMANAGER_BIN") {
        return b;
    }
    for b in [
        "/usr/bin/prometheus-alertmanager",
        "prometheus-alertmanager",
    ] {
        if Path::new(b).exists() {
            return b.to_string();
        }
    }
    "alertmanager".to_string()
}

/// A private Alertmanager; killed on drop.
pub struct Alertmanager {
    child: Child,
    pub url: String,
}

impl Alertmanager {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
        )
        .unwrap();
        let child = Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start Alertmanager (installed by deploy/local/services.sh)");
        let am = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_until(Duration::from_secs(30), "alertmanager ready", || {
            http_get_status(&format!("{}/-/ready", am.url)) == Some(200)
        });
        am
    }

    /// Active alerts (`GET /api/v2/alerts`; resolved ones are not listed).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        http_get_body(&format!("{}/api/v2/alerts", self.url))
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or_default()
    }

    /// Active alerts whose `slo` label is `slo`.
    pub fn alerts_of(&self, slo: &str) -> Vec<serde_json::Value> {
        self.alerts()
            .into_iter()
            .filter(|a| a["labels"]["slo"] == slo)
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records the JSON body of every POST it receives and answers 200 (after answering 503 to
/// the first `fail_first` requests, unrecorded).
pub struct WebhookReceiver {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl WebhookReceiver {
    pub fn start() -> Self {
        Self::failing_first(0)
    }

    pub fn failing_first(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let sink = bodies.clone();
        std::thread::spawn(move || {
            let mut to_fail = fail_first;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; len];
                let read = reader.read_exact(&mut body).is_ok();
                if to_fail > 0 {
                    to_fail -= 1;
                    let _ = stream.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                if read {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        sink.lock().unwrap().push(v);
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Self { url, bodies }
    }

    /// Every body received.
    pub fn all(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Posts by their `status` (`firing` / `resolved`).
    pub fn count(&self, status: &str) -> usize {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["status"] == status)
            .count()
    }
}

/// A `flywheel detector` process; killed on drop.
pub struct Detector {
    child: Child,
    pub api: String,
    pub admin: String,
}

/// Test settings of a detector: fast evaluation, one second of lateness, short resends.
pub fn detector_config(
    dir: &Path,
    pipeline: &Pipeline,
    slo_yaml: &str,
    alertmanager: &str,
    webhook: &str,
) -> PathBuf {
    detector_config_with(dir, pipeline, slo_yaml, alertmanager, webhook, "")
}

/// [`detector_config`] plus raw lines appended to `[detector]`.
pub fn detector_config_with(
    dir: &Path,
    pipeline: &Pipeline,
    slo_yaml: &str,
    alertmanager: &str,
    webhook: &str,
    extra: &str,
) -> PathBuf {
    let slo_file = dir.join("slos.yaml");
    std::fs::write(&slo_file, slo_yaml).unwrap();
    let config = dir.join("flywheel.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[auth]
required = true
[auth.keys]
"acme-secret-key" = "acme"
"other-secret-key" = "other"

[detector]
group_id = "test-detector-{group}"
spans_topic = "{spans}"
feedback_topic = "{feedback}"
signals_topic = "{signals}"
slo_file = "{slo_file}"
evaluation_interval_ms = 250
lateness_ms = 1000
idle_advance_ms = 3000
resend_interval_ms = 5000
lookup_interval_ms = 500
retry_initial_ms = 100
retry_max_ms = 1000
session_timeout_ms = 6000
alertmanager_urls = ["{alertmanager}"]
webhook_urls = ["{webhook}"]
{extra}
"#,
            group = pipeline.group,
            spans = pipeline.topic,
            feedback = pipeline.feedback_topic,
            signals = pipeline.signals_topic,
            slo_file = slo_file.display(),
        ),
    )
    .unwrap();
    config
}

impl Detector {
    pub fn start(pipeline: &Pipeline, config: &Path) -> Self {
        Self::start_with(pipeline, config, &[])
    }

    /// [`Detector::start`] with environment overrides.
    pub fn start_with(pipeline: &Pipeline, config: &Path, env: &[(&str, &str)]) -> Self {
        let (admin, api) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .arg("detector")
            .arg("--config")
            .arg(config)
            .envs(pipeline.env())
            .env("FLYWHEEL_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
            .env("FLYWHEEL_DETECTOR__LISTEN", format!("127.0.0.1:{api}"))
            .env(
                "RUST_LOG",
                std::env::var("DETECTOR_LOG").unwrap_or_else(|_| "warn,flywheel=info".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start flywheel detector");
        let me = Self {
            child,
            api: format!("http://127.0.0.1:{api}"),
            admin: format!("http://127.0.0.1:{admin}"),
        };
        wait_until(Duration::from_secs(60), "detector API up", || {
            http_get_status(&format!("{}/v1/slos", me.api)).is_some()
        });
        me
    }

    pub fn metrics(&self) -> String {
        http_get_body(&format!("{}/metrics", self.admin)).unwrap_or_default()
    }

    /// The value of one sample of `/metrics` (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        super::terminate(&mut self.child, "detector", Duration::from_secs(60))
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` chat calls to `model` of service `svc`, ending now, failed or not; ids from `seq`.
pub fn calls(seq: u64, n: u64, model: &str, failed: bool) -> ExportTraceServiceRequest {
    let end = super::now_ns() as u64;
    let spans = (0..n)
        .map(|i| {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&seq.to_be_bytes());
            trace_id[8..].copy_from_slice(&(i + 1).to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                name: format!("chat {model}"),
                start_time_unix_nano: end - 300_000_000,
                end_time_unix_nano: end,
                attributes: vec![
                    kv("gen_ai.operation.name", Value::StringValue("chat".into())),
                    kv("gen_ai.request.model", Value::StringValue(model.into())),
                    kv("gen_ai.provider.name", Value::StringValue("openai".into())),
                ],
                status: Some(Status {
                    code: if failed {
                        StatusCode::Error
                    } else {
                        StatusCode::Ok
                    } as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
