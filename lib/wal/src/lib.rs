//! A durable, on-disk write-ahead log: the in-process bus that stands in for Kafka when Flywheel
//! runs as a single process.
//!
//! Receivers publish through [`WalPublisher`] (a [`flywheel_bus::Publisher`]); consumers read
//! through a [`Subscription`] per consumer group, with durable commits. [`WalSource`] and
//! [`WalBus`] put it behind `flywheel-bus`'s consumer seam ([`flywheel_bus::Source`],
//! [`flywheel_bus::Bus`]), so that services written against that seam run over the wal.
//!
//! # Durability contract
//!
//! `publish` resolves `Ok` only after every record of the call has been written to its
//! partition's segment file and that file has been `fdatasync`ed (new segment files and
//! directories are fsynced too before records go into them). Acknowledged records therefore
//! survive `kill -9` and power loss, given a disk that honours flushes. Concurrent `publish`
//! calls are batched by one writer thread into one write and one fsync per touched partition
//! (group commit). The queue in front of the writer is bounded (calls and bytes): when it is full
//! `publish` fails at once with `QueueFull`; nothing is dropped silently. A failed write or fsync
//! fails the affected calls and the wal refuses appends until reopened. Readers only ever see
//! fsynced records.
//!
//! On open, the last segment of every partition is scanned: a torn or corrupt tail (bad length,
//! CRC, offset sequence or segment header) is truncated to the last good record, logged with
//! `tracing::warn!` and returned in the [`RecoveryReport`]. A corrupt record in an earlier
//! segment is not repaired: reading it returns [`WalError::Corrupt`].
//!
//! # On disk
//!
//! ```text
//! <dir>/LOCK                                     held (flock) by the process that has it open
//! <dir>/topics/<topic>/topic.json                {"partitions": N}
//! <dir>/topics/<topic>/<partition>/<base offset, 20 digits>.log   segments
//! <dir>/groups/<group>.json                      committed offsets, replaced atomically
//! ```
//!
//! Segment and frame layout: see [`format`]. Records go to a partition by the CRC-32 of their key
//! (same key, same partition), round-robin when the key is empty. Offsets start at 0 and increase
//! by one per record in each partition. A segment is sealed when the next frame would take it
//! past `segment_bytes`; retention deletes whole sealed segments (see [`RetentionReport`]).

mod config;
mod error;
pub mod format;
mod groups;
pub mod metrics;
mod publisher;
mod retention;
mod segment;
mod source;
mod subscription;
mod writer;

pub use config::WalConfig;
pub use error::WalError;
pub use metrics::Metrics;
pub use publisher::WalPublisher;
pub use retention::RetentionReport;
pub use source::{WalBus, WalSource};
pub use subscription::{Message, Subscription};

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::check_name;
use crate::groups::Groups;
use crate::segment::{Cursor, Partition};
use crate::writer::{Request, TopicTails};

/// What recovery changed on open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub truncations: Vec<Truncation>,
}

impl RecoveryReport {
    /// True when nothing was truncated.
    pub fn is_clean(&self) -> bool {
        self.truncations.is_empty()
    }

    pub fn removed_bytes(&self) -> u64 {
        self.truncations.iter().map(|t| t.removed_bytes).sum()
    }
}

/// One segment tail cut back (or one segment removed, when its header was bad).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub topic: String,
    pub partition: i32,
    pub path: PathBuf,
    /// Bytes kept (0: the segment file was removed).
    pub kept_bytes: u64,
    pub removed_bytes: u64,
    /// The partition's next offset after recovery.
    pub next_offset: i64,
    /// Why the first removed frame was rejected.
    pub reason: String,
}

#[derive(Debug)]
pub(crate) struct Topic {
    pub name: String,
    pub partitions: Vec<Arc<Partition>>,
}

/// State shared by the handle, the writer thread, publishers and subscriptions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: WalConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Bumped when a topic is created.
    pub topics_generation: AtomicU64,
    /// Bumped after every group commit, waking subscriptions.
    pub appended: watch::Sender<u64>,
    groups: Mutex<Groups>,
    pub active_groups: Mutex<HashSet<String>>,
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    pub closing: AtomicBool,
    pub queued_records: AtomicUsize,
    pub queued_bytes: AtomicUsize,
    pub retention_lock: Mutex<()>,
    /// `config.min_free_bytes`, adjustable while running ([`Wal::set_min_free_bytes`]).
    pub min_free_bytes: AtomicU64,
    /// Whether the last group commit found the disk short (logs only the transitions).
    pub disk_was_short: AtomicBool,
    pub metrics: Metrics,
    /// Held for the life of the wal: one process per directory.
    _lock: File,
}

