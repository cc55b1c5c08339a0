//! # Flywheel api
//!
//! The read side of Flywheel for clients holding a secret key. Today one route:
//! `GET /v1/datasets/export` streams the caller's project as an `sft`, `preference` or `eval`
//! dataset (JSONL or Parquet), read from the store (ClickHouse or embedded DuckDB, `[store]`,
//! `flywheel-store`) by `flywheel-datasets`, PII-redacted and
//! deduplicated by default, with the export report in HTTP trailers, metrics and the log
//! (adr/0007). `/` is a live status page (SLOs, alerts, models, feedback, charts) with its
//! JSON under `/v1/status/` ([`status`], adr/0010). `/healthz` and `/readyz` are served on the
//! same port.
//!
//! Start reading at [`run`], then [`export`].

pub mod config;
pub mod export;
pub mod metrics;
pub mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use flywheel_datasets::ExportOptions;
use flywheel_store::Store;
use flywheel_telemetry::Readiness;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

pub use config::ApiConfig;

/// Errors that stop the api.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot bind the api on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid api configuration: {0}")]
    Config(String),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("api server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves the api on `store` (export and status page alike; see [`register_readiness`]) until
/// `shutdown` is cancelled; running exports are then cut (their bodies end incomplete, see
/// [`export`]) and the server stops.
pub async fn run(
    config: ApiConfig,
    auth: &flywheel_auth::AuthConfig,
    store: Arc<dyn Store>,
    registry: &Registry,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let metrics = metrics::Metrics::register(registry)?;
    let auth = flywheel_auth::Authenticator::new(auth).map_err(ApiError::Config)?;
    let status_store = store.clone();
    let state = Arc::new(export::ExportState {
        auth,
        store,
        options: ExportOptions {
            page_size: config.export_page_size,
        },
        slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_exports)),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    });
    let status = status::state(&config, &state.auth, status_store, metrics);
    let app = Router::new()
        .route("/v1/datasets/export", get(export::export))
        .with_state(state)
        .merge(status::router(status))
        .merge(flywheel_telemetry::admin::health_routes(readiness.clone()));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ApiError::Bind {
            addr: config.listen,
            source,
        })?;
    tracing::info!(addr = %config.listen, "api listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ApiError::Serve)?;
    tracing::info!("api stopped");
    Ok(())
}

/// Registers the api's dependency (the store, named by its backend, e.g. `clickhouse`, probed
/// every 5 s with `SELECT 1`) in `readiness`. Call it before the admin server starts answering.
pub fn register_readiness(
    store: Arc<dyn Store>,
    readiness: &Readiness,
    shutdown: CancellationToken,
) {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    readiness.register(store.backend(), move || flag.load(Ordering::Relaxed));
    tokio::spawn(async move {
        loop {
            let ok = store.ping().await.is_ok();
            ready.store(ok, Ordering::Relaxed);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(if ok { 5 } else { 1 })) => {}
            }
        }
    });
}
