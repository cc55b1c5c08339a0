//! Cost policies in the running engine: per policy and key, what a spend projection and a
//! change detector need, fed by every priced call ([`CostState::record`]) and evaluated at
//! the closed end of event time ([`CostState::evaluate`]), like the SLOs. The engine turns each
//! [`CostEval`] into an observation of the same alert tracker the SLOs use.
//!
//! - **Spend** (`spend:` policies): one series per policy and project (budgets never mix
//!   projects), narrowed to the service / model / operation its selector pins. Spend is kept
//!   in 10 s buckets over the lookback; older buckets fold into one running sum for their
//!   budget period. Spent in the period and spent over the lookback, both up to the closed end,
//!   go to [`super::project_spend`]. The alert's score is `projected / budget` against
//!   `alert_at`.
//! - **Change** (`change:` policies): one [`super::ChangeDetector`] per policy and SLI key;
//!   calls are summed per interval, and every interval that closed is fed in order (empty ones
//!   add nothing). Calls without the metric (unpriced model, no token counts) are skipped. The
//!   alert's score is the CUSUM against the decision threshold, so it resolves once the CUSUM
//!   stayed under `h` for the hysteresis hold. A series whose last judged interval is older
//!   than its baseline stops being observed.
//!
//! Events older than the closed end are late for the cost series too, and counted.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{period_bounds, project_spend, ChangeDetector, ChangeVerdict};
use crate::alert::{self, Labels};
use crate::sli::CallEvent;
use crate::slo::{
    AlertPolicy, BudgetPeriod, ChangePolicy, CostMetric, CostPolicy, Selector, Severity,
    SpendPolicy,
};
use crate::SliKey;

/// Spend bucket width (the finest window tier).
const BUCKET_MS: i64 = 10_000;

/// One cost policy for one key, evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct CostEval {
    pub key: SliKey,
    pub policy: String,
    pub severity: Severity,
    pub labels: Labels,
    pub annotations: Labels,
    pub breaching: bool,
    /// `projected / budget`, or the CUSUM.
    pub score: f64,
    /// `alert_at`, or the decision threshold.
    pub factor: f64,
    /// Projected spend (USD), or the last judged mean per call.
    pub value: f64,
    /// Budget left this period (spend), 1 for change policies.
    pub budget_remaining: f64,
    /// The calls behind it: the lookback (spend), the baseline (change).
    pub range_ms: (i64, i64),
    pub view: CostView,
}

/// One cost policy for one key, as `GET /v1/slos` shows it (under `cost`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostView {
    pub policy: String,
    /// `spend` or `change`.
    pub kind: &'static str,
    pub project: String,
    pub service: String,
    pub model: String,
    pub operation: String,
    /// Spend: spent this period, spend rate now, projected spend and budget (USD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spent_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_usd_per_hour: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Change: `cost_per_call` or `tokens_per_call`, the last interval's mean, the baseline
    /// median, the change since the CUSUM started rising and the CUSUM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_change: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cusum: Option<f64>,
    pub breaching: bool,
}

#[derive(Debug, Default)]
struct Spend {
    /// Bucket start -> USD, from the lookback's start on.
    buckets: BTreeMap<i64, f64>,
    /// Buckets before `horizon`, summed for their period: (period start, USD).
    folded: Option<(i64, f64)>,
    horizon: i64,
    last_ts: i64,
}

impl Spend {
    fn record(&mut self, period: BudgetPeriod, ts_ms: i64, usd: f64) -> bool {
        self.last_ts = self.last_ts.max(ts_ms);
        let b = ts_ms.div_euclid(BUCKET_MS) * BUCKET_MS;
        if b >= self.horizon {
            *self.buckets.entry(b).or_default() += usd;
            return true;
        }
        match &mut self.folded {
            Some((p, sum)) if *p == period_bounds(period, ts_ms).0 => {
                *sum += usd;
                true
            }
            _ => false,
        }
    }

    /// (spent in the period, spent over the lookback), both up to `end_ms`.
    fn sums(&mut self, p: &SpendPolicy, end_ms: i64) -> (f64, f64) {
        let lookback = p.lookback.as_millis() as i64;
        let horizon = (end_ms - lookback).div_euclid(BUCKET_MS) * BUCKET_MS;
        while let Some((&b, _)) = self.buckets.first_key_value() {
            if b >= horizon {
                break;
            }
            let usd = self.buckets.pop_first().map_or(0.0, |(_, v)| v);
            let ps = period_bounds(p.period, b).0;
            match &mut self.folded {
                Some((fp, sum)) if *fp == ps => *sum += usd,
                Some((fp, _)) if *fp > ps => {}
                _ => self.folded = Some((ps, usd)),
            }
        }
        self.horizon = self.horizon.max(horizon);
        let ps = period_bounds(p.period, end_ms).0;
        let folded = self.folded.filter(|f| f.0 == ps).map_or(0.0, |f| f.1);
        let in_period: f64 = self
            .buckets
            .range(ps.max(horizon)..end_ms)
            .map(|e| e.1)
            .sum();
        let in_lookback: f64 = self
            .buckets
            .range((end_ms - lookback)..end_ms)
            .map(|e| e.1)
            .sum();
        (folded + in_period, in_lookback)
    }
}

