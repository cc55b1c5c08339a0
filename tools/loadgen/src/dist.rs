//! The distributions of the traffic model, parameterised the way a scenario states them
//! (means), built on `rand_distr`.

use rand::Rng;
use rand_distr::{Beta, Distribution, Exp, Geometric, LogNormal};

use crate::config::LogNormalSpec;
use crate::LoadgenError;

/// A log-normal distribution with a given mean: `mu = ln(mean) - sigma^2 / 2`.
#[derive(Debug, Clone, Copy)]
pub struct LogNormalMean(LogNormal<f64>);

impl LogNormalMean {
    pub fn new(spec: LogNormalSpec) -> Result<Self, LoadgenError> {
        let mu = spec.mean.ln() - spec.sigma * spec.sigma / 2.0;
        LogNormal::new(mu, spec.sigma)
            .map(Self)
            .map_err(|e| LoadgenError::Scenario(format!("log-normal {spec:?}: {e}")))
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        self.0.sample(rng)
    }
}

/// Whole numbers of at least 1 with a given mean: `1 + Geometric(1 / mean)`.
#[derive(Debug, Clone, Copy)]
pub struct AtLeastOne(Geometric);

impl AtLeastOne {
    pub fn with_mean(mean: f64) -> Result<Self, LoadgenError> {
        Geometric::new(1.0 / mean)
            .map(Self)
            .map_err(|e| LoadgenError::Scenario(format!("geometric with mean {mean}: {e}")))
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        self.0.sample(rng).saturating_add(1)
    }
}

/// Values in (0, 1) with a given mean: `Beta(mean * k, (1 - mean) * k)` with `k = 8`.
#[derive(Debug, Clone, Copy)]
pub struct UnitWithMean(Beta<f64>);

impl UnitWithMean {
    const CONCENTRATION: f64 = 8.0;

    pub fn new(mean: f64) -> Result<Self, LoadgenError> {
        Beta::new(
            mean * Self::CONCENTRATION,
            (1.0 - mean) * Self::CONCENTRATION,
        )
        .map(Self)
        .map_err(|e| LoadgenError::Scenario(format!("beta with mean {mean}: {e}")))
    }

    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        self.0.sample(rng)
    }
}

/// Gaps between Poisson arrivals at `rate` per second, in nanoseconds.
pub fn exp_gap_ns<R: Rng + ?Sized>(rng: &mut R, rate: f64) -> i64 {
    match Exp::new(rate) {
        Ok(exp) => secs_to_ns(exp.sample(rng)),
        Err(_) => i64::MAX / 4,
    }
}

/// Seconds to nanoseconds, saturating.
pub fn secs_to_ns(s: f64) -> i64 {
    (s * 1e9).round().clamp(0.0, i64::MAX as f64 / 4.0) as i64
}

/// Milliseconds to nanoseconds, saturating.
pub fn ms_to_ns(ms: f64) -> i64 {
    secs_to_ns(ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn mean(n: usize, mut f: impl FnMut() -> f64) -> f64 {
        (0..n).map(|_| f()).sum::<f64>() / n as f64
    }

    #[test]
    fn lognormal_has_the_configured_mean() {
        let mut rng = StdRng::seed_from_u64(7);
        for (m, sigma) in [(450.0, 0.35), (1800.0, 0.9), (12.0, 0.25), (25.0, 0.0)] {
            let d = LogNormalMean::new(LogNormalSpec::new(m, sigma)).unwrap();
            let got = mean(200_000, || d.sample(&mut rng));
            assert!(
                (got - m).abs() / m < 0.02,
                "mean {got} for configured {m} (sigma {sigma})"
            );
        }
    }

    #[test]
    fn lognormal_spread_follows_sigma() {
        let mut rng = StdRng::seed_from_u64(8);
        let d = LogNormalMean::new(LogNormalSpec::new(100.0, 0.5)).unwrap();
        let mut xs: Vec<f64> = (0..100_001).map(|_| d.sample(&mut rng)).collect();
        xs.sort_by(f64::total_cmp);
        // median = exp(mu) = mean * exp(-sigma^2 / 2)
        let median = xs[50_000];
        let want = 100.0 * (-0.125f64).exp();
        assert!((median - want).abs() / want < 0.02, "median {median}");
    }

    #[test]
    fn turns_are_at_least_one_with_the_configured_mean() {
        let mut rng = StdRng::seed_from_u64(9);
        let d = AtLeastOne::with_mean(4.0).unwrap();
        let xs: Vec<u64> = (0..200_000).map(|_| d.sample(&mut rng)).collect();
        assert!(xs.iter().all(|&x| x >= 1));
        let got = xs.iter().sum::<u64>() as f64 / xs.len() as f64;
        assert!((got - 4.0).abs() < 0.05, "mean turns {got}");
        assert_eq!(AtLeastOne::with_mean(1.0).unwrap().sample(&mut rng), 1);
    }

    #[test]
    fn scores_stay_in_the_unit_interval_around_their_mean() {
        let mut rng = StdRng::seed_from_u64(10);
        let d = UnitWithMean::new(0.8).unwrap();
        let xs: Vec<f64> = (0..100_000).map(|_| d.sample(&mut rng)).collect();
        assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
        let got = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((got - 0.8).abs() < 0.01, "mean score {got}");
    }

    #[test]
    fn poisson_gaps_have_mean_one_over_rate() {
        let mut rng = StdRng::seed_from_u64(11);
        let got = mean(200_000, || exp_gap_ns(&mut rng, 4.0) as f64 / 1e9);
        assert!((got - 0.25).abs() < 0.003, "mean gap {got}");
    }
}
