//! `GET /v1/status/slos`: the detector's `GET /v1/slos` and `GET /v1/alerts`, fetched with
//! the caller's credentials (the detector scopes them to the key's project itself) and a short
//! timeout, merged into one body. When the detector cannot be reached the answer is still 200,
//! with `detector.status = "not_running"`, so the page can say so instead of failing.

use std::time::Duration;

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{json, Value};

/// The detector as the api reaches it.
#[derive(Clone)]
pub struct DetectorClient {
    /// `None`: no detector configured.
    base: Option<String>,
    http: reqwest::Client,
}

/// How the detector answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorStatus {
    /// `ok`, `not_configured`, `not_running` (no connection, or no answer in time) or `error`
    /// (it answered with an error status, or a body that is not JSON).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl DetectorClient {
    pub fn new(base: Option<&str>, timeout: Duration) -> Self {
        let base = base
            .map(|b| b.trim().trim_end_matches('/').to_string())
            .filter(|b| !b.is_empty());
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(1)))
            .build()
            .unwrap_or_default();
        Self { base, http }
    }

    async fn get(
        &self,
        base: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Value, DetectorStatus> {
        let mut req = self.http.get(format!("{base}{path}"));
        for name in ["authorization", "x-api-key"] {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                req = req.header(name, v);
            }
        }
        let failed = |status, message: String| DetectorStatus {
            status,
            url: Some(base.to_string()),
            message,
        };
        let response = req.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "no answer in time"
            } else {
                "cannot connect"
            };
            failed("not_running", format!("{why} ({base})"))
        })?;
        let code = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| failed("error", format!("unreadable answer: {e}")))?;
        if !code.is_success() {
            let message = body["message"].as_str().unwrap_or("").to_string();
            return Err(failed(
                "error",
                format!("{path} answered {code}: {message}"),
            ));
        }
        Ok(body)
    }

    /// The merged body of `GET /v1/status/slos`.
    pub async fn slos(&self, headers: &HeaderMap) -> Value {
        let Some(base) = self.base.as_deref() else {
            let status = DetectorStatus {
                status: "not_configured",
                url: None,
                message: "api.detector_url is empty".into(),
            };
            return merged(status, Value::Null, Value::Null);
        };
        let (slos, alerts) = tokio::join!(
            self.get(base, "/v1/slos", headers),
            self.get(base, "/v1/alerts", headers)
        );
        match (slos, alerts) {
            (Ok(s), Ok(a)) => {
                let ok = DetectorStatus {
                    status: "ok",
                    url: Some(base.to_string()),
                    message: String::new(),
                };
                merged(ok, s, a)
            }
            (Err(e), _) | (_, Err(e)) => merged(e, Value::Null, Value::Null),
        }
    }
}

/// `{detector, evaluated_at, slos, cost, latency, firing}`; empty lists when the detector did
/// not answer.
pub fn merged(status: DetectorStatus, slos: Value, alerts: Value) -> Value {
    let list = |v: &Value| match v {
        Value::Array(_) => v.clone(),
        _ => Value::Array(Vec::new()),
    };
    json!({
        "detector": status,
        "evaluated_at": slos["evaluated_at"],
        "slos": list(&slos["slos"]),
        "cost": list(&slos["cost"]),
        "latency": list(&slos["latency"]),
        "firing": list(&alerts["firing"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_shape_with_and_without_a_detector() {
        let ok = DetectorStatus {
            status: "ok",
            url: Some("http://d".into()),
            message: String::new(),
        };
        let v = merged(
            ok,
            json!({"evaluated_at": "2026-01-01T00:00:00Z", "slos": [{"slo": "a"}], "cost": [], "latency": []}),
            json!({"firing": [{"fingerprint": "f"}], "history": []}),
        );
        assert_eq!(v["detector"]["status"], "ok");
        assert_eq!(v["slos"][0]["slo"], "a");
        assert_eq!(v["firing"][0]["fingerprint"], "f");
        assert!(v["detector"].get("message").is_none());

        let down = DetectorStatus {
            status: "not_running",
            url: Some("http://d".into()),
            message: "cannot connect (http://d)".into(),
        };
        let v = merged(down, Value::Null, Value::Null);
        assert_eq!(v["detector"]["status"], "not_running");
        for k in ["slos", "cost", "latency", "firing"] {
            assert_eq!(v[k], json!([]), "{k}");
        }
        assert!(v["evaluated_at"].is_null());
    }

    #[tokio::test]
    async fn no_detector_configured() {
        let v = DetectorClient::new(Some(""), Duration::from_millis(500))
            .slos(&HeaderMap::new())
            .await;
        assert_eq!(v["detector"]["status"], "not_configured", "{v}");
    }
}
