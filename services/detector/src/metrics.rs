//! Every metric the detector exports, by name, in one place. Labels stay bounded: kinds and
//! outcomes are fixed sets, senders are the three kinds, and SLI gauges are per SLO (the worst
//! key), so their count is the SLO file's size, not the traffic's; cost gauges likewise per
//! cost policy.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use prometheus::{Gauge, GaugeVec};

pub const EVENTS: &str = "flywheel_detector_events_total";
pub const UNATTRIBUTED: &str = "flywheel_detector_unattributed_total";
pub const UNDECODABLE: &str = "flywheel_detector_undecodable_messages_total";
pub const NOTIFICATIONS: &str = "flywheel_detector_notifications_total";
pub const NOTIFICATIONS_DROPPED: &str = "flywheel_detector_notifications_dropped_total";
pub const DELIVERY_RETRIES: &str = "flywheel_detector_delivery_retries_total";
pub const ALERTS_FIRING: &str = "flywheel_detector_alerts_firing";
pub const SERIES: &str = "flywheel_detector_series";
pub const WATERMARK_LAG: &str = "flywheel_detector_watermark_lag_seconds";
pub const EVALUATION: &str = "flywheel_detector_evaluation_seconds";
pub const SLO_SLI: &str = "flywheel_detector_slo_sli_min";
pub const SLO_BUDGET: &str = "flywheel_detector_slo_budget_remaining_min";
pub const SLO_BURN: &str = "flywheel_detector_slo_burn_rate_max";
pub const REBUILT_EVENTS: &str = "flywheel_detector_rebuilt_events";
pub const RESTORED_ALERTS: &str = "flywheel_detector_restored_alerts";
pub const HISTORY_ERRORS: &str = "flywheel_detector_history_errors_total";
pub const SLO_LATENCY_P99: &str = "flywheel_detector_slo_latency_p99_max_ms";
pub const COST_BUDGET_RATIO: &str = "flywheel_detector_cost_projected_budget_ratio_max";
pub const COST_SPEND_RATE: &str = "flywheel_detector_cost_spend_usd_per_hour_max";
pub const COST_CHANGE_CUSUM: &str = "flywheel_detector_cost_change_cusum_max";
pub const COST_USER_FOLDED: &str = "flywheel_detector_cost_user_folded_calls_total";
pub const SEEDED_SPEND_SERIES: &str = "flywheel_detector_seeded_spend_series";

/// Event kinds (the `kind` label).
pub const KINDS: [&str; 3] = ["call", "feedback", "signal"];
/// What happened to an event (the `outcome` label of [`EVENTS`]): counted in at least one
/// series, late (older than the watermark), over the key cap, not selected by any SLO, or
/// already in the history rebuilt at start-up.
/// `forwarded`: produced to the keyed topic (scale-out stage 1, counted again by stage 2).
pub const OUTCOMES: [&str; 6] = [
    "counted",
    "late",
    "overflow",
    "unselected",
    "in_history",
    "forwarded",
];
/// Sender kinds (the `sender` label).
pub const SENDERS: [&str; 4] = ["alertmanager", "webhook", "slack", "history"];

