//! What an alert says: summary, description (both windows' burn rates, the SLI, the budget
//! left), a ClickHouse query for the affected calls and a link to them in the Flywheel API.

use super::Labels;
use crate::burn::RuleEval;
use crate::slo::{Dur, LatencyMetric, Sli, Slo};
use crate::SliKey;

/// Numbers behind an SLO alert, for its annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence<'a> {
    pub eval: &'a RuleEval,
    /// Share of the error budget left over the SLO window.
    pub budget_remaining: f64,
    /// `(from_ms, to_ms)` of the long window, for the query.
    pub range_ms: (i64, i64),
    /// Base URL of the Flywheel API, for the link to the affected calls.
    pub api_url: &'a str,
}

fn pct(x: f64) -> String {
    format!("{}%", (x * 1000.0).round() / 10.0)
}

fn burn(b: Option<f64>) -> String {
    b.map_or_else(|| "no traffic".to_string(), |b| format!("{:.1}x", b))
}

/// `summary`, `description` and `query` annotations, and the generator URL (the affected
/// calls in the Flywheel API).
pub fn describe(slo: &Slo, key: &SliKey, ev: &Evidence<'_>) -> (Labels, String) {
    let w = &ev.eval.window;
    let summary = format!(
        "{}: error budget burning {} over {} and {} over {} (threshold {}x) for {}/{}",
        slo.name.value,
        burn(ev.eval.long_burn),
        w.long,
        burn(ev.eval.short_burn),
        w.short,
        w.burn_rate,
        key.project,
        key.model,
    );
    let good = ev
        .eval
        .short
        .ratio()
        .map_or_else(|| "no traffic".into(), |r| pct(1.0 - r));
    let description = format!(
        "SLO {name} ({objective} good {sli} over {window}) for project={p} service={s} model={m} \
         operation={o}: burn rate {lb} over {long} and {sb} over {short} (threshold {f}x); SLI \
         {good} good over {short} ({bad} bad of {total}); error budget remaining {budget} of {window}.{desc}",
        name = slo.name.value,
        objective = slo.objective,
        sli = sli_text(&slo.sli),
        window = slo.window.value,
        p = key.project,
        s = key.service,
        m = key.model,
        o = key.operation,
        lb = burn(ev.eval.long_burn),
        long = w.long,
        sb = burn(ev.eval.short_burn),
        short = w.short,
        f = w.burn_rate,
        bad = ev.eval.short.bad,
        total = ev.eval.short.total,
        budget = pct(ev.budget_remaining),
        desc = if slo.description.is_empty() { String::new() } else { format!(" {}", slo.description) },
    );
    let url = calls_url(ev.api_url, key, ev.range_ms);
    let mut a = Labels::new();
    a.insert("summary".into(), summary);
    a.insert("description".into(), description);
    a.insert("query".into(), calls_query(&slo.sli, key, ev.range_ms));
    a.insert("calls_url".into(), url.clone());
    (a, url)
}

