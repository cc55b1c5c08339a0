//! Flywheel's ClickHouse schema.
//!
//! - [`ClickHouseConfig`]: connection and schema options (database, TTLs, cluster).
//! - [`migrate`]: versioned migrations and the start-up check that refuses an old schema.
//! - [`rows`]: the row types of `otel_traces` and `llm_calls`, shared by the writer (ingester)
//!   and the readers (api, detector).

mod config;
pub mod migrate;
pub mod rows;

pub use config::{ClickHouseConfig, InsertCompression};
