//! Flywheel detector (issue 5): streaming SLIs in event time from the span, feedback and
//! signals topics, multiwindow burn-rate alerts to Alertmanager, webhooks and Slack, alert
//! history in the store (ClickHouse or DuckDB), `GET /v1/slos` and `GET /v1/alerts`. Start reading at [`run`].
//!
//! Data flow: [`consumer`] reads the topics with its own consumer group and decodes spans
//! ([`extract`]), feedback and signals (joined to their call's key by [`join`], else looked up
//! in the store by [`history`]); [`engine`] counts them into event-time windows and, every
//! evaluation interval, evaluates every SLO per key and drives the alert tracker; changes go to
//! [`sender`] (bounded queues, retries, never blocking) and to the `alerts` table; [`http`]
//! serves the last evaluation. At start-up, [`history`] rebuilds the windows and restores
//! firing alerts so that a restart does not page again.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | `[detector]` section |
//! | [`consumer`] | the loop: the raw topics (a `flywheel_bus::Source`: Kafka or the wal) -> engine -> senders, history, snapshot |
//! | [`extract`] | model calls of an OTLP span message (with tokens and cost, priced by `flywheel-pricing`) |
//! | [`join`] | bounded maps from trace / span / conversation ids to SLI keys |
//! | [`keyed`] | scale-out: SLI events re-keyed through a topic, one owner per key (Kafka only) |
//! | [`engine`] | window store, tracker and evaluation, no I/O |
//! | [`sender`] | Alertmanager v2, webhook and Slack delivery with retries |
//! | [`history`] | the store (`flywheel_store::DetectorStore`): alert rows, restore, rebuild, key lookups |
//! | [`http`] | `GET /v1/slos`, `GET /v1/alerts`, SLI gauges |
//! | [`metrics`] | metric names |
//! | [`slo`] | the SLO file (YAML): SLIs, selectors, objectives, windows, alert and cost policies; errors name line and field |
//! | [`window`] | event-time bucketed counters per key: watermark, bounded lateness, bounded memory, mergeable |
//! | [`sli`] | what a call, feedback item or signal adds to each SLI; an SLO's status for a key |
//! | [`burn`] | burn rate, budget remaining, multiwindow rules, minimum detection time, hysteresis |
//! | [`cost`] | spend-rate projection against a budget; change detection of cost / tokens per call; [`cost::series`]: the cost policies' state per key (and user) in the running engine, seeded at start-up with the period's spend |
//! | [`alert`] | alert state machine and the Alertmanager v2, Alertmanager webhook and Slack bodies |
//! | [`sketch`] | latency quantiles per key from mergeable DDSketches |
//! | [`latency`] | the sketches fed with every call's duration, TTFT and TPOT per key; p50 / p90 / p99 for `GET /v1/slos` |
//!
//! # Event time
//!
//! Every SLI is computed in the time the call (or the feedback, or the signal) happened, not
//! the time the detector read it, so a replay of the topics gives the same SLIs and a slow
//! consumer does not invent incidents; a call's event time is its end. A store's watermark is
//! the largest event time seen minus the allowed lateness (default 30 s); events older than the
//! watermark are refused and counted. SLO rules are judged at the open end (windows ending
//! after the newest event, [`window::WindowStore::open_end`]), so detection lags the exact
//! minimum by about a second (adr/0008, "Detection latency"); cost policies and latency
//! quantiles judge closed buckets (ending at the watermark).
//!
//! Per key (project, service, model, operation; and SLO), counts are kept in tiers of rings of
//! cumulative counts (a window sum is a few lookups): 1 s buckets for windows up to 10 min,
//! 10 s up to 6 h, 5 min up to 3 d, 1 h up to 35 d for the budget left over a 30-day SLO. A key
//! costs about 4,560 cells (70 KB), keys are capped and overflow is counted.
//!
//! # Scale-out
//!
//! Spans are keyed by trace id, so with several detector instances in one consumer group each
//! sees a slice of every model's traffic, while SLIs and alerts must be global. Two designs:
//!
//! 1. **Re-key by SLI key into a derived topic** (recommended). Stage 1, in every instance,
//!    turns each span (and each feedback item or signal, after the join) into a small SLI
//!    event: key, event time, and the outcome bits each SLO needs (error, duration, TTFT,
//!    TPOT, cost, tokens, feedback / signal kind), and produces it to a derived topic keyed by
//!    the SLI key. Stage 2, the same consumer group on the derived topic, owns each key
//!    entirely: its windows, sketches and alert state live in exactly one instance, so the
//!    numbers are exact and alert deduplication is local. It is Kafka partitions plus
//!    consumer groups again (the project's rule for scale-out: no home-made coordination); a
//!    rebalance moves a key's state by replaying the derived topic (retained for the longest
//!    window) or from ClickHouse history; the extra hop costs milliseconds against a
//!    detection budget of minutes; LLM traffic (thousands of calls a second, not millions)
//!    makes the derived topic small. A hot key is one partition's worth of counting, which is
//!    cheap (a cell update per event).
//! 2. **Merge per-instance partial aggregates.** Each instance keeps windows for every key it
//!    sees and periodically publishes them; someone merges and evaluates. The merge itself is
//!    exact ([`window::WindowStore::merge`], [`sketch::LatencySketches::merge`], both tested),
//!    but the rest is not free: a global watermark is the minimum over instances (one stalled
//!    instance stalls everyone), evaluation must be elected or deduplicated downstream, and
//!    publication adds a sync period to detection.
//!
//! We chose 1 ([`keyed`], `detector.keyed_topic`, adr/0008; stage 2 rebuilds its keys by
//! replaying the derived topic after each assignment) and keep the stores mergeable anyway:
//! a stage-1 instance may pre-aggregate per (key, bucket) if the derived topic ever gets
//! large, and the merge property tests compare partial stores against a single one.

pub mod alert;
pub mod burn;
pub mod config;
pub mod consumer;
pub mod cost;
pub mod engine;
pub mod extract;
pub mod history;
pub mod http;
pub mod join;
pub mod keyed;
pub mod latency;
pub mod metrics;
pub mod oracle;
mod run;
pub mod sender;
pub mod sketch;
pub mod sli;
pub mod slo;
pub mod window;

pub use config::DetectorConfig;
pub use run::{run, DetectorError};

/// The dimensions an SLI is computed per. The end user is not one (SLO series never multiply
/// by user): only `per: user` spend policies use it ([`extract::Call::user`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SliKey {
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
}
