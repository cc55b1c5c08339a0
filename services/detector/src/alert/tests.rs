use super::payload::{self, rfc3339};
use super::*;
use crate::burn::evaluate_rule;
use crate::slo::{parse, At, Objective, Sli, Slo};
use crate::window::Counts;

fn key() -> SliKey {
    SliKey {
        project: "acme".into(),
        service: "support-bot".into(),
        model: "gpt-4o".into(),
        operation: "chat".into(),
    }
}

#[test]
fn fingerprints_are_alertmanagers() {
    // The empty set hashes to FNV-1a's offset basis (Prometheus' emptyLabelSignature).
    assert_eq!(fingerprint(&Labels::new()).0, 0xcbf2_9ce4_8422_2325);
    // FNV-1a 64 of "a" 0xff "b" 0xff, by hand: h = offset; for each byte h = (h ^ byte) * prime.
    let l: Labels = [("a".to_string(), "b".to_string())].into_iter().collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in [b'a', 0xff, b'b', 0xff] {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    assert_eq!(fingerprint(&l).0, h);
    // What Alertmanager 0.25 (Debian's prometheus-alertmanager) reported for the labels of the
    // sample alert after it was POSTed to /api/v2/alerts.
    let am = labels("chat-gpt-4o-ttft", &key(), Severity::Page);
    assert_eq!(fingerprint(&am).to_string(), "0474b4fa73058c74");
    // Operation is a label: two keys that differ only by it are two alerts.
    let mut other = key();
    other.operation = "embeddings".into();
    assert_ne!(
        fingerprint(&labels("s", &key(), Severity::Page)),
        fingerprint(&labels("s", &other, Severity::Page))
    );
}

const SLO: &str = "\
slos:
  - name: chat-gpt-4o-ttft
    description: TTFT of chat calls to gpt-4o.
    selector: { project: acme, model: gpt-4o }
    sli:
      latency: { metric: ttft, threshold: 1.5s }
    objective: 0.99
    window: 30d
";

/// 2026-11-28T12:00:00Z
const T0: i64 = 1_795_867_200_000;

fn slo() -> At<Slo> {
    parse(SLO).unwrap().slos.remove(0)
}

/// A page alert for the 1 h / 5 m rule: long 180/1000 (burn 18), short 60/200 (burn 30).
fn sample_alert(slo: &Slo) -> Alert {
    sample_alert_for(slo, &key())
}

fn sample_alert_for(slo: &Slo, key: &SliKey) -> Alert {
    let eval = evaluate_rule(
        &slo.alerting.windows[0],
        Counts::new(180, 1000),
        Counts::new(60, 200),
        slo.objective,
        1,
    );
    let ev = Evidence {
        eval: &eval,
        budget_remaining: 0.632,
        range_ms: (T0 - 3_600_000, T0),
        api_url: "http://flywheel.example:8080/",
    };
    let (annotations, url) = describe(slo, key, &ev);
    let labels = labels(&slo.name, key, Severity::Page);
    Alert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations,
        starts_at_ms: T0,
        ends_at_ms: None,
        generator_url: url,
    }
}

#[test]
fn annotations_carry_both_burn_rates_budget_sli_and_the_affected_calls() {
    let s = slo();
    let a = sample_alert(&s);
    assert_eq!(
        a.annotations["summary"],
        "chat-gpt-4o-ttft: error budget burning 18.0x over 1h and 30.0x over 5m (threshold 14.4x) for acme/gpt-4o"
    );
    assert_eq!(
        a.annotations["description"],
        "SLO chat-gpt-4o-ttft (99% good calls with ttft < 1.5s over 30d) for project=acme service=support-bot \
         model=gpt-4o operation=chat: burn rate 18.0x over 1h and 30.0x over 5m (threshold 14.4x); SLI 70% good \
         over 5m (60 bad of 200); error budget remaining 63.2% of 30d. TTFT of chat calls to gpt-4o."
    );
    assert_eq!(
        a.annotations["query"],
        "SELECT timestamp, trace_id, span_id, model, status_code, ttft_ms, tpot_ms, duration_ns FROM llm_calls \
         WHERE project = 'acme' AND service = 'support-bot' AND model = 'gpt-4o' AND operation = 'chat' \
         AND timestamp >= fromUnixTimestamp64Milli(1795863600000) AND timestamp < fromUnixTimestamp64Milli(1795867200000) \
         AND ttft_ms >= 1500 ORDER BY timestamp DESC LIMIT 100"
    );
    assert_eq!(
        a.generator_url,
        "http://flywheel.example:8080/v1/calls?project=acme&service=support-bot&model=gpt-4o&operation=chat&from_ms=1795863600000&to_ms=1795867200000"
    );
    // Values from spans are quoted, not trusted.
    let mut k = key();
    k.model = "x' OR 1=1 --".into();
    assert!(calls_query(&Sli::Availability, &k, (0, 1)).contains("model = 'x\\' OR 1=1 --'"));
    assert!(calls_url("http://a", &k, (0, 1)).contains("model=x%27%20OR%201%3D1%20--"));
}

