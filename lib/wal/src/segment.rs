//! One partition on disk: its segment files, recovery of the tail on open, and reading frames
//! back from a given offset.
//!
//! A partition is a directory of segment files named after their base offset
//! (`00000000000000000000.log`). Only the last segment is ever written; earlier ones are sealed.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::format::{self, DecodeError, StoredRecord, FRAME_PREFIX_LEN, SEGMENT_HEADER_LEN};
use crate::{Truncation, WalError};

const HEADER_LEN: u64 = SEGMENT_HEADER_LEN as u64;
/// Bytes read at once by a cursor.
const READ_CHUNK: usize = 256 * 1024;

/// File name of the segment starting at `base`.
pub(crate) fn segment_name(base: i64) -> String {
    format!("{base:020}.log")
}

fn parse_segment_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WalError::io(dir))
}

/// A segment as readers see it: where it starts and how many of its bytes are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentRef {
    pub base: i64,
    pub len: u64,
}

/// What readers may see of a partition: only fsynced bytes.
#[derive(Debug)]
pub(crate) struct View {
    /// Oldest first; never empty.
    pub segments: Vec<SegmentRef>,
    /// Offset after the last durable record.
    pub end_offset: i64,
}

/// A partition shared between the writer (which extends it) and readers.
#[derive(Debug)]
pub(crate) struct Partition {
    pub topic: String,
    pub id: i32,
    pub dir: PathBuf,
    view: Mutex<View>,
}

impl Partition {
    pub fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn path(&self, base: i64) -> PathBuf {
        self.dir.join(segment_name(base))
    }

    /// `(log start offset, end offset)`.
    pub fn bounds(&self) -> (i64, i64) {
        let view = self.view();
        (view.segments[0].base, view.end_offset)
    }
}

/// The writable end of a partition, owned by the writer thread.
#[derive(Debug)]
pub(crate) struct Tail {
    pub partition: Arc<Partition>,
    pub file: File,
    pub base: i64,
    /// Bytes in the active segment (written, not necessarily synced).
    pub len: u64,
    pub next_offset: i64,
}

