//! Records held per topic in a write-ahead log directory (stop the process using it first):
//! `cargo run --release -p flywheel-wal --example wal_stats -- DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: wal_stats DIR")?;
    let wal = flywheel_wal::Wal::open(flywheel_wal::WalConfig::new(dir))?;
    for (topic, partitions) in wal.topics() {
        let mut records = 0;
        for p in 0..partitions {
            let (start, end) = wal.bounds(&topic, p)?;
            records += end - start;
        }
        println!("{topic} records={records}");
    }
    wal.close();
    Ok(())
}
