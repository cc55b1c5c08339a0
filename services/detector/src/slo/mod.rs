//! The SLO file: what the detector measures and when it alerts.
//!
//! A YAML file (`deploy/slos.example.yaml`) read once at start-up by [`load`]. Each SLO names a
//! selector (which calls), an SLI (what makes a call good or bad), an objective over a window,
//! and an alert policy that defaults to the SRE workbook's multiwindow multi-burn-rate table.
//! Cost policies sit beside the SLOs. Every mapping refuses unknown fields, and a malformed
//! file fails with the line, column and dotted field at fault ([`SloFileError`]).

mod load;
mod values;

#[cfg(test)]
mod tests;

use serde::Deserialize;

pub use load::{load, parse, SloFileError};
pub use values::{At, Dur, Objective};

use crate::SliKey;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloFile {
    /// Service level objectives, each evaluated per SLI key that its selector matches.
    #[serde(default)]
    pub slos: Vec<At<Slo>>,
    /// Spend-rate and cost-change policies.
    #[serde(default)]
    pub cost_policies: Vec<At<CostPolicy>>,
}

/// One objective, e.g. "99% of `chat` calls to `gpt-4o` have TTFT < 1.5 s over 30 days".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Unique name, `[a-z0-9_.-]`; the `slo` label of its alerts.
    pub name: At<String>,
    /// Free text, shown in alert descriptions.
    #[serde(default)]
    pub description: String,
    /// Which calls count; an absent field matches every value.
    #[serde(default)]
    pub selector: Selector,
    /// What makes an event good or bad.
    pub sli: Sli,
    /// Target share of good events, `0.99` or `"99%"`.
    pub objective: Objective,
    /// The SLO period the error budget is computed over, e.g. `30d`.
    pub window: At<Dur>,
    /// Burn-rate windows and hysteresis; defaults to the SRE workbook table.
    #[serde(default)]
    pub alerting: AlertPolicy,
}

/// Matches SLI keys; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    pub project: Option<String>,
    pub service: Option<String>,
    pub model: Option<String>,
    pub operation: Option<String>,
}

impl Selector {
    pub fn matches(&self, key: &SliKey) -> bool {
        fn ok(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        ok(&self.project, &key.project)
            && ok(&self.service, &key.service)
            && ok(&self.model, &key.model)
            && ok(&self.operation, &key.operation)
    }
}

/// The service level indicator: the ratio of bad events to all events.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sli {
    /// Bad: calls that ended in error. Total: calls.
    Availability,
    /// Bad: calls whose metric is at or above the threshold. Total: calls that have the metric.
    Latency(LatencySli),
    /// Bad: feedback items of this name that are negative. Total: feedback items of this name.
    NegativeFeedback(FeedbackSli),
    /// Bad: implicit signals of this type. Total: calls.
    Signal(SignalSli),
    /// Bad: calls with an error or over any of the thresholds. Total: calls. The good ones per
    /// second are the goodput.
    Goodput(At<GoodputSli>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyMetric {
    /// End-to-end call duration.
    Duration,
    /// Time to first token (chunk).
    Ttft,
    /// Time per output token after the first.
    Tpot,
}

impl LatencyMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duration => "duration",
            Self::Ttft => "ttft",
            Self::Tpot => "tpot",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySli {
    pub metric: LatencyMetric,
    /// A call is good when its metric is strictly below this.
    pub threshold: At<Dur>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackSli {
    /// The feedback name, e.g. `thumbs`.
    pub name: At<String>,
    /// Which values are negative.
    pub negative: Negative,
}

/// Which feedback values are negative.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Negative {
    /// A boolean value equal to this (usually `false` for thumbs).
    Boolean(bool),
    /// A number strictly below this.
    Below(f64),
    /// A label among these.
    Labels(At<Vec<String>>),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSli {
    pub signal: SignalKind,
}

/// The implicit signals that mean the answer was not good (names as on the signals topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    Regenerate,
    Stop,
    Edit,
    Retry,
    Rephrase,
    Abandon,
}

impl SignalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regenerate => "regenerate",
            Self::Stop => "stop",
            Self::Edit => "edit",
            Self::Retry => "retry",
            Self::Rephrase => "rephrase",
            Self::Abandon => "abandon",
        }
    }
}

/// Latency objectives a call must all meet, without error, to count as goodput (at least one).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodputSli {
    pub duration: Option<Dur>,
    pub ttft: Option<Dur>,
    pub tpot: Option<Dur>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::Ticket => "ticket",
        }
    }
}

/// One row of a multiwindow multi-burn-rate policy: alert when the burn rate over both the long
/// and the short window exceeds `burn_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnWindow {
    pub long: Dur,
    pub short: Dur,
    pub burn_rate: f64,
    pub severity: Severity,
}

