//! Shared harness for integration tests: starts the real `flywheel` binary (and, where a test
//! needs to kill it, its own `tansu` broker) against the services started by
//! `deploy/local/services.sh`, whose addresses come from the environment.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flywheel_bus::inspect::{read_all, TopicMessage};
use flywheel_bus::KafkaConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// The broker started by `deploy/local/services.sh` (or a real one).
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests through deploy/local/test.sh, which starts the services",
    )
}

pub mod detector;
pub mod feedback;
pub mod ingest;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OTLP attribute.
pub fn kv(
    key: &str,
    value: opentelemetry_proto::tonic::common::v1::any_value::Value,
) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    opentelemetry_proto::tonic::common::v1::KeyValue {
        key: key.into(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The wall clock in Unix nanoseconds (for headers and crafted span times, never asserted on).
pub fn now_ns() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/otlp")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The chat fixture (two spans) with every span's trace and span id derived from `n`, so each
/// request carries distinct spans.
pub fn numbered_request(n: u32) -> ExportTraceServiceRequest {
    let mut req = ExportTraceServiceRequest::decode(
        fixture("openllmetry-openai-0.62.4-chat-and-stream.pb").as_slice(),
    )
    .unwrap();
    for (i, span) in req
        .resource_spans
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans)
        .enumerate()
    {
        span.trace_id[..4].copy_from_slice(&n.to_be_bytes());
        span.span_id[..4].copy_from_slice(&n.to_be_bytes());
        span.span_id[4] = u8::try_from(i).unwrap();
    }
    req
}

/// A running `flywheel collector` process; killed on drop.
pub struct Collector {
    child: Child,
    pub http: String,
    pub grpc: String,
    pub admin: String,
    pub topic: String,
    /// The feedback and signals topics (fresh per collector unless `env` names them).
    pub feedback_topic: String,
    pub signals_topic: String,
    pub brokers: String,
}

impl Collector {
    /// Starts a collector on free ports with a fresh topic, plus `env` overrides, and waits until
    /// `/readyz` says ready.
    pub fn start(brokers: &str, env: &[(&str, &str)]) -> Self {
        let c = Self::spawn(brokers, env);
        c.wait_ready(Duration::from_secs(30));
        c
    }

    /// Starts without waiting for readiness.
    pub fn spawn(brokers: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_command("collector", brokers, env)
    }

    /// Starts `flywheel <command>` (e.g. `all`) with the collector's ports and a fresh topic
    /// (unless `env` sets `FLYWHEEL_COLLECTOR__SPANS_TOPIC`).
    pub fn spawn_command(command: &str, brokers: &str, env: &[(&str, &str)]) -> Self {
        let (http, grpc, admin) = (free_port(), free_port(), free_port());
        let topic = env
            .iter()
            .find(|(k, _)| *k == "FLYWHEEL_COLLECTOR__SPANS_TOPIC")
            .map_or_else(|| unique("test.spans"), |(_, v)| v.to_string());
        let topic_of = |var: &str, prefix: &str| {
            env.iter()
                .find(|(k, _)| *k == var)
                .map_or_else(|| unique(prefix), |(_, v)| v.to_string())
        };
        let feedback_topic = topic_of("FLYWHEEL_COLLECTOR__FEEDBACK_TOPIC", "test.feedback");
        let signals_topic = topic_of("FLYWHEEL_COLLECTOR__SIGNALS_TOPIC", "test.signals");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flywheel"));
        cmd.arg(command)
            .env("FLYWHEEL_KAFKA__BROKERS", brokers)
            .env("FLYWHEEL_KAFKA__HEALTH_INTERVAL_MS", "200")
            .env("FLYWHEEL_COLLECTOR__SPANS_TOPIC", &topic)
            .env("FLYWHEEL_COLLECTOR__FEEDBACK_TOPIC", &feedback_topic)
            .env("FLYWHEEL_COLLECTOR__SIGNALS_TOPIC", &signals_topic)
            .env(
                "FLYWHEEL_COLLECTOR__HTTP_LISTEN",
                format!("127.0.0.1:{http}"),
            )
            .env(
                "FLYWHEEL_COLLECTOR__GRPC_LISTEN",
                format!("127.0.0.1:{grpc}"),
            )
            .env("FLYWHEEL_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
            // `all` runs the api too: never the fixed default port.
            .env("FLYWHEEL_API__LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("RUST_LOG", "warn,flywheel=info")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("cannot start the flywheel binary");
        Self {
            child,
            http: format!("http://127.0.0.1:{http}"),
            grpc: format!("http://127.0.0.1:{grpc}"),
            admin: format!("http://127.0.0.1:{admin}"),
            topic,
            feedback_topic,
            signals_topic,
            brokers: brokers.to_string(),
        }
    }

    pub fn readyz(&self) -> Option<u16> {
        http_get_status(&format!("{}/readyz", self.admin))
    }

    pub fn wait_ready(&self, timeout: Duration) {
        wait_until(timeout, "collector ready", || self.readyz() == Some(200));
    }

    pub fn wait_not_ready(&self, timeout: Duration) {
        wait_until(timeout, "collector not ready", || {
            self.readyz() == Some(503)
        });
    }

    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.http)
    }

    /// Every message on this collector's span topic.
    pub fn messages(&self) -> Vec<TopicMessage> {
        self.messages_of(&self.topic)
    }

    /// Every message on `topic` of this collector's broker.
    pub fn messages_of(&self, topic: &str) -> Vec<TopicMessage> {
        let config = KafkaConfig {
            brokers: self.brokers.clone(),
            ..KafkaConfig::default()
        };
        read_all(&config, topic, Duration::from_secs(10)).expect("cannot read the topic")
    }

    /// Every span on this collector's topic, by span id (hex), checking message invariants.
    pub fn spans(&self) -> HashMap<String, Span> {
        spans_of(&self.messages())
    }

    /// Prometheus text from `/metrics`.
    pub fn metrics(&self) -> String {
        http_get_body(&format!("{}/metrics", self.admin)).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child, "collector", Duration::from_secs(30))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes span messages, checking that each is keyed by the hex trace id of all its spans.
pub fn spans_of(messages: &[TopicMessage]) -> HashMap<String, Span> {
    let mut out = HashMap::new();
    for m in messages {
        let req = ExportTraceServiceRequest::decode(m.payload.as_slice())
            .expect("topic message is not an ExportTraceServiceRequest");
        for span in req
            .resource_spans
            .into_iter()
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
        {
            assert_eq!(
                hex::encode(&span.trace_id).as_bytes(),
                m.key.as_slice(),
                "message key"
            );
            let id = hex::encode(&span.span_id);
            assert!(
                out.insert(id.clone(), span).is_none(),
                "span {id} stored twice"
            );
        }
    }
    out
}

pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Minimal blocking HTTP GET over std (no client dependency in sync helpers).
fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

pub fn http_get_status(url: &str) -> Option<u16> {
    http_get(url).map(|(s, _)| s)
}

pub fn http_get_body(url: &str) -> Option<String> {
    http_get(url).map(|(_, b)| b)
}

/// A private tansu broker on its own port and data directory, for tests that stop the broker.
pub struct Broker {
    child: Option<Child>,
    pub addr: String,
    dir: PathBuf,
}

impl Broker {
    pub fn start(dir: &Path) -> Self {
        let mut b = Self {
            child: None,
            addr: format!("127.0.0.1:{}", free_port()),
            dir: dir.to_path_buf(),
        };
        b.restart();
        b
    }

    /// (Re)starts tansu on the same port with the same durable storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://{}", self.addr);
        let child = Command::new(std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".into()))
            .current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start tansu (installed by deploy/local/services.sh)");
        self.child = Some(child);
        wait_until(Duration::from_secs(20), "tansu listening", || {
            std::net::TcpStream::connect(&self.addr).is_ok()
        });
    }

    /// Kills the broker abruptly (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGTERM to `child` (a `flywheel` process named `what`), then waits up to `timeout` for its
/// exit.
pub fn terminate(child: &mut Child, what: &str, timeout: Duration) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