#[derive(Debug)]
struct Change {
    detector: ChangeDetector,
    /// Interval start -> (calls, sum of the metric), not fed yet.
    intervals: BTreeMap<i64, (u64, f64)>,
    /// Intervals before this were fed.
    fed_until: i64,
    /// End of the last judged interval and its verdict.
    last: Option<(i64, ChangeVerdict)>,
}

impl Change {
    fn new(p: &ChangePolicy) -> Self {
        Self {
            detector: ChangeDetector::new(p),
            intervals: BTreeMap::new(),
            fed_until: i64::MIN,
            last: None,
        }
    }

    fn record(&mut self, p: &ChangePolicy, ts_ms: i64, v: f64) -> bool {
        let iv = (p.interval.as_millis() as i64).max(1);
        let start = ts_ms.div_euclid(iv) * iv;
        if start < self.fed_until {
            return false;
        }
        let e = self.intervals.entry(start).or_default();
        *e = (e.0 + 1, e.1 + v);
        true
    }

    fn feed(&mut self, p: &ChangePolicy, end_ms: i64) {
        let iv = (p.interval.as_millis() as i64).max(1);
        while let Some((&start, _)) = self.intervals.first_key_value() {
            if start + iv > end_ms {
                break;
            }
            let (calls, sum) = self.intervals.pop_first().map_or((0, 0.0), |(_, v)| v);
            if let Some(v) = self.detector.observe(calls, sum) {
                self.last = Some((start + iv, v));
            }
        }
        self.fed_until = self.fed_until.max(end_ms.div_euclid(iv) * iv);
        let baseline = p.baseline.as_millis() as i64;
        if self
            .last
            .as_ref()
            .is_some_and(|(at, _)| end_ms - at > baseline)
        {
            self.last = None;
        }
    }
}

/// Every cost policy's series; see the module doc.
#[derive(Debug, Default)]
pub struct CostState {
    policies: Vec<CostPolicy>,
    /// Cost alerts resolve once their score stayed under the factor for the default hold.
    alerting: AlertPolicy,
    spend: HashMap<(usize, SliKey), Spend>,
    change: HashMap<(usize, SliKey), Change>,
    max_keys: usize,
    /// Events dropped as late or over `max_keys` (per series).
    pub late: u64,
    pub overflow: u64,
}

/// The spend series key: the project, and what the selector pins.
fn spend_key(sel: &Selector, k: &SliKey) -> SliKey {
    let pin = |want: &Option<String>, have: &str| {
        if want.is_some() {
            have.to_string()
        } else {
            String::new()
        }
    };
    SliKey {
        project: k.project.clone(),
        service: pin(&sel.service, &k.service),
        model: pin(&sel.model, &k.model),
        operation: pin(&sel.operation, &k.operation),
    }
}

impl CostState {
    pub fn new(policies: Vec<CostPolicy>, max_keys: usize) -> Self {
        Self {
            policies,
            alerting: AlertPolicy {
                resolve_below: 1.0,
                ..AlertPolicy::default()
            },
            max_keys,
            ..Self::default()
        }
    }

