//! Span-level processing: validation (invalid spans are dropped and reported through OTLP
//! partial success) and splitting a request into one Kafka message per trace.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// How many individual messages a partial-success `error_message` lists.
const MAX_LISTED: usize = 5;

/// Spans refused individually, with the first few reasons.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rejections {
    count: u64,
    messages: Vec<String>,
}

impl Rejections {
    pub fn reject(&mut self, message: String) {
        self.count += 1;
        if self.messages.len() < MAX_LISTED {
            self.messages.push(message);
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The OTLP partial-success `error_message`: the first reasons and how many more there were.
    pub fn message(&self) -> String {
        let mut out = self.messages.join("; ");
        let more = self.count.saturating_sub(self.messages.len() as u64);
        if more > 0 {
            out.push_str(&format!("; and {more} more"));
        }
        out
    }
}

/// Number of spans in a request.
pub fn count_spans(request: &ExportTraceServiceRequest) -> u64 {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

/// Why a span is invalid, if it is.
fn check_span(span: &Span) -> Option<String> {
    if span.trace_id.len() != 16 {
        return Some(format!(
            "trace_id must be 16 bytes, got {}",
            span.trace_id.len()
        ));
    }
    if span.trace_id.iter().all(|b| *b == 0) {
        return Some("trace_id must not be all zeros".to_string());
    }
    if span.span_id.len() != 8 {
        return Some(format!(
            "span_id must be 8 bytes, got {}",
            span.span_id.len()
        ));
    }
    if span.span_id.iter().all(|b| *b == 0) {
        return Some("span_id must not be all zeros".to_string());
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Some(format!(
            "parent_span_id must be empty or 8 bytes, got {}",
            span.parent_span_id.len()
        ));
    }
    None
}

/// Removes invalid spans from `request`, recording each in `rejections`.
pub fn drop_invalid(request: &mut ExportTraceServiceRequest, rejections: &mut Rejections) {
    for (ri, rs) in request.resource_spans.iter_mut().enumerate() {
        for (si, ss) in rs.scope_spans.iter_mut().enumerate() {
            if ss.spans.iter().all(|s| check_span(s).is_none()) {
                continue;
            }
            let mut index = 0;
            ss.spans.retain(|span| {
                let keep = match check_span(span) {
                    None => true,
                    Some(why) => {
                        rejections.reject(format!(
                            "resource_spans[{ri}].scope_spans[{si}].spans[{index}] ({:?}): {why}",
                            span.name
                        ));
                        false
                    }
                };
                index += 1;
                keep
            });
        }
    }
}

/// One Kafka message: a trace id and an `ExportTraceServiceRequest` holding only its spans.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceMessage {
    pub trace_id: [u8; 16],
    pub payload: Vec<u8>,
    pub spans: u64,
}

/// Where a span came from in the original request, to rebuild resource and scope around it.
struct Grouped {
    trace_id: [u8; 16],
    /// (resource index, scope index, span)
    spans: Vec<(usize, usize, Span)>,
}

/// Splits a validated request into messages of one trace each, keeping every span's resource
/// and scope, in the order traces first appear. A trace larger than `max_message_bytes` is cut
/// into several messages (same key, so same partition and order); a single span that cannot fit
/// is rejected.
pub fn split_by_trace(
    request: ExportTraceServiceRequest,
    max_message_bytes: usize,
    rejections: &mut Rejections,
) -> Vec<TraceMessage> {
    let mut resources = Vec::with_capacity(request.resource_spans.len());
    let mut scopes: Vec<Vec<ScopeSpans>> = Vec::with_capacity(request.resource_spans.len());
    let mut groups: Vec<Grouped> = Vec::new();
    let mut index: HashMap<[u8; 16], usize> = HashMap::new();
    for (ri, rs) in request.resource_spans.into_iter().enumerate() {
        let mut rs_scopes = Vec::with_capacity(rs.scope_spans.len());
        for (si, mut ss) in rs.scope_spans.into_iter().enumerate() {
            for span in std::mem::take(&mut ss.spans) {
                let mut id = [0u8; 16];
                id.copy_from_slice(&span.trace_id);
                let g = *index.entry(id).or_insert_with(|| {
                    groups.push(Grouped {
                        trace_id: id,
                        spans: Vec::new(),
                    });
                    groups.len() - 1
                });
                groups[g].spans.push((ri, si, span));
            }
            rs_scopes.push(ss);
        }
        resources.push(ResourceSpans {
            resource: rs.resource,
            scope_spans: Vec::new(),
            schema_url: rs.schema_url,
        });
        scopes.push(rs_scopes);
    }

    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let mut builder = Builder::new(group.trace_id, &resources, &scopes, max_message_bytes);
        for (ri, si, span) in group.spans {
            builder.push(ri, si, span, rejections, &mut out);
        }
        builder.finish(&mut out);
    }
    out
}

/// Accumulates one trace's spans into messages below the size limit.
struct Builder<'a> {
    trace_id: [u8; 16],
    resources: &'a [ResourceSpans],
    scopes: &'a [Vec<ScopeSpans>],
    max: usize,
    current: ExportTraceServiceRequest,
    /// (resource index, scope index) of the last ResourceSpans / ScopeSpans in `current`.
    last: Option<(usize, usize)>,
    size: usize,
    spans: u64,
}

