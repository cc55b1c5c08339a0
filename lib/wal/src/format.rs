//! The bytes on disk: segment header and record frames. Pure functions, no I/O.
//!
//! ```text
//! segment  = header frame*
//! header   = magic "FWAL" | version u16 | reserved u16 (0) | base_offset i64      (16 bytes)
//! frame    = body_len u32 | crc32(body) u32 | body
//! body     = offset i64 | timestamp_ms i64
//!            | key_len u32 | key
//!            | header_count u16 | (name_len u16 | name | value_len u32 | value)*
//!            | payload_len u32 | payload
//! ```
//!
//! All integers are little-endian. The CRC (CRC-32/ISO-HDLC, `crc32fast`) covers the whole body,
//! so a torn or flipped frame is detected; the stored offset must equal the expected next offset,
//! so a stale frame from an earlier life of the file is detected too.

/// First bytes of every segment file.
pub const MAGIC: [u8; 4] = *b"FWAL";
/// Format version written in every segment header.
pub const VERSION: u16 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// Size of a frame's length and CRC prefix.
pub const FRAME_PREFIX_LEN: usize = 8;
/// Largest body a decoder accepts; anything larger is corruption. Configured record limits must
/// stay below it.
pub const MAX_BODY_LEN: usize = 64 * 1024 * 1024;

/// Body bytes besides key, headers and payload: offset, timestamp, key length, header count,
/// payload length.
const BODY_FIXED_LEN: usize = 8 + 8 + 4 + 2 + 4;

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    /// Append time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub key: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
}

/// Why bytes are not a valid header or frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the frame (or header) needs: a torn tail, or more to read.
    #[error("incomplete: {needed} bytes needed, {available} available")]
    Incomplete { needed: usize, available: usize },
    #[error("bad segment magic")]
    BadMagic,
    #[error("unsupported segment version {0}")]
    BadVersion(u16),
    #[error("frame length {0} exceeds the maximum")]
    TooLong(usize),
    #[error("checksum mismatch")]
    Checksum,
    #[error("malformed record body: {0}")]
    Malformed(&'static str),
}

/// Encodes a segment header.
pub fn encode_segment_header(base_offset: i64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[8..16].copy_from_slice(&base_offset.to_le_bytes());
    out
}

/// Decodes a segment header, returning its base offset.
pub fn decode_segment_header(bytes: &[u8]) -> Result<i64, DecodeError> {
    let header = bytes
        .get(..SEGMENT_HEADER_LEN)
        .ok_or(DecodeError::Incomplete {
            needed: SEGMENT_HEADER_LEN,
            available: bytes.len(),
        })?;
    if header[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    if header[6..8] != [0, 0] {
        return Err(DecodeError::Malformed("reserved header bytes are not zero"));
    }
    let base = i64::from_le_bytes(le8(&header[8..16]));
    if base < 0 {
        return Err(DecodeError::Malformed("negative base offset"));
    }
    Ok(base)
}

/// Bytes a frame for these fields occupies on disk.
pub fn frame_len(key: &[u8], headers: &[(&str, &[u8])], payload: &[u8]) -> usize {
    FRAME_PREFIX_LEN + body_len(key, headers, payload)
}

fn body_len(key: &[u8], headers: &[(&str, &[u8])], payload: &[u8]) -> usize {
    BODY_FIXED_LEN
        + key.len()
        + headers
            .iter()
            .map(|(name, value)| 2 + name.len() + 4 + value.len())
            .sum::<usize>()
        + payload.len()
}

/// Why a record cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("record of {0} bytes exceeds the maximum")]
    TooLong(usize),
    #[error("a header name is longer than 65535 bytes or there are more than 65535 headers")]
    Headers,
}

