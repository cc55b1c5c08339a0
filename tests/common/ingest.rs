//! Harness for ingest tests: a private topic, consumer group and ClickHouse database per test,
//! `flywheel ingester` processes that can be killed, and ClickHouse queries.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, unique, wait_until};

/// The ClickHouse server started by `deploy/local/services.sh` (or a real one).
pub fn clickhouse_url() -> String {
    std::env::var("CLICKHOUSE_URL").expect(
        "CLICKHOUSE_URL is not set: run the tests through deploy/local/test.sh, which starts the services",
    )
}

/// Names shared by the collector and ingester of one test.
#[derive(Clone)]
pub struct Pipeline {
    pub brokers: String,
    pub clickhouse: String,
    pub topic: String,
    pub feedback_topic: String,
    pub signals_topic: String,
    pub group: String,
    pub dead_letters: String,
    pub database: String,
}

impl Pipeline {
    pub fn new(brokers: &str, clickhouse: &str) -> Self {
        let id = unique("t").replace(['-', '.'], "_");
        Self {
            brokers: brokers.to_string(),
            clickhouse: clickhouse.to_string(),
            topic: format!("test.spans.{id}"),
            feedback_topic: format!("test.feedback.{id}"),
            signals_topic: format!("test.signals.{id}"),
            group: format!("test-ingester-{id}"),
            dead_letters: format!("test.dlq.{id}"),
            database: format!("test_{id}"),
        }
    }

