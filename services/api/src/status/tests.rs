//! Handlers against an in-memory [`StatusStore`]: parameters, auth and the JSON shapes the
//! page reads. No I/O.

use super::*;
use axum::body::to_bytes;
use flywheel_auth::AuthConfig;
use flywheel_store::status::{AlertEpisode, AlertRow, ModelStats, Quantiles};
use prometheus::Registry;

/// Fixed answers; `fail` makes every query fail as unavailable.
struct Fake {
    fail: bool,
}

fn q(p50: f64, p95: f64, p99: f64) -> Quantiles {
    Quantiles {
        p50: Some(p50),
        p95: Some(p95),
        p99: Some(p99),
    }
}

/// What the store answers when its server cannot be reached.
fn unavailable() -> StoreError {
    StoreError::ClickHouse(clickhouse::error::Error::Network("down".into()))
}

#[async_trait::async_trait]
impl StatusStore for Fake {
    async fn model_stats(
        &self,
        _: &str,
        _: TimeRange,
        limit: u32,
    ) -> Result<Vec<ModelStats>, StoreError> {
        if self.fail {
            return Err(unavailable());
        }
        let m = ModelStats {
            model: "gpt-4o".into(),
            calls: 10,
            errors: 1,
            error_ratio: 0.1,
            cost_usd: 0.25,
            input_tokens: 1000,
            output_tokens: 500,
            ttft_ms: q(400.0, 900.0, 1200.0),
            tpot_ms: q(20.0, 30.0, 40.0),
            duration_ms: q(1000.0, 2000.0, 3000.0),
        };
        Ok(vec![m; limit.min(2) as usize])
    }

    async fn call_buckets(
        &self,
        _: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<CallBucket>, StoreError> {
        let t = range.since_ms.div_euclid(step_ms) * step_ms + step_ms;
        Ok(vec![CallBucket {
            t,
            calls: 7,
            errors: 2,
            ttft_p95_ms: Some(850.0),
            cost_usd: 0.5,
        }])
    }

    async fn negative_buckets(
        &self,
        _: &str,
        range: TimeRange,
        step_ms: i64,
    ) -> Result<Vec<NegativeBucket>, StoreError> {
        let t = range.since_ms.div_euclid(step_ms) * step_ms + step_ms;
        Ok(vec![
            NegativeBucket {
                kind: "feedback".into(),
                t,
                n: 3,
            },
            NegativeBucket {
                kind: "signal".into(),
                t,
                n: 4,
            },
        ])
    }

    async fn negative_items(
        &self,
        _: &str,
        _: TimeRange,
        _: u32,
    ) -> Result<(Vec<NegativeItem>, Vec<NegativeItem>), StoreError> {
        let item = |kind: &str, name: &str, t| NegativeItem {
            kind: kind.into(),
            time_ms: t,
            name: name.into(),
            detail: "false".into(),
            conversation_id: "conv-1".into(),
            trace_id: "t1".into(),
            span_id: "s1".into(),
            ..NegativeItem::default()
        };
        Ok((
            vec![item("feedback", "thumbs", 1)],
            vec![item("signal", "regenerate", 2)],
        ))
    }

    async fn call_briefs(
        &self,
        _: &str,
        _: TimeRange,
        traces: &Ids,
        _: u32,
    ) -> Result<Vec<CallBrief>, StoreError> {
        assert_eq!(traces, &Ids::of(["t1"]));
        Ok(vec![CallBrief {
            trace_id: "t1".into(),
            span_id: "s1".into(),
            model: "gpt-4o".into(),
            input_messages: r#"[{"role":"user","content":"Mail me at jane@example.com please"}]"#
                .into(),
            output_messages: r#"[{"role":"assistant","content":"Sure."}]"#.into(),
        }])
    }

    async fn alert_episodes(
        &self,
        _: &str,
        _: TimeRange,
        _: u32,
    ) -> Result<Vec<AlertEpisode>, StoreError> {
        Ok(vec![AlertEpisode {
            fingerprint: "abc".into(),
            alertname: "FlywheelSLOBurnRate".into(),
            slo: "availability".into(),
            severity: "page".into(),
            state: "firing".into(),
            starts_at_ms: 1,
            ends_at_ms: None,
            last_sent_ms: 2,
            peak_long_burn_rate: Some(12.0),
            peak_short_burn_rate: Some(20.0),
            min_budget_remaining: 0.5,
            labels: [("model".to_string(), "gpt-4o".to_string())].into(),
            summary: "burning".into(),
        }])
    }

    async fn insert_alerts(&self, _: &[AlertRow]) -> Result<(), StoreError> {
        unimplemented!("the status page only reads")
    }
}

fn state(required: bool, fail: bool) -> Arc<StatusState<Fake>> {
    let mut config = AuthConfig {
        required,
        ..AuthConfig::default()
    };
    config.keys.insert("secret-key-1".into(), "acme".into());
    config
        .public_keys
        .insert("public-key-1".into(), "acme".into());
    Arc::new(StatusState {
        auth: Authenticator::new(&config).unwrap(),
        store: Arc::new(Fake { fail }),
        detector: DetectorClient::new(Some(""), Duration::from_millis(100)),
        timeout: Duration::from_secs(5),
        metrics: Metrics::register(&Registry::new()).unwrap(),
    })
}

fn headers(key: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(k) = key {
        h.insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    h
}

async fn body(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let bytes = to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

#[tokio::test]
async fn models_shape() {
    let s = state(true, false);
    let r = models(
        State(s.clone()),
        headers(Some("secret-key-1")),
        uri("/v1/status/models?minutes=15"),
    )
    .await;
    let (status, v) = body(r).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["project"], "acme");
    assert_eq!(v["minutes"], 15);
    assert!(v["until_ms"].as_i64().unwrap() - v["since_ms"].as_i64().unwrap() >= 15 * 60_000);
    let m = &v["models"][0];
    assert_eq!(m["model"], "gpt-4o");
    assert_eq!(m["error_ratio"], 0.1);
    assert_eq!(m["cost_usd"], 0.25);
    assert_eq!(m["ttft_ms"]["p95"], 900.0);
    assert_eq!(m["tpot_ms"]["p99"], 40.0);
    assert_eq!(m["duration_ms"]["p50"], 1000.0);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them() {
    let s = state(false, false);
    for (path, param) in [
        ("/v1/status/models?minutes=0", "minutes"),
        ("/v1/status/models?limit=1000", "limit"),
        ("/v1/status/models?model=x", "model"),
    ] {
        let (status, v) = body(models(State(s.clone()), headers(None), uri(path)).await).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(v["code"], "malformed");
        assert_eq!(v["param"], param, "{v}");
    }
    let r = timeseries(
        State(s.clone()),
        headers(None),
        uri("/v1/status/timeseries?limit=5"),
    )
    .await;
    let (status, v) = body(r).await;
    assert_eq!((status, v["param"].as_str()), (400, Some("limit")), "{v}");
}

#[tokio::test]
async fn keys_like_the_rest_of_the_api() {
    let s = state(true, false);
    let path = "/v1/status/alerts";
    let (status, v) = body(alerts(State(s.clone()), headers(None), uri(path)).await).await;
    assert_eq!((status, v["code"].as_str()), (401, Some("unauthenticated")));
    let r = alerts(State(s.clone()), headers(Some("public-key-1")), uri(path)).await;
    let (status, v) = body(r).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("permission_denied"))
    );
    let r = alerts(State(s.clone()), headers(Some("secret-key-1")), uri(path)).await;
    let (status, v) = body(r).await;
    assert_eq!(status, 200);
    assert_eq!(v["alerts"][0]["slo"], "availability");
    assert_eq!(v["alerts"][0]["labels"]["model"], "gpt-4o");
    assert_eq!(v["alerts"][0]["ends_at_ms"], Value::Null);
    // Without `auth.required`, no key reads the default project.
    let open = state(false, false);
    let (status, v) = body(alerts(State(open), headers(None), uri(path)).await).await;
    assert_eq!((status, v["project"].as_str()), (200, Some("default")));
}

#[tokio::test]
async fn timeseries_columns_have_one_entry_per_bucket() {
    let s = state(false, false);
    let r = timeseries(
        State(s),
        headers(None),
        uri("/v1/status/timeseries?minutes=60"),
    )
    .await;
    let (status, v) = body(r).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["step_ms"], 30_000);
    let n = v["t"].as_array().unwrap().len();
    assert!((120..=122).contains(&n), "{n} buckets");
    for col in [
        "calls",
        "errors",
        "ttft_p95_ms",
        "cost_usd",
        "negative_feedback",
        "negative_signals",
    ] {
        assert_eq!(v[col].as_array().unwrap().len(), n, "{col}");
    }
    assert_eq!(v["calls"][1], 7);
    assert_eq!(v["ttft_p95_ms"][1], 850.0);
    assert_eq!(v["ttft_p95_ms"][0], Value::Null);
    assert_eq!(v["negative_feedback"][1], 3);
    assert_eq!(v["negative_signals"][1], 4);
}

