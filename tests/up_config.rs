//! `flywheel up` takes its embedded write-ahead log and DuckDB as defaults only: a config file
//! that chooses ClickHouse is obeyed (no DuckDB file in the data directory, calls stored in
//! ClickHouse, which `up` migrates itself) while the bus keeps `up`'s default.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::ingest::clickhouse_url;
use common::{free_port, numbered_request, wait_until};
use prost::Message;

const TIMEOUT: Duration = Duration::from_secs(120);

/// A scratch ClickHouse database, dropped on drop.
struct ScratchDatabase {
    url: String,
    name: String,
}

impl ScratchDatabase {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self {
            url: clickhouse_url(),
            name: format!("test_upcfg_{}_{nanos}", std::process::id()),
        }
    }

    fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.url)
            .with_database(&self.name)
    }

    async fn count(&self, sql: &str) -> u64 {
        self.client()
            .query(sql)
            .fetch_one::<u64>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for ScratchDatabase {
    /// `DROP DATABASE` over plain HTTP, so that a failed test cleans up too.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
        let host = self.url.trim_start_matches("http://").trim_end_matches('/');
        let Ok(mut stream) = std::net::TcpStream::connect(host) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = write!(
            stream,
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
            sql.len()
        );
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

/// A running `flywheel up --data-dir <dir>/data --config <config>` on free ports; killed on
/// drop.
struct Up {
    child: Child,
    traces: String,
}

impl Up {
    fn start(dir: &Path, config: &Path) -> Self {
        let port = || format!("127.0.0.1:{}", free_port());
        let (http, grpc, api, detector, admin) = (port(), port(), port(), port(), port());
        let child = Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .arg("up")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(config)
            .env("FLYWHEEL_COLLECTOR__HTTP_LISTEN", &http)
            .env("FLYWHEEL_COLLECTOR__GRPC_LISTEN", &grpc)
            .env("FLYWHEEL_API__LISTEN", &api)
            .env("FLYWHEEL_DETECTOR__LISTEN", &detector)
            .env("FLYWHEEL_ADMIN__LISTEN", &admin)
            .env("FLYWHEEL_INGESTER__BATCH_MAX_AGE_MS", "200")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("up.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start flywheel up");
        let mut up = Self {
            child,
            traces: format!("http://{http}/v1/traces"),
        };
        wait_until(Duration::from_secs(60), "flywheel up ready", || {
            assert!(
                up.child.try_wait().unwrap().is_none(),
                "flywheel up exited: {}",
                std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
            );
            common::http_get_status(&format!("http://{admin}/readyz")) == Some(200)
        });
        up
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chat fixture's two model calls with ids from `n`, ending now.
fn request(n: u32) -> Vec<u8> {
    let mut req = numbered_request(n);
    let now = u64::try_from(common::now_ns()).unwrap();
    for span in req
        .resource_spans
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans)
    {
        let duration = span.end_time_unix_nano - span.start_time_unix_nano;
        let shift = now - span.end_time_unix_nano;
        span.end_time_unix_nano = now;
        span.start_time_unix_nano = now - duration;
        for e in &mut span.events {
            e.time_unix_nano += shift;
        }
    }
    req.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_clickhouse_store_beats_the_embedded_default() {
    let db = ScratchDatabase::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flywheel.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nbackend = \"clickhouse\"\n\n[clickhouse]\nurl = {:?}\ndatabase = {:?}\n",
            db.url, db.name
        ),
    )
    .unwrap();

    let up = Up::start(dir.path(), &config);
    let data = dir.path().join("data");
    assert!(data.join("wal").is_dir(), "no write-ahead log");
    assert!(
        !data.join("flywheel.duckdb").exists(),
        "DuckDB file created although the config chose ClickHouse"
    );

    let status = reqwest::Client::new()
        .post(&up.traces)
        .header("content-type", "application/x-protobuf")
        .body(request(0))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let sql = "SELECT count() FROM llm_calls FINAL";
    while db.count(sql).await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "calls not stored in ClickHouse"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(db.count(sql).await, 2);
    drop(up);
    assert!(
        !data.join("flywheel.duckdb").exists(),
        "DuckDB file created"
    );
}
