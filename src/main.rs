//! `flywheel`: the one binary. `flywheel <service>` runs one service, `flywheel all` runs every
//! service in one process with the same code. See ARCHITECTURE.md.

mod config;
mod demo;
mod export;
mod tools;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flywheel_bus::KafkaPublisher;
use flywheel_telemetry::Readiness;

/// mimalloc: allocation is a third of the collector's CPU profile with the system allocator
/// (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flywheel",
    version,
    about = "Observability and feedback backend for LLM applications"
)]
struct Cli {
    /// Configuration file (TOML). Environment variables FLYWHEEL_<SECTION>__<FIELD> override it.
    #[arg(long, short, global = true, env = "FLYWHEEL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector: OTLP/HTTP and OTLP/gRPC receivers publishing to Kafka.
    Collector,
    /// Run the ingester: spans, feedback and signals from Kafka into ClickHouse.
    Ingester,
    /// Run the read API (`GET /v1/datasets/export`).
    Api,
    /// Run the detector: streaming SLOs and burn-rate alerts (needs `detector.slo_file`).
    Detector,
    /// Run every service in one process (applies pending migrations first); the detector runs
    /// when `detector.slo_file` is set.
    All,
    /// Run every service in one process with nothing external: the embedded write-ahead log in
    /// place of Kafka and DuckDB in place of ClickHouse, in `./flywheel-data` (flags or
    /// configuration switch either half to a server). The status page is on the api (http://127.0.0.1:8080/).
    Up(up::UpArgs),
    /// `flywheel up` on a fresh data directory plus the traffic simulator with four scheduled
    /// incidents: alerts as they fire and resolve, then detection times beside their minimum.
    Demo(up::UpArgs),
    /// Create or upgrade the schema of the configured store (idempotent).
    Migrate,
    /// Recompute llm_calls.cost_usd from the current price table (built-in plus
    /// ingester.prices_file) for calls since a time.
    Reprice {
        /// RFC 3339 time or date (`2026-11-01`, `2026-11-01T00:00:00Z`).
        #[arg(long)]
        since: String,
    },
    /// Derive implicit signals (regenerate, stop, conversation_end) from llm_calls since a
    /// time, as the ingester does periodically (docs/SIGNALS.md); inserts only new ones.
    DeriveSignals {
        /// RFC 3339 time or date, or a duration back from now (`2h`, `7d`, `90m`).
        #[arg(long)]
        since: String,
    },
    /// Export a project's calls as a dataset (sft, preference or eval; JSONL or Parquet),
    /// reading ClickHouse directly. PII is redacted and exact duplicates dropped by default.
    Export(Box<export::ExportArgs>),
    /// Print the effective configuration check result and exit (fails on an invalid config).
    CheckConfig,
    /// Send realistic LLM traffic (spans, feedback, signals) with scheduled incidents to the
    /// collector, in real time or on a simulated clock (tools/loadgen).
    Loadgen(Box<flywheel_loadgen::LoadgenArgs>),
    /// Count the messages (and with --decode the spans) on a span topic.
    TopicStats {
        /// Topic to read; defaults to the collector's spans topic.
        #[arg(long)]
        topic: Option<String>,
        /// Also read and decode every message to count spans.
        #[arg(long)]
        decode: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Demo(_)) && std::env::var_os("RUST_LOG").is_none() {
        // The demo's terminal shows alerts and the summary, not the services' logs.
        std::env::set_var("RUST_LOG", "warn");
    }
    flywheel_telemetry::init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flywheel: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut command = cli.command;
    if let Command::Demo(args) = &mut command {
        args.data_dir.get_or_insert_with(up::demo_data_dir);
    }
    let file = cli.config.as_deref();
    let config = match &command {
        // Over `up`'s own defaults: the embedded bus and store.
        Command::Up(args) | Command::Demo(args) => up::embedded(file, std::env::vars(), args)?,
        _ => config::load(file)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        Command::Collector => runtime.block_on(start(config, &[Service::Collector], None)),
        Command::Ingester => runtime.block_on(start(config, &[Service::Ingester], None)),
        Command::Api => runtime.block_on(start(config, &[Service::Api], None)),
        Command::Detector => runtime.block_on(start(config, &[Service::Detector], None)),
        Command::All => runtime.block_on(all(config, None)),
        Command::Up(_) => runtime.block_on(all(config, None)),
        Command::Demo(args) => {
            let dir = args.data_dir.context("demo has a data directory")?;
            runtime.block_on(up::demo(config, &dir))
        }
        Command::Export(args) => runtime.block_on(export::run(&config, *args)),
        Command::Migrate => runtime.block_on(migrate(&config)),
        Command::Reprice { since } => {
            let since_ns = parse_since(&since)?;
            runtime
                .block_on(async {
                    let store =
                        flywheel_ingester::open_store(&config.store, &config.clickhouse).await?;
                    flywheel_ingester::reprice(&config.ingester, store.as_ref(), since_ns).await
                })
                .context("reprice failed")?;
            println!("repriced llm_calls since {since}");
            Ok(())
        }
        Command::DeriveSignals { since } => {
            let since_ns = parse_since_or_ago(&since)?;
            let counts = runtime.block_on(async {
                let store =
                    flywheel_ingester::open_store(&config.store, &config.clickhouse).await?;
                flywheel_ingester::derive_signals(&config.ingester, store, since_ns).await
            })?;
            for (kind, n) in counts {
                println!("{kind}: {n} new");
            }
            Ok(())
        }
        Command::CheckConfig => {
            println!("configuration ok");
            Ok(())
        }
        Command::Loadgen(args) => runtime.block_on(async {
            let summary =
                flywheel_loadgen::cli::main(*args, flywheel_telemetry::shutdown_signal()).await?;
            match summary.refused() {
                0 => Ok(()),
                n => anyhow::bail!("{n} items were refused by the collector (see above)"),
            }
        }),
        Command::TopicStats { topic, decode } => {
            let topic = topic.unwrap_or_else(|| config.collector.spans_topic.clone());
            tools::topic_stats(&config.kafka, &topic, decode)
        }
    }
}

