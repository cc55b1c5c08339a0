//! `flywheel up`: every service in one process on the embedded write-ahead log and DuckDB, no
//! server at all. A `kill -9` under load loses nothing that was acknowledged (exact counts
//! after the client re-sends what was not), a corrupt tail of the write-ahead log is reported
//! and truncated on restart, and bad input still gets a precise 4xx. `--kafka` and
//! `--clickhouse` each switch one half to the real broker or ClickHouse engine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::ingest::{clickhouse_url, Pipeline};
use common::{free_port, kafka_brokers, numbered_request, wait_until};
use prost::Message;

const TIMEOUT: Duration = Duration::from_secs(120);
const REQUESTS: u32 = 400;

/// A running `flywheel up` on free ports; killed on drop.
struct Up {
    child: Child,
    admin: String,
    api: String,
    traces: String,
    log: PathBuf,
}

impl Up {
    fn start(dir: &Path, log_name: &str) -> Self {
        Self::start_with(dir, log_name, &[], &[])
    }

    /// [`Up::start`] with more environment (configuration overrides) and arguments.
    fn start_with(dir: &Path, log_name: &str, env: &[(&str, String)], args: &[&str]) -> Self {
        let port = |_: &str| format!("127.0.0.1:{}", free_port());
        let (http, grpc, api, detector, admin) = (
            port("http"),
            port("grpc"),
            port("api"),
            port("detector"),
            port("admin"),
        );
        let log = dir.join(log_name);
        let child = Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .arg("up")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(args)
            .env("FLYWHEEL_COLLECTOR__HTTP_LISTEN", &http)
            .env("FLYWHEEL_COLLECTOR__GRPC_LISTEN", &grpc)
            .env("FLYWHEEL_API__LISTEN", &api)
            .env("FLYWHEEL_DETECTOR__LISTEN", &detector)
            .env("FLYWHEEL_ADMIN__LISTEN", &admin)
            // Small batches: several group commits and batches are in flight at the kill.
            .env("FLYWHEEL_INGESTER__BATCH_MAX_ROWS", "20")
            .env("FLYWHEEL_INGESTER__BATCH_MAX_AGE_MS", "200")
            .env("RUST_LOG", "warn,flywheel=info,flywheel_wal=info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start flywheel up");
        let up = Self {
            child,
            admin: format!("http://{admin}"),
            api: format!("http://{api}"),
            traces: format!("http://{http}/v1/traces"),
            log,
        };
        wait_until(Duration::from_secs(60), "flywheel up ready", || {
            common::http_get_status(&format!("{}/readyz", up.admin)) == Some(200)
        });
        up
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        common::terminate(&mut self.child, "flywheel up", Duration::from_secs(60))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Request `n`: the chat fixture's two model calls with ids from `n`, ending now (so the status
/// page's time window holds them).
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

/// Model calls the status API counts over the last hour.
async fn calls_shown(client: &reqwest::Client, api: &str) -> u64 {
    let Ok(r) = client
        .get(format!("{api}/v1/status/models?minutes=60&limit=100"))
        .send()
        .await
    else {
        return 0;
    };
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    v["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["calls"].as_u64())
        .sum()
}

/// Posts request `n`: the same bytes every time (a client re-sends what it sent).
async fn post(client: &reqwest::Client, url: &str, n: u32) -> Option<u16> {
    static BODIES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    let bodies = BODIES.get_or_init(|| (0..REQUESTS).map(request).collect());
    client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(bodies[n as usize].clone())
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Model calls stored in the DuckDB file (opened read-only once `up` has stopped).
async fn stored_calls(dir: &Path) -> u64 {
    let config = flywheel_store::StoreConfig {
        backend: flywheel_store::Backend::DuckDb,
        path: dir.join("data/flywheel.duckdb"),
        ..Default::default()
    };
    let store = flywheel_store::open(
        &config,
        &Default::default(),
        flywheel_store::AccessMode::ReadOnly,
    )
    .unwrap();
    store
        .count_calls(&flywheel_store::CallFilter {
            project: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Appends garbage to the newest segment of a partition of the span topic: a torn write.
fn corrupt_a_tail(dir: &Path) -> PathBuf {
    let topic = dir.join("data/wal/topics/flywheel.spans.otlp");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&topic)
        .unwrap()
        .map(|p| p.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|p| std::fs::read_dir(p).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let seg = segments.pop().expect("a segment");
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0x2a, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .unwrap();
    seg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path(), "up-1.log");
    let client = reqwest::Client::new();
    // Send from 4 tasks while the process is killed: some requests are acknowledged, some
    // fail (connection refused or reset); the client re-sends the failed ones later.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::new();
    for k in 0..4u32 {
        let (client, url, tx) = (client.clone(), up.traces.clone(), tx.clone());
        senders.push(tokio::spawn(async move {
            for n in (k..REQUESTS).step_by(4) {
                let status = post(&client, &url, n).await;
                let _ = tx.send((n, status));
            }
        }));
    }
    drop(tx);
    // Kill once a quarter of the requests were acknowledged.
    let mut acked = std::collections::BTreeSet::new();
    let mut failed = std::collections::BTreeSet::new();
    let mut killed = false;
    let mut up = Some(up);
    while let Some((n, status)) = rx.recv().await {
        match status {
            Some(200) => {
                acked.insert(n);
            }
            Some(s) if s != 429 && s != 503 => panic!("request {n}: status {s}"),
            _ => {
                failed.insert(n);
            }
        }
        if !killed && acked.len() >= (REQUESTS / 4) as usize {
            up.take().unwrap().kill9();
            killed = true;
        }
    }
    for s in senders {
        s.await.unwrap();
    }
    assert!(killed && !failed.is_empty(), "the kill interrupted nothing");
    let acked_before_kill = acked.len();

    // A torn write at the tail of the log: reported and truncated, acknowledged data kept.
    let seg = corrupt_a_tail(dir.path());
    let up = Up::start(dir.path(), "up-2.log");
    wait_until(TIMEOUT, "the truncation reported", || {
        up.log().contains("corrupt tail was truncated")
    });
    assert!(
        up.log()
            .contains(&*seg.file_name().unwrap().to_string_lossy()),
        "the report names the segment: {}",
        up.log()
    );
    // The client re-sends what was not acknowledged.
    for n in failed.iter().copied() {
        let mut status = None;
        wait_until(Duration::from_secs(30), "re-send accepted", || {
            status = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(post(&client, &up.traces, n))
            });
            status == Some(200)
        });
        acked.insert(n);
    }
    assert_eq!(acked.len(), REQUESTS as usize);
    // Bad input: a precise 4xx, and the process keeps serving.
    let bad = client
        .post(&up.traces)
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    // Everything reaches the store, once: the status API (reading DuckDB) shows every call,
    // and still exactly as many a moment later (no late duplicate).
    let calls_per_request = 2;
    let want = u64::from(REQUESTS) * calls_per_request;
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let shown = calls_shown(&client, &up.api).await;
        if shown == want {
            break;
        }
        assert!(shown <= want, "{shown} calls shown, {want} sent");
        assert!(
            std::time::Instant::now() < deadline,
            "{shown} of {want} calls shown"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(calls_shown(&client, &up.api).await, want);
    assert_eq!(up.terminate().code(), Some(0));
    let stored = stored_calls(dir.path()).await;
    eprintln!(
        "{acked_before_kill} acknowledged before the kill, {} re-sent; {stored} calls stored",
        failed.len()
    );
    // Every call once (llm_calls keeps one row per span: a re-sent span folds), nothing lost.
    assert_eq!(stored, want);
    // And every span the write-ahead log holds is in `otel_traces` exactly once: that table
    // appends (no key folds a duplicate), so a batch replayed after the kill without its token
    // would show up here. (A request re-sent after a durable but unanswered POST is in the log
    // twice, and stored twice: the client sent it twice.)
    let per_request =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
            request(0).as_slice(),
        )
        .unwrap()
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum::<usize>();
    let (in_log, distinct) = spans_in_wal(&dir.path().join("data/wal"));
    assert_eq!(distinct, REQUESTS as usize * per_request);
    assert_eq!(otel_traces_rows(dir.path()), in_log as u64);
}

/// Spans in the write-ahead log's span topic after `up` stopped: (all, distinct ids).
fn spans_in_wal(dir: &Path) -> (usize, usize) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let wal = flywheel_wal::Wal::open(flywheel_wal::WalConfig::new(dir)).unwrap();
    let (mut all, mut ids) = (0, std::collections::HashSet::new());
    for (topic, partitions) in wal.topics() {
        if topic != flywheel_core::wire::TOPIC_SPANS {
            continue;
        }
        for partition in 0..partitions {
            let mut from = 0;
            loop {
                let batch = wal.read(&topic, partition, from, 1000).unwrap();
                let Some(last) = batch.last() else { break };
                from = last.offset + 1;
                for m in &batch {
                    let req = ExportTraceServiceRequest::decode(m.payload.as_slice()).unwrap();
                    for span in req
                        .resource_spans
                        .iter()
                        .flat_map(|rs| &rs.scope_spans)
                        .flat_map(|ss| &ss.spans)
                    {
                        all += 1;
                        ids.insert((span.trace_id.clone(), span.span_id.clone()));
                    }
                }
            }
        }
    }
    (all, ids.len())
}

/// Rows of `otel_traces` in the DuckDB file (`up` stopped).
fn otel_traces_rows(dir: &Path) -> u64 {
    let conn = duckdb::Connection::open(dir.join("data/flywheel.duckdb")).unwrap();
    conn.query_row("SELECT count(*) FROM otel_traces", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n as u64)
    .unwrap()
}

/// A disk with less free space than `bus.wal.min_free_bytes` (here: the bound set above any
/// disk): the collector answers 503 with Retry-After naming the cause, counts the refusal, and
/// keeps serving; nothing is acknowledged, nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with(
        dir.path(),
        "up-disk.log",
        &[(
            "FLYWHEEL_BUS__WAL__MIN_FREE_BYTES",
            "4611686018427387904".to_string(),
        )],
        &[],
    );
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let r = client
            .post(&up.traces)
            .header("content-type", "application/x-protobuf")
            .body(request(0))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 503);
        assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
        let body = r.text().await.unwrap();
        assert!(body.contains("min_free_bytes"), "{body}");
    }
    let metrics = common::http_get_body(&format!("{}/metrics", up.admin)).unwrap_or_default();
    let refused: u64 = metrics
        .lines()
        .find(|l| l.starts_with("flywheel_wal_disk_full_refusals_total "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    assert!(refused >= 2, "{metrics}");
    assert_eq!(calls_shown(&client, &up.api).await, 0);
    assert!(up.log().contains("wal appends refused"), "{}", up.log());
}

/// Each flag switches its half alone: `--clickhouse` keeps the write-ahead log and stores in
/// the ClickHouse engine; `--kafka` publishes to the broker and keeps DuckDB. The same calls
/// are stored either way, and the data directory holds only the embedded half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_and_clickhouse_flags_switch_one_half_each() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    let env = p.env();
    let client = reqwest::Client::new();

    // Write-ahead log + ClickHouse (`up` migrates the database).
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with(
        dir.path(),
        "up-ch.log",
        &env,
        &["--clickhouse", &clickhouse_url()],
    );
    assert_eq!(post(&client, &up.traces, 0).await, Some(200));
    p.wait_count("SELECT count() FROM llm_calls FINAL", 2, TIMEOUT)
        .await;
    assert_eq!(calls_shown(&client, &up.api).await, 2);
    let data = dir.path().join("data");
    assert!(data.join("wal").is_dir(), "no write-ahead log");
    assert!(
        !data.join("flywheel.duckdb").exists(),
        "DuckDB file created"
    );
    drop(up);

    // Kafka + DuckDB: the calls reach DuckDB through this test's topic on the broker.
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with(
        dir.path(),
        "up-kafka.log",
        &env,
        &["--kafka", &kafka_brokers()],
    );
    assert_eq!(post(&client, &up.traces, 1).await, Some(200));
    let deadline = std::time::Instant::now() + TIMEOUT;
    while calls_shown(&client, &up.api).await < 2 {
        assert!(std::time::Instant::now() < deadline, "calls not shown");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(up.terminate().success());
    assert!(
        !dir.path().join("data/wal").exists(),
        "write-ahead log created"
    );
    assert_eq!(stored_calls(dir.path()).await, 2);
    // ClickHouse saw the first run's calls only.
    assert_eq!(
        p.client()
            .query("SELECT count() FROM llm_calls FINAL")
            .fetch_one::<u64>()
            .await
            .unwrap(),
        2
    );
    p.drop_database().await;
}

/// `up`'s embedded halves are defaults only: a configuration file that chooses the ClickHouse
/// store is obeyed (no DuckDB file in the data directory, calls stored in ClickHouse, which
/// `up` migrates itself), while the bus keeps `up`'s write-ahead log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_clickhouse_store_beats_the_embedded_default() {
    let p = Pipeline::new(&kafka_brokers(), &clickhouse_url());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flywheel.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nbackend = \"clickhouse\"\n\n[clickhouse]\nurl = {:?}\ndatabase = {:?}\n",
            p.clickhouse, p.database
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let up = Up::start_with(dir.path(), "up-config.log", &[], &["--config", &config]);
    let data = dir.path().join("data");
    assert!(data.join("wal").is_dir(), "no write-ahead log");
    let client = reqwest::Client::new();
    assert_eq!(post(&client, &up.traces, 0).await, Some(200));
    p.wait_count("SELECT count() FROM llm_calls FINAL", 2, TIMEOUT)
        .await;
    assert!(up.terminate().success());
    assert!(
        !data.join("flywheel.duckdb").exists(),
        "DuckDB file created although the config chose ClickHouse"
    );
    p.drop_database().await;
}
