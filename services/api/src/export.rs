//! `GET /v1/datasets/export`: a project's dataset, streamed.
//!
//! The project is the key's (secret keys only; a public key gets 403, and a `project` parameter
//! naming another project gets 403). Parameters are those of `flywheel_datasets::request`; a bad
//! one gets 400 naming it. The body is chunked: encoded bytes leave after every page of calls
//! through a bounded channel, so a slow client slows the export instead of filling memory.
//!
//! The export report reaches the caller in HTTP trailers (`flywheel-export-status: ok`,
//! `flywheel-export-report: {json}`), sent when the request carries `TE: trailers` (hyper, like
//! the HTTP spec, sends trailers only to clients that announce they accept them), and always
//! in metrics and one log line. The status line waits for the first encoded bytes, so a failure
//! before any (ClickHouse down) is a proper 503 / 500; a failure after the 200 was sent ends the
//! body without its last chunk, so the client sees an incomplete transfer rather than a short
//! dataset that looks whole.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flywheel_auth::{Action, AuthError, Authenticator};
use flywheel_core::ErrorCode;
use flywheel_datasets::{DatasetError, ExportOptions, ExportReport, Output};
use flywheel_store::Store;
use http_body::Frame;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub const TRAILER_STATUS: &str = "flywheel-export-status";
pub const TRAILER_REPORT: &str = "flywheel-export-report";

/// Shared state of the export route.
pub struct ExportState {
    pub auth: Authenticator,
    pub store: Arc<dyn Store>,
    pub options: ExportOptions,
    pub slots: Arc<Semaphore>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}

/// One JSON error body for every refusal: `{"code": "...", "message": "...", "param": "..."}`.
fn error(metrics: &Metrics, code: ErrorCode, message: &str, param: Option<&str>) -> Response {
    metrics
        .requests
        .with_label_values(&["export", code.reason()])
        .inc();
    let mut body = serde_json::json!({"code": code.reason(), "message": message});
    if let Some(p) = param {
        body["param"] = p.into();
    }
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(secs) = code.retry_after_secs() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn export(
    State(state): State<Arc<ExportState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let m = &state.metrics;
    let principal = match state.auth.authorize(
        header_str(&headers, "authorization"),
        header_str(&headers, "x-api-key"),
        Action::Read,
    ) {
        Ok(p) => p,
        Err(e @ AuthError::Forbidden(_)) => {
            return error(m, ErrorCode::PermissionDenied, &e.to_string(), None)
        }
        Err(e) => return error(m, ErrorCode::Unauthenticated, &e.to_string(), None),
    };
    let project = principal.project.as_str().to_string();
    let pairs = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(Query(p)) => p,
        Err(e) => return error(m, ErrorCode::Malformed, &e.body_text(), None),
    };
    let mut params = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if k != "project" {
            params.push((k, v));
        } else if v != project {
            let msg = "this key belongs to another project; a key exports its own project only";
            return error(m, ErrorCode::PermissionDenied, msg, Some("project"));
        }
    }
    let req = match flywheel_datasets::parse(&project, params) {
        Ok(r) => r,
        Err(e) => return error(m, ErrorCode::Malformed, &e.to_string(), Some(&e.param)),
    };
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        let msg = "too many exports running; retry later";
        return error(m, ErrorCode::InFlightLimit, msg, None);
    };

    let (tx, rx) = mpsc::channel(4);
    let content_type = req.format.content_type();
    let filename = format!(
        "attachment; filename=\"flywheel-{project}-{}.{}\"",
        req.shape.as_str(),
        req.format.as_str()
    );
    let task_state = state.clone();
    tokio::spawn(async move {
        let _slot = slot;
        run_export(&task_state, req, tx).await;
    });
    let mut rx = rx;
    let first = match rx.recv().await {
        Some(Err(failed)) => return error(m, failed.code, &failed.message, None),
        first => first,
    };
    let mut response = Response::new(Body::new(ChannelBody { first, rx }));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&filename) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::TRAILER,
        HeaderValue::from_static("flywheel-export-status, flywheel-export-report"),
    );
    response
}

