//! `flywheel`: the one binary. `flywheel <service>` runs one service, `flywheel all` runs every
//! service in one process with the same code. See ARCHITECTURE.md.

mod config;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;
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
    /// Run every service in one process.
    All,
    /// Print the effective configuration check result and exit (fails on an invalid config).
    CheckConfig,
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
    let config = config::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Collector | Command::All => runtime.block_on(serve(config)),
        Command::CheckConfig => {
            println!("configuration ok");
            Ok(())
        }
        Command::TopicStats { topic, decode } => {
            let topic = topic.unwrap_or_else(|| config.collector.spans_topic.clone());
            tools::topic_stats(&config.kafka, &topic, decode)
        }
    }
}

/// Runs the services until SIGTERM / ctrl-c, then shuts down gracefully: receivers stop
/// accepting, in-flight requests finish, the producer flushes.
async fn serve(config: config::FlywheelConfig) -> anyhow::Result<()> {
    let shutdown = flywheel_telemetry::shutdown_signal();
    let registry = prometheus::Registry::new();
    let readiness = Readiness::new();

    let publisher = KafkaPublisher::start(
        &config.kafka,
        vec![config.collector.spans_topic.clone()],
        shutdown.clone(),
    )
    .context("cannot create the Kafka producer")?;

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

    let result = flywheel_collector::run(
        config.collector,
        publisher.clone(),
        config.kafka.max_message_bytes,
        &registry,
        &readiness,
        shutdown.clone(),
    )
    .await;
    // Whatever happened, stop everything else and flush what the producer still holds.
    shutdown.cancel();
    let flush_timeout = Duration::from_millis(u64::from(config.kafka.message_timeout_ms));
    if let Err(e) = publisher.flush(flush_timeout).await {
        tracing::warn!(error = %e, "producer flush incomplete at shutdown");
    }
    let _ = admin.await;
    result.context("collector failed")?;
    tracing::info!("flywheel stopped");
    Ok(())
}
