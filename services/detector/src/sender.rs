//! Alert delivery, off the detection path.
//!
//! One task per configured URL with its own bounded queue: [`Senders::send`] only `try_send`s
//! (a full queue drops the batch and counts it, it never waits), and each task posts with
//! retries backing off exponentially with jitter. Alertmanager (`POST /api/v2/alerts`) hears
//! every notification, re-sends of firing alerts included (its `endsAt` must keep moving);
//! webhooks (the Alertmanager webhook JSON) and Slack hear only new and resolved alerts.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::payload;
use crate::engine::Outgoing;
use crate::metrics::Metrics;
use crate::slo::Dur;
use crate::DetectorConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Alertmanager,
    Webhook,
    Slack,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Webhook => "webhook",
            Self::Slack => "slack",
        }
    }
}

/// Handles to the delivery tasks.
#[derive(Clone)]
pub struct Senders {
    queues: Vec<(Kind, mpsc::Sender<Vec<Outgoing>>)>,
    metrics: Metrics,
}

/// What a delivery task needs.
#[derive(Clone)]
struct Delivery {
    kind: Kind,
    url: String,
    client: reqwest::Client,
    attempts: u32,
    initial: Duration,
    max: Duration,
    valid_for: Dur,
    external_url: String,
    metrics: Metrics,
}

impl Senders {
    /// Starts one task per URL of the config on `tasks`.
    pub fn start(
        cfg: &DetectorConfig,
        metrics: Metrics,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.send_timeout_ms))
            .build()?;
        let mut queues = Vec::new();
        let targets = [
            (Kind::Alertmanager, &cfg.alertmanager_urls),
            (Kind::Webhook, &cfg.webhook_urls),
            (Kind::Slack, &cfg.slack_webhook_urls),
        ];
        for (kind, urls) in targets {
            for url in urls {
                let url = match kind {
                    Kind::Alertmanager => {
                        format!("{}/api/v2/alerts", url.trim_end_matches('/'))
                    }
                    _ => url.clone(),
                };
                let (tx, rx) = mpsc::channel(cfg.send_queue);
                let d = Delivery {
                    kind,
                    url,
                    client: client.clone(),
                    attempts: cfg.send_attempts,
                    initial: Duration::from_millis(cfg.retry_initial_ms),
                    max: Duration::from_millis(cfg.retry_max_ms),
                    // Prometheus' choice: four resend intervals.
                    valid_for: Dur(Duration::from_millis(cfg.resend_interval_ms * 4)),
                    external_url: cfg.api_url.clone(),
                    metrics: metrics.clone(),
                };
                tasks.spawn(d.run(rx, shutdown.clone()));
                queues.push((kind, tx));
            }
        }
        Ok(Self { queues, metrics })
    }

    /// Queues `batch` for every sender that wants it; never waits.
    pub fn send(&self, batch: &[Outgoing]) {
        if batch.is_empty() {
            return;
        }
        let announced: Vec<Outgoing> = batch.iter().filter(|o| o.announce).cloned().collect();
        for (kind, tx) in &self.queues {
            let items = match kind {
                Kind::Alertmanager => batch.to_vec(),
                _ if announced.is_empty() => continue,
                _ => announced.clone(),
            };
            if tx.try_send(items).is_err() {
                self.metrics
                    .dropped
                    .with_label_values(&[kind.as_str()])
                    .inc();
            }
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Delivery {
    async fn run(self, mut rx: mpsc::Receiver<Vec<Outgoing>>, shutdown: CancellationToken) {
        loop {
            let batch = tokio::select! {
                b = rx.recv() => match b { Some(b) => b, None => return },
                () = shutdown.cancelled() => return,
            };
            for body in self.bodies(&batch) {
                self.post(&body, &shutdown).await;
            }
        }
    }

    fn bodies(&self, batch: &[Outgoing]) -> Vec<Value> {
        let alerts: Vec<_> = batch.iter().map(|o| o.alert().clone()).collect();
        match self.kind {
            Kind::Alertmanager => vec![payload::alertmanager_v2(&alerts, now_ms(), self.valid_for)],
            Kind::Webhook => vec![payload::webhook(
                "flywheel",
                &["alertname", "slo"],
                &alerts,
                &self.external_url,
            )],
            Kind::Slack => alerts.iter().map(payload::slack).collect(),
        }
    }

    /// Posts with retries; gives up after `attempts` (counted) or at shutdown.
    async fn post(&self, body: &Value, shutdown: &CancellationToken) {
        let kind = self.kind.as_str();
        let mut delay = self.initial;
        for attempt in 1..=self.attempts {
            let result = self.client.post(&self.url).json(body).send().await;
            let error = match result {
                Ok(r) if r.status().is_success() => {
                    self.metrics
                        .notifications
                        .with_label_values(&[kind, "sent"])
                        .inc();
                    return;
                }
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if attempt == self.attempts {
                tracing::warn!(sender = kind, url = %self.url, error, "alert delivery failed, giving up");
                break;
            }
            tracing::debug!(sender = kind, url = %self.url, error, attempt, "alert delivery failed, retrying");
            self.metrics.retries.with_label_values(&[kind]).inc();
            let jitter = delay.mul_f64(fastrand::f64() * 0.2);
            tokio::select! {
                () = tokio::time::sleep(delay + jitter) => {}
                () = shutdown.cancelled() => break,
            }
            delay = (delay * 2).min(self.max);
        }
        self.metrics
            .notifications
            .with_label_values(&[kind, "failed"])
            .inc();
    }
}
