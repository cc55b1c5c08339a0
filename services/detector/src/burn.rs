//! Burn-rate and error-budget math (Google SRE workbook, "Alerting on SLOs").
//!
//! - **burn rate** over a window = `(bad / total) / (1 - objective)`: 1 spends the budget
//!   exactly over the SLO period, 14.4 spends 2% of a 30-day budget in one hour. A window without
//!   events has no burn rate (`None`): no data is not burning.
//! - **budget remaining** over the SLO period = `1 - bad / ((1 - objective) * total)`; it goes
//!   negative once the budget is overspent, and is 1 without traffic.
//! - A **multiwindow** rule breaches when the burn rate over both its long and its short window
//!   exceeds its factor (strictly), and the short window has at least `min_events` events.
//! - [`min_detection_time`]: the earliest a policy can fire on a step incident, the yardstick of
//!   the MTTD benchmark.
//! - [`Hysteresis`]: when a firing alert may resolve.

use crate::slo::{AlertPolicy, BurnWindow, Dur, Objective, Severity};
use crate::window::Counts;

/// `(bad / total) / (1 - objective)`, `None` without events.
pub fn burn_rate(c: Counts, objective: Objective) -> Option<f64> {
    c.ratio().map(|r| r / objective.budget())
}

/// Share of the error budget left over the SLO period (1 without traffic, negative when
/// overspent).
pub fn budget_remaining(period: Counts, objective: Objective) -> f64 {
    match period.ratio() {
        None => 1.0,
        Some(r) => 1.0 - r / objective.budget(),
    }
}

/// One rule of a policy, evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEval {
    pub window: BurnWindow,
    pub long: Counts,
    pub short: Counts,
    pub long_burn: Option<f64>,
    pub short_burn: Option<f64>,
    /// Both windows over the factor, with enough events.
    pub breaching: bool,
}

/// Evaluates one rule from its two windows' counts.
pub fn evaluate_rule(
    w: &BurnWindow,
    long: Counts,
    short: Counts,
    objective: Objective,
    min_events: u64,
) -> RuleEval {
    let long_burn = burn_rate(long, objective);
    let short_burn = burn_rate(short, objective);
    let over = |b: Option<f64>| b.is_some_and(|b| b > w.burn_rate);
    RuleEval {
        window: *w,
        long,
        short,
        long_burn,
        short_burn,
        breaching: short.total >= min_events.max(1) && over(long_burn) && over(short_burn),
    }
}

/// Evaluates every rule of `policy`; `sum(window)` returns the counts over a window ending now.
pub fn evaluate(
    policy: &AlertPolicy,
    objective: Objective,
    mut sum: impl FnMut(Dur) -> Counts,
) -> Vec<RuleEval> {
    policy
        .windows
        .iter()
        .map(|w| {
            let (long, short) = (sum(w.long), sum(w.short));
            evaluate_rule(w, long, short, objective, policy.min_events)
        })
        .collect()
}

/// A step incident: the bad ratio jumps from `baseline_ratio` to `bad_ratio` at time 0, under
/// steady traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepIncident {
    pub bad_ratio: f64,
    pub baseline_ratio: f64,
}

/// Earliest detection of a step incident by one rule, in seconds after its start.
///
/// A window of length `W`, `t < W` seconds into the incident, holds `t/W` incident traffic, so
/// its bad ratio is `(p t + b (W - t)) / W`. It exceeds `F (1 - o)` once
/// `t > W (F (1 - o) - b) / (p - b)`; the rule needs that for both windows. `None` when the
/// incident's own burn rate `p / (1 - o)` does not exceed `F`. Assumes the short window has at
/// least `min_events` events; evaluation on bucket boundaries adds up to one bucket.
pub fn rule_detection_time(w: &BurnWindow, objective: Objective, inc: StepIncident) -> Option<f64> {
    let threshold = w.burn_rate * objective.budget();
    if inc.bad_ratio <= threshold {
        return None;
    }
    let frac = ((threshold - inc.baseline_ratio) / (inc.bad_ratio - inc.baseline_ratio)).max(0.0);
    Some(frac * w.long.as_secs_f64().max(w.short.as_secs_f64()))
}

/// The earliest any rule of `policy` can fire on `inc`: seconds and the rule's severity.
pub fn min_detection_time(
    policy: &AlertPolicy,
    objective: Objective,
    inc: StepIncident,
) -> Option<(f64, Severity)> {
    policy
        .windows
        .iter()
        .filter_map(|w| rule_detection_time(w, objective, inc).map(|t| (t, w.severity)))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
}

/// When a firing alert resolves: once its short-window burn rate has stayed below
/// `resolve_below * factor` for `resolve_for`.
///
/// Why: the workbook's short window already lets an alert reset soon after an incident ends,
/// but an error rate hovering around the factor would make a plain "both windows over the
/// factor" condition flap. A lower resolve threshold plus a hold time gives a dead band; while
/// the short window is under it but the hold has not elapsed the alert keeps firing. A short
/// window without events neither starts nor resets the hold (no data is not evidence either
/// way).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hysteresis {
    below_since_ms: Option<i64>,
}

impl Hysteresis {
    /// Feeds one evaluation of a firing alert; `true` when it should resolve now.
    pub fn resolve(
        &mut self,
        now_ms: i64,
        short_burn: Option<f64>,
        factor: f64,
        policy: &AlertPolicy,
    ) -> bool {
        match short_burn {
            Some(b) if b < policy.resolve_below * factor => {
                let since = *self.below_since_ms.get_or_insert(now_ms);
                now_ms - since >= policy.resolve_for.as_millis() as i64
            }
            Some(_) => {
                self.below_since_ms = None;
                false
            }
            None => self
                .below_since_ms
                .is_some_and(|s| now_ms - s >= policy.resolve_for.as_millis() as i64),
        }
    }

    pub fn reset(&mut self) {
        self.below_since_ms = None;
    }
}

#[cfg(test)]
#[path = "burn_tests.rs"]
mod tests;
