//! `POST /v1/feedback` and `POST /v1/signals`: JSON (optionally gzip), one item, a JSON array
//! or `{"items": [...]}`.
//!
//! Every item is validated on its own. The answer lists each item by index with its id (the
//! client's, or the one generated for it) and `accepted` / `rejected` (with the field and the
//! reason), plus counts:
//! - 200: every item is on Kafka;
//! - 400: some items are invalid; the valid ones ARE on Kafka and listed as accepted
//!   (adr/0006), so a client must not resend them blindly (or must resend them with their ids);
//! - 401 / 403 / 413 / 415 / 429 / 503: the request as a whole, `google.rpc.Status` JSON
//!   (`{"code", "message"}`) as on the OTLP routes, and nothing was acknowledged.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use flywheel_auth::Action;
use flywheel_bus::Publisher;
use flywheel_core::ErrorCode;
use flywheel_feedback::api::{split_batch, BatchError, ItemError, Validator};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{now_unix_nano, Item, Kind};
use crate::decode::Format;
use crate::error::IngestError;
use crate::http::{authorize, failure, header_str, read_decoded, with_type, HttpState};
use crate::metrics::Transport;

/// Whether an item made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    Accepted,
    Rejected,
}

/// Why an item was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// The JSON field at fault (`trace_id`, `value`, ...), or empty for the item as a whole.
    pub field: String,
    pub message: String,
}

/// One item's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemResult {
    pub index: usize,
    /// The item id: generated when the client sent none; for a rejected item, the client's id
    /// when it sent a readable one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FieldError>,
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub items: Vec<ItemResult>,
}

/// Validates every item: the valid ones (to publish) and one result per item, in order.
pub fn validate_items(
    kind: Kind,
    raws: &[&RawValue],
    validator: &Validator<'_>,
) -> (Vec<Item>, Vec<ItemResult>) {
    let mut items = Vec::with_capacity(raws.len());
    let mut results = Vec::with_capacity(raws.len());
    for (index, raw) in raws.iter().enumerate() {
        let item = match kind {
            Kind::Feedback => validator.feedback(index, raw).map(Item::Feedback),
            Kind::Signal => validator.signal(index, raw).map(Item::Signal),
        };
        results.push(match item {
            Ok(item) => {
                let result = ItemResult {
                    index,
                    id: Some(item.id().to_string()),
                    status: ItemStatus::Accepted,
                    error: None,
                };
                items.push(item);
                result
            }
            Err(ItemError { field, message, .. }) => ItemResult {
                index,
                id: client_id(raw),
                status: ItemStatus::Rejected,
                error: Some(FieldError { field, message }),
            },
        });
    }
    (items, results)
}

/// The `id` a client sent in an item, when it is a string.
pub(crate) fn client_id(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<serde_json::Value>,
    }
    match serde_json::from_str::<IdOnly>(raw.get()).ok()?.id? {
        serde_json::Value::String(id) => Some(id),
        _ => None,
    }
}

/// The status and body for published results: 200 when every item was accepted, else 400.
pub fn answer(items: Vec<ItemResult>) -> (StatusCode, BatchResponse) {
    let rejected = items
        .iter()
        .filter(|r| r.status == ItemStatus::Rejected)
        .count();
    let status = if rejected == 0 {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let response = BatchResponse {
        accepted: items.len() - rejected,
        rejected,
        items,
    };
    (status, response)
}

/// `POST /v1/feedback`.
pub async fn feedback<P: Publisher>(
    State(state): State<Arc<HttpState<P>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(&state, &headers, body, Kind::Feedback).await
}

/// `POST /v1/signals`.
pub async fn signals<P: Publisher>(
    State(state): State<Arc<HttpState<P>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(&state, &headers, body, Kind::Signal).await
}

async fn receive<P: Publisher>(
    state: &HttpState<P>,
    headers: &HeaderMap,
    body: Body,
    kind: Kind,
) -> Response {
    let started = Instant::now();
    let transport = match kind {
        Kind::Feedback => Transport::HttpFeedback,
        Kind::Signal => Transport::HttpSignals,
    };
    let sink = &state.feedback;
    let response = match handle(state, headers, body, kind, transport).await {
        Ok((status, response)) => {
            let outcome = if status == StatusCode::OK {
                Ok(())
            } else {
                Err(ErrorCode::InvalidItem)
            };
            sink.count_request(transport, outcome);
            let body = serde_json::to_vec(&response).unwrap_or_default();
            with_type(status, Format::Json, body)
        }
        Err(e) => {
            sink.count_request(transport, Err(e.code));
            tracing::debug!(code = e.code.reason(), error = %e.message, "refused feedback request");
            failure(Format::Json, &e)
        }
    };
    sink.metrics().observe_request(transport, started);
    response
}

async fn handle<P: Publisher>(
    state: &HttpState<P>,
    headers: &HeaderMap,
    body: Body,
    kind: Kind,
    transport: Transport,
) -> Result<(StatusCode, BatchResponse), IngestError> {
    let sink = &state.feedback;
    let project = authorize(&state.auth, headers, Action::WriteFeedback)?.project;
    if Format::from_content_type(header_str(headers, header::CONTENT_TYPE))? != Format::Json {
        return Err(IngestError::new(
            ErrorCode::UnsupportedMediaType,
            "this endpoint takes JSON: use Content-Type application/json",
        ));
    }
    let body = read_decoded(headers, body, state.max_request_bytes).await?;
    let raws = split_batch(&body, sink.limits().max_items).map_err(batch_error)?;
    let validator = sink.validator(&project, now_unix_nano());
    let (items, results) = validate_items(kind, &raws, &validator);
    sink.count_rejected(
        kind.label(),
        transport,
        ErrorCode::InvalidItem.reason(),
        (results.len() - items.len()) as u64,
    );
    sink.publish(&project, &items, transport).await?;
    Ok(answer(results))
}

/// A body that cannot be split into items: 400, or 413 for too many items.
pub fn batch_error(e: BatchError) -> IngestError {
    match e {
        BatchError::Malformed(m) => IngestError::new(ErrorCode::Malformed, m),
        e @ BatchError::TooManyItems { .. } => IngestError::new(
            ErrorCode::TooLarge,
            format!("{e} (collector.feedback_limits.max_items); split the batch"),
        ),
    }
}
