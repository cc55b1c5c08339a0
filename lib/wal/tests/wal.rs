//! The wal against a real directory: round trips, partitioning, reopen, commits, segment roll,
//! retention, wake-ups, back-pressure and corruption outside the tail.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flywheel_bus::{PublishError, Publisher, Record};
use flywheel_wal::{Wal, WalConfig, WalError};

fn config(dir: &Path) -> WalConfig {
    WalConfig {
        default_partitions: 1,
        ..WalConfig::new(dir)
    }
}

fn record(key: &str, payload: impl Into<Vec<u8>>) -> Record {
    Record {
        key: key.as_bytes().to_vec(),
        payload: payload.into(),
    }
}

fn segments(dir: &Path, topic: &str, partition: i32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.join("topics").join(topic).join(partition.to_string()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
    files.sort();
    files
}

#[tokio::test]
async fn round_trip_with_headers_key_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path())).unwrap();
    assert!(wal.recovery_report().is_clean());
    let publisher = wal.publisher();
    assert!(publisher.is_ready());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    publisher
        .publish(
            "spans",
            &[
                ("flywheel.project", b"p1".to_vec()),
                ("flywheel.encoding", b"otlp_proto".to_vec()),
            ],
            vec![record("trace-1", "a"), record("trace-1", "b")],
        )
        .await
        .unwrap();
    publisher
        .publish("spans", &[], vec![record("trace-1", "c")])
        .await
        .unwrap();
    assert_eq!(publisher.queue_depth(), 0);

    let mut sub = wal.subscribe("ingester", &["spans"]).unwrap();
    let got = sub.poll(10, Duration::from_secs(1)).await.unwrap();
    let payloads: Vec<&[u8]> = got.iter().map(|m| m.payload.as_slice()).collect();
    assert_eq!(payloads, [b"a", b"b", b"c"]);
    assert_eq!(got.iter().map(|m| m.offset).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(got[0].topic, "spans");
    assert_eq!(got[0].partition, 0);
    assert_eq!(got[0].key, b"trace-1");
    assert_eq!(got[0].header("flywheel.project"), Some(&b"p1"[..]));
    assert_eq!(got[1].header("flywheel.encoding"), Some(&b"otlp_proto"[..]));
    assert!(got[2].headers.is_empty());
    assert!(got[0].timestamp_ms >= before && got[0].timestamp_ms < before + 60_000);
    // Replay without a group reads the same.
    assert_eq!(wal.read("spans", 0, 1, 10).unwrap(), got[1..].to_vec());
    assert_eq!(wal.bounds("spans", 0).unwrap(), (0, 3));
}

#[tokio::test]
async fn same_key_same_partition_with_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        default_partitions: 4,
        ..WalConfig::new(dir.path())
    })
    .unwrap();
    let publisher = wal.publisher();
    for round in 0..3 {
        let records = (0..40)
            .map(|k| record(&format!("key-{k}"), format!("{k}:{round}")))
            .collect();
        publisher.publish("t", &[], records).await.unwrap();
    }
    assert_eq!(wal.topics(), vec![("t".to_string(), 4)]);
    let mut partition_of: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    let mut used = HashSet::new();
    let mut total = 0;
    for p in 0..4 {
        let messages = wal.read("t", p, 0, 1000).unwrap();
        total += messages.len();
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(m.offset, i as i64, "offsets are dense from 0");
            let previous = partition_of.insert(m.key.clone(), p);
            assert!(
                previous.is_none() || previous == Some(p),
                "a key moved partition"
            );
            used.insert(p);
        }
        // Per key, records keep their publish order.
        let mut last_round: BTreeMap<&[u8], u32> = BTreeMap::new();
        for m in &messages {
            let text = String::from_utf8(m.payload.clone()).unwrap();
            let round: u32 = text.split(':').nth(1).unwrap().parse().unwrap();
            if let Some(prev) = last_round.insert(&m.key, round) {
                assert!(round > prev);
            }
        }
    }
    assert_eq!(total, 120);
    assert!(used.len() > 1, "40 keys all hashed to one partition");
}

