//! A run: generator -> batches -> exporter workers, on the simulated clock.
//!
//! Paced runs map simulated time to wall time (`wall = wall_start + (t - start) / speedup`;
//! speedup 1 is real time) and send each record when the wall clock reaches its time, with
//! partial batches flushed every `sink.flush_interval_ms`. Unpaced runs (`--speedup max`) send
//! as fast as the exporter accepts. Batches wait in a bounded queue for `sink.concurrency`
//! workers, so a slow or refusing collector slows generation down instead of growing memory.
//! Shutdown stops generating, sends what is batched and waits for requests in flight.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Scenario;
use crate::event::{Call, Event, FeedbackItem, Outcome, SignalItem};
use crate::sim::Generator;
use crate::sink::{Exporter, Kind, Request};
use crate::span::{self, SpanContext};
use crate::summary::Summary;
use crate::truth::{GroundTruth, RunInfo};
use crate::LoadgenError;

/// How fast simulated time passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Simulated seconds per wall second (1 = real time).
    Speedup(f64),
    /// As fast as the exporter accepts.
    Unlimited,
}

/// Everything about a run that is not the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Simulated start, Unix ns.
    pub start_ns: i64,
    pub pace: Pace,
    pub ground_truth: Option<std::path::PathBuf>,
}

enum Batch {
    Spans(Vec<Call>),
    Feedback(Vec<FeedbackItem>),
    Signals(Vec<SignalItem>),
}

#[derive(Default)]
struct Batches {
    calls: Vec<Call>,
    feedback: Vec<FeedbackItem>,
    signals: Vec<SignalItem>,
}

