//! `flywheel loadgen`: realistic LLM application traffic with scheduled incidents, on a
//! simulated clock, sent to the collector; and the ground truth the MTTD benchmark scores
//! detection against.
//!
//! Data flow: [`sim::Generator`] (a seeded discrete-event simulation: Poisson conversation
//! arrivals, per-model log-normal TTFT, TPOT and token counts, streaming, provider errors,
//! feedback and signals, incidents from [`incident::Schedule`]) -> [`run`] (pacing on the
//! simulated clock, batching) -> [`sink::Exporter`] workers: the collector over HTTP
//! (`POST /v1/traces` OTLP protobuf, `POST /v1/feedback` and `/v1/signals` JSON), retrying 429
//! and 503 after `Retry-After` and counting every refused item. [`truth`] writes the run and
//! each incident's exact window (event time) as JSON lines.
//!
//! ```sh
//! # real time, 5 calls/s, default models, until ctrl-c or 10 minutes
//! flywheel loadgen
//! # 7 simulated days, ending now, as fast as the collector takes it
//! flywheel loadgen --simulate-days 7 --rate 2 --ground-truth truth.jsonl
//! # a scenario with incidents, 60x faster than real time
//! flywheel loadgen --scenario tools/loadgen/scenarios/incidents.toml --speedup 60
//! # one more incident from the command line
//! flywheel loadgen --duration 30m --speedup 30 \
//!   --incident kind=error_burst,start=10m,duration=5m,provider=openai,error_ratio=0.3
//! ```
//!
//! Spans carry the OpenTelemetry GenAI attributes the ingester maps (see [`span`]); every
//! field of the scenario is documented in [`config`] and `scenarios/reference.toml`.

pub mod cli;
pub mod config;
pub mod dist;
pub mod event;
pub mod incident;
pub mod run;
pub mod sim;
pub mod sink;
pub mod span;
pub mod summary;
pub mod truth;

pub use cli::LoadgenArgs;
pub use config::Scenario;
pub use run::{run, Pace, RunOptions};
pub use summary::Summary;

/// Why loadgen cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The scenario or a flag is invalid (the message names the field).
    #[error("invalid scenario: {0}")]
    Scenario(String),
    #[error("{0}")]
    Io(String),
    #[error("sink: {0}")]
    Sink(String),
}
