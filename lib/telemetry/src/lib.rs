//! Telemetry plumbing shared by every Flywheel service.
//!
//! - [`init_tracing`]: structured logs through `tracing`, filtered by `RUST_LOG`.
//! - [`admin`]: the admin HTTP server with Prometheus `/metrics`, `/healthz` and `/readyz`.
//! - [`shutdown_signal`]: a `CancellationToken` cancelled on SIGTERM or ctrl-c.
//! - [`Readiness`]: named readiness checks that services register and `/readyz` reports.

pub mod admin;
mod readiness;

pub use readiness::Readiness;

use tokio_util::sync::CancellationToken;

/// Initialises the global `tracing` subscriber once; later calls are ignored.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .try_init();
}

/// Returns a token that is cancelled on SIGTERM or ctrl-c. Cancelling twice is harmless.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        child.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        child.cancel();
    });
    token
}