fn obs<'a>(policy: &'a AlertPolicy, breaching: bool, short_burn: Option<f64>) -> Observation<'a> {
    let s = slo();
    let a = sample_alert(&s);
    Observation {
        labels: a.labels,
        annotations: a.annotations,
        generator_url: a.generator_url,
        breaching,
        short_burn,
        factor: 14.4,
        policy,
    }
}

const MIN: i64 = 60_000;

#[test]
fn fires_resends_resolves_with_hysteresis_and_dedups() {
    let policy = AlertPolicy::default(); // pending_for 0, resolve below 7.2 for 5 min
    let mut t = Tracker::new(Dur::mins(1));
    assert_eq!(t.observe(T0, obs(&policy, false, Some(1.0))), None);
    // Breaching: fires at once.
    let Some(Notify::Firing(a)) = t.observe(T0 + 10_000, obs(&policy, true, Some(30.0))) else {
        panic!()
    };
    assert_eq!((a.starts_at_ms, a.ends_at_ms), (T0 + 10_000, None));
    // Same fingerprint again within the resend interval: nothing (dedup).
    assert_eq!(t.observe(T0 + 20_000, obs(&policy, true, Some(30.0))), None);
    assert_eq!(t.firing().count(), 1);
    // A minute after the last send: re-sent, same startsAt.
    let Some(Notify::Firing(b)) = t.observe(T0 + 70_000, obs(&policy, true, Some(30.0))) else {
        panic!()
    };
    assert_eq!(b.starts_at_ms, a.starts_at_ms);
    // Short window drops below the factor (not breaching) but above 7.2: still firing.
    assert_eq!(
        t.observe(T0 + 2 * MIN, obs(&policy, false, Some(10.0))),
        None
    );
    // Below 7.2 from 3 min; resent at 3 min (last send 70 s), then resolved at 8 min.
    assert!(matches!(
        t.observe(T0 + 3 * MIN, obs(&policy, false, Some(2.0))),
        Some(Notify::Firing(_))
    ));
    assert_eq!(
        t.observe(T0 + 7 * MIN, obs(&policy, false, Some(2.0)))
            .map(|n| matches!(n, Notify::Firing(_))),
        Some(true)
    );
    let Some(Notify::Resolved(r)) = t.observe(T0 + 8 * MIN, obs(&policy, false, Some(2.0))) else {
        panic!()
    };
    assert_eq!(
        (r.starts_at_ms, r.ends_at_ms),
        (T0 + 10_000, Some(T0 + 8 * MIN))
    );
    assert_eq!(t.firing().count(), 0);
    // Quiet afterwards.
    assert_eq!(
        t.observe(T0 + 9 * MIN, obs(&policy, false, Some(0.0))),
        None
    );
}

#[test]
fn pending_for_holds_back_short_breaches() {
    let policy = AlertPolicy {
        pending_for: Dur::mins(2),
        ..AlertPolicy::default()
    };
    let mut t = Tracker::new(Dur::mins(1));
    assert_eq!(t.observe(T0, obs(&policy, true, Some(30.0))), None);
    // The breach ends before 2 min: dropped without a word.
    assert_eq!(t.observe(T0 + MIN, obs(&policy, false, Some(3.0))), None);
    assert_eq!(
        t.observe(T0 + 3 * MIN, obs(&policy, true, Some(30.0))),
        None
    );
    assert_eq!(
        t.observe(T0 + 4 * MIN, obs(&policy, true, Some(30.0))),
        None
    );
    let Some(Notify::Firing(a)) = t.observe(T0 + 5 * MIN, obs(&policy, true, Some(30.0))) else {
        panic!()
    };
    // startsAt is when it became pending.
    assert_eq!(a.starts_at_ms, T0 + 3 * MIN);
}

#[test]
fn a_restored_incident_is_not_announced_again() {
    let policy = AlertPolicy::default();
    let s = slo();
    let mut a = sample_alert(&s);
    a.starts_at_ms = T0 - 30 * MIN;
    let mut t = Tracker::new(Dur::mins(1));
    // Restarted 20 s after the last send.
    t.restore(a.clone(), T0 - 20_000);
    assert_eq!(t.observe(T0, obs(&policy, true, Some(30.0))), None);
    // The regular re-send keeps the original startsAt: Alertmanager sees the same alert.
    let Some(Notify::Firing(b)) = t.observe(T0 + 40_000, obs(&policy, true, Some(30.0))) else {
        panic!()
    };
    assert_eq!(
        (b.fingerprint, b.starts_at_ms),
        (a.fingerprint, T0 - 30 * MIN)
    );
}

#[test]
fn alerts_no_longer_observed_are_resolved() {
    let policy = AlertPolicy::default();
    let mut t = Tracker::new(Dur::mins(1));
    t.observe(T0, obs(&policy, true, Some(30.0)));
    assert!(t.resolve_stale(T0 + 5 * MIN, Dur::mins(10)).is_empty());
    let r = t.resolve_stale(T0 + 10 * MIN, Dur::mins(10));
    assert!(matches!(&r[..], [Notify::Resolved(a)] if a.ends_at_ms == Some(T0 + 10 * MIN)));
}