fn sli_text(sli: &Sli) -> String {
    match sli {
        Sli::Availability => "calls without error".into(),
        Sli::Latency(l) => format!("calls with {} < {}", l.metric.as_str(), l.threshold.value),
        Sli::NegativeFeedback(f) => format!("`{}` feedback that is not negative", f.name.value),
        Sli::Signal(s) => format!("calls without a `{}` signal", s.signal.as_str()),
        Sli::Goodput(g) => {
            let mut parts = vec!["without error".to_string()];
            for (m, d) in [("duration", g.duration), ("ttft", g.ttft), ("tpot", g.tpot)] {
                if let Some(d) = d {
                    parts.push(format!("{m} < {d}"));
                }
            }
            format!("calls ({})", parts.join(", "))
        }
    }
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn latency_bad(metric: LatencyMetric, d: Dur) -> String {
    let ms = d.as_millis();
    match metric {
        LatencyMetric::Duration => format!("duration_ns >= {}", ms * 1_000_000),
        LatencyMetric::Ttft => format!("ttft_ms >= {ms}"),
        LatencyMetric::Tpot => format!("tpot_ms >= {ms}"),
    }
}

/// A ClickHouse query for the bad calls of the key over the range (all of its calls for
/// feedback and signal SLIs, which live in other tables).
pub fn calls_query(sli: &Sli, key: &SliKey, (from, to): (i64, i64)) -> String {
    let bad = match sli {
        Sli::Availability => Some("status_code = 'Error'".to_string()),
        Sli::Latency(l) => Some(latency_bad(l.metric, l.threshold.value)),
        Sli::Goodput(g) => {
            let mut c = vec!["status_code = 'Error'".to_string()];
            for (m, d) in [
                (LatencyMetric::Duration, g.duration),
                (LatencyMetric::Ttft, g.ttft),
                (LatencyMetric::Tpot, g.tpot),
            ] {
                if let Some(d) = d {
                    c.push(latency_bad(m, d));
                }
            }
            Some(format!("({})", c.join(" OR ")))
        }
        Sli::NegativeFeedback(_) | Sli::Signal(_) => None,
    };
    let mut q = format!(
        "SELECT timestamp, trace_id, span_id, model, status_code, ttft_ms, tpot_ms, duration_ns FROM llm_calls \
         WHERE project = {} AND service = {} AND model = {} AND operation = {} \
         AND timestamp >= fromUnixTimestamp64Milli({from}) AND timestamp < fromUnixTimestamp64Milli({to})",
        sql_str(&key.project),
        sql_str(&key.service),
        sql_str(&key.model),
        sql_str(&key.operation),
    );
    if let Some(b) = bad {
        q.push_str(" AND ");
        q.push_str(&b);
    }
    q.push_str(" ORDER BY timestamp DESC LIMIT 100");
    q
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The affected calls in the Flywheel API (`GET /v1/calls`, a later issue).
pub fn calls_url(api_url: &str, key: &SliKey, (from, to): (i64, i64)) -> String {
    format!(
        "{}/v1/calls?project={}&service={}&model={}&operation={}&from_ms={from}&to_ms={to}",
        api_url.trim_end_matches('/'),
        url_escape(&key.project),
        url_escape(&key.service),
        url_escape(&key.model),
        url_escape(&key.operation),
    )
}

/// `summary` and `description` of a spend-rate alert; `user` for `per: user` policies.
pub fn describe_spend(
    policy: &str,
    key: &SliKey,
    user: Option<&str>,
    period: &str,
    p: &crate::cost::SpendProjection,
) -> Labels {
    let mut a = Labels::new();
    let whom = match user {
        Some(u) => format!("user {u} of {}", key.project),
        None => key.project.clone(),
    };
    a.insert(
        "summary".into(),
        format!(
            "{policy}: projected ${:.2} of the ${:.2} {period} budget ({}) for {whom}",
            p.projected_usd,
            p.budget_usd,
            pct(p.ratio),
        ),
    );
    let user = user.map(|u| format!(" user={u}")).unwrap_or_default();
    a.insert(
        "description".into(),
        format!(
            "Cost policy {policy} for project={} service={} model={} operation={}{user}: ${:.2} \
             spent this {period}, spending ${:.2}/h now, projected ${:.2} by the end of the \
             {period} against a budget of ${:.2} ({}).",
            key.project,
            key.service,
            key.model,
            key.operation,
            p.spent_usd,
            p.rate_usd_per_hour,
            p.projected_usd,
            p.budget_usd,
            pct(p.ratio)
        ),
    );
    a
}

/// `summary` and `description` of a cost / tokens per call change alert.
pub fn describe_change(
    policy: &str,
    key: &SliKey,
    metric: &str,
    v: &crate::cost::ChangeVerdict,
) -> Labels {
    let mut a = Labels::new();
    a.insert(
        "summary".into(),
        format!(
            "{policy}: {metric} up {} against its baseline for {}/{}",
            pct(v.relative_change),
            key.project,
            key.model
        ),
    );
    a.insert(
        "description".into(),
        format!(
            "Cost policy {policy} for project={} service={} model={} operation={}: {metric} {:.6} \
             now against a trailing median of {:.6} ({} since the rise began; z {:.1}, CUSUM {:.1}).",
            key.project, key.service, key.model, key.operation, v.mean, v.baseline,
            pct(v.relative_change), v.z, v.cusum
        ),
    );
    a
}
