//! Alert bodies, as pure functions:
//!
//! - [`alertmanager_v2`]: the body of Alertmanager's `POST /api/v2/alerts`, a list of
//!   `postableAlert`s (`labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`). A
//!   firing alert carries an `endsAt` in the future (`now + valid_for`, as Prometheus does with
//!   four resend intervals) so Alertmanager resolves it by itself if the detector dies; a
//!   resolution carries the time it resolved.
//! - [`webhook`]: the JSON Alertmanager's `webhook_config` posts (`version` "4", `groupKey`,
//!   `truncatedAlerts`, `status`, `receiver`, `groupLabels`, `commonLabels`,
//!   `commonAnnotations`, `externalURL`, `alerts` with `status` and `fingerprint`), so a
//!   receiver written for Alertmanager takes Flywheel's alerts directly.
//! - [`slack`]: a Slack incoming-webhook message: `text` (the notification fallback) and
//!   `blocks` (header, description, link to the affected calls).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::{Alert, Labels};
use crate::slo::Dur;

/// RFC 3339 in UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Go's zero time, which Alertmanager's webhook uses as `endsAt` of firing alerts.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn status(a: &Alert) -> &'static str {
    if a.ends_at_ms.is_some() {
        "resolved"
    } else {
        "firing"
    }
}

/// `POST /api/v2/alerts` body.
pub fn alertmanager_v2(alerts: &[Alert], now_ms: i64, valid_for: Dur) -> Value {
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                let ends = a
                    .ends_at_ms
                    .unwrap_or(now_ms + valid_for.as_millis() as i64);
                json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at_ms),
                    "endsAt": rfc3339(ends),
                    "generatorURL": a.generator_url,
                })
            })
            .collect(),
    )
}

/// Labels (or annotations) with the same value in every alert.
fn common(maps: impl Iterator<Item = Labels>) -> Labels {
    let mut it = maps;
    let Some(mut c) = it.next() else {
        return Labels::new();
    };
    for m in it {
        c.retain(|k, v| m.get(k) == Some(v));
    }
    c
}

/// Alertmanager's group key for a group: `{}:{name="value", ...}` (the route's matchers, here
/// none, then the group labels).
pub fn group_key(group_labels: &Labels) -> String {
    let inner: Vec<String> = group_labels
        .iter()
        .map(|(k, v)| format!("{k}={}", Value::String(v.clone())))
        .collect();
    format!("{{}}:{{{}}}", inner.join(", "))
}

/// The Alertmanager webhook body for one group of alerts.
pub fn webhook(receiver: &str, group_by: &[&str], alerts: &[Alert], external_url: &str) -> Value {
    let common_labels = common(alerts.iter().map(|a| a.labels.clone()));
    let group_labels: Labels = common_labels
        .iter()
        .filter(|(k, _)| group_by.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let any_firing = alerts.iter().any(|a| a.ends_at_ms.is_none());
    let mut body = Map::new();
    body.insert("version".into(), json!("4"));
    body.insert("groupKey".into(), json!(group_key(&group_labels)));
    body.insert("truncatedAlerts".into(), json!(0));
    body.insert(
        "status".into(),
        json!(if any_firing { "firing" } else { "resolved" }),
    );
    body.insert("receiver".into(), json!(receiver));
    body.insert("groupLabels".into(), json!(group_labels));
    body.insert("commonLabels".into(), json!(common_labels));
    body.insert(
        "commonAnnotations".into(),
        json!(common(alerts.iter().map(|a| a.annotations.clone()))),
    );
    body.insert("externalURL".into(), json!(external_url));
    body.insert(
        "alerts".into(),
        Value::Array(
            alerts
                .iter()
                .map(|a| {
                    json!({
                        "status": status(a),
                        "labels": a.labels,
                        "annotations": a.annotations,
                        "startsAt": rfc3339(a.starts_at_ms),
                        "endsAt": a.ends_at_ms.map_or_else(|| ZERO_TIME.to_string(), rfc3339),
                        "generatorURL": a.generator_url,
                        "fingerprint": a.fingerprint.to_string(),
                    })
                })
                .collect(),
        ),
    );
    Value::Object(body)
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// A Slack incoming-webhook message for one alert.
pub fn slack(a: &Alert) -> Value {
    let label = |k: &str| a.labels.get(k).map(String::as_str).unwrap_or("");
    let annotation = |k: &str| a.annotations.get(k).map(String::as_str).unwrap_or("");
    let state = if a.ends_at_ms.is_some() {
        "RESOLVED"
    } else {
        "FIRING"
    };
    let title = format!("[{state}] {} ({})", label("slo"), label("severity"));
    let text = format!("{title}: {}", annotation("summary"));
    let mut context = format!("started {}", rfc3339(a.starts_at_ms));
    if let Some(end) = a.ends_at_ms {
        context.push_str(&format!(", resolved {}", rfc3339(end)));
    }
    context.push_str(&format!(" · fingerprint {}", a.fingerprint));
    json!({
        "text": slack_escape(&text),
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": truncate(&title, 150) } },
            { "type": "section", "text": { "type": "mrkdwn", "text": truncate(&slack_escape(annotation("description")), 3000) } },
            {
                "type": "section",
                "fields": [
                    { "type": "mrkdwn", "text": format!("*project*\n{}", slack_escape(label("project"))) },
                    { "type": "mrkdwn", "text": format!("*service*\n{}", slack_escape(label("service"))) },
                    { "type": "mrkdwn", "text": format!("*model*\n{}", slack_escape(label("model"))) },
                    { "type": "mrkdwn", "text": format!("*operation*\n{}", slack_escape(label("operation"))) },
                ]
            },
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("<{}|Affected calls>", a.generator_url) } },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] },
        ]
    })
}