/// Parses `2026-11-01` or an RFC 3339 time into Unix nanoseconds.
fn parse_since(s: &str) -> anyhow::Result<i64> {
    let t = if s.len() == 10 {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .with_context(|| format!("--since {s:?}: expected YYYY-MM-DD or RFC 3339"))?
            .and_hms_opt(0, 0, 0)
            .context("invalid date")?
            .and_utc()
    } else {
        chrono::DateTime::parse_from_rfc3339(s)
            .with_context(|| format!("--since {s:?}: expected YYYY-MM-DD or RFC 3339"))?
            .to_utc()
    };
    t.timestamp_nanos_opt().context("--since is out of range")
}

/// Like [`parse_since`], or a duration back from now: a number and `s`, `m`, `h` or `d`.
fn parse_since_or_ago(s: &str) -> anyhow::Result<i64> {
    let unit = match s.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3_600,
        Some('d') => 86_400,
        _ => return parse_since(s),
    };
    let Ok(n) = s[..s.len() - 1].parse::<i64>() else {
        return parse_since(s);
    };
    let now = chrono::Utc::now()
        .timestamp_nanos_opt()
        .context("the clock is out of range")?;
    Ok(now - n.saturating_mul(unit).saturating_mul(1_000_000_000))
}

/// The services `flywheel` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Collector,
    Ingester,
    Api,
    Detector,
}

async fn migrate(config: &config::FlywheelConfig) -> anyhow::Result<()> {
    if config.store.backend == flywheel_store::Backend::DuckDb {
        // Opening for writing creates or migrates the file.
        let path = config.store.path.clone();
        tokio::task::spawn_blocking(move || {
            flywheel_store::DuckDbStore::open(&path, flywheel_store::AccessMode::ReadWrite)
        })
        .await?
        .context("cannot open the DuckDB store")?;
        tracing::info!(
            version = flywheel_store::duckdb_required_version(),
            path = %config.store.path.display(),
            "duckdb schema up to date"
        );
        return Ok(());
    }
    let applied = flywheel_schema::migrate::migrate(&config.clickhouse)
        .await
        .context("migration failed")?;
    let version = flywheel_schema::migrate::required_version();
    if applied.is_empty() {
        tracing::info!(version, database = %config.clickhouse.database, "schema up to date");
    } else {
        tracing::info!(?applied, version, database = %config.clickhouse.database, "schema migrated");
    }
    Ok(())
}