impl<'a> Builder<'a> {
    fn new(
        trace_id: [u8; 16],
        resources: &'a [ResourceSpans],
        scopes: &'a [Vec<ScopeSpans>],
        max: usize,
    ) -> Self {
        Self {
            trace_id,
            resources,
            scopes,
            max,
            current: ExportTraceServiceRequest::default(),
            last: None,
            size: 0,
            spans: 0,
        }
    }

    /// Encoded size of the resource and scope wrappers a span needs when they are not open.
    fn wrapper_len(&self, ri: usize, si: usize) -> usize {
        let r = &self.resources[ri];
        let s = &self.scopes[ri][si];
        let resource = r.resource.as_ref().map_or(0, |x| x.encoded_len()) + r.schema_url.len();
        let scope = s.scope.as_ref().map_or(0, |x| x.encoded_len()) + s.schema_url.len();
        resource + scope + 24
    }

    fn push(
        &mut self,
        ri: usize,
        si: usize,
        span: Span,
        rejections: &mut Rejections,
        out: &mut Vec<TraceMessage>,
    ) {
        let span_len = span.encoded_len() + 6;
        let extra = match self.last {
            Some((r, s)) if r == ri && s == si => 0,
            _ => self.wrapper_len(ri, si),
        };
        if span_len + self.wrapper_len(ri, si) > self.max {
            rejections.reject(format!(
                "span {:?} of trace {} is {} bytes, larger than the largest Kafka message ({} bytes)",
                span.name,
                hex::encode(self.trace_id),
                span_len,
                self.max
            ));
            return;
        }
        if self.spans > 0 && self.size + extra + span_len > self.max {
            self.finish(out);
        }
        if self.last != Some((ri, si)) {
            let r = &self.resources[ri];
            let new_resource = !matches!(self.last, Some((r0, _)) if r0 == ri);
            if new_resource {
                self.current.resource_spans.push(ResourceSpans {
                    resource: r.resource.clone(),
                    scope_spans: Vec::new(),
                    schema_url: r.schema_url.clone(),
                });
            }
            let s = &self.scopes[ri][si];
            if let Some(rs) = self.current.resource_spans.last_mut() {
                rs.scope_spans.push(ScopeSpans {
                    scope: s.scope.clone(),
                    spans: Vec::new(),
                    schema_url: s.schema_url.clone(),
                });
            }
            self.last = Some((ri, si));
            self.size += self.wrapper_len(ri, si);
        }
        if let Some(ss) = self
            .current
            .resource_spans
            .last_mut()
            .and_then(|rs| rs.scope_spans.last_mut())
        {
            ss.spans.push(span);
        }
        self.size += span_len;
        self.spans += 1;
    }

    fn finish(&mut self, out: &mut Vec<TraceMessage>) {
        if self.spans == 0 {
            return;
        }
        let request = std::mem::take(&mut self.current);
        out.push(TraceMessage {
            trace_id: self.trace_id,
            payload: request.encode_to_vec(),
            spans: self.spans,
        });
        self.last = None;
        self.size = 0;
        self.spans = 0;
    }
}

#[cfg(test)]
#[path = "spans_tests.rs"]
mod tests;