#[tokio::test]
async fn offsets_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(config(dir.path())).unwrap();
        let records = (0..10).map(|i| record("k", format!("{i}"))).collect();
        wal.publisher().publish("t", &[], records).await.unwrap();
    }
    let wal = Wal::open(config(dir.path())).unwrap();
    assert!(wal.recovery_report().is_clean());
    assert_eq!(wal.bounds("t", 0).unwrap(), (0, 10));
    let records = (10..15).map(|i| record("k", format!("{i}"))).collect();
    wal.publisher().publish("t", &[], records).await.unwrap();
    let messages = wal.read("t", 0, 0, 100).unwrap();
    assert_eq!(messages.len(), 15);
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.offset, i as i64);
        assert_eq!(m.payload, i.to_string().into_bytes());
    }
}

#[tokio::test]
async fn commits_survive_reopen_and_one_subscription_per_group() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(config(dir.path())).unwrap();
        let records = (0..10).map(|i| record("k", format!("{i}"))).collect();
        wal.publisher().publish("t", &[], records).await.unwrap();
        let mut sub = wal.subscribe("g", &["t"]).unwrap();
        assert!(matches!(
            wal.subscribe("g", &["t"]),
            Err(WalError::GroupBusy(_))
        ));
        let got = sub.poll(4, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), 4);
        sub.commit("t", 0, 4).await.unwrap();
        assert_eq!(sub.committed("t", 0), Some(4));
        // Read further without committing: not remembered.
        assert_eq!(sub.poll(3, Duration::from_secs(1)).await.unwrap().len(), 3);
        assert_eq!(sub.position("t", 0), Some(7));
        drop(sub);
        // Released on drop.
        drop(wal.subscribe("g", &["t"]).unwrap());
    }
    let wal = Wal::open(config(dir.path())).unwrap();
    assert_eq!(wal.committed("g", "t", 0), Some(4));
    let mut sub = wal.subscribe("g", &["t"]).unwrap();
    assert_eq!(sub.position("t", 0), Some(4));
    let first = sub.next().await.unwrap();
    assert_eq!((first.offset, first.payload.as_slice()), (4, &b"4"[..]));
    // Another group starts at the log start; seek replays.
    let mut other = wal.subscribe("other", &["t"]).unwrap();
    assert_eq!(other.next().await.unwrap().offset, 0);
    other.seek("t", 0, 8).unwrap();
    assert_eq!(other.next().await.unwrap().offset, 8);
    // No temporary file is left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("groups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["g.json", "other.json"]);
}

#[tokio::test]
async fn segments_roll_and_read_back_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        segment_bytes: 4096,
        ..config(dir.path())
    };
    {
        let wal = Wal::open(cfg.clone()).unwrap();
        let publisher = wal.publisher();
        for i in 0..40 {
            let payload = vec![i as u8; 500];
            publisher
                .publish("t", &[], vec![record("k", payload)])
                .await
                .unwrap();
        }
        let files = segments(dir.path(), "t", 0);
        assert!(files.len() >= 5, "expected several segments, got {files:?}");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 4096);
        }
        // The next segment's name is the offset after the previous one's last record.
        let read = wal.read("t", 0, 0, 100).unwrap();
        assert_eq!(read.len(), 40);
    }
    let wal = Wal::open(cfg).unwrap();
    assert!(wal.recovery_report().is_clean());
    let mut sub = wal.subscribe("g", &["t"]).unwrap();
    let mut all = Vec::new();
    loop {
        let got = sub.poll(7, Duration::from_millis(50)).await.unwrap();
        if got.is_empty() {
            break;
        }
        all.extend(got);
    }
    assert_eq!(all.len(), 40);
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m.offset, i as i64);
        assert_eq!(m.payload, vec![i as u8; 500]);
    }
    // Reading from the middle of a later segment.
    let from_23 = wal.read("t", 0, 23, 2).unwrap();
    assert_eq!(
        from_23.iter().map(|m| m.offset).collect::<Vec<_>>(),
        [23, 24]
    );
}

