//! `flywheel up` (everything in one process on the embedded bus and store) and `flywheel demo`
//! (`up` plus the traffic simulator, [`crate::demo`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flywheel_config::Validate;
use flywheel_core::wire;
use flywheel_detector::oracle::{Recorded, Topic};
use flywheel_wal::Wal;
use tokio_util::sync::CancellationToken;

use crate::config::{BusKind, FlywheelConfig};

/// SLOs `up` starts with when none are configured.
const DEFAULT_SLOS: &str = include_str!("../deploy/up/slos.yaml");

/// Flags of `flywheel up` and `flywheel demo`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UpArgs {
    /// Data directory: the write-ahead log (`wal/`), the DuckDB file (`flywheel.duckdb`) and
    /// the SLO file. Default `./flywheel-data` (`demo`: a new directory under the system's
    /// temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use these Kafka brokers instead of the embedded write-ahead log.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Use this ClickHouse server (HTTP URL) instead of the embedded DuckDB file.
    #[arg(long, value_name = "URL")]
    pub clickhouse: Option<String>,
}

/// The configuration of `up`: the write-ahead log and DuckDB in the data directory unless a
/// flag names a server; the default SLO file when none is set.
pub fn embedded(mut config: FlywheelConfig, args: &UpArgs) -> anyhow::Result<FlywheelConfig> {
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./flywheel-data"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    match &args.kafka {
        Some(brokers) => {
            config.bus.kind = BusKind::Kafka;
            config.kafka.brokers = brokers.clone();
        }
        None => {
            config.bus.kind = BusKind::Wal;
            config.bus.wal.dir = dir.join("wal");
        }
    }
    match &args.clickhouse {
        Some(url) => {
            config.store.backend = flywheel_store::Backend::ClickHouse;
            config.clickhouse.url = url.clone();
        }
        None => {
            config.store.backend = flywheel_store::Backend::DuckDb;
            config.store.path = dir.join("flywheel.duckdb");
        }
    }
    if config.detector.slo_file.is_none() {
        let path = dir.join("slos.yaml");
        if !path.exists() {
            std::fs::write(&path, DEFAULT_SLOS)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        config.detector.slo_file = Some(path);
    }
    config.validate()?;
    Ok(config)
}

/// Told by the server once everything is up: its shutdown token and, on the embedded bus, the
/// write-ahead log.
pub struct Running {
    tx: tokio::sync::oneshot::Sender<(CancellationToken, Option<Arc<Wal>>)>,
}

impl Running {
    pub fn started(self, shutdown: CancellationToken, wal: Option<Arc<Wal>>) {
        let _ = self.tx.send((shutdown, wal));
    }
}

/// `0.0.0.0:p` as a connectable `127.0.0.1:p`.
fn local(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// `flywheel demo`.
pub async fn demo(config: FlywheelConfig, mut args: UpArgs) -> anyhow::Result<()> {
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "flywheel-demo-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        )),
    };
    args.data_dir = Some(dir.clone());
    let mut config = embedded(config, &args)?;
    let slos = dir.join("demo-slos.yaml");
    std::fs::write(&slos, crate::demo::SLOS).context("cannot write the demo SLO file")?;
    config.detector.slo_file = Some(slos);
    config.detector.evaluation_interval_ms = 250;
    // Cost policies judge closed intervals: with a call's end as its event time, a few seconds
    // of lateness is enough here, and the cost spike is judged within the demo.
    config.detector.lateness_ms = 5_000;
    config.detector.resend_interval_ms = 10_000;
    let target = crate::demo::Target {
        collector: format!("http://{}", local(config.collector.http_listen)),
        detector: format!("http://{}", local(config.detector.listen)),
    };
    let (api, admin) = (local(config.api.listen), local(config.admin.listen));
    let (kafka, collector) = (config.kafka.clone(), config.collector.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(crate::all(config, Some(Running { tx })));
    let Ok((shutdown, wal)) = rx.await else {
        return match server.await {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow::anyhow!("flywheel did not start")),
        };
    };
    wait_ready(admin).await?;
    println!(
        "flywheel is up (data in {}); status page: http://{api}/",
        dir.display()
    );
    let topics = [
        (collector.spans_topic.clone(), Topic::Spans),
        (collector.feedback_topic.clone(), Topic::Feedback),
        (collector.signals_topic.clone(), Topic::Signals),
    ];
    let recorded = move || match &wal {
        Some(wal) => read_wal(wal, &topics),
        None => read_kafka(&kafka, &topics),
    };
    let result = crate::demo::drive(&target, &dir, recorded, shutdown.clone()).await;
    shutdown.cancel();
    server.await.context("flywheel panicked")??;
    result
}

/// Waits for `/readyz` on the admin server (every service's dependencies up).
async fn wait_ready(admin: SocketAddr) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{admin}/readyz");
    for _ in 0..600 {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("flywheel was not ready within 60 s ({url})")
}

fn text(v: Option<&[u8]>) -> Option<&str> {
    v.and_then(|v| std::str::from_utf8(v).ok())
}

fn recorded(
    topic: Topic,
    project: Option<&[u8]>,
    received: Option<&[u8]>,
    payload: Vec<u8>,
) -> Option<Recorded> {
    Some(Recorded {
        topic,
        project: text(project)
            .filter(|p| !p.is_empty())
            .unwrap_or("default")
            .to_string(),
        received_ns: text(received)?.parse().ok()?,
        payload,
    })
}

/// Everything the write-ahead log holds on `topics`.
fn read_wal(wal: &Wal, topics: &[(String, Topic)]) -> anyhow::Result<Vec<Recorded>> {
    let mut out = Vec::new();
    for (name, partitions) in wal.topics() {
        let Some((_, topic)) = topics.iter().find(|(t, _)| *t == name) else {
            continue;
        };
        for p in 0..partitions {
            let (mut at, end) = wal.bounds(&name, p)?;
            while at < end {
                let batch = wal.read(&name, p, at, 1024)?;
                let Some(last) = batch.last() else { break };
                at = last.offset + 1;
                out.extend(batch.into_iter().filter_map(|m| {
                    recorded(
                        *topic,
                        m.header(wire::HEADER_PROJECT),
                        m.header(wire::HEADER_RECEIVED_AT_NS),
                        m.payload.clone(),
                    )
                }));
            }
        }
    }
    Ok(out)
}

/// Everything Kafka holds on `topics`.
fn read_kafka(
    kafka: &flywheel_bus::KafkaConfig,
    topics: &[(String, Topic)],
) -> anyhow::Result<Vec<Recorded>> {
    let mut out = Vec::new();
    for (name, topic) in topics {
        for m in flywheel_bus::inspect::read_all(kafka, name, Duration::from_secs(60))? {
            out.extend(recorded(
                *topic,
                m.header(wire::HEADER_PROJECT),
                m.header(wire::HEADER_RECEIVED_AT_NS),
                m.payload.clone(),
            ));
        }
    }
    Ok(out)
}