/// How an SLO alerts. Every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertPolicy {
    /// Defaults to [`AlertPolicy::sre_workbook`].
    pub windows: Vec<At<BurnWindow>>,
    /// Fewest events in the short window for it to count (a window with no traffic is never
    /// burning, whatever the ratio of nothing).
    pub min_events: u64,
    /// A firing alert resolves when its short-window burn rate stays below
    /// `resolve_below * burn_rate` ...
    pub resolve_below: f64,
    /// ... for this long (hysteresis, see `burn::Hysteresis`).
    pub resolve_for: Dur,
    /// How long the condition must hold before pending turns into firing (0: at once).
    pub pending_for: Dur,
}

impl AlertPolicy {
    /// The SRE workbook defaults for a 30-day SLO: 2% of the budget in 1 h (14.4x, 5 m
    /// confirmation) and 5% in 6 h (6x, 30 m) page; 10% in 3 d (1x, 6 h) opens a ticket.
    pub fn sre_workbook() -> Vec<At<BurnWindow>> {
        [
            (Dur::hours(1), Dur::mins(5), 14.4, Severity::Page),
            (Dur::hours(6), Dur::mins(30), 6.0, Severity::Page),
            (Dur::days(3), Dur::hours(6), 1.0, Severity::Ticket),
        ]
        .into_iter()
        .map(|(long, short, burn_rate, severity)| {
            At::new(BurnWindow {
                long,
                short,
                burn_rate,
                severity,
            })
        })
        .collect()
    }

    /// The longest window of the policy (what the window store must retain).
    pub fn longest_window(&self) -> Dur {
        self.windows
            .iter()
            .map(|w| w.long)
            .max()
            .unwrap_or_default()
    }
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            windows: Self::sre_workbook(),
            min_events: 1,
            resolve_below: 0.5,
            resolve_for: Dur::mins(5),
            pending_for: Dur::secs(0),
        }
    }
}

/// A cost policy: exactly one of `spend` or `change`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostPolicy {
    pub name: At<String>,
    #[serde(default)]
    pub selector: Selector,
    #[serde(default = "default_cost_severity")]
    pub severity: Severity,
    pub spend: Option<At<SpendPolicy>>,
    pub change: Option<At<ChangePolicy>>,
}

fn default_cost_severity() -> Severity {
    Severity::Ticket
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// The UTC calendar day.
    Day,
    /// The UTC calendar month.
    Month,
}

/// Alert when the spend so far plus the recent spend rate, projected to the end of the period,
/// would exceed `alert_at` times the budget.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendPolicy {
    pub period: BudgetPeriod,
    pub budget_usd: f64,
    /// The window the current spend rate is measured over.
    #[serde(default = "default_lookback")]
    pub lookback: Dur,
    /// Share of the budget the projection may reach.
    #[serde(default = "one")]
    pub alert_at: f64,
    /// What one budget is for: the project (default) or each end user of it.
    #[serde(default)]
    pub per: SpendPer,
    /// `per: user`: at most this many user series per policy; later users share one series,
    /// user `(other)` (counted in `flywheel_detector_cost_user_folded_calls_total`).
    #[serde(default = "default_max_users")]
    pub max_users: usize,
}

/// What a spend budget is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendPer {
    /// One series per project (and whatever the selector pins).
    #[default]
    Project,
    /// One series per project (and pins) and end user (`llm_calls.user_id`): a per-user budget.
    User,
}

fn default_max_users() -> usize {
    1000
}

fn default_lookback() -> Dur {
    Dur::hours(1)
}
fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostMetric {
    /// Mean cost (USD) per call.
    CostPerCall,
    /// Mean tokens (input + output) per call.
    TokensPerCall,
}

/// Change detection on per-interval means against a trailing baseline: a one-sided CUSUM of
/// robust z-scores (see `cost::ChangeDetector`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangePolicy {
    pub metric: CostMetric,
    /// Length of one interval whose mean is one observation.
    pub interval: Dur,
    /// Trailing baseline the observation is compared with.
    pub baseline: Dur,
    /// CUSUM allowance `k`: z-scores up to this are noise and drain the sum.
    pub allowance: f64,
    /// CUSUM decision threshold `h`: alert when the sum exceeds it.
    pub decision: f64,
    /// ... and the mean since the sum started rising moved by at least this (0.2: +20%).
    pub min_relative_change: f64,
    /// Quiet intervals are pooled until they hold this many calls.
    pub min_calls: u64,
}

impl Default for ChangePolicy {
    fn default() -> Self {
        Self {
            metric: CostMetric::CostPerCall,
            interval: Dur::mins(1),
            baseline: Dur::hours(6),
            allowance: 1.5,
            decision: 8.0,
            min_relative_change: 0.2,
            min_calls: 20,
        }
    }
}
