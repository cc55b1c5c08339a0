//! [`Publisher`] over Kafka with an idempotent `acks=all` producer.
//!
//! Readiness comes from a probe task that fetches cluster metadata every
//! `health_interval_ms`, and from librdkafka's "all brokers down" error callback, which flips it
//! immediately. While not ready, `publish` fails fast instead of queueing records that would
//! only time out: a client that retries after the broker is back then lands exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::{Headers, KafkaConfig, PublishError, Publisher, Record};

/// Client context that turns "all brokers down" into not-ready at once.
#[derive(Clone)]
struct BusContext {
    ready: Arc<AtomicBool>,
}

impl ClientContext for BusContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.ready.store(false, Ordering::SeqCst);
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

/// Kafka-backed publisher. Cheap to clone.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer<BusContext>,
    ready: Arc<AtomicBool>,
    queue_full_wait: Duration,
}

impl KafkaPublisher {
    /// Creates the producer and starts the reachability probe (which also creates `topics` when
    /// `create_topics` is set). Does not wait for the broker: readiness reports it.
    pub fn start(
        config: &KafkaConfig,
        topics: Vec<String>,
        shutdown: CancellationToken,
    ) -> Result<Self, KafkaError> {
        let ready = Arc::new(AtomicBool::new(false));
        let mut client = client_config(config);
        client
            // Topics are created explicitly (with the configured partitions), never by a
            // metadata request.
            .set("allow.auto.create.topics", "false")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", config.compression.as_str())
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            .set(
                "message.max.bytes",
                (config.max_message_bytes + 64 * 1024).to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                config.queue_max_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                config.queue_max_kbytes.to_string(),
            );
        let producer: FutureProducer<BusContext> = client.create_with_context(BusContext {
            ready: ready.clone(),
        })?;
        let admin: Option<AdminClient<DefaultClientContext>> = if config.create_topics {
            Some(client_config(config).create()?)
        } else {
            None
        };
        tokio::spawn(probe(
            producer.clone(),
            admin,
            ProbeSettings {
                topics,
                partitions: config.topic_partitions,
                replication: config.topic_replication,
                interval: Duration::from_millis(config.health_interval_ms),
            },
            ready.clone(),
            shutdown,
        ));
        Ok(Self {
            producer,
            ready,
            queue_full_wait: Duration::from_millis(config.queue_full_wait_ms),
        })
    }

    /// Waits up to `timeout` for every queued record to be delivered.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .unwrap_or(Ok(()))
    }

    async fn enqueue(
        &self,
        topic: &str,
        headers: &Headers,
        record: &Record,
    ) -> Result<rdkafka::producer::DeliveryFuture, PublishError> {
        let deadline = tokio::time::Instant::now() + self.queue_full_wait;
        loop {
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (key, value) in headers {
                owned = owned.insert(Header {
                    key,
                    value: Some(value.as_slice()),
                });
            }
            let future_record = FutureRecord::to(topic)
                .key(record.key.as_slice())
                .payload(record.payload.as_slice())
                .headers(owned);
            match self.producer.send_result(future_record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(PublishError::QueueFull);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(classify(&e)),
            }
        }
    }
}

