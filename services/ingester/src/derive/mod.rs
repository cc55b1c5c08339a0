//! Derived signals: implicit user signals (`regenerate`, `stop`, `conversation_end`) that the
//! ingester infers from stored `llm_calls` for applications that send none, marked
//! `source = heuristic`, `origin = derived`.
//!
//! Data flow: every `ingester.derive_interval_s`, [`run_once`] asks the store for each
//! [`Rule`] over the calls of the last `ingester.derive_lookback_s` (the rule's query, in the
//! store's dialect: `flywheel_store::derive`), gets the rows not already stored, and inserts
//! them into `signals`. `flywheel derive-signals --since` runs the same once over any period
//! (backfill). The rules, their parameters and their false positives: docs/SIGNALS.md.

use std::sync::Arc;
use std::time::Duration;

use flywheel_store::{IngestStore, RowBatch, StoreError};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::writer::Writer;
use crate::IngesterConfig;
pub use flywheel_store::derive::{Rule, Window};

/// Signals inserted by one run, by type (in [`crate::metrics::DERIVED_TYPES`] order).
pub type Counts = [(&'static str, usize); 3];

/// The window of a run at `now_ns` looking back to `since_ns`, with the configured rule
/// parameters.
pub fn window(config: &IngesterConfig, since_ns: i64, now_ns: i64) -> Window {
    let ns = |s: u64| i64::try_from(s).map_or(i64::MAX, |s| s.saturating_mul(1_000_000_000));
    Window {
        since_ns,
        now_ns,
        regenerate_window_ns: ns(config.regenerate_window_s),
        conversation_idle_ns: ns(config.conversation_idle_s),
    }
}

/// Derives every rule over `window` and inserts the new signals.
pub async fn run_once(writer: &Writer, window: &Window) -> Result<Counts, StoreError> {
    let mut counts: Counts = [("regenerate", 0), ("stop", 0), ("conversation_end", 0)];
    for (rule, (kind, count)) in Rule::ALL.into_iter().zip(&mut counts) {
        debug_assert_eq!(rule.signal_type(), *kind);
        let rows = writer.store().derive(rule, window).await?;
        *count = rows.len();
        if rows.is_empty() {
            continue;
        }
        // A token per run and rule: a retried insert of the same run is dropped.
        let mut batch = RowBatch::new(format!(
            "derive:{kind}:{}:{}",
            window.since_ns, window.now_ns
        ));
        batch.signals = rows;
        writer.insert_rows(&batch).await?;
    }
    Ok(counts)
}

/// Counts a run's result in the metrics and logs it.
pub fn record(metrics: &Metrics, result: &Result<Counts, StoreError>) {
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
    store: Arc<dyn IngestStore>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let writer = Writer::new(
        store,
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
        let window = window(&config, now.saturating_sub(lookback), now);
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = run_once(&writer, &window) => r,
        };
        record(&metrics, &result);
    }
}
