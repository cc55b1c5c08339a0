//! The live status page: `GET /` (one HTML page, its script, styles and the vendored uPlot,
//! embedded in the binary) and the JSON it polls every few seconds, all read-only and scoped to
//! the caller's project (`flywheel_auth` `Action::Read`: a secret key, or no key when
//! `auth.required = false`; adr/0010):
//!
//! - `GET /v1/status/models?minutes=60&limit=20`: per model, calls, errors, cost, tokens and
//!   p50 / p95 / p99 of TTFT, TPOT and duration, most expensive first (`llm_calls`);
//! - `GET /v1/status/timeseries?minutes=60`: per time bucket, calls, errors, p95 TTFT, cost,
//!   negative feedback and negative signals, as columns (`llm_calls`, `feedback`, `signals`);
//! - `GET /v1/status/feedback?minutes=60&limit=50`: recent negative explicit feedback and
//!   implicit signals with their conversation, model and a snippet of the call;
//! - `GET /v1/status/alerts?minutes=1440&limit=50`: recent alert episodes (`alerts` history);
//! - `GET /v1/status/slos`: SLOs and firing alerts from the detector's API ([`detector`]).
//!
//! Data comes from the store through [`flywheel_store::StatusStore`] (ClickHouse or DuckDB,
//! whichever `[store]` selects), never more than a `LIMIT` of rows from a bounded time range,
//! and every request is cut after `api.status_timeout_ms` (503).

pub mod assets;
pub mod detector;
pub mod params;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use flywheel_auth::{Action, AuthError, Authenticator};
use flywheel_core::ErrorCode;
use flywheel_store::status::{CallBrief, CallBucket, NegativeBucket, NegativeItem, TimeRange};
use flywheel_store::{Ids, StatusStore, Store, StoreError};
use serde_json::{json, Value};

use crate::metrics::Metrics;
use detector::DetectorClient;
use params::{Params, Spec};

/// The route label of status requests in `flywheel_api_requests_total`.
pub const ROUTE: &str = "status";

/// Shared state of the status routes, on a store `S` (the api's `dyn Store`).
pub struct StatusState<S: ?Sized> {
    pub auth: Authenticator,
    pub store: Arc<S>,
    pub detector: DetectorClient,
    pub timeout: Duration,
    pub metrics: Metrics,
}

/// The status state of the api: the store's status queries, the detector at
/// `api.detector_url`.
pub fn state(
    config: &crate::ApiConfig,
    auth: &Authenticator,
    store: Arc<dyn Store>,
    metrics: Metrics,
) -> Arc<StatusState<dyn Store>> {
    let timeout = Duration::from_millis(config.status_timeout_ms);
    Arc::new(StatusState {
        auth: auth.clone(),
        store,
        detector: DetectorClient::new(config.detector_url.as_deref(), timeout),
        timeout,
        metrics,
    })
}

/// The page, its assets and the JSON endpoints.
pub fn router<S: StatusStore + ?Sized + 'static>(state: Arc<StatusState<S>>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/status/{file}", get(assets::file))
        .route("/v1/status/models", get(models::<S>))
        .route("/v1/status/timeseries", get(timeseries::<S>))
        .route("/v1/status/feedback", get(feedback::<S>))
        .route("/v1/status/alerts", get(alerts::<S>))
        .route("/v1/status/slos", get(slos::<S>))
        .with_state(state)
}

/// The JSON error body of the api: `{"code", "message", "param"?}`.
fn error(m: &Metrics, code: ErrorCode, message: &str, param: Option<&str>) -> Response {
    m.requests.with_label_values(&[ROUTE, code.reason()]).inc();
    let mut body = json!({"code": code.reason(), "message": message});
    if let Some(p) = param {
        body["param"] = p.into();
    }
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(body)).into_response()
}

fn ok(m: &Metrics, body: Value) -> Response {
    m.requests.with_label_values(&[ROUTE, "ok"]).inc();
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// The caller's project and validated parameters, or the refusal.
fn admit<S: ?Sized>(
    state: &StatusState<S>,
    headers: &HeaderMap,
    uri: &Uri,
    spec: Spec,
) -> Result<(String, Params), Box<Response>> {
    let m = &state.metrics;
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let principal = state
        .auth
        .authorize(h("authorization"), h("x-api-key"), Action::Read)
        .map_err(|e| {
            Box::new(match e {
                AuthError::Forbidden(_) => {
                    error(m, ErrorCode::PermissionDenied, &e.to_string(), None)
                }
                _ => error(m, ErrorCode::Unauthenticated, &e.to_string(), None),
            })
        })?;
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| Box::new(error(m, ErrorCode::Malformed, &e.body_text(), None)))?
        .0;
    let params = params::parse(&pairs, spec).map_err(|e| {
        Box::new(error(
            m,
            ErrorCode::Malformed,
            &e.to_string(),
            Some(&e.param),
        ))
    })?;
    Ok((principal.project.as_str().to_string(), params))
}