impl Publisher for KafkaPublisher {
    async fn publish(
        &self,
        topic: &str,
        headers: &Headers,
        records: Vec<Record>,
    ) -> Result<(), PublishError> {
        if !self.is_ready() {
            return Err(PublishError::Unavailable(
                "no Kafka broker is reachable".to_string(),
            ));
        }
        let mut deliveries = Vec::with_capacity(records.len());
        let mut enqueue_error = None;
        for record in &records {
            match self.enqueue(topic, headers, record).await {
                Ok(d) => deliveries.push(d),
                Err(e) => {
                    enqueue_error = Some(e);
                    break;
                }
            }
        }
        // Always wait for what was enqueued, so that the answer reflects what is on the log.
        let mut first_error = enqueue_error;
        for outcome in join_all(deliveries).await {
            let err = match outcome {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => classify(&e),
                Err(_canceled) => PublishError::ShuttingDown,
            };
            first_error.get_or_insert(err);
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn queue_depth(&self) -> usize {
        usize::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }
}

/// librdkafka client settings common to producers, consumers and admin clients.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id);
    for (k, v) in &config.properties {
        client.set(k, v);
    }
    client
}

fn classify(error: &KafkaError) -> PublishError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => PublishError::QueueFull,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopic,
        ) => PublishError::Rejected(error.to_string()),
        Some(RDKafkaErrorCode::MessageTimedOut) => PublishError::Unavailable(
            "delivery was not confirmed by Kafka within kafka.message_timeout_ms".to_string(),
        ),
        _ => PublishError::Unavailable(error.to_string()),
    }
}

struct ProbeSettings {
    topics: Vec<String>,
    partitions: i32,
    replication: i32,
    interval: Duration,
}

/// Keeps `ready` in step with broker reachability and creates missing topics once reachable.
async fn probe(
    producer: FutureProducer<BusContext>,
    admin: Option<AdminClient<DefaultClientContext>>,
    settings: ProbeSettings,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    /// Consecutive failed probes before a slow broker counts as unreachable (a dead one is
    /// caught at once by the all-brokers-down callback).
    const FAILURES_BEFORE_DOWN: u32 = 3;
    let mut topics_ok = admin.is_none();
    let mut failures = 0u32;
    loop {
        let p = producer.clone();
        let timeout = (settings.interval * 2).max(Duration::from_secs(2));
        // Ask only about our topics: a broker with many topics answers that quickly too. Once
        // they all exist, one topic is enough to tell reachability (every metadata request
        // costs the broker, and tansu hung under load when asked about several every probe).
        let topics = if topics_ok {
            settings.topics.iter().take(1).cloned().collect()
        } else {
            settings.topics.clone()
        };
        let metadata = tokio::task::spawn_blocking(move || {
            let mut existing = Vec::new();
            if topics.is_empty() {
                p.client().fetch_metadata(None, timeout)?;
            }
            for topic in &topics {
                let m = p.client().fetch_metadata(Some(topic), timeout)?;
                if m.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                {
                    existing.push(topic.clone());
                }
            }
            Ok::<_, KafkaError>(existing)
        })
        .await;
        let reachable = match metadata {
            Ok(Ok(existing)) => {
                failures = 0;
                if !topics_ok {
                    if let Some(admin) = &admin {
                        topics_ok = create_missing(admin, &settings, &existing).await;
                    }
                }
                Some(topics_ok)
            }
            Ok(Err(e)) => {
                failures += 1;
                tracing::debug!(error = %e, failures, "kafka metadata probe failed");
                (failures >= FAILURES_BEFORE_DOWN).then_some(false)
            }
            Err(_) => Some(false),
        };
        if let Some(reachable) = reachable {
            let was = ready.swap(reachable, Ordering::SeqCst);
            if was != reachable {
                tracing::info!(reachable, "kafka reachability changed");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(settings.interval) => {}
        }
    }
}

async fn create_missing(
    admin: &AdminClient<DefaultClientContext>,
    settings: &ProbeSettings,
    existing: &[String],
) -> bool {
    let missing: Vec<NewTopic<'_>> = settings
        .topics
        .iter()
        .filter(|t| !existing.contains(t))
        .map(|t| {
            NewTopic::new(
                t,
                settings.partitions,
                TopicReplication::Fixed(settings.replication),
            )
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    match admin.create_topics(&missing, &AdminOptions::new()).await {
        Ok(results) => results.iter().all(|r| match r {
            Ok(topic) => {
                tracing::info!(topic, "created kafka topic");
                true
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => true,
            Err((topic, code)) => {
                tracing::warn!(topic, error = %code, "cannot create kafka topic");
                false
            }
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot create kafka topics");
            false
        }
    }
}