#[tokio::test]
async fn retention_deletes_only_segments_every_group_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        segment_bytes: 4096,
        retention_secs: 0,
        retention_bytes: 1, // everything sealed is over the size limit
        ..config(dir.path())
    })
    .unwrap();
    let publisher = wal.publisher();
    for i in 0..40 {
        publisher
            .publish("t", &[], vec![record("k", vec![i as u8; 500])])
            .await
            .unwrap();
    }
    let before = segments(dir.path(), "t", 0);
    let mut a = wal.subscribe("a", &["t"]).unwrap();
    let b = wal.subscribe("b", &["t"]).unwrap();
    // Group `a` consumed up to 20, group `b` has not committed: nothing may go.
    assert_eq!(a.poll(20, Duration::from_secs(1)).await.unwrap().len(), 20);
    a.commit("t", 0, 20).await.unwrap();
    assert_eq!(wal.enforce_retention().unwrap().segments_deleted, 0);
    // `b` commits 12: only segments ending at or before offset 12 go.
    b.commit("t", 0, 12).await.unwrap();
    let report = wal.enforce_retention().unwrap();
    assert!(report.segments_deleted >= 1);
    let after = segments(dir.path(), "t", 0);
    assert_eq!(after.len(), before.len() - report.segments_deleted);
    let (start, end) = wal.bounds("t", 0).unwrap();
    assert!(start > 0 && start <= 12, "log start {start}");
    assert_eq!(end, 40);
    // Reading from before the log start skips to it.
    let got = wal.read("t", 0, 0, 1).unwrap();
    assert_eq!(got[0].offset, start);
    // Everyone consumed everything: all but the active segment go.
    a.commit("t", 0, 40).await.unwrap();
    b.commit("t", 0, 40).await.unwrap();
    wal.enforce_retention().unwrap();
    assert_eq!(segments(dir.path(), "t", 0).len(), 1);
    // The active segment is still readable and appendable.
    publisher
        .publish("t", &[], vec![record("k", "x")])
        .await
        .unwrap();
    assert_eq!(wal.read("t", 0, 40, 10).unwrap()[0].payload, b"x");
}

#[tokio::test]
async fn retention_by_age_keeps_recent_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        segment_bytes: 4096,
        retention_secs: 3600,
        retention_bytes: 0,
        ..config(dir.path())
    })
    .unwrap();
    for i in 0..20 {
        wal.publisher()
            .publish("t", &[], vec![record("k", vec![i as u8; 500])])
            .await
            .unwrap();
    }
    // No group known and no segment an hour old: nothing goes.
    assert_eq!(wal.enforce_retention().unwrap().segments_deleted, 0);
    assert_eq!(wal.bounds("t", 0).unwrap().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_wakes_on_append_instead_of_waiting_out_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path())).unwrap();
    // Subscribed before the topic exists: picked up on creation.
    let mut sub = wal.subscribe("g", &["late"]).unwrap();
    let publisher = wal.publisher();
    let started = Instant::now();
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        publisher
            .publish("late", &[], vec![record("k", "hello")])
            .await
    });
    let got = sub.poll(10, Duration::from_secs(20)).await.unwrap();
    producer.await.unwrap().unwrap();
    assert_eq!(got.len(), 1, "woke without the record");
    assert_eq!(got[0].payload, b"hello");
    assert!(started.elapsed() < Duration::from_secs(10));
    // And times out empty when nothing comes.
    let got = sub.poll(10, Duration::from_millis(50)).await.unwrap();
    assert!(got.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_fails_fast_and_every_ok_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        queue_capacity: 2,
        queue_max_bytes: 1000,
        ..config(dir.path())
    })
    .unwrap();
    let publisher = wal.publisher();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let p = publisher.clone();
            tokio::spawn(async move {
                p.publish("t", &[], vec![record("k", format!("{i:0>900}"))])
                    .await
            })
        })
        .collect();
    let mut ok = HashSet::new();
    let mut full = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => {
                ok.insert(format!("{i:0>900}").into_bytes());
            }
            Err(PublishError::QueueFull) => full += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        full > 0,
        "200 concurrent 900-byte calls never filled a 1000-byte queue"
    );
    assert!(!ok.is_empty());
    assert!(wal.metrics().queue_full.get() >= full as u64);
    let stored: HashSet<Vec<u8>> = wal
        .read("t", 0, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(
        stored, ok,
        "stored records are exactly the acknowledged ones"
    );
}

