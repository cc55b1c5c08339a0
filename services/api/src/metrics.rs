//! Every metric the api exports, by name, in one place. Dashboards use these names.

use flywheel_core::ErrorCode;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
};

pub const REQUESTS: &str = "flywheel_api_requests_total";
pub const EXPORTS: &str = "flywheel_api_exports_total";
pub const EXPORTS_IN_PROGRESS: &str = "flywheel_api_exports_in_progress";
pub const EXPORT_ROWS: &str = "flywheel_api_export_rows_total";
pub const EXPORT_DUPLICATES: &str = "flywheel_api_export_duplicates_dropped_total";
pub const EXPORT_REDACTIONS: &str = "flywheel_api_export_redactions_total";
pub const EXPORT_DURATION: &str = "flywheel_api_export_duration_seconds";

/// Shape, format and outcome label values.
pub const SHAPES: [&str; 3] = ["sft", "preference", "eval"];
pub const FORMATS: [&str; 2] = ["jsonl", "parquet"];
/// `ok`: the whole dataset was sent; `error`: ClickHouse or encoding failed mid-way; `cancelled`:
/// the client went away or the service shut down.
pub const OUTCOMES: [&str; 3] = ["ok", "error", "cancelled"];
pub const REDACTION_KINDS: [&str; 5] = ["email", "phone", "card", "secret", "ip"];

/// The api's metric handles.
#[derive(Clone)]
pub struct Metrics {
    /// Requests by route and outcome (`ok` or an `ErrorCode` reason).
    pub requests: IntCounterVec,
    /// Exports started and answered 200, by shape, format and how they ended.
    pub exports: IntCounterVec,
    pub exports_in_progress: IntGauge,
    /// Records written, by shape.
    pub export_rows: IntCounterVec,
    /// Records dropped as exact duplicates, by shape.
    pub export_duplicates: IntCounterVec,
    /// PII replaced by a placeholder, by kind.
    pub export_redactions: IntCounterVec,
    pub export_duration: HistogramVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(REQUESTS, "API requests by route and outcome."),
                &["route", "outcome"],
            )?,
            exports: IntCounterVec::new(
                Opts::new(EXPORTS, "Dataset exports by shape, format and outcome."),
                &["shape", "format", "outcome"],
            )?,
            exports_in_progress: IntGauge::new(EXPORTS_IN_PROGRESS, "Exports being streamed.")?,
            export_rows: IntCounterVec::new(
                Opts::new(EXPORT_ROWS, "Dataset records written."),
                &["shape"],
            )?,
            export_duplicates: IntCounterVec::new(
                Opts::new(
                    EXPORT_DUPLICATES,
                    "Dataset records dropped as exact duplicates.",
                ),
                &["shape"],
            )?,
            export_redactions: IntCounterVec::new(
                Opts::new(
                    EXPORT_REDACTIONS,
                    "PII replaced by placeholders in exports.",
                ),
                &["kind"],
            )?,
            export_duration: HistogramVec::new(
                HistogramOpts::new(EXPORT_DURATION, "Duration of exports.")
                    .buckets(exponential_buckets(0.01, 4.0, 10)?),
                &["shape"],
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.exports.clone()))?;
        registry.register(Box::new(m.exports_in_progress.clone()))?;
        registry.register(Box::new(m.export_rows.clone()))?;
        registry.register(Box::new(m.export_duplicates.clone()))?;
        registry.register(Box::new(m.export_redactions.clone()))?;
        registry.register(Box::new(m.export_duration.clone()))?;
        // Pre-register label values so dashboards see zeros, not gaps.
        for route in ["export", crate::status::ROUTE] {
            for code in ErrorCode::ALL {
                m.requests.with_label_values(&[route, code.reason()]);
            }
            m.requests.with_label_values(&[route, "ok"]);
        }
        for shape in SHAPES {
            for format in FORMATS {
                for outcome in OUTCOMES {
                    m.exports.with_label_values(&[shape, format, outcome]);
                }
            }
            m.export_rows.with_label_values(&[shape]);
            m.export_duplicates.with_label_values(&[shape]);
        }
        for kind in REDACTION_KINDS {
            m.export_redactions.with_label_values(&[kind]);
        }
        Ok(m)
    }
}
