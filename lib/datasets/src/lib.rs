//! # Flywheel datasets
//!
//! Turns what Flywheel stored (model calls in `llm_calls`, explicit feedback in `feedback`,
//! implicit signals in `signals`) into training and evaluation datasets, for `flywheel export`
//! (CLI) and `GET /v1/datasets/export` (api service).
//!
//! Data flow: [`request::parse`] (parameters -> [`ExportRequest`]) -> [`export::export`] reads
//! calls page by page from a [`flywheel_store::Store`] (ClickHouse or embedded DuckDB, [`query`]), builds records of the shape ([`records`]; `preference` pairs
//! come from [`preference`]), normalises messages ([`messages`]), redacts PII ([`redact`]),
//! drops exact duplicates, encodes JSONL or Parquet ([`encode`]) and hands bytes to an
//! [`Output`] after every page, in bounded memory. The [`ExportReport`] counts rows written,
//! duplicates dropped and redactions by kind. Decisions: adr/0007-datasets.md.

pub mod encode;
pub mod export;
pub mod messages;
mod preference;
pub mod query;
pub mod records;
pub mod redact;
pub mod request;

pub use export::{export, ExportOptions, ExportReport, Output};
pub use redact::RedactionCounts;
pub use request::{parse, ExportRequest, Format, ParamError, Shape};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Reading the store failed (its message names the backend: `clickhouse: ...`).
    #[error("{0}")]
    Store(#[from] flywheel_store::StoreError),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("encoding Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// The receiver went away (HTTP client disconnected, shutdown).
    #[error("output closed: {0}")]
    Closed(String),
}