/// Below `min_free_bytes` of free disk (the real file system's figure, with the bound set
/// above it) every publish is refused as `Unavailable`, counted, and nothing is written; once
/// there is room (the bound lowered, as when retention frees segments) appends resume: the
/// log was not stopped as after a failed write.
#[tokio::test]
async fn a_nearly_full_disk_refuses_appends_until_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path())).unwrap();
    let publisher = wal.publisher();
    publisher
        .publish("t", &[], vec![record("k", "before")])
        .await
        .unwrap();
    wal.set_min_free_bytes(u64::MAX);
    for _ in 0..3 {
        match publisher
            .publish("t", &[], vec![record("k", "refused")])
            .await
        {
            Err(PublishError::Unavailable(reason)) => {
                assert!(reason.contains("below wal.min_free_bytes"), "{reason}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert_eq!(wal.metrics().disk_full.get(), 3);
    assert_eq!(wal.bounds("t", 0).unwrap(), (0, 1));

    wal.set_min_free_bytes(1);
    publisher
        .publish("t", &[], vec![record("k", "after")])
        .await
        .unwrap();
    let payloads: Vec<Vec<u8>> = wal
        .read("t", 0, 0, 10)
        .unwrap()
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(payloads, vec![b"before".to_vec(), b"after".to_vec()]);
    assert_eq!(wal.metrics().disk_full.get(), 3);
}

/// Under disk pressure, retention frees what every group has consumed however young (the
/// default keeps consumed segments a week): nothing while no group is known, then the segments
/// below the committed offset, never the rest.
#[tokio::test]
async fn disk_pressure_frees_consumed_segments_however_young() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        segment_bytes: 4096,
        ..config(dir.path())
    })
    .unwrap();
    let publisher = wal.publisher();
    for i in 0..40 {
        publisher
            .publish("t", &[], vec![record("k", vec![i as u8; 500])])
            .await
            .unwrap();
    }
    let before = segments(dir.path(), "t", 0);
    assert!(before.len() > 3, "{before:?}");
    wal.set_min_free_bytes(u64::MAX);
    let refused = || async {
        matches!(
            publisher.publish("t", &[], vec![record("k", "x")]).await,
            Err(PublishError::Unavailable(_))
        )
    };
    assert!(refused().await);
    assert_eq!(segments(dir.path(), "t", 0), before);

    let mut a = wal.subscribe("a", &["t"]).unwrap();
    assert_eq!(a.poll(20, Duration::from_secs(1)).await.unwrap().len(), 20);
    a.commit("t", 0, 20).await.unwrap();
    assert!(refused().await);
    let after = segments(dir.path(), "t", 0);
    assert!(after.len() < before.len(), "{after:?}");
    let (start, end) = wal.bounds("t", 0).unwrap();
    assert!(start > 0 && start <= 20, "log start {start}");
    assert_eq!(end, 40);
    // What was not consumed is all there.
    let rest = wal.read("t", 0, 20, 100).unwrap();
    assert_eq!(rest.len(), 20);
    assert_eq!(rest[0].payload, vec![20u8; 500]);
}