impl Shared {
    pub fn topics_dir(&self) -> PathBuf {
        self.config.dir.join("topics")
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn add_topic(&self, topic: Topic) {
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.name.clone(), Arc::new(topic));
        self.topics_generation.fetch_add(1, Ordering::SeqCst);
        self.appended.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, WalError> {
        let t = self
            .topic(topic)
            .ok_or_else(|| WalError::UnknownTopic(topic.to_string()))?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p).cloned())
            .ok_or_else(|| WalError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    pub fn groups(&self) -> MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn commit(&self, group: &str, commits: &[(String, i32, i64)]) -> Result<(), WalError> {
        for (topic, partition, next_offset) in commits {
            self.partition(topic, *partition)?;
            if *next_offset < 0 {
                return Err(WalError::Failed(format!(
                    "cannot commit negative offset {next_offset}"
                )));
            }
        }
        self.groups().commit(group, commits)
    }

    pub fn failure(&self) -> Option<String> {
        if !self.failed.load(Ordering::SeqCst) {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn fail(&self, reason: String) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Why an append must wait: the disk of the log has less free space than
    /// `min_free_bytes` (`None`: enough, or no check, or the file system cannot say).
    pub fn disk_short(&self) -> Option<String> {
        let min = self.min_free_bytes.load(Ordering::Relaxed);
        if min == 0 {
            return None;
        }
        let free = free_bytes(&self.config.dir).ok()?;
        (free < min).then(|| {
            format!(
                "the write-ahead log's disk ({}) has {free} bytes free, below wal.min_free_bytes \
                 {min}: appends resume once the ingester catches up and retention frees segments",
                self.config.dir.display()
            )
        })
    }
}

/// Bytes available to this process on the file system holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicMeta {
    partitions: i32,
}

/// Writes `topic.json` atomically.
pub(crate) fn write_topic_meta(dir: &Path, partitions: i32) -> Result<(), WalError> {
    let path = dir.join("topic.json");
    let tmp = dir.join("topic.json.tmp");
    let bytes = serde_json::to_vec(&TopicMeta { partitions }).map_err(|e| WalError::Layout {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let mut f = File::create(&tmp).map_err(WalError::io(&tmp))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(WalError::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(WalError::io(&path))?;
    segment::sync_dir(dir)
}

/// An open wal: owns the writer thread. Closing (or dropping) it stops the writer after
/// everything already queued is written; publishers then get `ShuttingDown`.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    requests: SyncSender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
    report: RecoveryReport,
}

impl Wal {
    /// Opens (or creates) the wal in `config.dir`, recovering every partition's tail, and starts
    /// the writer thread.
    pub fn open(config: WalConfig) -> Result<Self, WalError> {
        config.validate()?;
        let dir = config.dir.clone();
        std::fs::create_dir_all(dir.join("topics")).map_err(WalError::io(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(WalError::io(&lock_path))?;
        lock.try_lock().map_err(|e| WalError::Layout {
            path: lock_path.clone(),
            reason: format!("the wal is already open in another process ({e})"),
        })?;
        let groups = Groups::load(&dir.join("groups"))?;
        let metrics = Metrics::new();
        let mut truncations = Vec::new();
        let mut topics = HashMap::new();
        let mut tails = HashMap::new();
        let topics_dir = dir.join("topics");
        for entry in std::fs::read_dir(&topics_dir).map_err(WalError::io(&topics_dir))? {
            let entry = entry.map_err(WalError::io(&topics_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let topic_dir = entry.path();
            if check_name(&name).is_err() || !topic_dir.is_dir() {
                tracing::warn!(path = %topic_dir.display(), "ignoring unexpected entry in the wal");
                continue;
            }
            let meta_path = topic_dir.join("topic.json");
            let meta = match std::fs::read(&meta_path) {
                Ok(bytes) => {
                    serde_json::from_slice::<TopicMeta>(&bytes).map_err(|e| WalError::Layout {
                        path: meta_path.clone(),
                        reason: e.to_string(),
                    })?
                }
                // Creation crashed before the metadata file: no record was acknowledged.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(WalError::io(&meta_path)(e)),
            };
            let mut topic_tails = Vec::new();
            for p in 0..meta.partitions {
                topic_tails.push(segment::open_partition(
                    &topic_dir.join(p.to_string()),
                    &name,
                    p,
                    &mut truncations,
                )?);
            }
            let topic = Topic {
                name: name.clone(),
                partitions: topic_tails.iter().map(|t| t.partition.clone()).collect(),
            };
            topics.insert(name.clone(), Arc::new(topic));
            tails.insert(
                name,
                TopicTails {
                    tails: topic_tails,
                    round_robin: 0,
                },
            );
        }
        for t in &truncations {
            tracing::warn!(
                topic = %t.topic,
                partition = t.partition,
                path = %t.path.display(),
                kept_bytes = t.kept_bytes,
                removed_bytes = t.removed_bytes,
                next_offset = t.next_offset,
                reason = %t.reason,
                "wal tail was corrupt or torn; truncated to the last good record"
            );
            metrics.truncated_bytes.inc_by(t.removed_bytes);
        }
        let (appended, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            topics: RwLock::new(topics),
            topics_generation: AtomicU64::new(0),
            appended,
            groups: Mutex::new(groups),
            active_groups: Mutex::new(HashSet::new()),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            queued_records: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            retention_lock: Mutex::new(()),
            min_free_bytes: AtomicU64::new(config.min_free_bytes),
            disk_was_short: AtomicBool::new(false),
            metrics,
            config,
            _lock: lock,
        });
        let (requests, receiver) = std::sync::mpsc::sync_channel(shared.config.queue_capacity);
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("flywheel-wal-writer".to_string())
            .spawn(move || writer::run(writer_shared, tails, receiver))
            .map_err(WalError::io(&dir))?;
        Ok(Self {
            shared,
            requests,
            writer: Mutex::new(Some(writer)),
            report: RecoveryReport { truncations },
        })
    }

    /// What recovery truncated when this wal was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// A publisher appending to this wal.
    pub fn publisher(&self) -> WalPublisher {
        WalPublisher {
            shared: self.shared.clone(),
            requests: self.requests.clone(),
        }
    }

    /// Subscribes consumer group `group` to `topics` (which may not exist yet). Only one
    /// subscription per group may be open at a time. The group's first subscription creates its
    /// (empty) offsets file: from then on retention waits for it.
    pub fn subscribe(&self, group: &str, topics: &[&str]) -> Result<Subscription, WalError> {
        check_name(group)?;
        for t in topics {
            check_name(t)?;
        }
        if !self
            .shared
            .active_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group.to_string())
        {
            return Err(WalError::GroupBusy(group.to_string()));
        }
        // A group is known (holds retention back) from its first subscription on.
        let known = self.shared.groups().is_known(group);
        if !known {
            if let Err(e) = self.shared.commit(group, &[]) {
                self.shared
                    .active_groups
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(group);
                return Err(e);
            }
        }
        Ok(Subscription::new(
            self.shared.clone(),
            group.to_string(),
            topics.iter().map(|t| t.to_string()).collect(),
        ))
    }

    /// Up to `max` durable records of a partition from `from_offset`, without a group (replay,
    /// inspection).
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        from_offset: i64,
        max: usize,
    ) -> Result<Vec<Message>, WalError> {
        let p = self.shared.partition(topic, partition)?;
        let mut cursor = Cursor::new(p, from_offset.max(0));
        let mut records = Vec::new();
        cursor.read(max, &mut records)?;
        Ok(records
            .into_iter()
            .map(|r| Message {
                topic: topic.to_string(),
                partition,
                offset: r.offset,
                key: r.key,
                headers: r.headers,
                payload: r.payload,
                timestamp_ms: r.timestamp_ms,
            })
            .collect())
    }

    /// Existing topics and their partition counts, sorted by name.
    pub fn topics(&self) -> Vec<(String, i32)> {
        let topics = self.shared.topics.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, i32)> = topics
            .values()
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect();
        out.sort();
        out
    }

    /// `(log start offset, end offset)` of a partition: the first retained record and the offset
    /// the next record will get.
    pub fn bounds(&self, topic: &str, partition: i32) -> Result<(i64, i64), WalError> {
        Ok(self.shared.partition(topic, partition)?.bounds())
    }

    /// A group's committed offset for a partition.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.shared.groups().committed(group, topic, partition)
    }

    /// Changes `min_free_bytes` while running (an operator making room, tests).
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.shared.min_free_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Applies retention now (the writer also does every `retention_check_secs`).
    pub fn enforce_retention(&self) -> Result<RetentionReport, WalError> {
        retention::enforce(&self.shared, false)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stops accepting appends, lets the writer finish what is queued, and joins it. Safe to
    /// call twice.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        // Blocks only while the queue is full, i.e. until the writer takes the next group.
        let _ = self.requests.send(Request::Shutdown);
        if writer.join().is_err() {
            tracing::error!("the wal writer thread panicked");
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}
