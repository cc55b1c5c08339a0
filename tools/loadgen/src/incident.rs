//! Scheduled incidents: what each changes, and when.
//!
//! An incident is active for event times `start <= t < end` (simulated Unix ns). Each effect is
//! decided at the event time of the record that carries it, so the change is exact in the
//! window:
//! - `ttft_regression`, `error_burst`, `cost_spike`, `overload`: the call's start time;
//! - `thumbs_down_surge`: the feedback's timestamp;
//! - `regenerate_surge`: the time the user asks again (the regenerated call's start and the
//!   regenerate signal's timestamp).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{de_duration, Scenario};
use crate::LoadgenError;

/// The kinds of incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// TTFT of one `model` × `multiplier`.
    TtftRegression,
    /// Calls to one `provider` fail with probability `error_ratio`.
    ErrorBurst,
    /// Thumbs are down with probability `ratio` (optionally for one `model`).
    ThumbsDownSurge,
    /// Answers are regenerated with probability `ratio` (optionally for one `model`).
    RegenerateSurge,
    /// Input tokens × `multiplier` (a prompt-length blow-up; optionally one `model`).
    CostSpike,
    /// Every model: TTFT and TPOT × `multiplier`, calls fail with probability `error_ratio`,
    /// arrivals × `rate_multiplier` (default 1).
    Overload,
}

/// An incident as written in the scenario (`[[incident]]`) or on the command line
/// (`--incident kind=...,start=...`). `start` is an offset from the run's start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentConfig {
    /// A name for the ground truth; default `<kind>-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    pub kind: IncidentKind,
    #[serde(deserialize_with = "de_duration")]
    pub start: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub duration: Duration,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub multiplier: Option<f64>,
    #[serde(default)]
    pub error_ratio: Option<f64>,
    #[serde(default)]
    pub ratio: Option<f64>,
    #[serde(default)]
    pub rate_multiplier: Option<f64>,
}

impl IncidentConfig {
    /// Checks the fields of its kind, naming `incident[i].<field>` at fault.
    pub fn check(&self, i: usize, scenario: &Scenario) -> Result<(), LoadgenError> {
        use IncidentKind as K;
        let bad = |field: &str, message: String| {
            Err(LoadgenError::Scenario(format!(
                "`incident[{i}].{field}` {message}"
            )))
        };
        let kind = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let (model, provider, multiplier, error_ratio, ratio, rate) = match self.kind {
            K::TtftRegression => (Need::Yes, Need::No, Need::Yes, Need::No, Need::No, Need::No),
            K::ErrorBurst => (Need::No, Need::Yes, Need::No, Need::Yes, Need::No, Need::No),
            K::ThumbsDownSurge | K::RegenerateSurge => (
                Need::Maybe,
                Need::No,
                Need::No,
                Need::No,
                Need::Yes,
                Need::No,
            ),
            K::CostSpike => (
                Need::Maybe,
                Need::No,
                Need::Yes,
                Need::No,
                Need::No,
                Need::No,
            ),
            K::Overload => (
                Need::No,
                Need::No,
                Need::Yes,
                Need::Yes,
                Need::No,
                Need::Maybe,
            ),
        };
        for (field, need, present) in [
            ("model", model, self.model.is_some()),
            ("provider", provider, self.provider.is_some()),
            ("multiplier", multiplier, self.multiplier.is_some()),
            ("error_ratio", error_ratio, self.error_ratio.is_some()),
            ("ratio", ratio, self.ratio.is_some()),
            ("rate_multiplier", rate, self.rate_multiplier.is_some()),
        ] {
            match (need, present) {
                (Need::Yes, false) => return bad(field, format!("is required for kind {kind}")),
                (Need::No, true) => return bad(field, format!("does not apply to kind {kind}")),
                _ => {}
            }
        }
        if let Some(m) = &self.model {
            if !scenario.models.iter().any(|c| &c.name == m) {
                return bad(
                    "model",
                    format!("{m:?} is not one of the scenario's models"),
                );
            }
        }
        if let Some(p) = &self.provider {
            if !scenario.models.iter().any(|c| &c.provider == p) {
                return bad(
                    "provider",
                    format!("{p:?} is not the provider of any scenario model"),
                );
            }
        }
        for (field, value) in [
            ("multiplier", self.multiplier),
            ("rate_multiplier", self.rate_multiplier),
        ] {
            if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return bad(field, "must be a number > 0".into());
            }
        }
        for (field, value) in [("error_ratio", self.error_ratio), ("ratio", self.ratio)] {
            if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                return bad(field, "must be between 0 and 1".into());
            }
        }
        if self.duration.is_zero() {
            return bad("duration", "must be longer than 0".into());
        }
        if self.start >= scenario.duration {
            return bad(
                "start",
                format!(
                    "is at or after the end of the run ({} s)",
                    scenario.duration.as_secs()
                ),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Need {
    Yes,
    No,
    Maybe,
}

/// An incident placed on the simulated timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub name: String,
    pub kind: IncidentKind,
    /// Simulated Unix ns, inclusive.
    pub start_ns: i64,
    /// Simulated Unix ns, exclusive.
    pub end_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_multiplier: Option<f64>,
}

impl Incident {
    fn active(&self, t: i64) -> bool {
        self.start_ns <= t && t < self.end_ns
    }

    fn for_model(&self, model: &str) -> bool {
        self.model.as_deref().is_none_or(|m| m == model)
    }
}

/// Every incident of a run, and the effects in force at a time.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    pub incidents: Vec<Incident>,
}

