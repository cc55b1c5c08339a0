//! OTLP request body decoding: content types, gzip with a streaming size limit, protobuf and
//! OTLP/JSON.
//!
//! OTLP/JSON follows the OTLP spec: lowerCamelCase field names, trace and span ids as hex,
//! enums as integers, 64-bit integers as strings or numbers, unknown fields ignored. When a JSON
//! body does not decode as a whole, it is decoded span by span so that one bad span (say, a trace
//! id that is not hex) is rejected through partial success while the valid rest is kept.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use flywheel_core::ErrorCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;

use crate::error::IngestError;
use crate::spans::Rejections;

/// Request body encodings accepted on OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// Parses a `Content-Type` header value (parameters such as `charset` are ignored).
    pub fn from_content_type(value: Option<&str>) -> Result<Self, IngestError> {
        let raw = value.unwrap_or("");
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Self::Protobuf),
            "application/json" => Ok(Self::Json),
            "" => Err(IngestError::new(
                ErrorCode::UnsupportedMediaType,
                "missing Content-Type: use application/x-protobuf or application/json",
            )),
            _ => Err(IngestError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "unsupported Content-Type {raw:?}: use application/x-protobuf or application/json"
                ),
            )),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Decompresses a gzip body, failing as soon as the output would exceed `limit` bytes, so a
/// gzip bomb costs at most `limit` bytes of memory.
pub fn gunzip_limited(body: &[u8], limit: usize) -> Result<Vec<u8>, IngestError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut decoder = MultiGzDecoder::new(body).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|e| {
        IngestError::new(
            ErrorCode::Malformed,
            format!("invalid gzip body: {e} (truncated or not gzip)"),
        )
    })?;
    if out.len() > limit {
        return Err(IngestError::new(
            ErrorCode::TooLarge,
            format!("decompressed body exceeds the limit of {limit} bytes"),
        ));
    }
    Ok(out)
}

/// Decodes an OTLP protobuf `ExportTraceServiceRequest`.
pub fn decode_protobuf(body: &[u8]) -> Result<ExportTraceServiceRequest, IngestError> {
    ExportTraceServiceRequest::decode(body).map_err(|e| {
        IngestError::new(
            ErrorCode::Malformed,
            format!("body is not a valid OTLP ExportTraceServiceRequest protobuf: {e}"),
        )
    })
}

/// Decodes an OTLP/JSON request. Spans that do not decode are removed and recorded in
/// `rejections`; anything wrong outside spans fails the request with the JSON path at fault.
pub fn decode_json(
    body: &[u8],
    rejections: &mut Rejections,
) -> Result<ExportTraceServiceRequest, IngestError> {
    if let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(body) {
        return Ok(request);
    }
    // Slow path, only for bodies that failed: find out exactly what is wrong.
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        IngestError::new(ErrorCode::Malformed, format!("body is not valid JSON: {e}"))
    })?;
    decode_json_value(value, rejections)
}

fn malformed(path: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::new(
        ErrorCode::Malformed,
        format!("invalid OTLP/JSON at {path}: {e}"),
    )
}

fn typed<T: serde::de::DeserializeOwned + Default>(
    value: Option<Value>,
    path: &str,
) -> Result<T, IngestError> {
    match value {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_path_to_error::deserialize(v).map_err(|e| {
            let inner = e.path().to_string();
            let at = if inner == "." {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            malformed(&at, e.inner())
        }),
    }
}

fn array(value: Option<Value>, path: &str) -> Result<Vec<Value>, IngestError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(malformed(path, "expected an array")),
    }
}

fn object(value: Value, path: &str) -> Result<serde_json::Map<String, Value>, IngestError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(malformed(path, "expected an object")),
    }
}