/// Runs `f` under the status timeout; maps failures to 503 / 500 without internals.
async fn bounded<T, S: ?Sized>(
    state: &StatusState<S>,
    what: &str,
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, Box<Response>> {
    let m = &state.metrics;
    let failed = match tokio::time::timeout(state.timeout, f).await {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) if e.is_unavailable() => {
            tracing::warn!(query = what, error = %e, "status query failed");
            error(
                m,
                ErrorCode::Unavailable,
                "the store is unavailable; retry later",
                None,
            )
        }
        Ok(Err(e)) => {
            tracing::warn!(query = what, error = %e, "status query failed");
            error(
                m,
                ErrorCode::Internal,
                "the query failed; the server log has the cause",
                None,
            )
        }
        Err(_) => {
            tracing::warn!(
                query = what,
                timeout_ms = state.timeout.as_millis() as u64,
                "status query timed out"
            );
            error(
                m,
                ErrorCode::Unavailable,
                "the query did not finish in time; retry later",
                None,
            )
        }
    };
    Err(Box::new(failed))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn head(project: &str, p: Params, range: TimeRange) -> Value {
    json!({
        "project": project,
        "minutes": p.minutes,
        "since_ms": range.since_ms,
        "until_ms": range.until_ms,
    })
}

macro_rules! try_or_return {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return *response,
        }
    };
}

async fn models<S: StatusStore + ?Sized>(
    State(state): State<Arc<StatusState<S>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (project, p) = try_or_return!(admit(&state, &headers, &uri, Spec::with_limit(20, 100)));
    let range = TimeRange::last_minutes(now_ms(), p.minutes);
    let rows = try_or_return!(
        bounded(
            &state,
            "models",
            state.store.model_stats(&project, range, p.limit)
        )
        .await
    );
    let mut body = head(&project, p, range);
    body["models"] = json!(rows);
    ok(&state.metrics, body)
}

/// The bucket width for a range of `minutes`: the smallest of a few round steps giving at most
/// 120 buckets.
pub fn step_ms(minutes: u32) -> i64 {
    const STEPS_S: [i64; 12] = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
    let range_s = i64::from(minutes) * 60;
    let s = STEPS_S
        .iter()
        .copied()
        .find(|s| range_s / s <= 120)
        .unwrap_or(14400);
    s * 1000
}

/// Columns for a chart: one entry per bucket from the bucket holding `since_ms` to the one
/// holding `now_ms`; missing buckets are zeros (counts) or null (p95 TTFT).
pub fn columns(
    since_ms: i64,
    now_ms: i64,
    step: i64,
    calls: &[CallBucket],
    negative: &[NegativeBucket],
) -> Value {
    let first = since_ms.div_euclid(step) * step;
    let last = now_ms.div_euclid(step) * step;
    let n = usize::try_from((last - first) / step + 1).unwrap_or(0);
    let mut t = Vec::with_capacity(n);
    let (mut c, mut e, mut ttft, mut cost, mut fb, mut sig) = (
        vec![0u64; n],
        vec![0u64; n],
        vec![None; n],
        vec![0f64; n],
        vec![0u64; n],
        vec![0u64; n],
    );
    for i in 0..n {
        t.push(first + step * i as i64);
    }
    let index = |ts: i64| {
        usize::try_from((ts - first).div_euclid(step))
            .ok()
            .filter(|i| *i < n)
    };
    for b in calls {
        if let Some(i) = index(b.t) {
            c[i] = b.calls;
            e[i] = b.errors;
            ttft[i] = b.ttft_p95_ms;
            cost[i] = b.cost_usd;
        }
    }
    for b in negative {
        if let Some(i) = index(b.t) {
            if b.kind == "feedback" {
                fb[i] += b.n;
            } else {
                sig[i] += b.n;
            }
        }
    }
    json!({
        "step_ms": step,
        "t": t,
        "calls": c,
        "errors": e,
        "ttft_p95_ms": ttft,
        "cost_usd": cost,
        "negative_feedback": fb,
        "negative_signals": sig,
    })
}