#[tokio::test]
async fn rejects_bad_topic_names_oversized_records_and_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        max_record_bytes: 1024,
        ..config(dir.path())
    })
    .unwrap();
    let p = wal.publisher();
    for bad in ["", "..", "a/b", "spaces here"] {
        let r = p.publish(bad, &[], vec![record("k", "x")]).await;
        assert!(
            matches!(r, Err(PublishError::Rejected(_))),
            "{bad:?}: {r:?}"
        );
    }
    let r = p.publish("t", &[], vec![record("k", vec![0; 2000])]).await;
    assert!(matches!(r, Err(PublishError::Rejected(_))));
    assert!(
        Wal::open(config(dir.path())).is_err(),
        "a second open of a locked dir"
    );
    wal.close();
    wal.close(); // twice is fine
    let r = p.publish("t", &[], vec![record("k", "x")]).await;
    assert_eq!(r, Err(PublishError::ShuttingDown));
    assert!(!p.is_ready());
}

#[tokio::test]
async fn corrupt_record_in_a_sealed_segment_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig {
        segment_bytes: 4096,
        ..config(dir.path())
    };
    {
        let wal = Wal::open(cfg.clone()).unwrap();
        for i in 0..30 {
            wal.publisher()
                .publish("t", &[], vec![record("k", vec![i as u8; 500])])
                .await
                .unwrap();
        }
    }
    let first = segments(dir.path(), "t", 0)[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();

    let wal = Wal::open(cfg).unwrap();
    // Only the tail is scanned on open.
    assert!(wal.recovery_report().is_clean());
    // A read returns the records before the bad one, the next read from there the error.
    let before_bad = wal.read("t", 0, 0, 100).unwrap();
    assert!(!before_bad.is_empty() && before_bad.len() < 30);
    let err = wal.read("t", 0, before_bad.len() as i64, 100).unwrap_err();
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
    // A subscription gets the good records before the bad one, then the error, and can skip it.
    let mut sub = wal.subscribe("g", &["t"]).unwrap();
    let good = sub.poll(100, Duration::from_millis(100)).await.unwrap();
    assert!(!good.is_empty());
    assert_eq!(good, before_bad);
    let bad_offset = good.len() as i64;
    assert!(matches!(
        sub.poll(100, Duration::from_millis(100)).await,
        Err(WalError::Corrupt { .. })
    ));
    // Frames do not resynchronise inside a segment: reading goes on at the next segment, whose
    // base offset is its file name.
    let second = segments(dir.path(), "t", 0)[1].clone();
    let next_base: i64 = second
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(next_base > bad_offset);
    sub.seek("t", 0, next_base).unwrap();
    let rest = sub.poll(100, Duration::from_millis(100)).await.unwrap();
    assert_eq!(rest[0].offset, next_base);
    assert_eq!(rest.last().unwrap().offset, 29);
}

#[tokio::test]
async fn garbage_after_the_tail_is_truncated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(config(dir.path())).unwrap();
        let records = (0..5).map(|i| record("k", format!("{i}"))).collect();
        wal.publisher().publish("t", &[], records).await.unwrap();
    }
    let tail = segments(dir.path(), "t", 0).pop().unwrap();
    let good_len = std::fs::metadata(&tail).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&tail)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0xAB; 37]).unwrap();
    drop(f);

    let wal = Wal::open(config(dir.path())).unwrap();
    let report = wal.recovery_report();
    assert_eq!(report.truncations.len(), 1);
    let t = &report.truncations[0];
    assert_eq!(
        (t.kept_bytes, t.removed_bytes, t.next_offset),
        (good_len, 37, 5)
    );
    assert_eq!(wal.metrics().truncated_bytes.get(), 37);
    assert_eq!(std::fs::metadata(&tail).unwrap().len(), good_len);
    assert_eq!(wal.read("t", 0, 0, 100).unwrap().len(), 5);
}
