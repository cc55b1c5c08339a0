//! Derived signals: implicit user signals (`regenerate`, `stop`, `conversation_end`) that the
//! ingester infers from stored `llm_calls` for applications that send none, marked
//! `source = heuristic`, `origin = derived`.
//!
//! Data flow: every `ingester.derive_interval_s`, [`run_once`] runs each rule of [`rules`]
//! over the calls of the last `ingester.derive_lookback_s` (a `SELECT` over
//! `llm_calls FINAL`), keeps the rows not already stored, and inserts them into `signals`.
//! `flywheel derive-signals --since` runs the same once over any period (backfill).
//! The rules, their parameters and their false positives: docs/SIGNALS.md.

pub mod rules;

use std::time::Duration;

use clickhouse::Client;
use flywheel_schema::rows::SignalRow;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::writer::Writer;
use crate::IngesterConfig;
pub use rules::Window;

/// Signals inserted by one run, by type (in [`crate::metrics::DERIVED_TYPES`] order).
pub type Counts = [(&'static str, usize); 3];

impl Window {
    /// The window of a run at `now_ns` looking back to `since_ns`, with the configured rule
    /// parameters.
    pub fn new(config: &IngesterConfig, since_ns: i64, now_ns: i64) -> Self {
        let ns = |s: u64| i64::try_from(s).map_or(i64::MAX, |s| s.saturating_mul(1_000_000_000));
        Self {
            since_ns,
            now_ns,
            regenerate_window_ns: ns(config.regenerate_window_s),
            conversation_idle_ns: ns(config.conversation_idle_s),
        }
    }
}

/// Derives every rule over `window` and inserts the new signals.
pub async fn run_once(
    writer: &Writer,
    window: &Window,
) -> Result<Counts, clickhouse::error::Error> {
    let mut counts: Counts = [("regenerate", 0), ("stop", 0), ("conversation_end", 0)];
    for (kind, count) in &mut counts {
        let rule = match *kind {
            "regenerate" => rules::regenerate(window),
            "stop" => rules::stop(window),
            _ => rules::conversation_end(window),
        };
        let rows: Vec<SignalRow> = writer
            .client()
            .query(&rules::only_new(&rule, window))
            .fetch_all()
            .await?;
        // A token per run and rule: a retried insert of the same run is dropped.
        let token = format!("derive:{kind}:{}:{}", window.since_ns, window.now_ns);
        writer.insert_table("signals", &rows, &token).await?;
        *count = rows.len();
    }
    Ok(counts)
}

/// Counts a run's result in the metrics and logs it.
pub fn record(metrics: &Metrics, result: &Result<Counts, clickhouse::error::Error>) {
    match result {
        Ok(counts) => {
            metrics.derive_runs.inc();
            for (kind, n) in counts {
                metrics
                    .derived_signals
                    .with_label_values(&[kind])
                    .inc_by(*n as u64);
            }
            tracing::debug!(?counts, "signals derived");
        }
        Err(e) => {
            metrics.derive_errors.inc();
            tracing::warn!(error = %e, "signal derivation failed; next run retries");
        }
    }
}

/// Runs the derivation every `derive_interval_s` until `shutdown`.
pub async fn run_periodically(
    config: IngesterConfig,
    client: Client,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let writer = Writer::new(
        client,
        metrics.clone(),
        Duration::from_millis(config.retry_initial_ms),
        Duration::from_millis(config.retry_max_ms),
    );
    let lookback = i64::try_from(config.derive_lookback_s)
        .map_or(i64::MAX, |s| s.saturating_mul(1_000_000_000));
    let mut tick = tokio::time::interval(Duration::from_secs(config.derive_interval_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::message::now_ns();
        let window = Window::new(&config, now.saturating_sub(lookback), now);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = run_once(&writer, &window) => r,
        };
        record(&metrics, &result);
    }
}