fn decode_json_value(
    value: Value,
    rejections: &mut Rejections,
) -> Result<ExportTraceServiceRequest, IngestError> {
    let mut root = object(value, "$")?;
    let mut request = ExportTraceServiceRequest::default();
    for (ri, rs) in array(root.remove("resourceSpans"), "resourceSpans")?
        .into_iter()
        .enumerate()
    {
        let rpath = format!("resourceSpans[{ri}]");
        let mut rs = object(rs, &rpath)?;
        let resource: Option<Resource> =
            typed(rs.remove("resource"), &format!("{rpath}.resource"))?;
        let schema_url: String = typed(rs.remove("schemaUrl"), &format!("{rpath}.schemaUrl"))?;
        let mut scope_spans = Vec::new();
        for (si, ss) in array(rs.remove("scopeSpans"), &format!("{rpath}.scopeSpans"))?
            .into_iter()
            .enumerate()
        {
            let spath = format!("{rpath}.scopeSpans[{si}]");
            let mut ss = object(ss, &spath)?;
            let scope: Option<InstrumentationScope> =
                typed(ss.remove("scope"), &format!("{spath}.scope"))?;
            let schema_url: String = typed(ss.remove("schemaUrl"), &format!("{spath}.schemaUrl"))?;
            let mut spans = Vec::new();
            for (i, span) in array(ss.remove("spans"), &format!("{spath}.spans"))?
                .into_iter()
                .enumerate()
            {
                match serde_path_to_error::deserialize::<_, Span>(span) {
                    Ok(span) => spans.push(span),
                    Err(e) => {
                        rejections.reject(format!("{spath}.spans[{i}].{}: {}", e.path(), e.inner()))
                    }
                }
            }
            scope_spans.push(ScopeSpans {
                scope,
                spans,
                schema_url,
            });
        }
        request.resource_spans.push(ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        });
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::from_content_type(Some("Application/X-Protobuf")).unwrap(),
            Format::Protobuf
        );
        let e = Format::from_content_type(Some("text/plain")).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedMediaType);
        assert!(e.message.contains("text/plain"));
        assert_eq!(
            Format::from_content_type(None).unwrap_err().code,
            ErrorCode::UnsupportedMediaType
        );
    }

    #[test]
    fn gzip_round_trip_and_limits() {
        let data = vec![b'a'; 10_000];
        assert_eq!(gunzip_limited(&gzip(&data), 10_000).unwrap(), data);
        // One byte over the limit is refused while decompressing.
        let e = gunzip_limited(&gzip(&data), 9_999).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
        // A bomb: 100 MB of zeros compresses to ~100 KB; refused at the limit.
        let bomb = gzip(&vec![0u8; 100 * 1024 * 1024]);
        assert!(bomb.len() < 200_000);
        assert_eq!(
            gunzip_limited(&bomb, 1 << 20).unwrap_err().code,
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn truncated_and_non_gzip_are_malformed() {
        let full = gzip(&vec![b'x'; 50_000]);
        let e = gunzip_limited(&full[..full.len() / 2], 1 << 20).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed, "{}", e.message);
        let e = gunzip_limited(b"definitely not gzip", 1 << 20).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
    }

    #[test]
    fn protobuf_garbage_is_malformed() {
        let e = decode_protobuf(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        assert!(e.message.contains("ExportTraceServiceRequest"));
    }

    #[test]
    fn json_spec_rules() {
        // 64-bit integers as strings and as numbers, integer enums, unknown fields ignored.
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
          "unknownTop":1,
          "scopeSpans":[{"scope":{"name":"s"},"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a","kind":3,
             "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000500000000,
             "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"m","value":{"intValue":7}}],
             "status":{"code":2,"message":"boom"},"futureField":{"x":1}}]}]}]}"#;
        let mut rej = Rejections::default();
        let req = decode_json(body, &mut rej).unwrap();
        assert_eq!(rej.count(), 0);
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(span.kind, 3);
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_700_000_000_500_000_000);
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert_eq!(span.attributes.len(), 2);
    }

    #[test]
    fn json_bad_span_is_rejected_alone() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"not-hex-at-all","spanId":"eee19b7ec3c1b174","name":"bad"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"good"}]}]}]}"#;
        let mut rej = Rejections::default();
        let req = decode_json(body, &mut rej).unwrap();
        assert_eq!(rej.count(), 1);
        assert!(
            rej.message().contains("spans[0].traceId"),
            "{}",
            rej.message()
        );
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "good");
    }

    #[test]
    fn json_error_outside_spans_names_path() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":"oops"},"scopeSpans":[]}]}"#;
        let e = decode_json(body, &mut Rejections::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        assert!(
            e.message.contains("resourceSpans[0].resource.attributes"),
            "{}",
            e.message
        );
        let e = decode_json(b"{not json", &mut Rejections::default()).unwrap_err();
        assert!(e.message.contains("not valid JSON"));
        let e = decode_json(b"[1,2]", &mut Rejections::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
    }
}
