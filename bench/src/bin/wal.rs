//! The write-ahead log: readings per second made durable (fsync) in group
//! commits of the sizes ingest makes, against the disk's own write + fsync
//! rate measured in the same run; and reading the log back at start.
//!
//! `cargo run --release -p hazardwatch-bench --bin wal [POINTS] [SECONDS]`

use std::io::Write;
use std::time::{Duration, Instant};

use hazardwatch_bench::{
    baseline, header, park_seconds, per_sec, row, synthetic_catalog, time_for,
};
use hazardwatch_proto::Reading;
use hazardwatch_storage::wal::{Entry, Wal, WalConfig};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let points: usize = args.next().map_or(Ok(8_000), |s| s.parse())?;
    let seconds: i64 = args.next().map_or(Ok(100), |s| s.parse())?;
    let (catalog, _) = synthetic_catalog(10, points / 10);
    let seconds_of_data = park_seconds(points, seconds, 1_767_225_600_000);
    // Gateways send 80 readings per message.
    let messages: Vec<&[Reading]> = seconds_of_data.iter().flat_map(|s| s.chunks(80)).collect();
    let total: usize = messages.iter().map(|m| m.len()).sum();
    let dir = tempfile::tempdir()?;
    header(
        &format!("write-ahead log, {total} readings in 80-reading messages"),
        &format!("cargo run --release -p hazardwatch-bench --bin wal {points} {seconds}"),
    );

    // The disk's own limit: 64 KiB appended and synced.
    let mut probe = std::fs::File::create(dir.path().join("probe"))?;
    let block = vec![0u8; 64 << 10];
    let (n, took) = time_for(Duration::from_secs(2), || {
        probe.write_all(&block).expect("writing the probe");
        probe.sync_data().expect("syncing the probe");
    });
    let bytes_per_s = (n * block.len() as u64) as f64 / took.as_secs_f64();
    baseline(
        "write 64 KiB + fsync, readings/s at 21 bytes each",
        &per_sec(bytes_per_s / 21.0),
    );

    for group in [1usize, 10, 100] {
        let wal_dir = dir.path().join(format!("wal-{group}"));
        let (mut wal, _) = Wal::open(&wal_dir, WalConfig::default())?;
        let t = Instant::now();
        for chunk in messages.chunks(group) {
            let entries: Vec<Entry<'_>> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| Entry {
                    message: i as u128 + 1,
                    received_ms: 0,
                    readings: m,
                })
                .collect();
            wal.append(&entries, &catalog)?;
        }
        let rate = total as f64 / t.elapsed().as_secs_f64();
        row(
            &format!("append + fsync, {group} message(s) per commit"),
            &per_sec(rate),
            Some(rate / (bytes_per_s / 21.0)),
        );
        drop(wal);
        if group == 100 {
            let t = Instant::now();
            let (_, back) = Wal::open(&wal_dir, WalConfig::default())?;
            let read: usize = back.iter().map(|b| b.readings.len()).sum();
            anyhow::ensure!(read == total, "read back {read} of {total}");
            row(
                "read back at start",
                &per_sec(read as f64 / t.elapsed().as_secs_f64()),
                None,
            );
        }
    }
    Ok(())
}