/// `flywheel all` (and `up`): migrations when the store is ClickHouse, then every service; the
/// detector when `detector.slo_file` is set.
async fn all(config: config::FlywheelConfig, running: Option<up::Running>) -> anyhow::Result<()> {
    if config.store.backend == flywheel_store::Backend::ClickHouse {
        migrate(&config).await?;
    }
    let mut services = vec![Service::Collector, Service::Ingester, Service::Api];
    if config.detector.slo_file.is_some() {
        services.push(Service::Detector);
    } else {
        tracing::info!("detector.slo_file is not set: the detector does not run");
    }
    start(config, &services, running).await
}

/// Opens the configured bus (`[bus]`) and serves `services` on it. `running` (the demo)
/// receives the shutdown token and the WAL once everything is up.
async fn start(
    config: config::FlywheelConfig,
    services: &[Service],
    running: Option<up::Running>,
) -> anyhow::Result<()> {
    let shutdown = flywheel_telemetry::shutdown_signal();
    match config.bus.kind {
        config::BusKind::Kafka => {
            if let Some(r) = running {
                r.started(shutdown.clone(), None);
            }
            let bus = flywheel_bus::KafkaBus::new(config.kafka.clone());
            serve(config, services, bus, shutdown).await
        }
        config::BusKind::Wal => {
            let started = std::time::Instant::now();
            let dir = config.bus.wal.dir.clone();
            let wal = tokio::task::spawn_blocking({
                let c = config.bus.wal.clone();
                move || flywheel_wal::Wal::open(c)
            })
            .await
            .context("cannot open the write-ahead log")?
            .with_context(|| format!("cannot open the write-ahead log in {}", dir.display()))?;
            let report = wal.recovery_report();
            if !report.is_clean() {
                tracing::warn!(
                    truncated_bytes = report.removed_bytes(),
                    ?report,
                    "write-ahead log: a corrupt tail was truncated to the last good record"
                );
            }
            tracing::info!(dir = %dir.display(), elapsed_ms = started.elapsed().as_millis() as u64, "write-ahead log open");
            let wal = Arc::new(wal);
            if let Some(r) = running {
                r.started(shutdown.clone(), Some(wal.clone()));
            }
            let bus = flywheel_wal::WalBus::new(wal.clone());
            let result = serve(config, services, bus, shutdown).await;
            wal.close();
            result
        }
    }
}

/// What a bus's publisher does once the services stopped: Kafka's producer flushes; the WAL
/// has nothing in flight (every acknowledged record was fsynced).
trait Finish {
    fn finish(&self, timeout: Duration) -> impl std::future::Future<Output = ()> + Send;
}

impl Finish for KafkaPublisher {
    async fn finish(&self, timeout: Duration) {
        if let Err(e) = self.flush(timeout).await {
            tracing::warn!(error = %e, "producer flush incomplete at shutdown");
        }
    }
}

impl Finish for flywheel_wal::WalPublisher {
    async fn finish(&self, _timeout: Duration) {}
}

