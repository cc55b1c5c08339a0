//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! Credentials come from the `authorization` or `x-api-key` metadata; errors map to gRPC codes
//! through [`flywheel_core::ErrorCode::grpc_code`].

use std::sync::Arc;
use std::time::Instant;

use flywheel_bus::Publisher;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::error::IngestError;
use crate::sink::{TraceSink, Transport};
use crate::spans::Rejections;
use flywheel_auth::{Action, Authenticator, Principal};

/// The gRPC trace service.
pub struct GrpcReceiver<P> {
    pub sink: Arc<TraceSink<P>>,
    pub auth: Authenticator,
}

impl<P: Publisher> GrpcReceiver<P> {
    /// Wraps the receiver in tonic's generated server with gzip and the size limit.
    pub fn into_server(self, max_request_bytes: usize) -> TraceServiceServer<Self> {
        TraceServiceServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_request_bytes)
    }
}

/// Authenticates a gRPC request from its `authorization` / `x-api-key` metadata for `action`.
pub fn authorize(
    auth: &Authenticator,
    meta: &tonic::metadata::MetadataMap,
    action: Action,
) -> Result<Principal, IngestError> {
    let authorization = meta.get("authorization").and_then(|v| v.to_str().ok());
    let api_key = meta.get("x-api-key").and_then(|v| v.to_str().ok());
    crate::auth::authorize(auth, authorization, api_key, action)
}

/// Converts an [`IngestError`] into a gRPC status with the same code and message.
pub fn status(e: &IngestError) -> Status {
    Status::new(tonic::Code::from_i32(e.code.grpc_code()), e.message.clone())
}

#[tonic::async_trait]
impl<P: Publisher> TraceService for GrpcReceiver<P> {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let started = Instant::now();
        let result = match authorize(&self.auth, request.metadata(), Action::IngestSpans) {
            Err(e) => {
                self.sink.count_refused(Transport::Grpc, e.code);
                Err(status(&e))
            }
            Ok(principal) => self
                .sink
                .export(
                    &principal.project,
                    request.into_inner(),
                    Rejections::default(),
                    Transport::Grpc,
                )
                .await
                .map(|outcome| Response::new(outcome.into_response()))
                .map_err(|e| status(&e)),
        };
        self.sink
            .metrics()
            .observe_request(Transport::Grpc, started);
        result
    }
}