/// Runs `scenario` into `exporter` until the simulated period ends or `shutdown`.
pub async fn run<E: Exporter>(
    scenario: Scenario,
    options: RunOptions,
    exporter: Arc<E>,
    shutdown: CancellationToken,
) -> Result<Summary, LoadgenError> {
    let started = Instant::now();
    let mut generator = Generator::new(scenario.clone(), options.start_ns)?;
    let summary = Arc::new(Mutex::new(Summary {
        run_id: generator.run_id().to_string(),
        ..Summary::default()
    }));
    let mut truth = match &options.ground_truth {
        Some(path) => {
            let mut t = GroundTruth::create(path)?;
            let speedup = match options.pace {
                Pace::Speedup(s) => Some(s),
                Pace::Unlimited => None,
            };
            t.start(
                &RunInfo {
                    run_id: generator.run_id(),
                    seed: scenario.seed,
                    start_ns: options.start_ns,
                    end_ns: generator.end_ns(),
                    rate: scenario.rate,
                    speedup,
                    service: &scenario.service,
                },
                &generator.schedule().incidents,
            )?;
            Some(t)
        }
        None => None,
    };

    let sink = scenario.sink.clone();
    let (tx, rx) = mpsc::channel::<Batch>(sink.concurrency * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let scenario = Arc::new(scenario);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..sink.concurrency {
        let (rx, exporter, summary, scenario) = (
            rx.clone(),
            exporter.clone(),
            summary.clone(),
            scenario.clone(),
        );
        workers.spawn(async move {
            loop {
                let batch = rx.lock().await.recv().await;
                let Some(batch) = batch else { break };
                let request = encode(batch, &scenario);
                let kind = request.kind;
                let delivery = exporter.export(request).await;
                if let Ok(mut s) = summary.lock() {
                    s.sent_mut(kind).add(&delivery);
                    if let Some(why) = delivery.error {
                        tracing::warn!(?kind, refused = delivery.refused, error = %why, "items refused");
                        if s.refusals.len() < 5 {
                            s.refusals.push(format!("{kind:?}: {why}"));
                        }
                    }
                }
            }
        });
    }

    let spans_per_call = if scenario.app_spans { 2 } else { 1 };
    let max_calls = sink.max_spans_per_request.div_ceil(spans_per_call).max(1);
    let flush_every = Duration::from_millis(sink.flush_interval_ms.max(1));
    let mut last_flush = Instant::now();
    let mut batches = Batches::default();
    let (mut calls, mut failed, mut feedback, mut signals) = (0u64, 0u64, 0u64, 0u64);
    let mut until = options.start_ns;
    let mut interrupted = false;
    let mut max_lag = Duration::ZERO;
    'events: for event in generator.by_ref() {
        if let Pace::Speedup(speedup) = options.pace {
            let due = started
                + Duration::from_secs_f64(
                    ((event.time_ns() - options.start_ns) as f64 / 1e9 / speedup).max(0.0),
                );
            max_lag = max_lag.max(Instant::now().saturating_duration_since(due));
            while Instant::now() < due {
                if last_flush.elapsed() >= flush_every {
                    if send_all(&tx, &mut batches).await.is_err() {
                        break 'events;
                    }
                    last_flush = Instant::now();
                }
                let wake = due.min(last_flush + flush_every);
                tokio::select! {
                    _ = shutdown.cancelled() => { interrupted = true; break 'events; }
                    _ = tokio::time::sleep_until(wake.into()) => {}
                }
            }
        }
        if shutdown.is_cancelled() {
            interrupted = true;
            break;
        }
        until = event.time_ns();
        match event {
            Event::Call(call) => {
                calls += 1;
                failed += u64::from(matches!(call.outcome, Outcome::Failed { .. }));
                batches.calls.push(*call);
            }
            Event::Feedback(f) => {
                feedback += 1;
                batches.feedback.push(f);
            }
            Event::Signal(s) => {
                signals += 1;
                batches.signals.push(s);
            }
        }
        if send_full(&tx, &mut batches, max_calls, sink.max_items_per_request)
            .await
            .is_err()
        {
            break;
        }
    }
    if !interrupted {
        until = generator.end_ns();
    }
    let _ = send_all(&tx, &mut batches).await;
    drop(tx);
    while workers.join_next().await.is_some() {}

    let mut summary = summary
        .lock()
        .map(|s| s.clone())
        .map_err(|_| LoadgenError::Sink("a worker panicked".into()))?;
    summary.calls = calls;
    summary.failed_calls = failed;
    summary.feedback = feedback;
    summary.signals = signals;
    summary.generated_until_ns = until;
    summary.simulated_s = (until - options.start_ns) as f64 / 1e9;
    summary.wall_s = started.elapsed().as_secs_f64();
    summary.interrupted = interrupted;
    summary.max_lag_s = max_lag.as_secs_f64();
    if let Some(t) = truth.as_mut() {
        t.finish(&summary)?;
    }
    Ok(summary)
}

/// Sends the batches that reached their size.
async fn send_full(
    tx: &mpsc::Sender<Batch>,
    b: &mut Batches,
    max_calls: usize,
    max_items: usize,
) -> Result<(), ()> {
    if b.calls.len() >= max_calls {
        send(tx, Batch::Spans(std::mem::take(&mut b.calls))).await?;
    }
    if b.feedback.len() >= max_items {
        send(tx, Batch::Feedback(std::mem::take(&mut b.feedback))).await?;
    }
    if b.signals.len() >= max_items {
        send(tx, Batch::Signals(std::mem::take(&mut b.signals))).await?;
    }
    Ok(())
}

/// Sends every non-empty batch.
async fn send_all(tx: &mpsc::Sender<Batch>, b: &mut Batches) -> Result<(), ()> {
    if !b.calls.is_empty() {
        send(tx, Batch::Spans(std::mem::take(&mut b.calls))).await?;
    }
    if !b.feedback.is_empty() {
        send(tx, Batch::Feedback(std::mem::take(&mut b.feedback))).await?;
    }
    if !b.signals.is_empty() {
        send(tx, Batch::Signals(std::mem::take(&mut b.signals))).await?;
    }
    Ok(())
}

async fn send(tx: &mpsc::Sender<Batch>, batch: Batch) -> Result<(), ()> {
    tx.send(batch).await.map_err(|_| ())
}

/// A batch -> the request body (done by the workers, in parallel).
fn encode(batch: Batch, scenario: &Scenario) -> Request {
    match batch {
        Batch::Spans(calls) => {
            let ctx = SpanContext {
                service: &scenario.service,
                models: &scenario.models,
                app_spans: scenario.app_spans,
                capture_content: scenario.capture_content,
            };
            let request = span::request(&calls, &ctx);
            Request {
                kind: Kind::Spans,
                body: prost::Message::encode_to_vec(&request),
                items: calls.len() as u64 * span::spans_per_call(&ctx),
            }
        }
        Batch::Feedback(items) => Request {
            kind: Kind::Feedback,
            body: serde_json::to_vec(&items).unwrap_or_default(),
            items: items.len() as u64,
        },
        Batch::Signals(items) => Request {
            kind: Kind::Signals,
            body: serde_json::to_vec(&items).unwrap_or_default(),
            items: items.len() as u64,
        },
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