/// Why an export stopped, as the client may see it (no internals).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failed {
    code: ErrorCode,
    message: String,
}

impl Failed {
    fn of(e: &DatasetError) -> Self {
        let (code, message) = match e {
            DatasetError::Store(e) if e.is_unavailable() => (
                ErrorCode::Unavailable,
                "ClickHouse is unavailable; retry later",
            ),
            DatasetError::Closed(_) => (ErrorCode::ShuttingDown, "the export was cancelled"),
            _ => (
                ErrorCode::Internal,
                "the export failed; the server log has the cause",
            ),
        };
        Self {
            code,
            message: message.to_string(),
        }
    }
}

type Chunk = Result<Frame<Bytes>, Failed>;

/// Sends encoded bytes into the response body; waits while the client is slow.
struct ChannelOutput {
    tx: mpsc::Sender<Chunk>,
}

impl Output for ChannelOutput {
    async fn write(&mut self, chunk: Bytes) -> Result<(), DatasetError> {
        self.tx
            .send(Ok(Frame::data(chunk)))
            .await
            .map_err(|_| DatasetError::Closed("client disconnected".into()))
    }
}

async fn run_export(
    state: &ExportState,
    req: flywheel_datasets::ExportRequest,
    tx: mpsc::Sender<Chunk>,
) {
    let m = &state.metrics;
    let (shape, format) = (req.shape.as_str(), req.format.as_str());
    let started = Instant::now();
    m.exports_in_progress.inc();
    let mut out = ChannelOutput { tx: tx.clone() };
    let result = tokio::select! {
        r = flywheel_datasets::export(state.store.as_ref(), &req, state.options, &mut out) => r,
        () = state.shutdown.cancelled() => Err(DatasetError::Closed("shutting down".into())),
    };
    m.exports_in_progress.dec();
    let outcome = match &result {
        Ok(_) => "ok",
        Err(DatasetError::Closed(_)) => "cancelled",
        Err(_) => "error",
    };
    m.exports.with_label_values(&[shape, format, outcome]).inc();
    m.export_duration
        .with_label_values(&[shape])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(report) => {
            m.requests.with_label_values(&["export", "ok"]).inc();
            record(m, shape, &report);
            let json = serde_json::to_string(&report).unwrap_or_default();
            tracing::info!(
                project = %req.project, shape, format,
                rows = report.rows_written, duplicates = report.duplicates_dropped,
                redactions = %serde_json::to_string(&report.redactions).unwrap_or_default(),
                seconds = started.elapsed().as_secs_f64(),
                "export finished"
            );
            let mut trailers = HeaderMap::new();
            trailers.insert(
                HeaderName::from_static(TRAILER_STATUS),
                HeaderValue::from_static("ok"),
            );
            if let Ok(v) = HeaderValue::from_str(&json) {
                trailers.insert(HeaderName::from_static(TRAILER_REPORT), v);
            }
            let _ = tx.send(Ok(Frame::trailers(trailers))).await;
        }
        Err(e) => {
            tracing::warn!(project = %req.project, shape, format, outcome, error = %e, "export did not finish");
            // Before the first bytes this becomes the error response; after them, an error
            // frame makes hyper abort the body: no final chunk reaches the client.
            let _ = tx.send(Err(Failed::of(&e))).await;
        }
    }
}

fn record(m: &Metrics, shape: &str, report: &ExportReport) {
    m.export_rows
        .with_label_values(&[shape])
        .inc_by(report.rows_written);
    m.export_duplicates
        .with_label_values(&[shape])
        .inc_by(report.duplicates_dropped);
    for (kind, n) in report.redactions.by_kind() {
        m.export_redactions.with_label_values(&[kind]).inc_by(n);
    }
}

/// A response body fed by a channel: data frames, then optionally trailers, or an error.
struct ChannelBody {
    /// The frame already taken to decide the status line.
    first: Option<Chunk>,
    rx: mpsc::Receiver<Chunk>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Failed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Failed>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        self.rx.poll_recv(cx)
    }
}
