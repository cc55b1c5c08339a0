//! Cost policies in the running engine: per policy and key, what a spend projection and a
//! change detector need, fed by every priced call ([`CostState::record`]) and evaluated at
//! the closed end of event time ([`CostState::evaluate`]), like the SLOs. The engine turns each
//! [`CostEval`] into an observation of the same alert tracker the SLOs use.
//!
//! - **Spend** (`spend:` policies): one series per policy and project (budgets never mix
//!   projects), narrowed to the service / model / operation its selector pins, and with
//!   `per: user` per end user too (`llm_calls.user_id`; calls without one under user `""`,
//!   shown as `(none)`). Each series is judged against the whole budget: a per-user budget.
//!   A per-user policy holds at most `max_users` user series; calls of later users go to one
//!   series per project (and pins), user [`OTHER_USER`], and are counted
//!   ([`CostView::folded_calls`], metric `flywheel_detector_cost_user_folded_calls_total`),
//!   never dropped. Spend is kept in 10 s buckets over the lookback; older buckets fold into
//!   one running sum for their budget period. Spent in the period and spent over the lookback,
//!   both up to the closed end, go to [`super::project_spend`]. The alert's score is
//!   `projected / budget` against `alert_at`. A series lives (and a user series counts
//!   against `max_users`) while it holds spend of the current period or of the lookback.
//!
//!   Start-up seeds the period's sum from the store ([`CostState::seed_queries`],
//!   `history::period_spend`, [`CostState::seed`]): the spend of calls whose event time is in
//!   the period and whose start is before the replay's start, folded into each series' period
//!   sum; the replay of the longest window adds the rest, so a monthly budget sees the whole
//!   month after a restart and nothing is counted twice.
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
    AlertPolicy, BudgetPeriod, ChangePolicy, CostMetric, CostPolicy, Selector, Severity, SpendPer,
    SpendPolicy,
};
use crate::SliKey;

/// Spend bucket width (the finest window tier).
const BUCKET_MS: i64 = 10_000;

/// The user of the series that calls of users past a policy's `max_users` share.
pub const OTHER_USER: &str = "(other)";
/// How the user `""` (calls without one) reads in labels, annotations and `GET /v1/slos`.
pub const NO_USER: &str = "(none)";

/// A user as labels show it.
pub fn user_label(user: &str) -> &str {
    if user.is_empty() {
        NO_USER
    } else {
        user
    }
}

/// A spend series: the policy's index, the key (project and what the selector pins) and the
/// user (`""` unless `per: user`).
type SpendId = (usize, SliKey, String);

/// One cost policy for one key, evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct CostEval {
    pub key: SliKey,
    /// `per: user` spend policies: the series' user (`(none)`, `(other)` included).
    pub user: Option<String>,
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
    /// `per: user` spend policies: the user (`(none)` for calls without one, `(other)` for
    /// users past `max_users`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The `(other)` series: calls of users past `max_users` folded into it so far (by the
    /// policy, since start-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folded_calls: Option<u64>,
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
    /// Buckets before `horizon`, summed for their period: (period start, USD). Start-up seeds
    /// it with the period's spend before the replay.
    folded: Option<(i64, f64)>,
    horizon: i64,
}

impl Spend {
    fn record(&mut self, period: BudgetPeriod, ts_ms: i64, usd: f64) -> bool {
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
    spend: HashMap<SpendId, Spend>,
    change: HashMap<(usize, SliKey), Change>,
    max_keys: usize,
    /// Per policy: user series held (not `""` nor [`OTHER_USER`]), against `max_users`.
    users: Vec<usize>,
    /// Per policy: calls folded into [`OTHER_USER`] since start-up.
    folded: Vec<u64>,
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
            users: vec![0; policies.len()],
            folded: vec![0; policies.len()],
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
        self.users.iter_mut().for_each(|u| *u = 0);
    }

    /// The spend series of `user`'s calls under spend policy `i`: its own, or past
    /// `max_users` new users the policy's [`OTHER_USER`] series (`true`: folded).
    fn spend_id(&self, i: usize, sp: &SpendPolicy, key: SliKey, user: &str) -> (SpendId, bool) {
        if sp.per == SpendPer::Project {
            return ((i, key, String::new()), false);
        }
        let id = (i, key, user.to_string());
        if is_user(user) && self.users[i] >= sp.max_users && !self.spend.contains_key(&id) {
            return ((id.0, id.1, OTHER_USER.to_string()), true);
        }
        (id, false)
    }

    /// Opens a spend series, `None` over `max_keys` (counted).
    fn open_spend(&mut self, id: SpendId) -> Option<&mut Spend> {
        if !self.spend.contains_key(&id) {
            if self.spend.len() + self.change.len() >= self.max_keys {
                self.overflow += 1;
                return None;
            }
            if is_user(&id.2) {
                self.users[id.0] += 1;
            }
        }
        Some(self.spend.entry(id).or_default())
    }