/// Runs `services` on `bus` until `shutdown` (SIGTERM / ctrl-c), then shuts down gracefully:
/// receivers stop accepting, in-flight requests finish, batches are flushed and committed, the
/// producer flushes.
async fn serve<B>(
    config: config::FlywheelConfig,
    services: &[Service],
    bus: B,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()>
where
    B: flywheel_bus::Bus + Send + Sync + 'static,
    B::Publisher: Finish,
{
    let bus = Arc::new(bus);
    let registry = prometheus::Registry::new();
    bus.register_metrics(&registry)
        .context("cannot register the bus metrics")?;
    let readiness = Readiness::new();

    let mut tasks = tokio::task::JoinSet::new();
    let mut publisher = None;
    if services.contains(&Service::Collector) {
        let p = bus
            .publisher(
                vec![
                    config.collector.spans_topic.clone(),
                    config.collector.feedback_topic.clone(),
                    config.collector.signals_topic.clone(),
                ],
                shutdown.clone(),
            )
            .context("cannot create the publisher")?;
        flywheel_collector::register_readiness(&p, &readiness);
        publisher = Some(p.clone());
        let (collector, auth, max_message_bytes) = (
            config.collector.clone(),
            config.auth.clone(),
            config.kafka.max_message_bytes,
        );
        let (registry, readiness, shutdown) =
            (registry.clone(), readiness.clone(), shutdown.clone());
        tasks.spawn(async move {
            flywheel_collector::run(
                collector,
                &auth,
                p,
                max_message_bytes,
                &registry,
                &readiness,
                shutdown,
            )
            .await
            .context("collector failed")
        });
    }
    // One store handle for every service of this process (a DuckDB file has one writer).
    let stores = if services
        .iter()
        .any(|s| matches!(s, Service::Ingester | Service::Api | Service::Detector))
    {
        if config.store.backend == flywheel_store::Backend::ClickHouse
            && services
                .iter()
                .any(|s| matches!(s, Service::Ingester | Service::Detector))
        {
            // The writers need the tables (a DuckDB file is migrated when opened); the api
            // starts without ClickHouse and answers 503 until it is back.
            flywheel_schema::migrate::check(&config.clickhouse)
                .await
                .context("the ClickHouse schema")?;
        }
        let (store, clickhouse) = (config.store.clone(), config.clickhouse.clone());
        Some(
            tokio::task::spawn_blocking(move || {
                flywheel_store::open_all(&store, &clickhouse, flywheel_store::AccessMode::ReadWrite)
            })
            .await
            .context("cannot open the store")?
            .context("cannot open the store")?,
        )
    } else {
        None
    };
    if let Some(stores) = stores
        .as_ref()
        .filter(|_| services.contains(&Service::Ingester))
    {
        let store = stores.ingest.clone();
        let (ingester, bus) = (config.ingester.clone(), bus.clone());
        let ttl_days = config.clickhouse.ttl_days.clone();
        let (registry, readiness, shutdown) =
            (registry.clone(), readiness.clone(), shutdown.clone());
        tasks.spawn(async move {
            flywheel_ingester::run(
                ingester, &*bus, store, ttl_days, &registry, &readiness, shutdown,
            )
            .await
            .context("ingester failed")
        });
    }
    if let Some(stores) = stores.as_ref().filter(|_| services.contains(&Service::Api)) {
        let store = stores.store.clone();
        flywheel_api::register_readiness(store.clone(), &readiness, shutdown.clone());
        let mut api = config.api.clone();
        api.resolve_detector_url(config.detector.listen);
        let (api, auth) = (api, config.auth.clone());
        let (registry, readiness, shutdown) =
            (registry.clone(), readiness.clone(), shutdown.clone());
        tasks.spawn(async move {
            flywheel_api::run(api, &auth, store, &registry, &readiness, shutdown)
                .await
                .context("api failed")
        });
    }
    if let Some(stores) = stores
        .as_ref()
        .filter(|_| services.contains(&Service::Detector))
    {
        let store = stores.detector.clone();
        let (detector, bus, auth) = (config.detector.clone(), bus.clone(), config.auth.clone());
        let (registry, readiness, shutdown) =
            (registry.clone(), readiness.clone(), shutdown.clone());
        tasks.spawn(async move {
            flywheel_detector::run(
                detector, &*bus, store, &auth, &registry, &readiness, shutdown,
            )
            .await
            .context("detector failed")
        });
    }
    let (admin_addr, admin) = flywheel_telemetry::admin::bind(
        config.admin.listen,
        registry.clone(),
        readiness.clone(),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("cannot bind the admin server on {}", config.admin.listen))?;
    tracing::info!(addr = %admin_addr, "admin server listening (/metrics, /healthz, /readyz)");
    let admin = tokio::spawn(admin);

    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        // One service stopping (error or not) stops the others.
        shutdown.cancel();
        let outcome = joined.context("service task panicked").and_then(|r| r);
        if let Err(e) = outcome {
            tracing::error!(error = format!("{e:#}"), "service stopped with an error");
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    if let Some(p) = publisher {
        p.finish(Duration::from_millis(u64::from(
            config.kafka.message_timeout_ms,
        )))
        .await;
    }
    let _ = admin.await;
    result?;
    tracing::info!("flywheel stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_dates_times_and_durations_back_from_now() {
        assert_eq!(
            parse_since_or_ago("2026-11-01").unwrap(),
            1_793_491_200_000_000_000
        );
        assert_eq!(
            parse_since_or_ago("2026-11-01T00:00:10Z").unwrap(),
            1_793_491_210_000_000_000
        );
        let (day, hour) = (
            parse_since_or_ago("1d").unwrap(),
            parse_since_or_ago("1h").unwrap(),
        );
        // Read in that order, so `hour` saw a clock no earlier than `day` did.
        assert!(hour - day >= 23 * 3_600_000_000_000, "{day} {hour}");
        assert!(parse_since_or_ago("last tuesday").is_err());
        assert!(parse_since_or_ago("xh").is_err());
    }
}
