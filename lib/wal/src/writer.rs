//! The writer thread: the only code that appends. It takes every `publish` call waiting in the
//! bounded queue, writes their records to the partitions' active segments, fsyncs each touched
//! segment once (group commit), then publishes the new end offsets to readers and acknowledges.
//!
//! Any write or fsync error fails the whole group and marks the wal failed: after a failed fsync
//! the page cache state is unknown, so nothing more is appended until the wal is reopened (and
//! recovery truncates whatever is torn).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flywheel_bus::{PublishError, Record};
use tokio::sync::oneshot;

use crate::format;
use crate::segment::{self, Tail};
use crate::{Shared, Topic, WalError};

/// One `publish` call waiting for the writer.
pub(crate) struct Append {
    pub topic: String,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    pub records: Vec<Record>,
    /// Key and payload bytes, counted against `queue_max_bytes`.
    pub bytes: usize,
    pub ack: oneshot::Sender<Result<(), PublishError>>,
}

pub(crate) enum Request {
    Append(Append),
    Shutdown,
}

/// A topic's writable partitions.
pub(crate) struct TopicTails {
    pub tails: Vec<Tail>,
    /// Next partition for records without a key.
    pub round_robin: usize,
}

/// Same key, same partition (CRC-32 of the key, as librdkafka's `consistent` partitioner);
/// records without a key are spread round-robin.
pub(crate) fn partition_for(key: &[u8], partitions: usize, round_robin: &mut usize) -> usize {
    if key.is_empty() {
        *round_robin = round_robin.wrapping_add(1);
        return *round_robin % partitions;
    }
    crc32fast::hash(key) as usize % partitions
}

pub(crate) fn run(
    shared: Arc<Shared>,
    mut topics: HashMap<String, TopicTails>,
    requests: Receiver<Request>,
) {
    let retention_every = Duration::from_secs(shared.config.retention_check_secs);
    let mut next_retention = Instant::now() + retention_every;
    let mut frames = Vec::new();
    loop {
        // Due under constant load too (a request may arrive before every timeout).
        if Instant::now() >= next_retention {
            next_retention = Instant::now() + retention_every;
            retain(&shared, shared.disk_short().is_some());
        }
        let first =
            match requests.recv_timeout(next_retention.saturating_duration_since(Instant::now())) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut shutdown = false;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Append(a) => {
                    bytes += a.bytes;
                    batch.push(a);
                }
                Request::Shutdown => {
                    shutdown = true;
                    break;
                }
            }
            if bytes < shared.config.max_batch_bytes {
                next = requests.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            group_commit(&shared, &mut topics, batch, &mut frames);
        }
        if shutdown {
            // Everything queued before the shutdown request was written above; refuse the rest.
            while let Ok(request) = requests.try_recv() {
                if let Request::Append(a) = request {
                    finish(&shared, a, Err(PublishError::ShuttingDown));
                }
            }
            break;
        }
    }
    tracing::debug!("wal writer stopped");
}

/// Applies retention (`pressure`: the disk is short, consumed segments go whatever their age).
fn retain(shared: &Shared, pressure: bool) {
    if let Err(e) = crate::retention::enforce(shared, pressure) {
        tracing::warn!(error = %e, "wal retention failed");
    }
}