    /// What start-up asks the store for: per spend policy whose current period (at `now_ms`)
    /// began before the replay's start, the spend of `[period start, replay_from_ms)`.
    pub fn seed_queries(&self, now_ms: i64, replay_from_ms: i64) -> Vec<SpendSeedQuery> {
        self.policies
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let sp = &p.spend.as_ref()?.value;
                let period_start_ms = period_bounds(sp.period, now_ms).0;
                (period_start_ms < replay_from_ms).then(|| SpendSeedQuery {
                    policy: i,
                    selector: p.selector.clone(),
                    per_user: sp.per == SpendPer::User,
                    max_users: sp.max_users,
                    period_start_ms,
                })
            })
            .collect()
    }

    /// Folds the period-to-date spend read at start-up (before the replay) into the spend
    /// series' period sums; returns the series seeded.
    pub fn seed(&mut self, now_ms: i64, rows: Vec<SpendSeed>) -> usize {
        let mut n = 0;
        for r in rows {
            let Some(sp) = self
                .policies
                .get(r.policy)
                .and_then(|p| p.spend.as_ref())
                .map(|s| s.value.clone())
            else {
                continue;
            };
            // The query already folded users past the cap into `(other)`; its calls count as
            // folded, like those of a user folded here.
            let (id, _) = self.spend_id(r.policy, &sp, r.key, &r.user);
            if id.2 == OTHER_USER {
                self.folded[r.policy] += r.calls;
            }
            let ps = period_bounds(sp.period, now_ms).0;
            let Some(series) = self.open_spend(id) else {
                continue;
            };
            series.folded = match series.folded {
                Some((p, sum)) if p == ps => Some((ps, sum + r.usd)),
                _ => Some((ps, r.usd)),
            };
            n += 1;
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The hysteresis and hold of cost alerts.
    pub fn alert_policy(&self) -> &AlertPolicy {
        &self.alerting
    }

    /// Counts one call (of end user `user`, `""` for none) for every cost policy that
    /// selects `key`.
    pub fn record(&mut self, key: &SliKey, user: &str, ts_ms: i64, e: &CallEvent) {
        let held = self.spend.len() + self.change.len();
        for i in 0..self.policies.len() {
            let p = &self.policies[i];
            if !p.selector.matches(key) {
                continue;
            }
            let counted = if let Some(s) = &p.spend {
                let Some(usd) = e.cost_usd else { continue };
                let sp = s.value.clone();
                let sk = spend_key(&p.selector, key);
                let (id, folded) = self.spend_id(i, &sp, sk, user);
                if folded {
                    self.folded[i] += 1;
                }
                match self.open_spend(id) {
                    Some(series) => series.record(sp.period, ts_ms, usd),
                    None => continue,
                }
            } else if let Some(c) = &self.policies[i].change {
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
        // A spend series without spend of the current period (a new day, a new month): forget it.
        let policies = &self.policies;
        let before = self.spend.len();
        self.spend.retain(|(i, _, _), s| {
            let current = policies[*i]
                .spend
                .as_ref()
                .map(|sp| period_bounds(sp.period, end_ms).0);
            !s.buckets.is_empty() || s.folded.is_some_and(|f| Some(f.0) == current)
        });
        if self.spend.len() != before {
            self.users.iter_mut().for_each(|u| *u = 0);
            for (i, _, user) in self.spend.keys() {
                if is_user(user) {
                    self.users[*i] += 1;
                }
            }
        }
        for ((i, key, user), s) in &mut self.spend {
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
            let user = (sp.per == SpendPer::User).then(|| user_label(user).to_string());
            let mut labels = alert::labels_named(alert::ALERTNAME_SPEND, name, key, p.severity);
            if let Some(u) = &user {
                labels.insert("user".into(), u.clone());
            }
            out.push(CostEval {
                key: key.clone(),
                user: user.clone(),
                policy: name.clone(),
                severity: p.severity,
                labels,
                annotations: alert::describe_spend(name, key, user.as_deref(), period, &proj),
                breaching: proj.alert,
                score: proj.ratio,
                factor: sp.alert_at,
                value: proj.projected_usd,
                budget_remaining: (1.0 - spent / sp.budget_usd).max(0.0),
                range_ms: (end_ms - sp.lookback.as_millis() as i64, end_ms),
                view: CostView {
                    folded_calls: user
                        .as_deref()
                        .filter(|u| *u == OTHER_USER)
                        .map(|_| self.folded[*i]),
                    user,
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
                user: None,
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
        out.sort_by(|a, b| (&a.policy, &a.key, &a.user).cmp(&(&b.policy, &b.key, &b.user)));
        out
    }
}

/// A user that counts against `max_users` (not `""`, not [`OTHER_USER`]).
fn is_user(user: &str) -> bool {
    !user.is_empty() && user != OTHER_USER
}

/// One spend policy's start-up query: spend of the calls it selects with event time from
/// `period_start_ms` on and start before the replay's start, per project, the dimensions its
/// selector pins, and (`per_user`) user, the top `max_users` users by spend each on their own,
/// the rest as [`OTHER_USER`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpendSeedQuery {
    pub policy: usize,
    pub selector: Selector,
    pub per_user: bool,
    pub max_users: usize,
    pub period_start_ms: i64,
}

/// One row of the start-up seed: the period's spend before the replay for one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendSeed {
    pub policy: usize,
    /// Project and the pinned dimensions (the rest `""`).
    pub key: SliKey,
    /// `""` for `per: project` policies and calls without a user.
    pub user: String,
    pub usd: f64,
    pub calls: u64,
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
            user: None,
            folded_calls: None,
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
