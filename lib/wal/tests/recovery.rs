//! Property: after any sequence of acknowledged appends, cutting the last segment at any byte or
//! flipping any byte of it makes the next open recover exactly the records before the damage,
//! report what it removed, and accept new appends that read back in order.

use std::path::{Path, PathBuf};

use flywheel_bus::{Publisher, Record};
use flywheel_wal::format::{decode_frame, SEGMENT_HEADER_LEN};
use flywheel_wal::{Wal, WalConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Damage {
    /// Cut the last segment to this length (an index into its bytes).
    Truncate(prop::sample::Index),
    /// XOR one byte of the last segment.
    Flip(prop::sample::Index, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Damage::Flip(i, x)),
    ]
}

fn config(dir: &Path) -> WalConfig {
    WalConfig {
        default_partitions: 1,
        segment_bytes: 4096,
        ..WalConfig::new(dir)
    }
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("topics/t/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

/// End positions of the frames of a segment file.
fn frame_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < bytes.len() {
        let (_, len) = decode_frame(&bytes[pos..]).unwrap();
        pos += len;
        ends.push(pos);
    }
    ends
}

fn publish_all(wal: &Wal, rt: &tokio::runtime::Runtime, calls: &[Vec<Vec<u8>>]) {
    let publisher = wal.publisher();
    rt.block_on(async {
        for call in calls {
            let records = call
                .iter()
                .map(|p| Record {
                    key: b"k".to_vec(),
                    payload: p.clone(),
                })
                .collect();
            publisher
                .publish("t", &[("h", b"v".to_vec())], records)
                .await
                .unwrap();
        }
    });
}

fn read_all(wal: &Wal) -> Vec<(i64, Vec<u8>)> {
    wal.read("t", 0, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|m| (m.offset, m.payload))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn recovery_keeps_exactly_the_prefix_before_the_damage(
        calls in prop::collection::vec(
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..400), 1..4),
            1..25,
        ),
        damage in damage(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let acked: Vec<Vec<u8>> = calls.iter().flatten().cloned().collect();
        {
            let wal = Wal::open(config(dir.path())).unwrap();
            publish_all(&wal, &rt, &calls);
        }
        let tail = last_segment(dir.path());
        let base: i64 = tail.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let original = std::fs::read(&tail).unwrap();
        let ends = frame_ends(&original);
        prop_assert_eq!(base as usize + ends.len(), acked.len());

        // Expected survivors and the expected report `(kept, removed)`, if any.
        let (survivors, report) = match damage {
            Damage::Truncate(at) => {
                let cut = at.index(original.len());
                std::fs::write(&tail, &original[..cut]).unwrap();
                if cut < SEGMENT_HEADER_LEN {
                    (base as usize, Some((0, cut as u64)))
                } else {
                    let whole = ends.iter().filter(|&&e| e <= cut).count();
                    let good_end = if whole == 0 { SEGMENT_HEADER_LEN } else { ends[whole - 1] };
                    let partial = (cut > good_end).then_some((good_end as u64, (cut - good_end) as u64));
                    (base as usize + whole, partial)
                }
            }
            Damage::Flip(at, xor) => {
                let i = at.index(original.len());
                let mut bytes = original.clone();
                bytes[i] ^= xor;
                std::fs::write(&tail, &bytes).unwrap();
                if i < SEGMENT_HEADER_LEN {
                    (base as usize, Some((0, original.len() as u64)))
                } else {
                    let frame = ends.iter().filter(|&&e| e <= i).count();
                    let start = if frame == 0 { SEGMENT_HEADER_LEN } else { ends[frame - 1] };
                    (base as usize + frame, Some((start as u64, (original.len() - start) as u64)))
                }
            }
        };

        let wal = Wal::open(config(dir.path())).unwrap();
        let truncations = &wal.recovery_report().truncations;
        match report {
            None => prop_assert!(truncations.is_empty(), "{:?}", truncations),
            Some((kept, removed)) => {
                prop_assert_eq!(truncations.len(), 1, "{:?}", truncations);
                prop_assert_eq!(truncations[0].kept_bytes, kept);
                prop_assert_eq!(truncations[0].removed_bytes, removed);
                prop_assert_eq!(truncations[0].next_offset, survivors as i64);
            }
        }
        let expected: Vec<(i64, Vec<u8>)> = acked[..survivors]
            .iter()
            .enumerate()
            .map(|(i, p)| (i as i64, p.clone()))
            .collect();
        prop_assert_eq!(read_all(&wal), expected.clone());
        prop_assert_eq!(wal.bounds("t", 0).unwrap().1, survivors as i64);

        // Appends after recovery continue the offsets and read back.
        let more = vec![vec![b"after-1".to_vec(), vec![7u8; 300]], vec![b"after-2".to_vec()]];
        publish_all(&wal, &rt, &more);
        let mut expected = expected;
        for (i, p) in more.iter().flatten().enumerate() {
            expected.push(((survivors + i) as i64, p.clone()));
        }
        prop_assert_eq!(read_all(&wal), expected.clone());
        drop(wal);
        // And a clean reopen sees the same.
        let wal = Wal::open(config(dir.path())).unwrap();
        prop_assert!(wal.recovery_report().is_clean());
        prop_assert_eq!(read_all(&wal), expected);
    }
}
