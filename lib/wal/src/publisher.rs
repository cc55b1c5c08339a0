//! [`WalPublisher`]: the [`Publisher`] of the in-process bus.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use flywheel_bus::{Headers, PublishError, Publisher, Record};
use tokio::sync::oneshot;

use crate::error::check_name;
use crate::format;
use crate::writer::{Append, Request};
use crate::Shared;

/// Publishes to the wal. Cheap to clone. `publish` resolves `Ok` only once every record of the
/// call is written and fsynced (`fdatasync`); a full queue fails fast with
/// [`PublishError::QueueFull`].
#[derive(Clone)]
pub struct WalPublisher {
    pub(crate) shared: Arc<Shared>,
    pub(crate) requests: SyncSender<Request>,
}

impl std::fmt::Debug for WalPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalPublisher")
            .field("dir", &self.shared.config.dir)
            .finish_non_exhaustive()
    }
}

impl WalPublisher {
    /// Checks the call and hands it to the writer; the receiver resolves after the fsync.
    fn enqueue(
        &self,
        topic: &str,
        headers: &Headers,
        records: Vec<Record>,
    ) -> Result<oneshot::Receiver<Result<(), PublishError>>, PublishError> {
        if self.shared.closing.load(Ordering::SeqCst) {
            return Err(PublishError::ShuttingDown);
        }
        if let Some(reason) = self.shared.failure() {
            return Err(PublishError::Unavailable(reason));
        }
        check_name(topic).map_err(|e| PublishError::Rejected(e.to_string()))?;
        if headers.len() > usize::from(u16::MAX)
            || headers.iter().any(|(k, _)| k.len() > usize::from(u16::MAX))
        {
            return Err(PublishError::Rejected(
                "too many or too long headers".to_string(),
            ));
        }
        let header_refs: Vec<(&str, &[u8])> =
            headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let max = self.shared.config.max_record_bytes;
        for record in &records {
            let len = format::frame_len(&record.key, &header_refs, &record.payload);
            if len > max {
                return Err(PublishError::Rejected(format!(
                    "record of {len} bytes exceeds the wal's max_record_bytes ({max})"
                )));
            }
        }
        let bytes: usize = records.iter().map(Record::size).sum();
        // The byte bound admits one call of any (valid) size into an empty queue.
        let before = self.shared.queued_bytes.fetch_add(bytes, Ordering::SeqCst);
        if before > 0 && before + bytes > self.shared.config.queue_max_bytes {
            self.shared.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
            self.shared.metrics.queue_full.inc();
            return Err(PublishError::QueueFull);
        }
        let count = records.len();
        let (ack, done) = oneshot::channel();
        let request = Request::Append(Append {
            topic: topic.to_string(),
            headers: headers.to_vec(),
            records,
            bytes,
            ack,
        });
        self.shared
            .queued_records
            .fetch_add(count, Ordering::SeqCst);
        self.shared.metrics.queue_depth.add(count as i64);
        match self.requests.try_send(request) {
            Ok(()) => Ok(done),
            Err(e) => {
                self.shared.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
                self.shared
                    .queued_records
                    .fetch_sub(count, Ordering::SeqCst);
                self.shared.metrics.queue_depth.sub(count as i64);
                match e {
                    TrySendError::Full(_) => {
                        self.shared.metrics.queue_full.inc();
                        Err(PublishError::QueueFull)
                    }
                    TrySendError::Disconnected(_) => Err(PublishError::ShuttingDown),
                }
            }
        }
    }
}

impl Publisher for WalPublisher {
    async fn publish(
        &self,
        topic: &str,
        headers: &Headers,
        records: Vec<Record>,
    ) -> Result<(), PublishError> {
        if records.is_empty() {
            return Ok(());
        }
        let done = self.enqueue(topic, headers, records)?;
        // The writer always answers unless it stopped (then the sender is dropped).
        done.await.unwrap_or(Err(PublishError::ShuttingDown))
    }

    fn is_ready(&self) -> bool {
        !self.shared.closing.load(Ordering::SeqCst) && self.shared.failure().is_none()
    }

    fn queue_depth(&self) -> usize {
        self.shared.queued_records.load(Ordering::SeqCst)
    }
}
