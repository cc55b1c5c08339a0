//! `flywheel up` (everything in one process on the embedded bus and store) and `flywheel demo`
//! (`up` plus the traffic simulator, [`crate::demo`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flywheel_config::{Layers, Validate};
use flywheel_core::wire;
use flywheel_detector::oracle::{Recorded, Topic};
use flywheel_wal::Wal;
use tokio_util::sync::CancellationToken;

use crate::config::FlywheelConfig;

/// SLOs `up` starts with when none are configured.
const DEFAULT_SLOS: &str = include_str!("../deploy/up/slos.yaml");

/// Flags of `flywheel up` and `flywheel demo`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UpArgs {
    /// Data directory: the write-ahead log (`wal/`), the DuckDB file (`flywheel.duckdb`) and
    /// the SLO file, unless `bus.wal.dir`, `store.path` or `detector.slo_file` are configured.
    /// Default `./flywheel-data` (`demo`: a new directory under the system's temporary
    /// directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use these Kafka brokers instead of the embedded write-ahead log.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Use this ClickHouse server (HTTP URL) instead of the embedded DuckDB file.
    #[arg(long, value_name = "URL")]
    pub clickhouse: Option<String>,
}

/// The data directory when `--data-dir` is not given.
const DEFAULT_DATA_DIR: &str = "./flywheel-data";

/// The configuration of `up` from `file` and `env`, which override `up`'s defaults (the
/// write-ahead log and DuckDB in the data directory, where `flywheel all` defaults to Kafka and
/// ClickHouse) and are overridden by the flags; the default SLO file when none is set.
pub fn embedded<I>(file: Option<&Path>, env: I, args: &UpArgs) -> anyhow::Result<FlywheelConfig>
where
    I: IntoIterator<Item = (String, String)>,
{
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let mut layers = Layers::new()
        .with_default("bus.kind", "wal")
        .with_default("bus.wal.dir", dir.join("wal"))
        .with_default("store.backend", "duckdb")
        .with_default("store.path", dir.join("flywheel.duckdb"));
    if let Some(brokers) = &args.kafka {
        layers = layers
            .with_override("bus.kind", "kafka")
            .with_override("kafka.brokers", brokers);
    }
    if let Some(url) = &args.clickhouse {
        layers = layers
            .with_override("store.backend", "clickhouse")
            .with_override("clickhouse.url", url);
    }
    let mut config: FlywheelConfig = flywheel_config::load_layered(file, env, layers)?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
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

/// `demo`'s data directory when `--data-dir` is not given: a new one under the system's
/// temporary directory.
pub fn demo_data_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "flywheel-demo-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ))
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

/// `flywheel demo` with `up`'s configuration ([`embedded`]) in `dir`.
pub async fn demo(mut config: FlywheelConfig, dir: &Path) -> anyhow::Result<()> {
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
    let result = crate::demo::drive(&target, dir, recorded, shutdown.clone()).await;
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flywheel_store::Backend;

    use super::*;
    use crate::config::BusKind;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn args(dir: &Path) -> UpArgs {
        UpArgs {
            data_dir: Some(dir.to_path_buf()),
            ..Default::default()
        }
    }

    #[test]
    fn nothing_set_is_the_wal_and_duckdb_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = embedded(None, env(&[]), &args(&data)).unwrap();
        assert_eq!(config.bus.kind, BusKind::Wal);
        assert_eq!(config.bus.wal.dir, data.join("wal"));
        assert_eq!(config.store.backend, Backend::DuckDb);
        assert_eq!(config.store.path, data.join("flywheel.duckdb"));
        assert_eq!(config.detector.slo_file, Some(data.join("slos.yaml")));
        assert!(data.join("slos.yaml").is_file());
    }

    #[test]
    fn the_config_file_beats_the_embedded_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            "[bus]\nkind = \"kafka\"\n[kafka]\nbrokers = \"k:9092\"\n\
             [store]\nbackend = \"clickhouse\"\n[clickhouse]\nurl = \"http://ch:8123\"\n",
        );
        let config = embedded(Some(f.path()), env(&[]), &args(dir.path())).unwrap();
        assert_eq!(config.bus.kind, BusKind::Kafka);
        assert_eq!(config.kafka.brokers, "k:9092");
        assert_eq!(config.store.backend, Backend::ClickHouse);
        assert_eq!(config.clickhouse.url, "http://ch:8123");
    }

    #[test]
    fn the_environment_beats_the_embedded_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = embedded(
            None,
            env(&[
                ("FLYWHEEL_BUS__KIND", "kafka"),
                ("FLYWHEEL_STORE__BACKEND", "clickhouse"),
            ]),
            &args(dir.path()),
        )
        .unwrap();
        assert_eq!(config.bus.kind, BusKind::Kafka);
        assert_eq!(config.store.backend, Backend::ClickHouse);

        // Each half alone: the other keeps up's default.
        let config = embedded(
            None,
            env(&[("FLYWHEEL_STORE__BACKEND", "clickhouse")]),
            &args(dir.path()),
        )
        .unwrap();
        assert_eq!(config.bus.kind, BusKind::Wal);
        assert_eq!(config.store.backend, Backend::ClickHouse);
    }

    #[test]
    fn flags_beat_the_config_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            "[bus]\nkind = \"wal\"\n[kafka]\nbrokers = \"file:9092\"\n\
             [store]\nbackend = \"duckdb\"\n[clickhouse]\nurl = \"http://file:8123\"\n",
        );
        let config = embedded(
            Some(f.path()),
            env(&[
                ("FLYWHEEL_BUS__KIND", "wal"),
                ("FLYWHEEL_CLICKHOUSE__URL", "http://env:8123"),
            ]),
            &UpArgs {
                kafka: Some("flag:9092".into()),
                clickhouse: Some("http://flag:8123".into()),
                ..args(dir.path())
            },
        )
        .unwrap();
        assert_eq!(config.bus.kind, BusKind::Kafka);
        assert_eq!(config.kafka.brokers, "flag:9092");
        assert_eq!(config.store.backend, Backend::ClickHouse);
        assert_eq!(config.clickhouse.url, "http://flag:8123");
    }

    #[test]
    fn configured_paths_beat_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, db, slos) = (
            dir.path().join("elsewhere/wal"),
            dir.path().join("elsewhere/calls.duckdb"),
            dir.path().join("my-slos.yaml"),
        );
        std::fs::write(&slos, DEFAULT_SLOS).unwrap();
        let f = file(&format!(
            "[bus.wal]\ndir = {:?}\n[store]\npath = {:?}\n",
            wal.display().to_string(),
            db.display().to_string()
        ));
        let data = dir.path().join("data");
        let config = embedded(
            Some(f.path()),
            env(&[("FLYWHEEL_DETECTOR__SLO_FILE", slos.to_str().unwrap())]),
            &args(&data),
        )
        .unwrap();
        assert_eq!(config.bus.kind, BusKind::Wal);
        assert_eq!(config.bus.wal.dir, wal);
        assert_eq!(config.store.backend, Backend::DuckDb);
        assert_eq!(config.store.path, db);
        assert_eq!(config.detector.slo_file, Some(slos));
        assert!(!data.join("slos.yaml").exists());
    }

    #[test]
    fn an_invalid_configured_value_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = embedded(
            None,
            env(&[("FLYWHEEL_STORE__BACKEND", "postgres")]),
            &args(dir.path()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("store.backend"), "{err:#}");
    }
}