    /// Environment for any `flywheel` process of this pipeline.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FLYWHEEL_KAFKA__BROKERS", self.brokers.clone()),
            ("FLYWHEEL_KAFKA__HEALTH_INTERVAL_MS", "200".into()),
            ("FLYWHEEL_COLLECTOR__SPANS_TOPIC", self.topic.clone()),
            ("FLYWHEEL_INGESTER__SPANS_TOPIC", self.topic.clone()),
            (
                "FLYWHEEL_COLLECTOR__FEEDBACK_TOPIC",
                self.feedback_topic.clone(),
            ),
            (
                "FLYWHEEL_COLLECTOR__SIGNALS_TOPIC",
                self.signals_topic.clone(),
            ),
            (
                "FLYWHEEL_INGESTER__FEEDBACK_TOPIC",
                self.feedback_topic.clone(),
            ),
            (
                "FLYWHEEL_INGESTER__SIGNALS_TOPIC",
                self.signals_topic.clone(),
            ),
            ("FLYWHEEL_INGESTER__GROUP_ID", self.group.clone()),
            (
                "FLYWHEEL_INGESTER__DEAD_LETTER_TOPIC",
                self.dead_letters.clone(),
            ),
            ("FLYWHEEL_CLICKHOUSE__URL", self.clickhouse.clone()),
            ("FLYWHEEL_CLICKHOUSE__DATABASE", self.database.clone()),
            // A killed ingester's partitions move on after 6 s instead of 30 s.
            ("FLYWHEEL_INGESTER__SESSION_TIMEOUT_MS", "6000".into()),
        ]
    }

    /// The same as `&str` pairs, plus `extra`.
    pub fn env_with<'a>(
        &'a self,
        owned: &'a [(&'static str, String)],
        extra: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        owned
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(extra.iter().copied())
            .collect()
    }

    /// Runs `flywheel migrate` for this pipeline's database.
    pub fn migrate(&self) {
        self.run_cli(&["migrate"]);
    }

    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.clickhouse)
            .with_database(&self.database)
    }

    /// Rows of `sql` (e.g. `SELECT ?fields FROM feedback FINAL`) from this pipeline's database.
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.client()
            .query(sql)
            .fetch_all()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `SELECT <expr>` from this pipeline's database, as one u64.
    pub async fn count(&self, sql: &str) -> u64 {
        self.client()
            .query(sql)
            .fetch_one::<u64>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Waits until `sql` returns at least `n`.
    pub async fn wait_count(&self, sql: &str, n: u64, timeout: Duration) -> u64 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.count(sql).await;
            if got >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out: {sql} = {got}, want {n}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A producer that creates this pipeline's topics, ready to publish.
    pub fn producer(&self) -> flywheel_bus::KafkaPublisher {
        use flywheel_bus::Publisher as _;
        let kafka = flywheel_bus::KafkaConfig {
            brokers: self.brokers.clone(),
            ..flywheel_bus::KafkaConfig::default()
        };
        let topics = vec![
            self.topic.clone(),
            self.feedback_topic.clone(),
            self.signals_topic.clone(),
        ];
        let publisher = flywheel_bus::KafkaPublisher::start(
            &kafka,
            topics,
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
        wait_until(Duration::from_secs(30), "producer ready", || {
            publisher.is_ready()
        });
        publisher
    }

    /// Publishes one message to `topic` with the collector's headers (project and receive
    /// time).
    pub async fn produce(
        &self,
        publisher: &flywheel_bus::KafkaPublisher,
        topic: &str,
        project: &str,
        received_at_ns: i64,
        key: &[u8],
        payload: Vec<u8>,
    ) {
        use flywheel_bus::Publisher as _;
        let headers: &flywheel_bus::Headers = &[
            ("flywheel.project", project.as_bytes().to_vec()),
            (
                "flywheel.received_at_ns",
                received_at_ns.to_string().into_bytes(),
            ),
        ];
        let record = flywheel_bus::Record {
            key: key.to_vec(),
            payload,
        };
        publisher
            .publish(topic, headers, vec![record])
            .await
            .unwrap();
    }

    /// Runs `flywheel <args>` with this pipeline's environment; returns stdout, panics on
    /// failure.
    pub fn run_cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .args(args)
            .envs(self.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "flywheel {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub async fn drop_database(&self) {
        let _ = clickhouse::Client::default()
            .with_url(&self.clickhouse)
            .query(&format!("DROP DATABASE IF EXISTS {}", self.database))
            .execute()
            .await;
    }
}

/// A `flywheel ingester` process; killed on drop.
pub struct Ingester {
    child: Child,
    pub admin: String,
}

impl Ingester {
    pub fn start(pipeline: &Pipeline, extra: &[(&str, &str)]) -> Self {
        let admin = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .arg("ingester")
            .envs(pipeline.env())
            .envs(extra.iter().copied())
            .env("FLYWHEEL_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
            .env(
                "RUST_LOG",
                std::env::var("INGESTER_LOG").unwrap_or_else(|_| "warn,flywheel=info".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start flywheel ingester");
        let me = Self {
            child,
            admin: format!("http://127.0.0.1:{admin}"),
        };
        wait_until(Duration::from_secs(30), "ingester admin up", || {
            super::http_get_status(&format!("{}/healthz", me.admin)) == Some(200)
        });
        me
    }

    /// SIGKILL, no chance to flush or commit.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn metrics(&self) -> String {
        super::http_get_body(&format!("{}/metrics", self.admin)).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        super::terminate(&mut self.child, "ingester", Duration::from_secs(60))
    }
}

impl Drop for Ingester {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private ClickHouse HTTP adapter (chdb) on its own port and data directory, for tests that
/// stop ClickHouse.
pub struct PrivateClickHouse {
    child: Option<Child>,
    pub url: String,
    dir: std::path::PathBuf,
    port: u16,
}

impl PrivateClickHouse {
    pub fn start(dir: &std::path::Path) -> Self {
        let mut me = Self {
            child: None,
            url: String::new(),
            dir: dir.to_path_buf(),
            port: free_port(),
        };
        me.url = format!("http://127.0.0.1:{}", me.port);
        me.restart();
        me
    }

    pub fn restart(&mut self) {
        let venv = std::env::var("FLYWHEEL_VENV")
            .expect("FLYWHEEL_VENV is not set: run deploy/local/test.sh");
        let child = Command::new(format!("{venv}/bin/python"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/local/clickhouse_adapter.py"
            ))
            .args(["--listen", &format!("127.0.0.1:{}", self.port), "--data"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the clickhouse adapter");
        self.child = Some(child);
        let url = format!("{}/ping", self.url);
        wait_until(Duration::from_secs(60), "clickhouse adapter up", || {
            super::http_get_status(&url) == Some(200)
        });
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.kill();
    }
}