#[tokio::test]
async fn feedback_items_carry_their_call() {
    let s = state(false, false);
    let r = feedback(State(s), headers(None), uri("/v1/status/feedback")).await;
    let (status, v) = body(r).await;
    assert_eq!(status, 200, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    // Newest first.
    assert_eq!(items[0]["name"], "regenerate");
    assert_eq!(items[1]["name"], "thumbs");
    for i in items {
        assert_eq!(i["model"], "gpt-4o");
        assert_eq!(i["conversation_id"], "conv-1");
        assert_eq!(i["answer"], "Sure.");
        let prompt = i["prompt"].as_str().unwrap();
        assert!(prompt.starts_with("Mail me at "), "{prompt}");
        assert!(
            !prompt.contains("jane@example.com"),
            "not redacted: {prompt}"
        );
    }
    assert_eq!(v["counts"]["signal:regenerate"], 1);
}

#[tokio::test]
async fn store_down_is_503_and_no_detector_is_still_200() {
    let s = state(false, true);
    let (status, v) =
        body(models(State(s.clone()), headers(None), uri("/v1/status/models")).await).await;
    assert_eq!((status, v["code"].as_str()), (503, Some("unavailable")));
    assert!(
        !v["message"].as_str().unwrap().contains("down"),
        "leaks the cause: {v}"
    );
    let (status, v) = body(slos(State(s), headers(None), uri("/v1/status/slos")).await).await;
    assert_eq!(status, 200);
    assert_eq!(v["detector"]["status"], "not_configured");
    assert_eq!(v["slos"], serde_json::json!([]));
}

#[test]
fn steps_are_round_and_bounded() {
    assert_eq!(step_ms(15), 10_000);
    assert_eq!(step_ms(60), 30_000);
    assert_eq!(step_ms(1440), 900_000);
    assert_eq!(step_ms(params::MAX_MINUTES), 7_200_000);
    for m in [1, 15, 60, 360, 1440, params::MAX_MINUTES] {
        assert!(i64::from(m) * 60_000 / step_ms(m) <= 120, "{m}");
    }
}

#[test]
fn snippets_are_short_single_lines() {
    assert_eq!(snippet("a\n\n b   c", 10), "a b c");
    assert_eq!(snippet("abcdefghijkl", 5), "abcde…");
    assert_eq!(snippet("é".repeat(10).as_str(), 3), "ééé…");
}
