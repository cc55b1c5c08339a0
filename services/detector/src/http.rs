//! The detector's HTTP API on `detector.listen`, read-only and project-scoped (a key sees
//! only its own project, `flywheel_auth` `Action::Read`):
//!
//! - `GET /v1/slos`: per SLO and key, the SLI over the SLO window, each rule's burn rates and
//!   the error budget left (the last evaluation's snapshot); under `cost`, per cost policy and
//!   key (and user, for `per: user` spend policies), the spend projection or the change
//!   detector's last verdict; under `latency`, per key, p50 / p90 / p99 of duration, TTFT and
//!   TPOT over the last 5 minutes.
//! - `GET /v1/alerts`: alerts firing now, and recent history (the store's `alerts`, else the
//!   resolutions this process saw).
//!
//! Also [`export_gauges`]: the per-SLO SLI gauges of `/metrics` (worst key per SLO).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flywheel_auth::{Action, AuthError, Authenticator};
use flywheel_core::ErrorCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::alert::payload::rfc3339;
use crate::alert::Alert;
use crate::consumer::SharedSnapshot;
use crate::cost::series::CostView;
use crate::engine::SloView;
use crate::latency::LatencyView;
use crate::metrics::Metrics;
use crate::slo::{LatencyMetric, Slo};

#[derive(Clone)]
pub struct ApiState {
    pub auth: Authenticator,
    pub snapshot: SharedSnapshot,
    pub store: crate::history::Store,
}

fn error(code: ErrorCode, message: String) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({ "code": code.reason(), "message": message })),
    )
        .into_response()
}

fn project(state: &ApiState, headers: &HeaderMap) -> Result<String, (ErrorCode, String)> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    state
        .auth
        .authorize(h("authorization"), h("x-api-key"), Action::Read)
        .map(|p| p.project.as_str().to_string())
        .map_err(|e| {
            let code = match e {
                AuthError::Missing | AuthError::Unknown => ErrorCode::Unauthenticated,
                AuthError::Forbidden(_) => ErrorCode::PermissionDenied,
            };
            (code, e.to_string())
        })
}

async fn slos(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let project = match project(&state, &headers) {
        Ok(p) => p,
        Err((code, message)) => return error(code, message),
    };
    let snap = state.snapshot.read().unwrap_or_else(|p| p.into_inner());
    let views: Vec<&SloView> = snap.views.iter().filter(|v| v.project == project).collect();
    let cost: Vec<_> = snap
        .cost_views
        .iter()
        .filter(|v| v.project == project)
        .collect();
    let latency: Vec<_> = snap
        .latency_views
        .iter()
        .filter(|v| v.project == project)
        .collect();
    Json(json!({
        "evaluated_at": snap.end_ms.map(rfc3339),
        "slos": views,
        "cost": cost,
        "latency": latency,
    }))
    .into_response()
}

fn alert_json(a: &Alert, state: &str) -> Value {
    json!({
        "fingerprint": a.fingerprint.to_string(),
        "state": state,
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at_ms),
        "endsAt": a.ends_at_ms.map(rfc3339),
    })
}

async fn alerts(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let project = match project(&state, &headers) {
        Ok(p) => p,
        Err((code, message)) => return error(code, message),
    };
    let of_project = |a: &Alert| a.labels.get("project") == Some(&project);
    let (firing, local_recent): (Vec<Value>, Vec<Value>) = {
        let snap = state.snapshot.read().unwrap_or_else(|p| p.into_inner());
        (
            snap.firing
                .iter()
                .filter(|a| of_project(a))
                .map(|a| alert_json(a, "firing"))
                .collect(),
            snap.recent
                .iter()
                .rev()
                .filter(|o| of_project(o.alert()))
                .map(|o| alert_json(o.alert(), "resolved"))
                .collect(),
        )
    };
    let history = match crate::history::recent(state.store.as_ref(), &project, 100).await {
        Ok(rows) => rows
            .into_iter()
            .map(|r| {
                json!({
                    "fingerprint": r.fingerprint,
                    "state": r.state,
                    "slo": r.slo,
                    "severity": r.severity,
                    "labels": r.labels.into_iter().collect::<BTreeMap<_, _>>(),
                    "startsAt": rfc3339(r.starts_at / 1_000_000),
                    "endsAt": r.ends_at.map(|e| rfc3339(e / 1_000_000)),
                    "longBurnRate": r.long_burn_rate,
                    "shortBurnRate": r.short_burn_rate,
                    "sli": r.sli,
                    "budgetRemaining": r.budget_remaining,
                    "sentAt": rfc3339(r.sent_at / 1_000_000),
                })
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "alert history unavailable, answering from memory");
            local_recent
        }
    };
    Json(json!({ "firing": firing, "history": history })).into_response()
}

