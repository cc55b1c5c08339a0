//! Where batches go: one narrow trait, [`Exporter`], implemented by [`http::HttpExporter`] (the
//! collector) and [`MemoryExporter`] (tests and `--dry-run`).
//!
//! An exporter gets one encoded request and answers how many of its items were accepted and
//! how many refused; it retries what can be retried itself. Nothing is dropped silently: every
//! item ends up in one of the two counts.

pub mod http;

use std::future::Future;
use std::sync::Mutex;

/// What a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `POST /v1/traces`, OTLP protobuf; items are spans.
    Spans,
    /// `POST /v1/feedback`, a JSON array.
    Feedback,
    /// `POST /v1/signals`, a JSON array.
    Signals,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Self::Spans => "/v1/traces",
            Self::Feedback => "/v1/feedback",
            Self::Signals => "/v1/signals",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Spans => "application/x-protobuf",
            Self::Feedback | Self::Signals => "application/json",
        }
    }
}

/// One encoded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    pub body: Vec<u8>,
    /// Spans or items in the body.
    pub items: u64,
}

/// What became of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    pub accepted: u64,
    pub refused: u64,
    /// 429 / 503 answers (and connection failures) that were retried.
    pub retries: u64,
    /// Why items were refused, when some were.
    pub error: Option<String>,
}

/// Sends requests somewhere.
pub trait Exporter: Send + Sync + 'static {
    fn export(&self, request: Request) -> impl Future<Output = Delivery> + Send;
}

/// Keeps every request in memory and accepts everything.
#[derive(Debug, Default)]
pub struct MemoryExporter {
    /// Keep the bodies (tests); `--dry-run` only counts.
    pub keep: bool,
    pub requests: Mutex<Vec<Request>>,
}

impl Exporter for MemoryExporter {
    async fn export(&self, request: Request) -> Delivery {
        let accepted = request.items;
        if self.keep {
            if let Ok(mut requests) = self.requests.lock() {
                requests.push(request);
            }
        }
        Delivery {
            accepted,
            ..Delivery::default()
        }
    }
}
