//! [`run`]: start-up (SLO file, history rebuild, consumer, senders, HTTP), the loop, and
//! shutdown. The caller opens the store (`[store]`) and checks its schema.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flywheel_auth::{AuthConfig, Authenticator};
use flywheel_bus::{Bus, CommitPolicy, SourceSpec};
use flywheel_schema::rows::AlertRow;
use flywheel_telemetry::Readiness;
use prometheus::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::consumer::{Item, Loop, Pending, Value};
use crate::engine::{Engine, EngineConfig};
use crate::history::{self, Stored};
use crate::metrics::Metrics;
use crate::sender::Senders;
use crate::slo::Dur;
use crate::window::WindowConfig;
use crate::DetectorConfig;

/// Errors that stop the detector at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("detector.slo_file is not set")]
    NoSloFile,
    #[error(transparent)]
    SloFile(#[from] crate::slo::SloFileError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("bus: {0}")]
    Bus(#[from] flywheel_bus::BusError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Config(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("rebuilding from the stored history failed: {0}")]
    History(#[source] flywheel_store::StoreError),
}

/// Runs the detector until `shutdown`, on the log `bus` gives (`flywheel_bus::KafkaBus` or
/// `flywheel_wal::WalBus`; keyed mode, `detector.keyed_topic`, needs Kafka).
pub async fn run<B: Bus>(
    config: DetectorConfig,
    bus: &B,
    store: history::Store,
    auth: &AuthConfig,
    registry: &Registry,
    readiness: &Readiness,
    shutdown: CancellationToken,
) -> Result<(), DetectorError> {
    let path = config.slo_file.as_ref().ok_or(DetectorError::NoSloFile)?;
    let file = crate::slo::load(path)?;
    let metrics = Metrics::register(registry)?;
    let auth = Authenticator::new(auth).map_err(DetectorError::Config)?;
    let prices = flywheel_pricing::PriceTable::load(config.prices_file.as_deref())
        .map_err(DetectorError::Config)?;
    let slos: Vec<_> = file.slos.into_iter().map(|s| s.value).collect();
    let cost_policies: Vec<_> = file.cost_policies.into_iter().map(|c| c.value).collect();
    let longest = slos
        .iter()
        .map(|s| s.alerting.longest_window())
        .max()
        .unwrap_or_default();
    let engine = Engine::new(
        slos,
        EngineConfig {
            window: WindowConfig {
                lateness: Dur(Duration::from_millis(config.lateness_ms)),
                max_keys: config.max_keys,
                ..WindowConfig::default()
            },
            resend_interval: Dur(Duration::from_millis(config.resend_interval_ms)),
            join_capacity: config.join_capacity,
            idle_advance_ms: i64::try_from(config.idle_advance_ms).unwrap_or(i64::MAX),
            api_url: config.api_url.clone(),
        },
    )
    .map_err(|e| DetectorError::Config(e.to_string()))?
    .with_cost_policies(cost_policies);

    // The publisher's probe creates the consumed topics when missing and reports the broker.
    let topics = vec![
        config.spans_topic.clone(),
        config.feedback_topic.clone(),
        config.signals_topic.clone(),
    ];
    let keyed_mode = !config.keyed_topic.is_empty();
    config
        .check_bus(bus.kafka().is_some())
        .map_err(|e| DetectorError::Config(e.to_string()))?;
    let mut own = topics.clone();
    if keyed_mode {
        own.push(config.keyed_topic.clone());
    }
    let publisher = bus.publisher(own, shutdown.clone())?;
    let probe = publisher.clone();
    readiness.register("detector_kafka", move || {
        flywheel_bus::Publisher::is_ready(&probe)
    });
    let source = bus.source(SourceSpec {
        commit: CommitPolicy::Auto {
            interval: Duration::from_secs(1),
        },
        session_timeout_ms: config.session_timeout_ms,
        ..SourceSpec::new(config.group_id.clone(), topics.clone())
    })?;

    let tasks = TaskTracker::new();
    // Delivery and history tasks stop after the loop: they get their own token.
    let drain = CancellationToken::new();
    let senders = Senders::start(&config, metrics.clone(), &tasks, drain.clone())?;
    let (history_tx, history_rx) = mpsc::channel(config.send_queue);
    tasks.spawn(write_history(
        store.clone(),
        history_rx,
        metrics.clone(),
        drain.clone(),
    ));
    let snapshot = Arc::new(RwLock::new(Default::default()));
    let (addr, server) = crate::http::serve(
        config.listen,
        crate::http::ApiState {
            auth,
            snapshot: snapshot.clone(),
            store: store.clone(),
        },
        shutdown.clone(),
    )
    .await
    .map_err(|source| DetectorError::Bind {
        addr: config.listen,
        source,
    })?;
    let server = tokio::spawn(server);
    tracing::info!(%addr, "detector API listening (/v1/slos, /v1/alerts)");

    let keyed = if let (true, Some(kafka)) = (keyed_mode, bus.kafka()) {
        let (forward, task) = crate::keyed::forwarder(
            publisher,
            config.keyed_topic.clone(),
            config.send_queue.max(10_000),
            metrics.clone(),
            drain.clone(),
        );
        tasks.spawn(task);
        let (c, reassigned) = crate::keyed::consumer(
            kafka,
            &config.group_id,
            &config.keyed_topic,
            config.session_timeout_ms,
        )?;
        Some(crate::keyed::Keyed {
            forward,
            consumer: Arc::new(c),
            reassigned,
            replaying: true,
            assigned_at_ms: 0,
            last_backlog: std::time::Instant::now(),
            history: None,
        })
    } else {
        None
    };
    let cut_ms = crate::consumer::now_ms();
    let mut detector = Loop {
        engine,
        store: store.clone(),
        cut_ns: if config.rebuild_from_history && !keyed_mode {
            cut_ms * 1_000_000
        } else {
            0
        },
        senders,
        history: history_tx,
        snapshot,
        metrics,
        pending: VecDeque::new(),
        keyed,
        prices,
        cfg: config.clone(),
    };
    if keyed_mode {
        // Windows come from replaying the keyed topic; alerts wait for their owner.
        for (alert, last_sent_ms) in history::firing(store.as_ref())
            .await
            .map_err(DetectorError::History)?
        {
            detector.engine.park(alert, last_sent_ms);
        }
    } else if config.rebuild_from_history {
        rebuild(&mut detector, store.as_ref(), cut_ms, longest).await?;
    }
    tracing::info!(topics = ?topics, group = %config.group_id, "detector consuming");
    detector.run(source, shutdown.clone()).await;
    drain.cancel();
    tasks.close();
    tasks.wait().await;
    let _ = server.await;
    Ok(())
}

/// Restores firing alerts, seeds spend series with their period's spend before the replay,
/// then replays stored events of the longest alerting window.
async fn rebuild(
    d: &mut Loop,
    store: &dyn flywheel_store::DetectorStore,
    cut_ms: i64,
    longest: Dur,
) -> Result<(), DetectorError> {
    let firing = history::firing(store)
        .await
        .map_err(DetectorError::History)?;
    let restored = firing.len();
    for (alert, last_sent_ms) in firing {
        d.engine.restore(alert, last_sent_ms);
    }
    let from = cut_ms - longest.as_millis() as i64 - d.cfg.lateness_ms as i64;
    // Spend before the replay's start in each spend policy's current period (a month is longer
    // than the replayed window): folded into the series first, the replay adds the rest.
    let queries = d.engine.cost_mut().seed_queries(cut_ms, from);
    let seed = history::period_spend(
        store,
        &queries,
        from,
        cut_ms * 1_000_000,
        d.cfg.max_keys as u64,
    )
    .await
    .map_err(DetectorError::History)?;
    let seeded = d.engine.cost_mut().seed(cut_ms, seed);
    d.metrics.seeded_spend_series.set(seeded as i64);
    let events = history::stored_events(store, from, cut_ms * 1_000_000)
        .await
        .map_err(DetectorError::History)?;
    let n = events.len();
    for (ts_ms, e) in events {
        match e {
            Stored::Call {
                key,
                event,
                subject,
                user,
            } => {
                let call = crate::extract::Call {
                    key,
                    ts_ms,
                    event,
                    trace_id: subject.trace_id,
                    span_id: subject.span_id,
                    conversation_id: subject.conversation_id,
                    user,
                };
                d.engine.call(&call);
            }
            Stored::Feedback {
                project,
                subject,
                name,
                value_type,
                score,
                label,
            } => {
                let value = match (value_type.as_str(), score) {
                    ("boolean", Some(s)) => Value::Boolean(s != 0.0),
                    ("number", Some(s)) => Value::Number(s),
                    ("label", _) => Value::Label(label),
                    _ => Value::Text,
                };
                d.item(Pending {
                    project,
                    subject,
                    ts_ms,
                    item: Item::Feedback { name, value },
                });
            }
            Stored::Signal {
                project,
                subject,
                signal_type,
            } => d.item(Pending {
                project,
                subject,
                ts_ms,
                item: Item::Signal { signal_type },
            }),
        }
    }
    d.metrics.rebuilt_events.set(n as i64);
    d.metrics.restored_alerts.set(restored as i64);
    tracing::info!(
        restored_alerts = restored,
        events = n,
        seeded_spend_series = seeded,
        window = %longest,
        "state rebuilt from the stored history"
    );
    Ok(())
}

/// Appends alert rows to the store, retrying a few times; failures are counted.
async fn write_history(
    store: history::Store,
    mut rx: mpsc::Receiver<Vec<AlertRow>>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        let rows = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => return },
            () = shutdown.cancelled() => match rx.try_recv() { Ok(r) => r, Err(_) => return },
        };
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=5 {
            match history::write(store.as_ref(), &rows).await {
                Ok(()) => break,
                Err(e) if attempt == 5 => {
                    tracing::warn!(error = %e, "cannot write alert history");
                    metrics.history_errors.with_label_values(&["write"]).inc();
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}
