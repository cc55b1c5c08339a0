//! The collector over HTTP: OTLP protobuf to `/v1/traces`, JSON arrays to `/v1/feedback` and
//! `/v1/signals`.
//!
//! Answers, as the collector gives them (README "Collector responses"):
//! - 200: accepted, minus OTLP partial success (`rejected_spans`) or the JSON body's `rejected`;
//! - 400 on feedback / signals with per-item results: the valid items are stored (counted
//!   accepted), the others refused, and the request is not resent;
//! - 429, 503, other 5xx, connection errors and timeouts: retried after `Retry-After` (seconds)
//!   or an exponential back-off (0.25 s doubling to 10 s), up to `max_attempts`, then refused;
//! - anything else: refused at once.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::{Delivery, Exporter, Kind, Request};
use crate::config::SinkConfig;
use crate::LoadgenError;

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Sends to one collector.
#[derive(Debug, Clone)]
pub struct HttpExporter {
    client: reqwest::Client,
    endpoint: String,
    auth: Option<HeaderValue>,
    max_attempts: u32,
}

impl HttpExporter {
    pub fn new(config: &SinkConfig) -> Result<Self, LoadgenError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_s.max(1)))
            .pool_max_idle_per_host(config.concurrency)
            .build()
            .map_err(|e| LoadgenError::Sink(format!("cannot build the HTTP client: {e}")))?;
        let auth = match &config.api_key {
            Some(key) => Some(
                HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| LoadgenError::Sink("the API key is not a valid header".into()))?,
            ),
            None => None,
        };
        Ok(Self {
            client,
            endpoint: config.endpoint.trim_end_matches('/').to_string(),
            auth,
            max_attempts: config.max_attempts,
        })
    }

    async fn attempt(&self, request: &Request) -> Attempt {
        let mut builder = self
            .client
            .post(format!("{}{}", self.endpoint, request.kind.path()))
            .header(CONTENT_TYPE, request.kind.content_type())
            .body(request.body.clone());
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(None, format!("{e}")),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Retry(retry_after, format!("reading the answer: {e}")),
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Attempt::Retry(retry_after, answer_text(status, &body));
        }
        Attempt::Done(classify(request, status, &body))
    }
}

enum Attempt {
    Done(Delivery),
    Retry(Option<Duration>, String),
}

impl Exporter for HttpExporter {
    async fn export(&self, request: Request) -> Delivery {
        let mut retries = 0;
        let mut backoff = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            match self.attempt(&request).await {
                Attempt::Done(mut d) => {
                    d.retries = retries;
                    return d;
                }
                Attempt::Retry(after, why) => {
                    if attempt >= self.max_attempts {
                        return Delivery {
                            accepted: 0,
                            refused: request.items,
                            retries,
                            error: Some(format!("gave up after {attempt} attempts: {why}")),
                        };
                    }
                    tracing::debug!(kind = ?request.kind, attempt, error = %why, "retrying");
                    tokio::time::sleep(after.unwrap_or(backoff).min(MAX_BACKOFF * 3)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    retries += 1;
                    attempt += 1;
                }
            }
        }
    }
}

/// A final answer (not to be retried) -> accepted and refused counts.
pub fn classify(request: &Request, status: StatusCode, body: &[u8]) -> Delivery {
    let all_refused = |why: String| Delivery {
        refused: request.items,
        error: Some(why),
        ..Delivery::default()
    };
    match (request.kind, status) {
        (Kind::Spans, StatusCode::OK) => {
            let rejected = ExportTraceServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_spans.max(0) as u64, p.error_message))
                .unwrap_or_default();
            partial(request.items, rejected.0, rejected.1)
        }
        (Kind::Feedback | Kind::Signals, StatusCode::OK | StatusCode::BAD_REQUEST) => {
            #[derive(serde::Deserialize)]
            struct Items {
                rejected: u64,
                #[serde(default)]
                items: Vec<serde_json::Value>,
            }
            match serde_json::from_slice::<Items>(body) {
                Ok(answer) => {
                    let first_error = answer
                        .items
                        .iter()
                        .find_map(|i| i.get("error"))
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    partial(request.items, answer.rejected, first_error)
                }
                Err(_) if status == StatusCode::OK => partial(request.items, 0, String::new()),
                Err(_) => all_refused(answer_text(status, body)),
            }
        }
        _ => all_refused(answer_text(status, body)),
    }
}

fn partial(items: u64, rejected: u64, why: String) -> Delivery {
    let refused = rejected.min(items);
    Delivery {
        accepted: items - refused,
        refused,
        retries: 0,
        error: (refused > 0).then_some(why),
    }
}

fn answer_text(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    format!("HTTP {status}: {text}")
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    use super::*;

    fn request(kind: Kind, items: u64) -> Request {
        Request {
            kind,
            body: Vec::new(),
            items,
        }
    }

    #[test]
    fn otlp_partial_success_counts_refused_spans() {
        let body = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "span 7: trace_id must be 16 bytes".into(),
            }),
        }
        .encode_to_vec();
        let d = classify(&request(Kind::Spans, 10), StatusCode::OK, &body);
        assert_eq!((d.accepted, d.refused), (7, 3));
        assert!(d.error.unwrap().contains("trace_id"));
        let d = classify(&request(Kind::Spans, 10), StatusCode::OK, &[]);
        assert_eq!((d.accepted, d.refused, d.error), (10, 0, None));
    }

    #[test]
    fn feedback_400_with_item_results_stores_the_valid_ones() {
        let body =
            br#"{"accepted":1,"rejected":1,"items":[{"index":0,"id":"a","status":"accepted"},
            {"index":1,"status":"rejected","error":{"field":"trace_id","message":"32 hex"}}]}"#;
        let d = classify(&request(Kind::Feedback, 2), StatusCode::BAD_REQUEST, body);
        assert_eq!((d.accepted, d.refused), (1, 1));
        assert!(d.error.unwrap().contains("trace_id"));
        // A 400 without item results refused the whole request.
        let d = classify(
            &request(Kind::Signals, 4),
            StatusCode::BAD_REQUEST,
            br#"{"code":3,"message":"invalid JSON"}"#,
        );
        assert_eq!((d.accepted, d.refused), (0, 4));
    }

    #[test]
    fn other_answers_refuse_everything() {
        for status in [StatusCode::UNAUTHORIZED, StatusCode::PAYLOAD_TOO_LARGE] {
            let d = classify(&request(Kind::Spans, 5), status, b"no");
            assert_eq!((d.accepted, d.refused), (0, 5));
            assert!(d.error.unwrap().contains(status.as_str()));
        }
    }
}
