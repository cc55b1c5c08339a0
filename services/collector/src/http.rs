//! The HTTP receiver: `POST /v1/traces` (here) with protobuf or JSON bodies, optionally gzip,
//! plus the routes of [`crate::feedback`] (`/v1/feedback`, `/v1/signals`, `/v1/logs`), behind
//! the CORS layer of [`crate::cors`] when origins are configured. The helpers for credentials,
//! body reading (size limit, gzip) and error answers are shared by every route.
//!
//! Trace answers follow the OTLP/HTTP spec: the body uses the request's content type; success is an
//! `ExportTraceServiceResponse` (with `partial_success` when spans were refused); errors are a
//! `google.rpc.Status` with a message naming the problem, and retryable ones carry
//! `Retry-After`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use flywheel_bus::Publisher;
use flywheel_core::ErrorCode;
use prost::Message;

use crate::decode::{decode_json, decode_protobuf, gunzip_limited, Format};
use crate::error::IngestError;
use crate::feedback::{self, FeedbackSink};
use crate::sink::{ExportOutcome, TraceSink, Transport};
use crate::spans::Rejections;
use flywheel_auth::{Action, Authenticator, Principal};

/// `google.rpc.Status`, the OTLP error body (only the fields we fill).
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Shared state of the HTTP receiver.
pub struct HttpState<P> {
    pub sink: Arc<TraceSink<P>>,
    pub feedback: Arc<FeedbackSink<P>>,
    pub auth: Authenticator,
    pub max_request_bytes: usize,
}

/// The HTTP routes, with CORS answered by `cors` when set.
pub fn router<P: Publisher>(
    state: Arc<HttpState<P>>,
    cors: Option<tower_http::cors::CorsLayer>,
) -> Router {
    let router = Router::new()
        .route("/v1/traces", post(traces::<P>))
        .route("/v1/logs", post(feedback::logs::http::<P>))
        .route("/v1/feedback", post(feedback::endpoints::feedback::<P>))
        .route("/v1/signals", post(feedback::endpoints::signals::<P>))
        // The limit is enforced while reading (compressed) and while decompressing.
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

async fn traces<P: Publisher>(
    State(state): State<Arc<HttpState<P>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let format = Format::from_content_type(header_str(&headers, header::CONTENT_TYPE));
    let transport = match format {
        Ok(Format::Json) => Transport::HttpJson,
        _ => Transport::HttpProtobuf,
    };
    let response = match handle(&state, &headers, format, body, transport).await {
        Ok((format, outcome)) => success(format, outcome),
        Err((format, e)) => {
            if e.code != ErrorCode::Unavailable && e.code != ErrorCode::InFlightLimit {
                tracing::debug!(code = e.code.reason(), error = %e.message, "refused OTLP/HTTP request");
            }
            failure(format, &e)
        }
    };
    state.sink.metrics().observe_request(transport, started);
    response
}

async fn handle<P: Publisher>(
    state: &HttpState<P>,
    headers: &HeaderMap,
    format: Result<Format, IngestError>,
    body: Body,
    transport: Transport,
) -> Result<(Format, ExportOutcome), (Format, IngestError)> {
    let sink = &state.sink;
    // Until the content type is known, errors are answered in JSON.
    let refuse = |format: Format, e: IngestError| {
        sink.count_refused(transport, e.code);
        (format, e)
    };
    let project = authorize(&state.auth, headers, Action::IngestSpans)
        .map_err(|e| refuse(format.clone().unwrap_or(Format::Json), e))?
        .project;
    let format = format.map_err(|e| refuse(Format::Json, e))?;
    let decoded = read_decoded(headers, body, state.max_request_bytes)
        .await
        .map_err(|e| refuse(format, e))?;
    let mut rejections = Rejections::default();
    let request = match format {
        Format::Protobuf => decode_protobuf(&decoded),
        Format::Json => decode_json(&decoded, &mut rejections),
    }
    .map_err(|e| refuse(format, e))?;
    drop(decoded);
    let outcome = sink
        .export(&project, request, rejections, transport)
        .await
        .map_err(|e| (format, e))?;
    Ok((format, outcome))
}

/// Authenticates the request from its `authorization` / `x-api-key` headers for `action`.
pub(crate) fn authorize(
    auth: &Authenticator,
    headers: &HeaderMap,
    action: Action,
) -> Result<Principal, IngestError> {
    crate::auth::authorize(
        auth,
        header_str(headers, header::AUTHORIZATION),
        header_str(headers, "x-api-key"),
        action,
    )
}

/// Reads the body up to `limit` bytes and, for `Content-Encoding: gzip`, decompresses it with
/// the same limit enforced while decompressing.
pub(crate) async fn read_decoded(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, IngestError> {
    let gzip = match header_str(headers, header::CONTENT_ENCODING).map(str::trim) {
        None | Some("") | Some("identity") => false,
        Some(v) if v.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            return Err(IngestError::new(
                ErrorCode::UnsupportedEncoding,
                format!("unsupported Content-Encoding {other:?}: use gzip or none"),
            ))
        }
    };
    let raw = read_body(body, limit).await?;
    if gzip {
        Ok(Bytes::from(gunzip_limited(&raw, limit)?))
    } else {
        Ok(raw)
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, IngestError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            IngestError::new(
                ErrorCode::TooLarge,
                format!("request body exceeds the limit of {limit} bytes"),
            )
        } else {
            IngestError::new(
                ErrorCode::Malformed,
                format!("cannot read request body: {inner}"),
            )
        }
    })
}

pub(crate) fn header_str<K: header::AsHeaderName>(headers: &HeaderMap, key: K) -> Option<&str> {
    headers.get(key).and_then(|v| v.to_str().ok())
}

fn success(format: Format, outcome: ExportOutcome) -> Response {
    let response = outcome.into_response();
    let partial = response.partial_success.is_some();
    otlp_success(format, &response, partial)
}

/// A 200 with an OTLP export response in `format`; in JSON, `{}` rather than
/// `{"partialSuccess":null}` when nothing was `partial`ly refused.
pub(crate) fn otlp_success<M: Message + serde::Serialize>(
    format: Format,
    response: &M,
    partial: bool,
) -> Response {
    let body = match format {
        Format::Protobuf => response.encode_to_vec(),
        Format::Json if partial => serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec()),
        Format::Json => b"{}".to_vec(),
    };
    with_type(StatusCode::OK, format, body)
}

/// The error response for `e`, in `format`.
pub fn failure(format: Format, e: &IngestError) -> Response {
    let status = RpcStatus {
        code: e.code.grpc_code(),
        message: e.message.clone(),
    };
    let body = match format {
        Format::Protobuf => status.encode_to_vec(),
        Format::Json => serde_json::to_vec(&status).unwrap_or_default(),
    };
    let code = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = with_type(code, format, body);
    if let Some(secs) = e.code.retry_after_secs() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

pub(crate) fn with_type(status: StatusCode, format: Format, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}