/// Binds `addr` and serves until `shutdown`; returns the bound address and the server future.
pub async fn serve(
    addr: SocketAddr,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let app = Router::new()
        .route("/v1/slos", get(slos))
        .route("/v1/alerts", get(alerts))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }))
}

/// Sets the per-SLO p99 gauges of latency SLOs: the highest p99 of the SLO's metric among the
/// keys it selects (bounded by the SLO file).
pub fn export_latency_gauges(m: &Metrics, slos: &[Slo], views: &[LatencyView]) {
    for slo in slos {
        let crate::slo::Sli::Latency(l) = &slo.sli else {
            continue;
        };
        let p99 = views
            .iter()
            .filter(|v| {
                slo.selector.matches(&crate::SliKey {
                    project: v.project.clone(),
                    service: v.service.clone(),
                    model: v.model.clone(),
                    operation: v.operation.clone(),
                })
            })
            .filter_map(|v| match l.metric {
                LatencyMetric::Duration => v.duration_ms,
                LatencyMetric::Ttft => v.ttft_ms,
                LatencyMetric::Tpot => v.tpot_ms,
            })
            .map(|q| q.p99)
            .reduce(f64::max);
        if let Some(p) = p99 {
            m.slo_latency_p99
                .with_label_values(&[&slo.name.value])
                .set(p);
        }
    }
}

/// Sets the per-policy cost gauges from the last evaluation: highest projected spend over
/// budget and spend rate per spend policy, highest CUSUM per change policy (bounded by the file);
/// and the per-policy count of calls folded into `(other)` user series.
pub fn export_cost_gauges(m: &Metrics, views: &[CostView]) {
    let mut max: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for v in views {
        let name = v.policy.as_str();
        let mut up = |gauge: &'static str, x: Option<f64>| {
            if let Some(x) = x {
                let e = max.entry((gauge, name)).or_insert(f64::MIN);
                *e = e.max(x);
            }
        };
        up(
            "ratio",
            v.projected_usd.zip(v.budget_usd).map(|(p, b)| p / b),
        );
        up("rate", v.rate_usd_per_hour);
        up("cusum", v.cusum);
    }
    // The `(other)` views carry their policy's running count of folded calls.
    let mut folded: BTreeMap<&str, u64> = BTreeMap::new();
    for v in views {
        if let Some(n) = v.folded_calls {
            let e = folded.entry(v.policy.as_str()).or_default();
            *e = (*e).max(n);
        }
    }
    for (name, n) in folded {
        let c = m.cost_user_folded.with_label_values(&[name]);
        c.inc_by(n.saturating_sub(c.get()));
    }
    for ((gauge, name), x) in max {
        let g = match gauge {
            "ratio" => &m.cost_budget_ratio,
            "rate" => &m.cost_spend_rate,
            _ => &m.cost_change_cusum,
        };
        g.with_label_values(&[name]).set(x);
    }
}

/// Sets the per-SLO gauges from the last evaluation: lowest SLI, lowest budget left and highest
/// burn rate per window among the SLO's keys (bounded by the SLO file, not the traffic).
pub fn export_gauges(m: &Metrics, slos: &[Slo], views: &[SloView]) {
    for slo in slos {
        let name = slo.name.value.as_str();
        let mine = || views.iter().filter(move |v| v.slo == name);
        if let Some(s) = mine().filter_map(|v| v.sli).reduce(f64::min) {
            m.slo_sli.with_label_values(&[name]).set(s);
        }
        if let Some(b) = mine().map(|v| v.budget_remaining).reduce(f64::min) {
            m.slo_budget.with_label_values(&[name]).set(b);
        }
        let mut burns: BTreeMap<String, f64> = BTreeMap::new();
        for v in mine() {
            for r in &v.rules {
                for (w, b) in [
                    (&r.long_window, r.long_burn_rate),
                    (&r.short_window, r.short_burn_rate),
                ] {
                    let e = burns.entry(w.clone()).or_insert(0.0);
                    *e = e.max(b.unwrap_or(0.0));
                }
            }
        }
        for (w, b) in burns {
            m.slo_burn.with_label_values(&[name, &w]).set(b);
        }
    }
}