/// Appends one frame to `out`.
pub fn encode_frame(
    out: &mut Vec<u8>,
    offset: i64,
    timestamp_ms: i64,
    key: &[u8],
    headers: &[(&str, &[u8])],
    payload: &[u8],
) -> Result<(), EncodeError> {
    let body = body_len(key, headers, payload);
    if body > MAX_BODY_LEN {
        return Err(EncodeError::TooLong(body));
    }
    let header_count = u16::try_from(headers.len()).map_err(|_| EncodeError::Headers)?;
    if headers
        .iter()
        .any(|(name, _)| name.len() > usize::from(u16::MAX))
    {
        return Err(EncodeError::Headers);
    }
    // Lengths below fit in u32: the whole body is at most MAX_BODY_LEN.
    let start = out.len();
    out.reserve(FRAME_PREFIX_LEN + body);
    out.extend_from_slice(&(body as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // CRC, filled in below
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&header_count.to_le_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + FRAME_PREFIX_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes the frame at the start of `bytes`, returning the record and the frame's length.
pub fn decode_frame(bytes: &[u8]) -> Result<(StoredRecord, usize), DecodeError> {
    if bytes.len() < FRAME_PREFIX_LEN {
        return Err(DecodeError::Incomplete {
            needed: FRAME_PREFIX_LEN,
            available: bytes.len(),
        });
    }
    let body_len = u32::from_le_bytes(le4(&bytes[..4])) as usize;
    if body_len > MAX_BODY_LEN {
        return Err(DecodeError::TooLong(body_len));
    }
    if body_len < BODY_FIXED_LEN {
        return Err(DecodeError::Malformed("body shorter than its fixed fields"));
    }
    let total = FRAME_PREFIX_LEN + body_len;
    let body = bytes
        .get(FRAME_PREFIX_LEN..total)
        .ok_or(DecodeError::Incomplete {
            needed: total,
            available: bytes.len(),
        })?;
    let crc = u32::from_le_bytes(le4(&bytes[4..8]));
    if crc32fast::hash(body) != crc {
        return Err(DecodeError::Checksum);
    }
    let mut cursor = Cursor { bytes: body };
    let offset = i64::from_le_bytes(le8(cursor.take(8)?));
    let timestamp_ms = i64::from_le_bytes(le8(cursor.take(8)?));
    if offset < 0 {
        return Err(DecodeError::Malformed("negative offset"));
    }
    let key_len = u32::from_le_bytes(le4(cursor.take(4)?)) as usize;
    let key = cursor.take(key_len)?.to_vec();
    let header_count = u16::from_le_bytes([cursor.take(1)?[0], cursor.take(1)?[0]]);
    let mut headers = Vec::with_capacity(usize::from(header_count).min(64));
    for _ in 0..header_count {
        let name_len = u16::from_le_bytes([cursor.take(1)?[0], cursor.take(1)?[0]]);
        let name = std::str::from_utf8(cursor.take(usize::from(name_len))?)
            .map_err(|_| DecodeError::Malformed("header name is not UTF-8"))?
            .to_string();
        let value_len = u32::from_le_bytes(le4(cursor.take(4)?)) as usize;
        headers.push((name, cursor.take(value_len)?.to_vec()));
    }
    let payload_len = u32::from_le_bytes(le4(cursor.take(4)?)) as usize;
    let payload = cursor.take(payload_len)?.to_vec();
    if !cursor.bytes.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes in record body"));
    }
    Ok((
        StoredRecord {
            offset,
            timestamp_ms,
            key,
            headers,
            payload,
        },
        total,
    ))
}

/// Result of scanning the frames of a segment (after its header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Valid frames, in order, with consecutive offsets from the expected first one.
    pub records: usize,
    /// Bytes of `bytes` covered by valid frames.
    pub valid_len: usize,
    /// Offset the next frame would have.
    pub next_offset: i64,
    /// Why scanning stopped before the end of `bytes`, if it did.
    pub stop: Option<DecodeError>,
}

/// Scans `bytes` (the frames of a segment, header excluded) from `first_offset`, stopping at the
/// first invalid frame or an offset out of sequence.
pub fn scan_frames(bytes: &[u8], first_offset: i64) -> Scan {
    let mut pos = 0;
    let mut next_offset = first_offset;
    let mut records = 0;
    let mut stop = None;
    while pos < bytes.len() {
        match decode_frame(&bytes[pos..]) {
            Ok((record, len)) if record.offset == next_offset => {
                pos += len;
                next_offset += 1;
                records += 1;
            }
            Ok(_) => {
                stop = Some(DecodeError::Malformed("offset out of sequence"));
                break;
            }
            Err(e) => {
                stop = Some(e);
                break;
            }
        }
    }
    Scan {
        records,
        valid_len: pos,
        next_offset,
        stop,
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::Malformed(
                "field runs past the end of the body",
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
}

fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(offset: i64, key: &[u8], headers: &[(&str, &[u8])], payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, offset, 1_700_000_000_000, key, headers, payload).unwrap();
        out
    }

    #[test]
    fn frame_round_trip() {
        let bytes = frame(
            7,
            b"k",
            &[("flywheel.project", b"p1"), ("e", b"")],
            b"hello",
        );
        assert_eq!(
            bytes.len(),
            frame_len(b"k", &[("flywheel.project", b"p1"), ("e", b"")], b"hello")
        );
        let (record, len) = decode_frame(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(record.offset, 7);
        assert_eq!(record.timestamp_ms, 1_700_000_000_000);
        assert_eq!(record.key, b"k");
        assert_eq!(
            record.headers,
            vec![
                ("flywheel.project".to_string(), b"p1".to_vec()),
                ("e".to_string(), vec![])
            ]
        );
        assert_eq!(record.payload, b"hello");
    }

    #[test]
    fn header_round_trip_and_rejects() {
        let h = encode_segment_header(42);
        assert_eq!(decode_segment_header(&h), Ok(42));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_segment_header(&bad), Err(DecodeError::BadMagic));
        let mut bad = h;
        bad[4] = 9;
        assert_eq!(decode_segment_header(&bad), Err(DecodeError::BadVersion(9)));
        assert!(matches!(
            decode_segment_header(&h[..10]),
            Err(DecodeError::Incomplete { .. })
        ));
    }

    #[test]
    fn scan_stops_at_torn_or_flipped_frame() {
        let mut bytes = frame(0, b"a", &[], b"one");
        let first = bytes.len();
        bytes.extend(frame(1, b"a", &[], b"two"));
        let full = bytes.len();
        assert_eq!(scan_frames(&bytes, 0).records, 2);
        // Torn: the second frame is cut.
        let scan = scan_frames(&bytes[..full - 1], 0);
        assert_eq!(
            (scan.records, scan.valid_len, scan.next_offset),
            (1, first, 1)
        );
        assert!(matches!(scan.stop, Some(DecodeError::Incomplete { .. })));
        // Flipped payload byte in the second frame.
        let mut flipped = bytes.clone();
        flipped[full - 1] ^= 0x40;
        let scan = scan_frames(&flipped, 0);
        assert_eq!((scan.records, scan.valid_len), (1, first));
        assert_eq!(scan.stop, Some(DecodeError::Checksum));
        // Offsets out of sequence.
        let scan = scan_frames(&bytes, 5);
        assert_eq!(scan.records, 0);
        assert!(scan.stop.is_some());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes);
            let _ = decode_segment_header(&bytes);
            let scan = scan_frames(&bytes, 0);
            prop_assert!(scan.valid_len <= bytes.len());
        }

        #[test]
        fn decode_never_panics_on_mutated_frames(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            key in proptest::collection::vec(any::<u8>(), 0..20),
            at in any::<prop::sample::Index>(),
            xor in 1u8..=255,
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = frame(3, &key, &[("h", b"v")], &payload);
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
            // A single flipped byte is always caught (CRC-32 detects every burst up to 32 bits;
            // a changed length reads a different body or runs short).
            prop_assert!(decode_frame(&bytes).is_err());
            let cut = cut.index(bytes.len() + 1);
            let _ = scan_frames(&bytes[..cut], 3);
        }

        #[test]
        fn encode_decode_round_trip(
            offset in 0i64..i64::MAX,
            ts in any::<i64>(),
            key in proptest::collection::vec(any::<u8>(), 0..64),
            value in proptest::collection::vec(any::<u8>(), 0..64),
            payload in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            let mut out = Vec::new();
            encode_frame(&mut out, offset, ts, &key, &[("name", &value)], &payload).unwrap();
            let (r, len) = decode_frame(&out).unwrap();
            prop_assert_eq!(len, out.len());
            prop_assert_eq!(r, StoredRecord {
                offset, timestamp_ms: ts, key, headers: vec![("name".to_string(), value)], payload,
            });
        }
    }
}
