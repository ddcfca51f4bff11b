//! Replay: readings/s from a multi-minute archive of a simulated park
//! (files sealed every minute, as the live service seals them) through the
//! full default rule set, against reading the same row groups with the
//! parquet crate alone in the same run (the least work any replay must do).
//!
//! `cargo run --release -p hazardwatch-bench --bin replay [POINTS] [SECONDS_OF_DATA] [EPOCH_MS] [phased|aligned]`
//!
//! The engine is configured with epochs of `EPOCH_MS` (10, the service's
//! default, unless given). Each point is read once a second, `phased`
//! (the default): at its own moment in the second, as gateways poll their
//! instruments; or `aligned`: every point at the same millisecond, as
//! this bench's runs before 2026-12-07 (third session) had it, with
//! epochs of 1,000 ms.

use std::time::Instant;

use hazardwatch_bench::{baseline, bench_park, header, park_seconds, per_sec, row};
use hazardwatch_proto::{PointIdx, Reading};
use hazardwatch_rules::EngineConfig;
use hazardwatch_storage::reader::{self, Range};
use hazardwatch_storage::{ArchiveConfig, ArchiveWriter};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let points: usize = args.next().map_or(Ok(10_000), |s| s.parse())?;
    let seconds: i64 = args.next().map_or(Ok(600), |s| s.parse())?;
    let epoch_ms: u64 = args.next().map_or(Ok(10), |s| s.parse())?;
    let phased = match args.next().as_deref() {
        None | Some("phased") => true,
        Some("aligned") => false,
        Some(other) => anyhow::bail!("`{other}`: phased or aligned"),
    };
    let shape = if phased { "phased" } else { "aligned" };
    let model = bench_park(points)?;
    let ts0 = 1_767_225_600_000i64;
    let dir = tempfile::tempdir()?;
    let config = ArchiveConfig {
        roll_rows: 100_000_000,
        ..ArchiveConfig::default()
    };
    let (mut writer, _) = ArchiveWriter::open(dir.path(), model.catalog.clone(), config)?;
    for (minute, chunk) in park_seconds(points, seconds, ts0).chunks(60).enumerate() {
        for b in chunk {
            let b: Vec<Reading> = b
                .iter()
                .map(|r| Reading {
                    ts_ms: r.ts_ms + if phased { phase_ms(r.point) } else { 0 },
                    ..*r
                })
                .collect();
            writer.append(&b, ts0, &[]);
        }
        writer.checkpoint(minute as u64 + 1, &[])?;
    }
    let total = points as u64 * seconds as u64;
    header(
        &format!(
            "replay: {points} points x {seconds} s = {total} readings ({shape}), default rules, \
             epochs of {epoch_ms} ms configured"
        ),
        &format!(
            "cargo run --release -p hazardwatch-bench --bin replay {points} {seconds} {epoch_ms} {shape}"
        ),
    );

    let range = Range::default();
    let t = Instant::now();
    let plan = reader::plan(dir.path(), &range)?;
    let mut read = 0u64;
    for part in &plan.parts {
        reader::read_part(part, &range, reader::all_points, |_| read += 1)?;
    }
    anyhow::ensure!(read == total, "read {read} of {total}");
    let read_rate = read as f64 / t.elapsed().as_secs_f64();
    baseline(
        "read and decode the row groups (parquet crate)",
        &per_sec(read_rate),
    );

    for workers in [1, 2] {
        let engine = EngineConfig {
            workers,
            epoch_ms,
            lateness_ms: 0,
            ..EngineConfig::default()
        };
        let r = hazardwatch::replay::replay(dir.path(), &range, &model, None, &engine, false)?;
        anyhow::ensure!(r.readings == total, "replayed {} of {total}", r.readings);
        row(
            &format!("replay through the rules, {workers} worker(s)"),
            &per_sec(r.rate()),
            Some(r.rate() / read_rate),
        );
    }
    Ok(())
}

/// Where in its second a point is read, ms: spread over the second.
fn phase_ms(point: PointIdx) -> i64 {
    i64::from(point) * 389 % 1000
}
