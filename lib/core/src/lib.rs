//! Flywheel's shared domain model.
//!
//! Everything that two services must agree on without importing each other lives here: the
//! names of Kafka topics and headers (the wire contract between collector, ingester and
//! detector), the project identity that travels with every record, and the one error-code
//! table that maps to both HTTP statuses and gRPC codes.

pub mod error;
pub mod genai;
pub mod project;
pub mod wire;

pub use error::ErrorCode;
pub use project::ProjectId;