fn finish(shared: &Shared, append: Append, result: Result<(), PublishError>) {
    shared
        .queued_bytes
        .fetch_sub(append.bytes, Ordering::SeqCst);
    shared
        .queued_records
        .fetch_sub(append.records.len(), Ordering::SeqCst);
    shared.metrics.queue_depth.sub(append.records.len() as i64);
    // The caller may have given up (its future dropped): nothing to tell then.
    let _ = append.ack.send(result);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Writes and fsyncs one group of `publish` calls, then acknowledges each.
fn group_commit(
    shared: &Shared,
    topics: &mut HashMap<String, TopicTails>,
    batch: Vec<Append>,
    frames: &mut Vec<u8>,
) {
    if let Some(reason) = shared.failure() {
        for a in batch {
            finish(shared, a, Err(PublishError::Unavailable(reason.clone())));
        }
        return;
    }
    let mut short = shared.disk_short();
    if short.is_some() {
        // Make room from segments every group has consumed, however young (a few syscalls per
        // partition when there is nothing to delete), then look again.
        retain(shared, true);
        short = shared.disk_short();
    }
    if shared
        .disk_was_short
        .swap(short.is_some(), Ordering::Relaxed)
        != short.is_some()
    {
        match &short {
            Some(reason) => tracing::warn!(%reason, "wal appends refused"),
            None => tracing::info!("wal disk has room again; appends resume"),
        }
    }
    if let Some(reason) = short {
        shared.metrics.disk_full.inc_by(batch.len() as u64);
        for a in batch {
            finish(shared, a, Err(PublishError::Unavailable(reason.clone())));
        }
        return;
    }
    let timestamp_ms = now_ms();
    let mut touched: Vec<(String, usize)> = Vec::new();
    let mut outcome: Result<(), WalError> = Ok(());
    let mut records = 0u64;
    let mut frame_bytes = 0u64;
    for append in &batch {
        if outcome.is_err() {
            break;
        }
        if !topics.contains_key(&append.topic) {
            match create_topic(shared, &append.topic) {
                Ok(t) => {
                    topics.insert(append.topic.clone(), t);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let Some(topic) = topics.get_mut(&append.topic) else {
            break;
        };
        let headers: Vec<(&str, &[u8])> = append
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_slice()))
            .collect();
        // Group this call's records by partition, keeping their order.
        let n = topic.tails.len();
        let mut by_partition: Vec<Vec<&Record>> = vec![Vec::new(); n];
        for record in &append.records {
            by_partition[partition_for(&record.key, n, &mut topic.round_robin)].push(record);
        }
        for (p, recs) in by_partition.into_iter().enumerate() {
            if recs.is_empty() {
                continue;
            }
            let tail = &mut topic.tails[p];
            if let Err(e) = append_records(shared, tail, &headers, &recs, timestamp_ms, frames) {
                outcome = Err(e);
                break;
            }
            records += recs.len() as u64;
            frame_bytes += recs
                .iter()
                .map(|r| format::frame_len(&r.key, &headers, &r.payload) as u64)
                .sum::<u64>();
            if !touched.iter().any(|(t, i)| t == &append.topic && *i == p) {
                touched.push((append.topic.clone(), p));
            }
        }
    }
    if outcome.is_ok() {
        outcome = sync_touched(shared, topics, &touched);
    }
    match outcome {
        Ok(()) => {
            shared.metrics.records_appended.inc_by(records);
            shared.metrics.bytes_appended.inc_by(frame_bytes);
            shared.metrics.group_commits.inc();
            shared.metrics.group_commit_records.observe(records as f64);
            shared.appended.send_modify(|g| *g = g.wrapping_add(1));
            for append in batch {
                finish(shared, append, Ok(()));
            }
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::error!(error = %e, "wal write failed; refusing appends until reopened");
            shared.fail(reason.clone());
            // Readers may see what was fsynced before the failure.
            shared.appended.send_modify(|g| *g = g.wrapping_add(1));
            for append in batch {
                finish(
                    shared,
                    append,
                    Err(PublishError::Unavailable(reason.clone())),
                );
            }
        }
    }
}

/// Fsyncs every touched partition; several at once in parallel (the disk can merge them into
/// one flush, where one after the other each waits for its own).
fn sync_touched(
    shared: &Shared,
    topics: &mut HashMap<String, TopicTails>,
    touched: &[(String, usize)],
) -> Result<(), WalError> {
    let mut tails: Vec<&mut Tail> = Vec::with_capacity(touched.len());
    for (name, topic) in topics.iter_mut() {
        for (p, tail) in topic.tails.iter_mut().enumerate() {
            if touched.iter().any(|(t, i)| t == name && *i == p) {
                tails.push(tail);
            }
        }
    }
    shared.metrics.fsyncs.inc_by(tails.len() as u64);
    match tails.as_mut_slice() {
        [] => Ok(()),
        [one] => one.sync(),
        many => std::thread::scope(|scope| {
            let handles: Vec<_> = many
                .iter_mut()
                .map(|tail| scope.spawn(move || tail.sync()))
                .collect();
            let mut result = Ok(());
            for h in handles {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(WalError::Failed("fsync thread panicked".into())));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        }),
    }
}

/// Encodes and writes `records` to `tail`, rolling to a new segment where the next frame would
/// not fit (a segment holds at least one frame, however large).
fn append_records(
    shared: &Shared,
    tail: &mut Tail,
    headers: &[(&str, &[u8])],
    records: &[&Record],
    timestamp_ms: i64,
    frames: &mut Vec<u8>,
) -> Result<(), WalError> {
    let segment_bytes = shared.config.segment_bytes;
    let header_len = format::SEGMENT_HEADER_LEN as u64;
    frames.clear();
    let mut count = 0i64;
    for record in records {
        let len = format::frame_len(&record.key, headers, &record.payload) as u64;
        let used = tail.len + frames.len() as u64;
        if used > header_len && used + len > segment_bytes {
            tail.write(frames, count)?;
            frames.clear();
            count = 0;
            shared.metrics.fsyncs.inc();
            tail.roll()?;
        }
        format::encode_frame(
            frames,
            tail.next_offset + count,
            timestamp_ms,
            &record.key,
            headers,
            &record.payload,
        )
        .map_err(|e| WalError::Failed(e.to_string()))?;
        count += 1;
    }
    tail.write(frames, count)
}

/// Creates a topic's directory, partitions and metadata file, durably.
pub(crate) fn create_topic(shared: &Shared, name: &str) -> Result<TopicTails, WalError> {
    let partitions = shared
        .config
        .topic_partitions
        .get(name)
        .copied()
        .unwrap_or(shared.config.default_partitions);
    let dir = shared.topics_dir().join(name);
    std::fs::create_dir_all(&dir).map_err(WalError::io(&dir))?;
    let mut tails = Vec::new();
    let mut truncations = Vec::new();
    for p in 0..partitions {
        tails.push(segment::open_partition(
            &dir.join(p.to_string()),
            name,
            p,
            &mut truncations,
        )?);
    }
    crate::write_topic_meta(&dir, partitions)?;
    segment::sync_dir(&dir)?;
    segment::sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
    shared.add_topic(Topic {
        name: name.to_string(),
        partitions: tails.iter().map(|t| t.partition.clone()).collect(),
    });
    tracing::info!(topic = name, partitions, "wal topic created");
    Ok(TopicTails {
        tails,
        round_robin: 0,
    })
}
