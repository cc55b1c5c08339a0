//! Readiness checks: each service registers a named check; `/readyz` is ready when all are.

use std::sync::{Arc, RwLock};

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// A set of named readiness checks. Cheap to clone; clones share the set.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<Vec<(String, Check)>>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a check, e.g. `("kafka", || producer_is_connected())`.
    pub fn register(
        &self,
        name: impl Into<String>,
        check: impl Fn() -> bool + Send + Sync + 'static,
    ) {
        self.checks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.into(), Arc::new(check)));
    }

    /// Evaluates every check; returns the names of those that are not ready.
    pub fn not_ready(&self) -> Vec<String> {
        self.checks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, check)| !check())
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn reports_failing_checks_by_name() {
        let r = Readiness::new();
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        r.register("kafka", move || f.load(Ordering::Relaxed));
        r.register("always", || true);
        assert_eq!(r.not_ready(), vec!["kafka".to_string()]);
        flag.store(true, Ordering::Relaxed);
        assert!(r.not_ready().is_empty());
    }
}
