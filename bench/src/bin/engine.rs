//! The rule engine alone, offline in event time: readings/s through the
//! timely dataflow with every default rule (limits, sensor fault, stale),
//! against a single-threaded sort of the same readings by (point, time) in
//! the same run (the least work any order-independent engine must do).
//!
//! `cargo run --release -p hazardwatch-bench --bin engine [POINTS] [SECONDS_OF_DATA]`

use std::time::Instant;

use hazardwatch_bench::{baseline, bench_park, header, park_seconds, per_sec, row};
use hazardwatch_proto::Reading;
use hazardwatch_rules::{Collector, Engine, EngineConfig};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let points: usize = args.next().map_or(Ok(10_000), |s| s.parse())?;
    let seconds: i64 = args.next().map_or(Ok(200), |s| s.parse())?;
    let model = bench_park(points)?;
    let ts0 = 1_767_225_600_000i64;
    let batches = park_seconds(points, seconds, ts0);
    let total = points as f64 * seconds as f64;

    let mut all: Vec<Reading> = batches.iter().flatten().copied().collect();
    let t = Instant::now();
    all.sort_unstable_by_key(Reading::order_key);
    let sort_rate = total / t.elapsed().as_secs_f64();

    header(
        &format!("rule engine: {points} points x {seconds} s = {total} readings, default rules"),
        &format!("cargo run --release -p hazardwatch-bench --bin engine {points} {seconds}"),
    );
    baseline("sort by (point, ts), one thread", &per_sec(sort_rate));
    for workers in [1, 2] {
        let events = Collector::new();
        let config = EngineConfig {
            workers,
            epoch_ms: 1000,
            lateness_ms: 2000,
            ..EngineConfig::default()
        };
        let mut engine = Engine::start(&model, &config, events.sink())?;
        let mut late = Vec::new();
        let t = Instant::now();
        for b in &batches {
            engine.input().send(b, &mut late);
            let wm = b[0].ts_ms - 2000;
            engine.input().advance_to(wm);
        }
        let end = ts0 + seconds * 1000;
        engine.input().advance_to(end);
        engine.finish()?;
        let rate = total / t.elapsed().as_secs_f64();
        row(
            &format!("engine, {workers} worker(s)"),
            &per_sec(rate),
            Some(rate / sort_rate),
        );
        anyhow::ensure!(
            events.take().is_empty(),
            "a quiet random walk inside the limits raised alarms"
        );
    }
    Ok(())
}