/// Opens (creating if needed) a partition directory, recovering its tail segment: a torn or
/// corrupt tail is truncated to the last good record and reported.
pub(crate) fn open_partition(
    dir: &Path,
    topic: &str,
    id: i32,
    truncations: &mut Vec<Truncation>,
) -> Result<Tail, WalError> {
    std::fs::create_dir_all(dir).map_err(WalError::io(dir))?;
    let mut segments = list_segments(dir)?;
    // Recover the tail: drop segments whose header is unreadable, truncate the first bad frame.
    let (file, base, len, next_offset) = loop {
        let Some(&(base, file_len)) = segments.last() else {
            break create_segment(dir, 0)?;
        };
        let path = dir.join(segment_name(base));
        let bytes = std::fs::read(&path).map_err(WalError::io(&path))?;
        let header_ok = matches!(format::decode_segment_header(&bytes), Ok(b) if b == base);
        if !header_ok {
            let reason = match format::decode_segment_header(&bytes) {
                Err(e) => e,
                Ok(_) => DecodeError::Malformed("header base offset differs from the file name"),
            };
            truncations.push(Truncation {
                topic: topic.to_string(),
                partition: id,
                path: path.clone(),
                kept_bytes: 0,
                removed_bytes: file_len,
                next_offset: base,
                reason: reason.to_string(),
            });
            std::fs::remove_file(&path).map_err(WalError::io(&path))?;
            sync_dir(dir)?;
            segments.pop();
            if segments.is_empty() {
                break create_segment(dir, base)?;
            }
            continue;
        }
        let scan = format::scan_frames(&bytes[SEGMENT_HEADER_LEN..], base);
        let kept = HEADER_LEN + scan.valid_len as u64;
        if let Some(reason) = scan.stop {
            truncations.push(Truncation {
                topic: topic.to_string(),
                partition: id,
                path: path.clone(),
                kept_bytes: kept,
                removed_bytes: bytes.len() as u64 - kept,
                next_offset: scan.next_offset,
                reason: reason.to_string(),
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(WalError::io(&path))?;
        if kept != bytes.len() as u64 {
            file.set_len(kept).map_err(WalError::io(&path))?;
            file.sync_all().map_err(WalError::io(&path))?;
        }
        break (file, base, kept, scan.next_offset);
    };
    match segments.last_mut() {
        Some(last) if last.0 == base => last.1 = len,
        _ => segments.push((base, len)),
    }
    let partition = Arc::new(Partition {
        topic: topic.to_string(),
        id,
        dir: dir.to_path_buf(),
        view: Mutex::new(View {
            segments: segments
                .iter()
                .map(|&(base, len)| SegmentRef { base, len })
                .collect(),
            end_offset: next_offset,
        }),
    });
    let mut tail = Tail {
        partition,
        file,
        base,
        len,
        next_offset,
    };
    // Appends go to the end of the (possibly truncated) file.
    tail.seek_end()?;
    Ok(tail)
}

/// Segment files of `dir` as `(base, length)`, oldest first. Other files are left alone.
fn list_segments(dir: &Path) -> Result<Vec<(i64, u64)>, WalError> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(WalError::io(dir))? {
        let entry = entry.map_err(WalError::io(dir))?;
        let name = entry.file_name();
        let Some(base) = name.to_str().and_then(parse_segment_name) else {
            tracing::warn!(path = %entry.path().display(), "ignoring a file that is no wal segment");
            continue;
        };
        let len = entry.metadata().map_err(WalError::io(entry.path()))?.len();
        segments.push((base, len));
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Creates a segment file starting at `base` with its header, durably (file and directory).
fn create_segment(dir: &Path, base: i64) -> Result<(File, i64, u64, i64), WalError> {
    let path = dir.join(segment_name(base));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(WalError::io(&path))?;
    file.write_all(&format::encode_segment_header(base))
        .and_then(|()| file.sync_all())
        .map_err(WalError::io(&path))?;
    sync_dir(dir)?;
    Ok((file, base, HEADER_LEN, base))
}

impl Tail {
    fn seek_end(&mut self) -> Result<(), WalError> {
        use std::io::{Seek, SeekFrom};
        let path = self.partition.path(self.base);
        self.file
            .seek(SeekFrom::Start(self.len))
            .map_err(WalError::io(path))?;
        Ok(())
    }

    /// Writes encoded frames (whose offsets the caller assigned from `next_offset`).
    pub fn write(&mut self, frames: &[u8], count: i64) -> Result<(), WalError> {
        self.file
            .write_all(frames)
            .map_err(WalError::io(self.partition.path(self.base)))?;
        self.len += frames.len() as u64;
        self.next_offset += count;
        Ok(())
    }

    /// Fsyncs the active segment's data, then lets readers see it.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.file
            .sync_data()
            .map_err(WalError::io(self.partition.path(self.base)))?;
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        let mut view = self.partition.view();
        if let Some(last) = view.segments.last_mut() {
            last.len = self.len;
        }
        view.end_offset = self.next_offset;
    }

    /// Seals the active segment (fsynced) and starts a new one at `next_offset`.
    pub fn roll(&mut self) -> Result<(), WalError> {
        self.sync()?;
        let (file, base, len, _) = create_segment(&self.partition.dir, self.next_offset)?;
        self.file = file;
        self.base = base;
        self.len = len;
        self.seek_end()?;
        self.partition
            .view()
            .segments
            .push(SegmentRef { base, len });
        Ok(())
    }
}

/// Reads a partition from an offset on, only what is durable.
#[derive(Debug)]
pub(crate) struct Cursor {
    pub partition: Arc<Partition>,
    /// Offset of the next record to return.
    pub next_offset: i64,
    open: Option<OpenSegment>,
}

#[derive(Debug)]
struct OpenSegment {
    base: i64,
    path: PathBuf,
    file: File,
    /// File position of the next frame.
    pos: u64,
    /// Bytes read ahead, starting at file position `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
}

impl Cursor {
    pub fn new(partition: Arc<Partition>, next_offset: i64) -> Self {
        Self {
            partition,
            next_offset,
            open: None,
        }
    }

    pub fn seek(&mut self, offset: i64) {
        self.next_offset = offset;
        self.open = None;
    }

    /// Appends up to `max` durable records at or after `next_offset` to `out`; returns how many.
    /// An error comes only when no record was read: records before a bad one are returned
    /// first, and the cursor stays on the bad one.
    pub fn read(&mut self, max: usize, out: &mut Vec<StoredRecord>) -> Result<usize, WalError> {
        let mut count = 0;
        match self.read_into(max, out, &mut count) {
            Err(e) if count == 0 => Err(e),
            _ => Ok(count),
        }
    }

    fn read_into(
        &mut self,
        max: usize,
        out: &mut Vec<StoredRecord>,
        count: &mut usize,
    ) -> Result<(), WalError> {
        while *count < max {
            let (segments, end_offset) = {
                let view = self.partition.view();
                (view.segments.clone(), view.end_offset)
            };
            if self.next_offset >= end_offset {
                break;
            }
            let start = segments[0].base;
            if self.next_offset < start {
                tracing::warn!(
                    topic = %self.partition.topic,
                    partition = self.partition.id,
                    from = self.next_offset,
                    to = start,
                    "offset no longer in the wal (retention); skipping to the log start"
                );
                self.seek(start);
            }
            let index = segments.partition_point(|s| s.base <= self.next_offset) - 1;
            let segment = segments[index];
            let is_last = index + 1 == segments.len();
            if self.open.as_ref().map(|o| o.base) != Some(segment.base) {
                match self.open_at(segment.base) {
                    Ok(open) => self.open = Some(open),
                    Err(WalError::Io { source, .. })
                        if source.kind() == ErrorKind::NotFound
                            && self.partition.bounds().0 > segment.base =>
                    {
                        continue; // removed by retention meanwhile: the view has changed
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(open) = self.open.as_mut() else {
                break;
            };
            let before = *count;
            while *count < max && open.pos < segment.len {
                let record = open.next_frame(segment.len)?;
                if record.offset != self.next_offset {
                    // Skipping forward to the wanted offset after a seek.
                    if record.offset < self.next_offset {
                        continue;
                    }
                    return Err(WalError::Corrupt {
                        path: open.path.clone(),
                        position: open.pos,
                        reason: DecodeError::Malformed("offset out of sequence"),
                    });
                }
                self.next_offset += 1;
                out.push(record);
                *count += 1;
            }
            if open.pos >= segment.len && !is_last {
                let next_base = segments[index + 1].base;
                if self.next_offset != next_base {
                    return Err(WalError::Corrupt {
                        path: open.path.clone(),
                        position: open.pos,
                        reason: DecodeError::Malformed("segment ends before the next one starts"),
                    });
                }
                self.open = None;
            } else if *count == before && open.pos >= segment.len {
                break; // nothing more durable in the active segment
            }
        }
        Ok(())
    }

    fn open_at(&self, base: i64) -> Result<OpenSegment, WalError> {
        let path = self.partition.path(base);
        let mut file = File::open(&path).map_err(WalError::io(&path))?;
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        file.read_exact(&mut header).map_err(WalError::io(&path))?;
        match format::decode_segment_header(&header) {
            Ok(b) if b == base => {}
            Ok(_) => {
                return Err(WalError::Corrupt {
                    path,
                    position: 0,
                    reason: DecodeError::Malformed("header base offset differs from the file name"),
                })
            }
            Err(reason) => {
                return Err(WalError::Corrupt {
                    path,
                    position: 0,
                    reason,
                })
            }
        }
        Ok(OpenSegment {
            base,
            path,
            file,
            pos: HEADER_LEN,
            buf: Vec::new(),
            buf_start: HEADER_LEN,
        })
    }
}

impl OpenSegment {
    /// Decodes the frame at `pos`, which must end by `limit` (the durable length).
    fn next_frame(&mut self, limit: u64) -> Result<StoredRecord, WalError> {
        let prefix = self.bytes(FRAME_PREFIX_LEN, limit)?;
        let body_len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if body_len > format::MAX_BODY_LEN {
            return Err(self.corrupt(DecodeError::TooLong(body_len)));
        }
        let frame = self.bytes(FRAME_PREFIX_LEN + body_len, limit)?;
        match format::decode_frame(frame) {
            Ok((record, len)) => {
                self.pos += len as u64;
                Ok(record)
            }
            Err(reason) => Err(self.corrupt(reason)),
        }
    }

    fn corrupt(&self, reason: DecodeError) -> WalError {
        WalError::Corrupt {
            path: self.path.clone(),
            position: self.pos,
            reason,
        }
    }

    /// The buffered bytes from `pos`, at least `need` of them, reading ahead if required.
    fn bytes(&mut self, need: usize, limit: u64) -> Result<&[u8], WalError> {
        let available = limit.saturating_sub(self.pos);
        if (need as u64) > available {
            return Err(self.corrupt(DecodeError::Incomplete {
                needed: need,
                available: available as usize,
            }));
        }
        let buffered = self.pos >= self.buf_start
            && (self.pos - self.buf_start) as usize + need <= self.buf.len();
        if !buffered {
            let len = (need.max(READ_CHUNK) as u64).min(available) as usize;
            self.buf.resize(len, 0);
            self.file
                .read_exact_at(&mut self.buf, self.pos)
                .map_err(WalError::io(&self.path))?;
            self.buf_start = self.pos;
            return Ok(&self.buf[..]);
        }
        Ok(&self.buf[(self.pos - self.buf_start) as usize..])
    }
}
