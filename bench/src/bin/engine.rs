//! The rule engine alone, offline in event time: readings/s through the
//! timely dataflow with every default rule (limits, sensor fault, stale),
//! against a single-threaded sort of the same readings by (point, time) in
//! the same run (the least work any order-independent engine must do); then
//! the same work on a cluster of two processes (issue 18).
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
    // A cluster of two processes with one worker each (here two engines
    // on threads of this process, linked over loopback TCP as two hosts
    // would be), each fed half of every batch, as gateways split between
    // processes would: every reading of the other process's points crosses
    // the link, serialized.
    let links: Vec<String> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()))
        .map(|a| a.map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    // Timed from when both processes are linked (timely polls for its
    // peers once a second while they start).
    let linked = std::sync::Arc::new(std::sync::Barrier::new(3));
    let runs: Vec<_> = (0..2)
        .map(|process| {
            let (model, links, linked) = (model.clone(), links.clone(), linked.clone());
            let share: Vec<Vec<Reading>> = batches
                .iter()
                .map(|b| b.iter().skip(process).step_by(2).copied().collect())
                .collect();
            std::thread::spawn(move || -> anyhow::Result<usize> {
                let events = Collector::new();
                let config = EngineConfig {
                    workers: 1,
                    epoch_ms: 1000,
                    lateness_ms: 2000,
                    cluster: links,
                    process,
                    ..EngineConfig::default()
                };
                let engine = Engine::start(&model, &config, events.sink());
                linked.wait();
                let mut engine = engine?;
                let mut late = Vec::new();
                for b in &share {
                    engine.input().send(b, &mut late);
                    let wm = b[0].ts_ms - 2000;
                    engine.input().advance_to(wm);
                }
                engine.input().advance_to(ts0 + seconds * 1000);
                engine.finish()?;
                Ok(events.take().len())
            })
        })
        .collect();
    linked.wait();
    let t = Instant::now();
    for r in runs {
        let n = r
            .join()
            .map_err(|_| anyhow::anyhow!("a process panicked"))??;
        anyhow::ensure!(
            n == 0,
            "a quiet random walk inside the limits raised alarms"
        );
    }
    let rate = total / t.elapsed().as_secs_f64();
    row(
        "cluster: 2 processes x 1 worker, loopback TCP",
        &per_sec(rate),
        Some(rate / sort_rate),
    );
    Ok(())
}
