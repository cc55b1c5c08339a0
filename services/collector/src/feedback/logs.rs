//! OTLP logs: `POST /v1/logs` (protobuf or JSON, optionally gzip) and
//! `opentelemetry.proto.collector.logs.v1.LogsService/Export`.
//!
//! Flywheel stores only feedback and signal events from logs: a record whose event name
//! (`LogRecord.event_name`, else its `event.name` attribute) is `gen_ai.evaluation.result`,
//! `flywheel.feedback` or `flywheel.signal` becomes a feedback or signal item through
//! [`flywheel_feedback::otlp::from_event`] (origin `OTLP_LOG`, trace and span ids from the
//! record). Every other record, and every invalid one, is refused through OTLP partial success
//! (`rejected_log_records` with a message naming the records), and counted.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use flywheel_auth::{Action, Authenticator};
use flywheel_bus::Publisher;
use flywheel_core::{ErrorCode, ProjectId};
use flywheel_feedback::api::Validator;
use flywheel_feedback::otlp::{
    from_event, EventContext, EVENT_EVALUATION_RESULT, EVENT_FEEDBACK, EVENT_SIGNAL,
};
use flywheel_feedback::pb::Origin;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use tonic::codec::CompressionEncoding;

use super::{now_unix_nano, FeedbackSink, Item, Kind};
use crate::decode::Format;
use crate::error::IngestError;
use crate::http::{authorize, failure, header_str, otlp_success, read_decoded, HttpState};
use crate::metrics::{Transport, REASON_NOT_FEEDBACK_EVENT};
use crate::spans::Rejections;

/// What the log records of a request became.
#[derive(Debug, Default)]
pub struct LogItems {
    pub items: Vec<Item>,
    pub rejections: Rejections,
    /// Records that are no feedback or signal event.
    pub not_events: u64,
    /// Invalid feedback and signal events.
    pub invalid_feedback: u64,
    pub invalid_signals: u64,
}

/// The string value of attribute `key`, if any.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .and_then(|v| match v {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// The record's event name: `event_name`, else the `event.name` attribute.
pub fn event_name(record: &LogRecord) -> &str {
    if record.event_name.is_empty() {
        attribute(&record.attributes, "event.name").unwrap_or("")
    } else {
        &record.event_name
    }
}

/// Converts every log record of `request` into feedback and signal items or rejections.
pub fn convert(request: &ExportLogsServiceRequest, validator: &Validator<'_>) -> LogItems {
    let mut out = LogItems::default();
    let records = request
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records);
    for (index, record) in records.enumerate() {
        let name = event_name(record);
        let time = if record.time_unix_nano != 0 {
            record.time_unix_nano
        } else {
            record.observed_time_unix_nano
        };
        let ctx = EventContext {
            trace_id: hex::encode(&record.trace_id),
            span_id: hex::encode(&record.span_id),
            conversation_id: attribute(&record.attributes, "gen_ai.conversation.id")
                .unwrap_or_default()
                .to_string(),
            user_id: attribute(&record.attributes, "user.id")
                .unwrap_or_default()
                .to_string(),
            time_unix_nano: i64::try_from(time).unwrap_or(i64::MAX),
            index,
            origin: Origin::OtlpLog,
        };
        match from_event(name, &record.attributes, &ctx, validator) {
            Some(Ok(item)) => out.items.push(item.into()),
            Some(Err(e)) => {
                if name == EVENT_SIGNAL {
                    out.invalid_signals += 1;
                } else {
                    out.invalid_feedback += 1;
                }
                out.rejections.reject(format!(
                    "log record {index} ({name}): {}: {}",
                    e.field, e.message
                ));
            }
            None => {
                out.not_events += 1;
                out.rejections.reject(format!(
                    "log record {index}: event name {name:?} is not stored; Flywheel stores only \
                     {EVENT_EVALUATION_RESULT}, {EVENT_FEEDBACK} and {EVENT_SIGNAL} events from logs"
                ));
            }
        }
    }
    out
}

