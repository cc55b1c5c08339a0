//! Synthetic per-minute LLM traffic for measuring the cost change detector: a diurnal call
//! rate, per-call token counts drawn from lognormal distributions, a few long-context calls,
//! a slow diurnal drift of prompt length, and gpt-4o list prices. "Clean" means no incident:
//! any alert on it is a false positive.

use super::Z_CAP;

/// USD per input and per output token (gpt-4o: $2.50 and $10 per million).
pub const PRICE_IN: f64 = 2.5e-6;
pub const PRICE_OUT: f64 = 10e-6;

/// The shape of the traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Calls per minute at the daily peak; the trough is a tenth of it.
    pub peak_calls_per_min: f64,
    /// Median input and output tokens per call.
    pub median_in: f64,
    pub median_out: f64,
    /// Lognormal sigma of input and output tokens.
    pub sigma_in: f64,
    pub sigma_out: f64,
    /// Share of long-context calls with 10x the input.
    pub long_context: f64,
    /// Amplitude of the diurnal drift of prompt length (0.15: +-15%).
    pub drift: f64,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            peak_calls_per_min: 60.0,
            median_in: 1200.0,
            median_out: 350.0,
            sigma_in: 0.9,
            sigma_out: 0.7,
            long_context: 0.03,
            drift: 0.15,
        }
    }
}

/// One minute of traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Interval {
    pub calls: u64,
    pub cost_usd: f64,
    pub tokens: f64,
}

/// Minute `minute` of clean traffic; `input_multiplier` > 1 injects a prompt-length blow-up.
pub fn interval(
    rng: &mut fastrand::Rng,
    t: &Traffic,
    minute: u64,
    input_multiplier: f64,
) -> Interval {
    let day = std::f64::consts::TAU * (minute % 1440) as f64 / 1440.0;
    let rate = t.peak_calls_per_min * (0.55 - 0.45 * day.cos());
    let drift = 1.0 + t.drift * (day + 1.0).sin();
    let calls = poisson(rng, rate);
    let mut out = Interval {
        calls,
        ..Interval::default()
    };
    for _ in 0..calls {
        let mut tin = lognormal(rng, t.median_in * drift * input_multiplier, t.sigma_in);
        if rng.f64() < t.long_context {
            tin *= 10.0;
        }
        let tout = lognormal(rng, t.median_out, t.sigma_out);
        let (tin, tout) = (tin.round(), tout.round());
        out.tokens += tin + tout;
        out.cost_usd += tin * PRICE_IN + tout * PRICE_OUT;
    }
    out
}

fn normal(rng: &mut fastrand::Rng) -> f64 {
    // Box-Muller.
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn lognormal(rng: &mut fastrand::Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

fn poisson(rng: &mut fastrand::Rng, lambda: f64) -> u64 {
    if lambda > 200.0 {
        return (lambda + lambda.sqrt() * normal(rng)).round().max(0.0) as u64;
    }
    // Knuth.
    let limit = (-lambda).exp();
    let (mut k, mut p) = (0u64, rng.f64());
    while p > limit {
        k += 1;
        p *= rng.f64();
    }
    k
}

/// Result of running a detector over clean traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FalsePositives {
    /// Intervals judged (past warm-up, enough calls).
    pub judged: u64,
    /// Of those, intervals with a z-score over 4 (single-interval outliers).
    pub outliers: u64,
    /// Intervals in alert.
    pub alerting: u64,
    /// Alerts raised (transitions into alert).
    pub alerts: u64,
}

/// Runs a change detector for `minutes` of clean traffic on `metric`.
pub fn false_positives(
    policy: &crate::slo::ChangePolicy,
    traffic: &Traffic,
    seed: u64,
    minutes: u64,
) -> FalsePositives {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut d = super::ChangeDetector::new(policy);
    let mut fp = FalsePositives::default();
    let mut alerting = false;
    for m in 0..minutes {
        let i = interval(&mut rng, traffic, m, 1.0);
        let sum = match policy.metric {
            crate::slo::CostMetric::CostPerCall => i.cost_usd,
            crate::slo::CostMetric::TokensPerCall => i.tokens,
        };
        let Some(v) = d.observe(i.calls, sum) else {
            continue;
        };
        fp.judged += 1;
        fp.outliers += u64::from(v.z > Z_CAP);
        fp.alerting += u64::from(v.alert);
        fp.alerts += u64::from(v.alert && !alerting);
        alerting = v.alert;
    }
    fp
}