    /// Forgets every series (a rebalance: the owned keys are replayed).
    pub fn reset(&mut self) {
        self.spend.clear();
        self.change.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The hysteresis and hold of cost alerts.
    pub fn alert_policy(&self) -> &AlertPolicy {
        &self.alerting
    }

    /// Counts one call for every cost policy that selects `key`.
    pub fn record(&mut self, key: &SliKey, ts_ms: i64, e: &CallEvent) {
        let held = self.spend.len() + self.change.len();
        for (i, p) in self.policies.iter().enumerate() {
            if !p.selector.matches(key) {
                continue;
            }
            let counted = if let Some(s) = &p.spend {
                let Some(usd) = e.cost_usd else { continue };
                let k = (i, spend_key(&p.selector, key));
                match self.spend.get_mut(&k) {
                    Some(series) => series.record(s.value.period, ts_ms, usd),
                    None if held >= self.max_keys => {
                        self.overflow += 1;
                        continue;
                    }
                    None => self
                        .spend
                        .entry(k)
                        .or_default()
                        .record(s.value.period, ts_ms, usd),
                }
            } else if let Some(c) = &p.change {
                let v = match c.value.metric {
                    CostMetric::CostPerCall => e.cost_usd,
                    CostMetric::TokensPerCall => e.tokens.map(|t| t as f64),
                };
                let Some(v) = v else { continue };
                let k = (i, key.clone());
                if !self.change.contains_key(&k) && held >= self.max_keys {
                    self.overflow += 1;
                    continue;
                }
                self.change
                    .entry(k)
                    .or_insert_with(|| Change::new(&c.value))
                    .record(&c.value, ts_ms, v)
            } else {
                continue;
            };
            if !counted {
                self.late += 1;
            }
        }
    }

    /// Evaluates every series at `end_ms` (the closed end of event time), sorted by policy
    /// and key.
    pub fn evaluate(&mut self, end_ms: i64) -> Vec<CostEval> {
        let mut out = Vec::new();
        // A spend series idle for a day holds nothing of the current period: forget it.
        self.spend
            .retain(|_, s| !(s.buckets.is_empty() && end_ms - s.last_ts > 86_400_000));
        for ((i, key), s) in &mut self.spend {
            let p = &self.policies[*i];
            let Some(sp) = &p.spend else { continue };
            let sp = &sp.value;
            let (spent, lookback) = s.sums(sp, end_ms);
            let proj = project_spend(sp, end_ms, spent, lookback);
            let period = match sp.period {
                BudgetPeriod::Day => "day",
                BudgetPeriod::Month => "month",
            };
            let name = &p.name.value;
            out.push(CostEval {
                key: key.clone(),
                policy: name.clone(),
                severity: p.severity,
                labels: alert::labels_named(alert::ALERTNAME_SPEND, name, key, p.severity),
                annotations: alert::describe_spend(name, key, period, &proj),
                breaching: proj.alert,
                score: proj.ratio,
                factor: sp.alert_at,
                value: proj.projected_usd,
                budget_remaining: (1.0 - spent / sp.budget_usd).max(0.0),
                range_ms: (end_ms - sp.lookback.as_millis() as i64, end_ms),
                view: CostView {
                    spent_usd: Some(proj.spent_usd),
                    rate_usd_per_hour: Some(proj.rate_usd_per_hour),
                    projected_usd: Some(proj.projected_usd),
                    budget_usd: Some(proj.budget_usd),
                    breaching: proj.alert,
                    ..CostView::new(name, "spend", key)
                },
            });
        }
        for ((i, key), c) in &mut self.change {
            let p = &self.policies[*i];
            let Some(cp) = &p.change else { continue };
            let cp = &cp.value;
            c.feed(cp, end_ms);
            let Some((_, v)) = &c.last else { continue };
            let metric = match cp.metric {
                CostMetric::CostPerCall => "cost_per_call",
                CostMetric::TokensPerCall => "tokens_per_call",
            };
            let name = &p.name.value;
            out.push(CostEval {
                key: key.clone(),
                policy: name.clone(),
                severity: p.severity,
                labels: alert::labels_named(alert::ALERTNAME_COST_CHANGE, name, key, p.severity),
                annotations: alert::describe_change(name, key, metric, v),
                breaching: v.alert,
                score: v.cusum,
                factor: cp.decision,
                value: v.mean,
                budget_remaining: 1.0,
                range_ms: (end_ms - cp.baseline.as_millis() as i64, end_ms),
                view: CostView {
                    metric: Some(metric),
                    mean: Some(v.mean),
                    baseline: Some(v.baseline),
                    relative_change: Some(v.relative_change),
                    cusum: Some(v.cusum),
                    breaching: v.alert,
                    ..CostView::new(name, "change", key)
                },
            });
        }
        out.sort_by(|a, b| (&a.policy, &a.key).cmp(&(&b.policy, &b.key)));
        out
    }
}

impl CostView {
    fn new(policy: &str, kind: &'static str, k: &SliKey) -> Self {
        Self {
            policy: policy.to_string(),
            kind,
            project: k.project.clone(),
            service: k.service.clone(),
            model: k.model.clone(),
            operation: k.operation.clone(),
            spent_usd: None,
            rate_usd_per_hour: None,
            projected_usd: None,
            budget_usd: None,
            metric: None,
            mean: None,
            baseline: None,
            relative_change: None,
            cusum: None,
            breaching: false,
        }
    }
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