async fn timeseries<S: StatusStore + ?Sized>(
    State(state): State<Arc<StatusState<S>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (project, p) = try_or_return!(admit(&state, &headers, &uri, Spec::MINUTES));
    let now = now_ms();
    let step = step_ms(p.minutes);
    // Whole buckets: from the start of the bucket holding `now - minutes`.
    let range = TimeRange {
        since_ms: (now - i64::from(p.minutes) * 60_000).div_euclid(step) * step,
        until_ms: now + 60_000,
    };
    let both = async {
        let (calls, negative) = tokio::join!(
            state.store.call_buckets(&project, range, step),
            state.store.negative_buckets(&project, range, step)
        );
        Ok((calls?, negative?))
    };
    let (calls, negative) = try_or_return!(bounded(&state, "timeseries", both).await);
    let mut body = head(&project, p, range);
    let cols = columns(range.since_ms, now, step, &calls, &negative);
    if let (Value::Object(b), Value::Object(c)) = (&mut body, cols) {
        b.extend(c);
    }
    ok(&state.metrics, body)
}

/// At most `max` characters of `text` on one line, PII redacted, with `…` when cut.
pub fn snippet(text: &str, max: usize) -> String {
    let mut counts = flywheel_datasets::RedactionCounts::default();
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let clean = flywheel_datasets::redact::redact(&one_line, &mut counts);
    let mut out: String = clean.chars().take(max).collect();
    if clean.chars().count() > max {
        out.push('…');
    }
    out
}

/// `item` as JSON with the model, last prompt and answer of the call it names (that span, else
/// any call of its trace).
pub fn with_call(item: &NegativeItem, calls: &[CallBrief]) -> Value {
    let call = calls
        .iter()
        .find(|c| c.trace_id == item.trace_id && c.span_id == item.span_id)
        .or_else(|| calls.iter().find(|c| c.trace_id == item.trace_id));
    let mut v = json!(item);
    if let Some(c) = call {
        let prompt = flywheel_datasets::messages::parse(&c.input_messages, "user")
            .into_iter()
            .rev()
            .find(|m| m.role == "user" && !m.content.is_empty())
            .map(|m| snippet(&m.content, 160))
            .unwrap_or_default();
        let answer = flywheel_datasets::messages::completion(&c.output_messages)
            .map(|a| snippet(&a, 160))
            .unwrap_or_default();
        v["model"] = c.model.clone().into();
        v["prompt"] = prompt.into();
        v["answer"] = answer.into();
    } else {
        v["model"] = Value::Null;
        v["prompt"] = "".into();
        v["answer"] = "".into();
    }
    v["comment"] = snippet(&item.comment, 200).into();
    v
}

async fn feedback<S: StatusStore + ?Sized>(
    State(state): State<Arc<StatusState<S>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (project, p) = try_or_return!(admit(&state, &headers, &uri, Spec::with_limit(50, 200)));
    let range = TimeRange::last_minutes(now_ms(), p.minutes);
    let store = &state.store;
    let work = async {
        let (fb, sig) = store.negative_items(&project, range, p.limit).await?;
        let mut items: Vec<NegativeItem> = fb.into_iter().chain(sig).collect();
        items.sort_by_key(|i| std::cmp::Reverse(i.time_ms));
        items.truncate(p.limit as usize);
        let traces = Ids::of(items.iter().map(|i| i.trace_id.as_str()));
        // Feedback may come well after its call: look an hour further back for the calls.
        let call_range = TimeRange {
            since_ms: range.since_ms - 3_600_000,
            until_ms: range.until_ms,
        };
        let calls = store
            .call_briefs(&project, call_range, &traces, 4 * p.limit)
            .await?;
        Ok((items, calls))
    };
    let (items, calls) = try_or_return!(bounded(&state, "feedback", work).await);
    let mut body = head(&project, p, range);
    body["items"] = items.iter().map(|i| with_call(i, &calls)).collect();
    let mut by_name: HashMap<String, u64> = HashMap::new();
    for i in &items {
        *by_name.entry(format!("{}:{}", i.kind, i.name)).or_default() += 1;
    }
    body["counts"] = json!(by_name);
    ok(&state.metrics, body)
}

async fn alerts<S: StatusStore + ?Sized>(
    State(state): State<Arc<StatusState<S>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (project, p) = try_or_return!(admit(&state, &headers, &uri, Spec::with_limit(50, 200)));
    let range = TimeRange::last_minutes(now_ms(), p.minutes);
    let rows = try_or_return!(
        bounded(
            &state,
            "alerts",
            state.store.alert_episodes(&project, range, p.limit)
        )
        .await
    );
    let mut body = head(&project, p, range);
    body["alerts"] = json!(rows);
    ok(&state.metrics, body)
}

async fn slos<S: StatusStore + ?Sized>(
    State(state): State<Arc<StatusState<S>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (project, _) = try_or_return!(admit(&state, &headers, &uri, Spec::MINUTES));
    let mut body = state.detector.slos(&headers).await;
    body["project"] = project.into();
    ok(&state.metrics, body)
}

#[cfg(test)]
mod tests;
