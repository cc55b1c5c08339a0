//! Publish throughput and latency of the wal: `concurrency` tasks each publish one record of
//! `record_bytes` at a time for `seconds`, each call waiting for its fsync.
//!
//! ```text
//! cargo run --release -p flywheel-wal --example wal_bench -- <seconds> <concurrency> <record_bytes> [dir]
//! ```
//!
//! The wal lives in a fresh temporary directory under `dir` (default: the system temp dir),
//! removed at the end. Prints acknowledged records/s, MB/s, fsyncs/s, records per group commit and
//! p50/p99/max publish latency.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flywheel_bus::{PublishError, Publisher, Record};
use flywheel_wal::{Wal, WalConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        anyhow::bail!("usage: wal_bench <seconds> <concurrency> <record_bytes> [dir]");
    }
    let seconds: u64 = args[0].parse()?;
    let concurrency: usize = args[1].parse()?;
    let record_bytes: usize = args[2].parse()?;
    let parent = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&parent)?;
    let wal = Wal::open(WalConfig {
        default_partitions: 3,
        ..WalConfig::new(dir.path())
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let publisher = wal.publisher();
    let headers = [
        ("flywheel.project", b"bench".to_vec()),
        ("flywheel.encoding", b"otlp_proto".to_vec()),
    ];
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let (mut latencies, queue_full) = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let publisher = publisher.clone();
            let headers = headers.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut queue_full = 0u64;
                let mut n = 0u64;
                while Instant::now() < end {
                    let record = Record {
                        key: format!("trace-{t}-{}", n % 64).into_bytes(),
                        payload: vec![(n % 251) as u8; record_bytes],
                    };
                    n += 1;
                    let sent = Instant::now();
                    match publisher.publish("spans", &headers, vec![record]).await {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(PublishError::QueueFull) => queue_full += 1,
                        Err(e) => return Err(e),
                    }
                }
                Ok((latencies, queue_full))
            }));
        }
        let mut all = Vec::new();
        let mut full = 0;
        for t in tasks {
            let (l, f) = t.await??;
            all.extend(l);
            full += f;
        }
        Ok::<_, anyhow::Error>((all, full))
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let m = wal.metrics();
    let records = latencies.len() as f64;
    println!(
        "seconds={seconds} concurrency={concurrency} record_bytes={record_bytes} dir={}",
        parent.display()
    );
    println!(
        "acked_records_per_s={:.0} payload_MB_per_s={:.2} wal_MB_per_s={:.2} fsyncs_per_s={:.0} records_per_group_commit={:.1} queue_full={queue_full}",
        records / elapsed,
        records * record_bytes as f64 / elapsed / 1e6,
        m.bytes_appended.get() as f64 / elapsed / 1e6,
        m.fsyncs.get() as f64 / elapsed,
        m.records_appended.get() as f64 / m.group_commits.get().max(1) as f64,
    );
    println!(
        "publish_latency_ms p50={:.3} p99={:.3} max={:.3}",
        pct(0.50),
        pct(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    drop(wal);
    Ok(())
}