/// Converts, publishes and answers one logs request for `project`.
pub async fn export<P: Publisher>(
    sink: &FeedbackSink<P>,
    project: &ProjectId,
    request: ExportLogsServiceRequest,
    transport: Transport,
) -> Result<ExportLogsServiceResponse, IngestError> {
    let converted = convert(&request, &sink.validator(project, now_unix_nano()));
    drop(request);
    let invalid = ErrorCode::InvalidItem.reason();
    sink.count_rejected(
        Kind::Feedback.label(),
        transport,
        invalid,
        converted.invalid_feedback,
    );
    sink.count_rejected(
        Kind::Signal.label(),
        transport,
        invalid,
        converted.invalid_signals,
    );
    sink.count_rejected(
        "log_record",
        transport,
        REASON_NOT_FEEDBACK_EVENT,
        converted.not_events,
    );
    let result = sink.publish(project, &converted.items, transport).await;
    sink.count_request(transport, result.as_ref().map(|_| ()).map_err(|e| e.code));
    result?;
    let rejected = converted.rejections.count();
    Ok(ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: converted.rejections.message(),
        }),
    })
}

/// `POST /v1/logs`.
pub async fn http<P: Publisher>(
    State(state): State<Arc<HttpState<P>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let format = Format::from_content_type(header_str(&headers, header::CONTENT_TYPE));
    let transport = match format {
        Ok(Format::Json) => Transport::HttpLogsJson,
        _ => Transport::HttpLogsProtobuf,
    };
    let answer_format = format.clone().unwrap_or(Format::Json);
    let sink = &state.feedback;
    let response = match http_export(&state, &headers, format, body, transport).await {
        Ok(response) => {
            let partial = response.partial_success.is_some();
            otlp_success(answer_format, &response, partial)
        }
        Err(e) => failure(answer_format, &e),
    };
    sink.metrics().observe_request(transport, started);
    response
}

async fn http_export<P: Publisher>(
    state: &HttpState<P>,
    headers: &HeaderMap,
    format: Result<Format, IngestError>,
    body: Body,
    transport: Transport,
) -> Result<ExportLogsServiceResponse, IngestError> {
    let sink = &state.feedback;
    let refused = |e: IngestError| {
        sink.count_request(transport, Err(e.code));
        e
    };
    let project = authorize(&state.auth, headers, Action::WriteFeedback)
        .map_err(refused)?
        .project;
    let format = format.map_err(refused)?;
    let body = read_decoded(headers, body, state.max_request_bytes)
        .await
        .map_err(refused)?;
    let request = decode(format, &body).map_err(refused)?;
    export(sink, &project, request, transport).await
}

/// Decodes an `ExportLogsServiceRequest` (protobuf or OTLP/JSON) as a whole.
pub fn decode(format: Format, body: &[u8]) -> Result<ExportLogsServiceRequest, IngestError> {
    match format {
        Format::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|e| {
            IngestError::new(
                ErrorCode::Malformed,
                format!("body is not a valid OTLP ExportLogsServiceRequest protobuf: {e}"),
            )
        }),
        Format::Json => serde_json::from_slice(body).map_err(|e| {
            IngestError::new(
                ErrorCode::Malformed,
                format!("body is not a valid OTLP/JSON ExportLogsServiceRequest: {e}"),
            )
        }),
    }
}

/// The gRPC logs service.
pub struct LogsReceiver<P> {
    pub sink: Arc<FeedbackSink<P>>,
    pub auth: Authenticator,
}

impl<P: Publisher> LogsReceiver<P> {
    /// Wraps the receiver in tonic's generated server with gzip and the size limit.
    pub fn into_server(self, max_request_bytes: usize) -> LogsServiceServer<Self> {
        LogsServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_request_bytes)
    }
}

#[tonic::async_trait]
impl<P: Publisher> LogsService for LogsReceiver<P> {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let started = Instant::now();
        let transport = Transport::GrpcLogs;
        let result =
            match crate::grpc::authorize(&self.auth, request.metadata(), Action::WriteFeedback) {
                Err(e) => {
                    self.sink.count_request(transport, Err(e.code));
                    Err(crate::grpc::status(&e))
                }
                Ok(principal) => export(
                    &self.sink,
                    &principal.project,
                    request.into_inner(),
                    transport,
                )
                .await
                .map(tonic::Response::new)
                .map_err(|e| crate::grpc::status(&e)),
            };
        self.sink.metrics().observe_request(transport, started);
        result
    }
}
