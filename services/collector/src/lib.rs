//! # Flywheel collector
//!
//! Receives OpenTelemetry traces over OTLP/HTTP (`POST /v1/traces`, protobuf or JSON, optionally
//! gzip) and OTLP/gRPC (`TraceService/Export`), and publishes them to Kafka, one message per
//! trace, keyed by trace id. Feedback and signals arrive on `POST /v1/feedback`,
//! `POST /v1/signals` and as OTLP log events (`POST /v1/logs`, `LogsService/Export`) and go to
//! their own topics ([`feedback`]). A client gets 200 / OK only once Kafka has confirmed every span it
//! sent; under pressure or with the broker down it gets 429 / 503 (gRPC `RESOURCE_EXHAUSTED` /
//! `UNAVAILABLE`) with a retry hint, and every refusal is counted by reason.
//!
//! Data flow: [`http`] and [`grpc`] decode and authenticate -> [`sink::TraceSink`] validates
//! ([`spans::drop_invalid`]), splits ([`spans::split_by_trace`]), admits under the in-flight byte
//! budget and publishes through a [`flywheel_bus::Publisher`] ([`publish::Durable`], shared with
//! [`feedback::FeedbackSink`]).
//!
//! Start reading at [`run`].

pub mod auth;
pub mod config;
pub mod cors;
pub mod decode;
pub mod error;
pub mod feedback;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod publish;
pub mod sink;
pub mod spans;
#[cfg(test)]
mod test_support;

use std::net::SocketAddr;
use std::sync::Arc;

use flywheel_bus::Publisher;
use flywheel_telemetry::Readiness;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

pub use config::CollectorConfig;

/// Errors that stop the collector.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid collector configuration: {0}")]
    Config(String),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{what} server failed: {message}")]
    Serve { what: &'static str, message: String },
}

/// Runs the OTLP receivers until `shutdown` is cancelled, then stops accepting, lets in-flight
/// requests finish (each waits for its Kafka deliveries) and returns. `readiness` is served on
/// the OTLP/HTTP port too; the caller registers the publisher's readiness in it before anything
/// can ask (see `register_readiness`), so `/readyz` is never ready too early.
pub async fn run<P: Publisher>(
    config: CollectorConfig,
    auth: &flywheel_auth::AuthConfig,
    publisher: P,
    max_message_bytes: usize,
    registry: &Registry,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let metrics = metrics::Metrics::register(registry)?;
    let auth = flywheel_auth::Authenticator::new(auth).map_err(CollectorError::Config)?;
    let durable = Arc::new(publish::Durable::new(
        publisher,
        config.max_in_flight_bytes,
        metrics,
    ));
    let sink = Arc::new(sink::TraceSink::new(
        durable.clone(),
        config.spans_topic.clone(),
        max_message_bytes,
    ));
    let feedback = Arc::new(feedback::FeedbackSink::new(
        durable,
        config.feedback_topic.clone(),
        config.signals_topic.clone(),
        config.feedback_limits.clone(),
        config.feedback_definitions.clone(),
    ));

    let http_listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| CollectorError::Bind {
            what: "OTLP/HTTP",
            addr: config.http_listen,
            source,
        })?;
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_listen)
        .await
        .map_err(|source| CollectorError::Bind {
            what: "OTLP/gRPC",
            addr: config.grpc_listen,
            source,
        })?;
    tracing::info!(http = %config.http_listen, grpc = %config.grpc_listen, topic = %config.spans_topic, "collector listening");

    let app = http::router(
        Arc::new(http::HttpState {
            sink: sink.clone(),
            feedback: feedback.clone(),
            auth: auth.clone(),
            max_request_bytes: config.max_request_bytes,
        }),
        cors::layer(&config.cors_allowed_origins),
    )
    .merge(flywheel_telemetry::admin::health_routes(readiness.clone()));
    let http_shutdown = shutdown.clone();
    let http_server = async move {
        axum::serve(http_listener, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
            .map_err(|e| CollectorError::Serve {
                what: "OTLP/HTTP",
                message: e.to_string(),
            })
    };

    let grpc_logs = feedback::logs::LogsReceiver {
        sink: feedback,
        auth: auth.clone(),
    }
    .into_server(config.max_request_bytes);
    let grpc_service = grpc::GrpcReceiver { sink, auth }.into_server(config.max_request_bytes);
    let grpc_shutdown = shutdown.clone();
    let incoming = tokio_stream_listener(grpc_listener);
    let grpc_server = async move {
        tonic::transport::Server::builder()
            .add_service(grpc_service)
            .add_service(grpc_logs)
            .serve_with_incoming_shutdown(incoming, async move { grpc_shutdown.cancelled().await })
            .await
            .map_err(|e| CollectorError::Serve {
                what: "OTLP/gRPC",
                message: e.to_string(),
            })
    };

    let (http_result, grpc_result) = tokio::join!(http_server, grpc_server);
    http_result?;
    grpc_result?;
    tracing::info!("collector stopped");
    Ok(())
}

/// Registers the collector's dependency (the publisher) in `readiness`. Call it before the
/// admin server starts answering.
pub fn register_readiness<P: Publisher>(publisher: &P, readiness: &Readiness) {
    let p = publisher.clone();
    readiness.register("kafka", move || p.is_ready());
}

/// Adapts a bound listener into tonic's incoming stream.
fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