impl Schedule {
    /// Places the scenario's incidents after `run_start_ns`.
    pub fn new(configs: &[IncidentConfig], run_start_ns: i64) -> Self {
        let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX / 4);
        let incidents = configs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let start_ns = run_start_ns.saturating_add(ns(c.start));
                let kind = serde_json::to_value(c.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                Incident {
                    name: c.name.clone().unwrap_or_else(|| format!("{kind}-{i}")),
                    kind: c.kind,
                    start_ns,
                    end_ns: start_ns.saturating_add(ns(c.duration)),
                    model: c.model.clone(),
                    provider: c.provider.clone(),
                    multiplier: c.multiplier,
                    error_ratio: c.error_ratio,
                    ratio: c.ratio,
                    rate_multiplier: c.rate_multiplier,
                }
            })
            .collect();
        Self { incidents }
    }

    fn active(&self, t: i64, kind: IncidentKind) -> impl Iterator<Item = &Incident> {
        self.incidents
            .iter()
            .filter(move |i| i.kind == kind && i.active(t))
    }

    /// TTFT factor of `model` for a call starting at `t`.
    pub fn ttft_multiplier(&self, t: i64, model: &str) -> f64 {
        let regression: f64 = self
            .active(t, IncidentKind::TtftRegression)
            .filter(|i| i.for_model(model))
            .filter_map(|i| i.multiplier)
            .product();
        regression * self.tpot_multiplier(t)
    }

    /// TPOT factor (overload only) for a call starting at `t`.
    pub fn tpot_multiplier(&self, t: i64) -> f64 {
        self.active(t, IncidentKind::Overload)
            .filter_map(|i| i.multiplier)
            .product()
    }

    /// Error probability of a call to `provider` starting at `t`: independent causes combine
    /// as `1 - Π(1 - p)`.
    pub fn error_ratio(&self, t: i64, provider: &str, base: f64) -> f64 {
        let mut bursts = self
            .active(t, IncidentKind::ErrorBurst)
            .filter(|i| i.provider.as_deref() == Some(provider))
            .chain(self.active(t, IncidentKind::Overload))
            .filter_map(|i| i.error_ratio)
            .peekable();
        if bursts.peek().is_none() {
            return base;
        }
        1.0 - bursts.fold(1.0 - base, |ok, p| ok * (1.0 - p))
    }

    /// Share of thumbs that are down at `t` for `model`: the largest active surge, else `base`.
    pub fn thumbs_down_ratio(&self, t: i64, model: &str, base: f64) -> f64 {
        self.surge(t, IncidentKind::ThumbsDownSurge, model)
            .unwrap_or(base)
    }

    /// Share of answers regenerated when the user reacts at `t`.
    pub fn regenerate_ratio(&self, t: i64, model: &str, base: f64) -> f64 {
        self.surge(t, IncidentKind::RegenerateSurge, model)
            .unwrap_or(base)
    }

    fn surge(&self, t: i64, kind: IncidentKind, model: &str) -> Option<f64> {
        self.active(t, kind)
            .filter(|i| i.for_model(model))
            .filter_map(|i| i.ratio)
            .reduce(f64::max)
    }

    /// Input token factor of `model` for a call starting at `t`.
    pub fn input_multiplier(&self, t: i64, model: &str) -> f64 {
        self.active(t, IncidentKind::CostSpike)
            .filter(|i| i.for_model(model))
            .filter_map(|i| i.multiplier)
            .product()
    }

    /// Arrival rate factor at `t`.
    pub fn rate_multiplier(&self, t: i64) -> f64 {
        self.active(t, IncidentKind::Overload)
            .filter_map(|i| i.rate_multiplier)
            .product()
    }

    /// The largest arrival rate factor at any time (for thinning).
    pub fn max_rate_multiplier(&self) -> f64 {
        // Overlapping overloads multiply; bound by the product of all factors above 1.
        self.incidents
            .iter()
            .filter_map(|i| i.rate_multiplier)
            .filter(|&m| m > 1.0)
            .product::<f64>()
            .max(1.0)
    }
}

#[cfg(test)]
#[path = "incident_tests.rs"]
mod tests;