/// Compares with a golden file; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, v: &serde_json::Value) {
    let path = format!("{}/src/alert/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    let got = serde_json::to_string_pretty(v).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(got, want, "{path} differs (UPDATE_GOLDEN=1 to accept)");
}

fn firing_and_resolved() -> Vec<Alert> {
    let s = slo();
    let firing = sample_alert(&s);
    let mut k = key();
    k.model = "gpt-4o-mini".into();
    let mut resolved = sample_alert_for(&s, &k);
    resolved.starts_at_ms = T0 - 20 * MIN;
    resolved.ends_at_ms = Some(T0 - 2 * MIN);
    vec![firing, resolved]
}

#[test]
fn alertmanager_v2_body_golden() {
    let body = payload::alertmanager_v2(&firing_and_resolved(), T0, Dur::mins(4));
    golden("alertmanager_v2.json", &body);
    // Firing: valid for 4 min; resolved: its end.
    assert_eq!(body[0]["endsAt"], rfc3339(T0 + 4 * MIN));
    assert_eq!(body[1]["endsAt"], "2026-11-28T11:58:00.000Z");
    for a in body.as_array().unwrap() {
        let mut fields: Vec<_> = a.as_object().unwrap().keys().cloned().collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "annotations",
                "endsAt",
                "generatorURL",
                "labels",
                "startsAt"
            ]
        );
    }
}

/// The field names and the group key format were checked against the webhook Alertmanager 0.25
/// posted for the same two alerts (sent through its API v2).
#[test]
fn webhook_body_golden() {
    let body = payload::webhook(
        "flywheel",
        &["alertname", "slo"],
        &firing_and_resolved(),
        "http://flywheel.example:8080",
    );
    golden("webhook.json", &body);
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(
        body["groupKey"],
        "{}:{alertname=\"FlywheelSLOBurnRate\", slo=\"chat-gpt-4o-ttft\"}"
    );
    // model differs between the two: not common.
    assert!(body["commonLabels"].get("model").is_none());
    assert_eq!(body["alerts"][0]["endsAt"], payload::ZERO_TIME);
    assert_eq!(body["alerts"][1]["status"], "resolved");
    let only_resolved =
        payload::webhook("flywheel", &["alertname"], &firing_and_resolved()[1..], "");
    assert_eq!(only_resolved["status"], "resolved");
}

#[test]
fn slack_body_golden() {
    let alerts = firing_and_resolved();
    golden("slack_firing.json", &payload::slack(&alerts[0]));
    golden("slack_resolved.json", &payload::slack(&alerts[1]));
    let mut a = alerts[0].clone();
    a.annotations
        .insert("description".into(), "p99 <1s & rising".into());
    assert_eq!(
        payload::slack(&a)["blocks"][1]["text"]["text"],
        "p99 &lt;1s &amp; rising"
    );
}

#[test]
fn objective_formats() {
    assert_eq!(Objective::new(0.95).unwrap().to_string(), "95%");
}

#[test]
fn cost_alert_texts() {
    let p = crate::cost::SpendProjection {
        spent_usd: 300.0,
        rate_usd_per_hour: 30.0,
        projected_usd: 660.0,
        budget_usd: 500.0,
        ratio: 1.32,
        alert: true,
    };
    let a = describe_spend("acme-daily-spend", &key(), None, "day", &p);
    assert_eq!(
        a["summary"],
        "acme-daily-spend: projected $660.00 of the $500.00 day budget (132%) for acme"
    );
    assert!(
        a["description"].contains("$300.00 spent this day, spending $30.00/h now"),
        "{}",
        a["description"]
    );
    let a = describe_spend("per-user", &key(), Some("u-7"), "day", &p);
    assert_eq!(
        a["summary"],
        "per-user: projected $660.00 of the $500.00 day budget (132%) for user u-7 of acme"
    );
    assert!(
        a["description"].contains("operation=chat user=u-7: $300.00 spent"),
        "{}",
        a["description"]
    );
    let v = crate::cost::ChangeVerdict {
        mean: 0.015,
        baseline: 0.0073,
        z: 25.1,
        cusum: 10.0,
        relative_change: 1.05,
        alert: true,
    };
    let a = describe_change("gpt-4o-cost-per-call", &key(), "cost_per_call", &v);
    assert_eq!(
        a["summary"],
        "gpt-4o-cost-per-call: cost_per_call up 105% against its baseline for acme/gpt-4o"
    );
    let l = labels_named(
        ALERTNAME_SPEND,
        "acme-daily-spend",
        &key(),
        Severity::Ticket,
    );
    assert_eq!(
        (
            l["alertname"].as_str(),
            l["slo"].as_str(),
            l["severity"].as_str()
        ),
        (ALERTNAME_SPEND, "acme-daily-spend", "ticket")
    );
}