#[derive(Clone)]
pub struct Metrics {
    /// Events by kind and outcome.
    pub events: IntCounterVec,
    /// Feedback and signals whose call could not be found (memory, then the store), by kind.
    pub unattributed: IntCounterVec,
    /// Messages that were not valid protobuf, by kind.
    pub undecodable: IntCounterVec,
    /// Deliveries by sender and outcome (`sent`, `failed` after every attempt).
    pub notifications: IntCounterVec,
    /// Notifications dropped because a sender's queue was full, by sender.
    pub dropped: IntCounterVec,
    /// Failed delivery attempts that were retried, by sender.
    pub retries: IntCounterVec,
    /// Alerts firing, by severity.
    pub firing: IntGaugeVec,
    /// (SLO, key) series held.
    pub series: IntGauge,
    /// Wall clock minus the event-time end of the last evaluation.
    pub watermark_lag: Gauge,
    /// Time of one evaluation of every series.
    pub evaluation: Histogram,
    /// Lowest SLI (good share over the SLO window) among the keys of an SLO.
    pub slo_sli: GaugeVec,
    /// Lowest error budget remaining among the keys of an SLO.
    pub slo_budget: GaugeVec,
    /// Highest burn rate among the keys of an SLO, by window (`long`/`short` of each rule).
    pub slo_burn: GaugeVec,
    /// Failed store reads and writes (history, lookups), by operation.
    pub history_errors: IntCounterVec,
    /// Highest p99 (last 5 min) of a latency SLO's metric among its keys, in ms.
    pub slo_latency_p99: GaugeVec,
    /// Highest projected spend over budget among the keys of a spend policy.
    pub cost_budget_ratio: GaugeVec,
    /// Highest spend rate (USD per hour over the lookback) among the keys of a spend policy.
    pub cost_spend_rate: GaugeVec,
    /// Highest CUSUM among the keys of a change policy (alerts above its decision threshold).
    pub cost_change_cusum: GaugeVec,
    /// Calls of users past a `per: user` spend policy's `max_users`, counted in its `(other)`
    /// series, per policy.
    pub cost_user_folded: IntCounterVec,
    /// Spend series seeded with their period-to-date spend from the store at start-up.
    pub seeded_spend_series: IntGauge,
    /// Stored calls, feedback and signals replayed at start-up.
    pub rebuilt_events: IntGauge,
    /// Firing alerts restored from history at start-up.
    pub restored_alerts: IntGauge,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            events: IntCounterVec::new(
                Opts::new(
                    EVENTS,
                    "Calls, feedback items and signals read, by outcome.",
                ),
                &["kind", "outcome"],
            )?,
            unattributed: IntCounterVec::new(
                Opts::new(
                    UNATTRIBUTED,
                    "Feedback items and signals whose call (SLI key) was not found.",
                ),
                &["kind"],
            )?,
            undecodable: IntCounterVec::new(
                Opts::new(UNDECODABLE, "Messages that could not be decoded, by kind."),
                &["kind"],
            )?,
            notifications: IntCounterVec::new(
                Opts::new(NOTIFICATIONS, "Alert deliveries, by sender and outcome."),
                &["sender", "outcome"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    NOTIFICATIONS_DROPPED,
                    "Alert notifications dropped because the sender's queue was full.",
                ),
                &["sender"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    DELIVERY_RETRIES,
                    "Failed delivery attempts that were retried.",
                ),
                &["sender"],
            )?,
            firing: IntGaugeVec::new(
                Opts::new(ALERTS_FIRING, "Alerts firing, by severity."),
                &["severity"],
            )?,
            series: IntGauge::new(SERIES, "(SLO, SLI key) series held in the window store.")?,
            watermark_lag: Gauge::new(
                WATERMARK_LAG,
                "Wall clock minus the event time the last evaluation ended at.",
            )?,
            evaluation: Histogram::with_opts(
                HistogramOpts::new(EVALUATION, "Time to evaluate every series once.")
                    .buckets(exponential_buckets(0.0001, 2.0, 16)?),
            )?,
            slo_sli: GaugeVec::new(
                Opts::new(
                    SLO_SLI,
                    "Lowest SLI (good share over the SLO window) among keys.",
                ),
                &["slo"],
            )?,
            slo_budget: GaugeVec::new(
                Opts::new(SLO_BUDGET, "Lowest error budget remaining among keys."),
                &["slo"],
            )?,
            slo_burn: GaugeVec::new(
                Opts::new(SLO_BURN, "Highest burn rate among keys, by window."),
                &["slo", "window"],
            )?,
            history_errors: IntCounterVec::new(
                Opts::new(
                    HISTORY_ERRORS,
                    "Failed store reads and writes (history, lookups), by operation.",
                ),
                &["operation"],
            )?,
            slo_latency_p99: GaugeVec::new(
                Opts::new(
                    SLO_LATENCY_P99,
                    "Highest p99 over the last 5 minutes of a latency SLO's metric among its keys (ms).",
                ),
                &["slo"],
            )?,
            cost_budget_ratio: GaugeVec::new(
                Opts::new(
                    COST_BUDGET_RATIO,
                    "Highest projected spend / budget among keys, per spend policy.",
                ),
                &["policy"],
            )?,
            cost_spend_rate: GaugeVec::new(
                Opts::new(
                    COST_SPEND_RATE,
                    "Highest spend rate (USD per hour over the lookback) among keys, per spend policy.",
                ),
                &["policy"],
            )?,
            cost_change_cusum: GaugeVec::new(
                Opts::new(
                    COST_CHANGE_CUSUM,
                    "Highest CUSUM of cost or tokens per call among keys, per change policy.",
                ),
                &["policy"],
            )?,
            cost_user_folded: IntCounterVec::new(
                Opts::new(
                    COST_USER_FOLDED,
                    "Calls of users past max_users counted in the (other) series, per spend policy.",
                ),
                &["policy"],
            )?,
            seeded_spend_series: IntGauge::new(
                SEEDED_SPEND_SERIES,
                "Spend series seeded with their period-to-date spend at start-up.",
            )?,
            rebuilt_events: IntGauge::new(
                REBUILT_EVENTS,
                "Stored calls, feedback and signals replayed at start-up.",
            )?,
            restored_alerts: IntGauge::new(
                RESTORED_ALERTS,
                "Firing alerts restored from the alert history at start-up.",
            )?,
        };
        registry.register(Box::new(m.rebuilt_events.clone()))?;
        registry.register(Box::new(m.restored_alerts.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.unattributed.clone()))?;
        registry.register(Box::new(m.undecodable.clone()))?;
        registry.register(Box::new(m.notifications.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.firing.clone()))?;
        registry.register(Box::new(m.series.clone()))?;
        registry.register(Box::new(m.watermark_lag.clone()))?;
        registry.register(Box::new(m.evaluation.clone()))?;
        registry.register(Box::new(m.slo_sli.clone()))?;
        registry.register(Box::new(m.slo_budget.clone()))?;
        registry.register(Box::new(m.slo_burn.clone()))?;
        registry.register(Box::new(m.history_errors.clone()))?;
        registry.register(Box::new(m.slo_latency_p99.clone()))?;
        registry.register(Box::new(m.cost_budget_ratio.clone()))?;
        registry.register(Box::new(m.cost_spend_rate.clone()))?;
        registry.register(Box::new(m.cost_change_cusum.clone()))?;
        registry.register(Box::new(m.cost_user_folded.clone()))?;
        registry.register(Box::new(m.seeded_spend_series.clone()))?;
        for kind in KINDS {
            for outcome in OUTCOMES {
                m.events.with_label_values(&[kind, outcome]);
            }
            if kind != "call" {
                m.unattributed.with_label_values(&[kind]);
            }
        }
        for s in SENDERS {
            m.dropped.with_label_values(&[s]);
        }
        for sev in ["page", "ticket"] {
            m.firing.with_label_values(&[sev]);
        }
        Ok(m)
    }
}
