//! [`WalSource`] and [`WalBus`] behind `flywheel-bus`'s consumer seam: every partition
//! assigned once (a topic created later too), manual and automatic commits, a new source of the
//! group starting at the committed offsets, cancel-safety of `recv`.

use std::sync::Arc;
use std::time::Duration;

use flywheel_bus::{
    AssignmentChange, Bus, CommitPolicy, Delivery, Publisher, Record, Source, SourceSpec,
};
use flywheel_wal::{Wal, WalBus, WalConfig};
use tokio_util::sync::CancellationToken;

async fn publish(bus: &WalBus, topic: &str, keys: std::ops::Range<u32>) {
    let p = bus
        .publisher(vec![topic.to_string()], CancellationToken::new())
        .unwrap();
    let records = keys
        .map(|k| Record {
            key: format!("key-{k}").into_bytes(),
            payload: k.to_be_bytes().to_vec(),
        })
        .collect();
    p.publish(topic, &[("h", b"v".to_vec())], records)
        .await
        .unwrap();
}

fn open(dir: &std::path::Path) -> WalBus {
    let config = WalConfig {
        default_partitions: 2,
        ..WalConfig::new(dir)
    };
    WalBus::new(Arc::new(Wal::open(config).unwrap()))
}

/// Receives `n` messages as `(topic, partition, offset, payload)`.
async fn recv_n<S: Source>(source: &mut S, n: usize) -> Vec<(String, i32, i64, Vec<u8>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(10), source.recv())
            .await
            .expect("a message in time")
            .unwrap();
        assert_eq!(m.header("h"), Some(&b"v"[..]));
        assert!(m.key().starts_with(b"key-"));
        out.push((
            m.topic().to_string(),
            m.partition(),
            m.offset(),
            m.payload().to_vec(),
        ));
    }
    out
}

fn assigned(changes: Vec<AssignmentChange>) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for c in changes {
        match c {
            AssignmentChange::Assigned(ps) => out.extend(ps),
            AssignmentChange::Revoked(ps) => panic!("the wal never revokes: {ps:?}"),
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn partitions_are_assigned_once_and_commits_are_where_the_group_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    publish(&bus, "a", 0..10).await;
    let spec = SourceSpec::new("g", vec!["a".to_string(), "b".to_string()]);
    let mut source = bus.source(spec.clone()).unwrap();
    assert_eq!(
        assigned(source.take_changes()),
        [("a".to_string(), 0), ("a".to_string(), 1)]
    );
    assert_eq!(source.committed("a", 0).await.unwrap(), None);
    let got = recv_n(&mut source, 10).await;
    assert!(source.take_changes().is_empty());
    // "b" appears later: assigned when first seen.
    publish(&bus, "b", 10..12).await;
    recv_n(&mut source, 2).await;
    assert_eq!(
        assigned(source.take_changes()),
        [("b".to_string(), 0), ("b".to_string(), 1)]
    );

    // Commit "a" past its first 3 messages per partition; nothing of "b".
    let mut want = Vec::new();
    for p in 0..2 {
        let count = got.iter().filter(|m| m.1 == p).count() as i64;
        let next = count.min(3);
        source.commit("a", p, next).await.unwrap();
        assert_eq!(source.committed("a", p).await.unwrap(), Some(next));
        want.extend(got.iter().filter(|m| m.1 == p && m.2 >= next).cloned());
    }
    drop(source);

    // The next source of the group starts at the committed offsets (and at the start of "b").
    let mut again = bus.source(spec).unwrap();
    let mut replayed = recv_n(&mut again, want.len() + 2).await;
    assert_eq!(replayed.iter().filter(|m| m.0 == "b").count(), 2);
    replayed.retain(|m| m.0 == "a");
    replayed.sort();
    want.sort();
    assert_eq!(replayed, want);
}

#[tokio::test]
async fn auto_commit_and_commit_received_store_the_position_after_each_message() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    publish(&bus, "t", 0..20).await;
    let spec = SourceSpec {
        commit: CommitPolicy::Auto {
            interval: Duration::from_millis(1),
        },
        ..SourceSpec::new("g", vec!["t".to_string()])
    };
    let mut source = bus.source(spec.clone()).unwrap();
    let first = recv_n(&mut source, 5).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The commit happens before the next message is handed out.
    let sixth = recv_n(&mut source, 1).await;
    let committed: i64 = [0, 1]
        .into_iter()
        .map(|p| bus.wal().committed("g", "t", p).unwrap_or(0))
        .sum();
    assert_eq!(committed, 5, "{first:?} {sixth:?}");
    source.commit_received().await.unwrap();
    let committed: i64 = [0, 1]
        .into_iter()
        .map(|p| bus.wal().committed("g", "t", p).unwrap_or(0))
        .sum();
    assert_eq!(committed, 6);
    drop(source);
    let mut again = bus.source(spec).unwrap();
    assert_eq!(recv_n(&mut again, 14).await.len(), 14);
}

#[tokio::test]
async fn a_cancelled_recv_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bus = open(dir.path());
    let mut source = bus
        .source(SourceSpec::new("g", vec!["t".to_string()]))
        .unwrap();
    // Nothing there yet: the receive times out (is dropped) while waiting.
    for _ in 0..3 {
        assert!(
            tokio::time::timeout(Duration::from_millis(20), source.recv())
                .await
                .is_err()
        );
    }
    publish(&bus, "t", 0..4).await;
    let mut got = recv_n(&mut source, 4).await;
    got.sort_by_key(|m| m.3.clone());
    let payloads: Vec<Vec<u8>> = got.into_iter().map(|m| m.3).collect();
    let want: Vec<Vec<u8>> = (0u32..4).map(|k| k.to_be_bytes().to_vec()).collect();
    assert_eq!(payloads, want);
}
