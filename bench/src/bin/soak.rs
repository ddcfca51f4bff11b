//! Soak: the full service for a long time at a steady load with alarm
//! subscribers attached; memory and alarm latency must stay flat.
//!
//! The service (embedded broker, write-ahead log, rules, journal, archive,
//! gRPC) takes RATE readings/s from 4 gateways (JSON batches of 80 over
//! 8,000 points), the 20 alarm probes of `latency` (an H raise or clear
//! every 5 ms, timed from publish to gRPC event) and SUBSCRIBERS more gRPC
//! subscribers of every alarm. Every SAMPLE_S seconds it reports the
//! process's resident memory (load generator included) as the lowest and
//! highest of the once-a-second readings in that interval (each archive
//! checkpoint, every 10 s, raises it by tens of MiB for a moment, so a
//! single reading says more about the moment than about the trend), the
//! probes' latency percentiles over that interval (publish to gRPC event,
//! the 200 ms lateness included), and the data directory's size.
//! At the end: every sample, then each series' least-squares slope per
//! hour and its first and last value.
//!
//! The default RATE, 200,000 readings/s, is half the most this same
//! scenario sustains on this machine with every reading inside the 200 ms
//! lateness: 400,000 readings/s in 2-minute runs (none late, p99 220 ms);
//! at 500,000/s 3 % came late (BENCHMARKS.md). `ingest`'s 1.10 M/s is the
//! most the service takes in with the rules nearly idle, not this.
//!
//! `cargo run --release -p hazardwatch-bench --bin soak [MINUTES] [RATE] [SAMPLE_S] [SUBSCRIBERS]`
//! (default 30 minutes, 200000 readings/s, 60 s, 10 subscribers; CI runs
//! a short one: 0.5 minutes at 20000 readings/s sampled every 10 s)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hazardwatch_bench::load::{self, Format, Load};
use hazardwatch_bench::probe::{
    PROBES, Sent, alarm_subscriber, histogram, lock, probe, stragglers,
};
use hazardwatch_bench::{Setup, disk_usage, header, per_sec, row, rss, start_service};
use hazardwatch_proto::pb;

const GATEWAYS: usize = 4;
const POINTS: usize = 8_000;
/// A deployment's lateness, not `latency`'s 2 ms: a soak that falls behind
/// should show it as latency, not as readings turned away late.
const LATENESS_MS: u64 = 200;

/// One sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    minute: f64,
    /// The lowest once-a-second resident memory of the interval.
    rss_low_mib: f64,
    /// The highest.
    rss_high_mib: f64,
    p50_ms: f64,
    p99_ms: f64,
    probes: u64,
    disk_mib: f64,
    readings: u64,
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

/// Lowest and highest resident memory since the last [`Watermarks::take`],
/// in bytes, read once a second by [`watch_rss`].
#[derive(Debug)]
struct Watermarks {
    low: AtomicU64,
    high: AtomicU64,
}

impl Watermarks {
    fn new() -> Watermarks {
        Watermarks {
            low: AtomicU64::new(u64::MAX),
            high: AtomicU64::new(0),
        }
    }

    fn record(&self, bytes: u64) {
        self.low.fetch_min(bytes, Ordering::Relaxed);
        self.high.fetch_max(bytes, Ordering::Relaxed);
    }

    /// The interval's (low, high) in MiB, starting the next interval.
    fn take(&self) -> (f64, f64) {
        let low = self.low.swap(u64::MAX, Ordering::Relaxed);
        let high = self.high.swap(0, Ordering::Relaxed);
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        if high == 0 {
            (0.0, 0.0)
        } else {
            (mib(low), mib(high))
        }
    }
}

/// Reads resident memory into `marks` once a second until `stop`.
fn watch_rss(marks: &Watermarks, stop: &std::sync::atomic::AtomicBool) -> anyhow::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        marks.record(rss()?);
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

/// A subscriber of every alarm that counts what it receives.
async fn counting_subscriber(grpc: String, seen: Arc<AtomicU64>) -> anyhow::Result<()> {
    let mut client = pb::alarm_service_client::AlarmServiceClient::connect(grpc).await?;
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            filter: Some(pb::AlarmFilter::default()),
            resume_after: 0,
        })
        .await?
        .into_inner();
    while stream.message().await?.is_some() {
        seen.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let minutes: f64 = args.next().map_or(Ok(30.0), |s| s.parse())?;
    let rate: f64 = args.next().map_or(Ok(200_000.0), |s| s.parse())?;
    let sample_s: u64 = args.next().map_or(Ok(60), |s| s.parse())?;
    let subscribers: usize = args.next().map_or(Ok(10), |s| s.parse())?;
    anyhow::ensure!(minutes > 0.0 && minutes.is_finite(), "MINUTES above 0");
    anyhow::ensure!(rate > 0.0 && rate.is_finite(), "RATE above 0 readings/s");
    anyhow::ensure!(sample_s > 0, "SAMPLE_S above 0");
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let command = format!(
        "cargo run --release -p hazardwatch-bench --bin soak {minutes} {rate:.0} {sample_s} {subscribers}"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("service-io")
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        println!("samples every {sample_s} s:");
        let svc = start_service(&Setup {
            points: POINTS + PROBES,
            lateness_ms: LATENESS_MS,
            epoch_ms: 10,
            no_delays: true,
            roll_secs: 10,
            ..Setup::default()
        })
        .await?;
        let grpc = format!("http://{}", svc.running.grpc_addr);
        let sent: Sent = Arc::default();
        let total = Arc::new(Mutex::new(histogram()?));
        let probe_subscriber = tokio::spawn(alarm_subscriber(grpc.clone(), sent.clone(), total.clone()));
        let events = Arc::new(AtomicU64::new(0));
        let others: Vec<_> = (0..subscribers)
            .map(|_| tokio::spawn(counting_subscriber(grpc.clone(), events.clone())))
            .collect();
        let load = Load {
            gateways: GATEWAYS,
            batch: 80,
            format: Format::Json,
            points: POINTS,
            rate: Some(rate),
            secure: None,
        };
        let background = tokio::spawn({
            let (host, port, load) = (svc.host.clone(), svc.port, load.clone());
            async move { load::publish_apart(&host, port, &load, duration).await }
        });
        let probes = tokio::spawn(load::apart("probe", 1, {
            let (host, port, sent) = (svc.host.clone(), svc.port, sent.clone());
            async move { probe(&host, port, POINTS, sent, Duration::ZERO, duration).await }
        }));

        let marks = Arc::new(Watermarks::new());
        let stop_watch = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = std::thread::spawn({
            let (marks, stop) = (marks.clone(), stop_watch.clone());
            move || watch_rss(&marks, &stop)
        });
        let start = Instant::now();
        let mut samples: Vec<Sample> = Vec::new();
        let counters = svc.running.counters.clone();
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(sample_s),
            Duration::from_secs(sample_s),
        );
        while start.elapsed() < duration {
            tick.tick().await;
            let h = std::mem::replace(&mut *lock(&total), histogram()?);
            marks.record(rss()?);
            let (rss_low_mib, rss_high_mib) = marks.take();
            let s = Sample {
                minute: start.elapsed().as_secs_f64() / 60.0,
                rss_low_mib,
                rss_high_mib,
                p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
                probes: h.len(),
                disk_mib: disk_usage(svc.data_dir()) as f64 / (1024.0 * 1024.0),
                readings: counters.readings_in.load(Ordering::Relaxed),
            };
            println!(
                "  {:6.1} min  rss {:6.1}-{:6.1} MiB  alarm p50 {:7.2} ms  p99 {:7.2} ms ({} probes)  data {:9.1} MiB  readings {}",
                s.minute, s.rss_low_mib, s.rss_high_mib, s.p50_ms, s.p99_ms, s.probes, s.disk_mib, s.readings
            );
            samples.push(s);
        }
        let published = background.await??;
        let sent_probes = probes.await??;
        let lost = stragglers(&sent).await;
        let late = counters.readings_late.load(Ordering::Relaxed);
        stop_watch.store(true, Ordering::Relaxed);
        watcher
            .join()
            .map_err(|_| anyhow::anyhow!("the memory watcher panicked"))??;
        svc.running.shutdown().await?;
        probe_subscriber.abort();
        for o in others {
            o.abort();
        }
        anyhow::ensure!(
            samples.len() >= 2,
            "too short to sample twice: raise MINUTES or lower SAMPLE_S"
        );
        header(
            &format!(
                "soak: {minutes} min at {} ({GATEWAYS} gateways, JSON batches of 80, {POINTS} points), {PROBES} alarm probes, {subscribers} more subscribers, lateness {LATENESS_MS} ms",
                per_sec(rate)
            ),
            &command,
        );
        // The first quarter of the run is the start-up (the first
        // checkpoints and compactions, the alarm journal's page cache
        // filling: 8 MiB, about five minutes of 200 events/s): slopes are
        // over the rest.
        let steady = &samples[(samples.len() / 4).max(1)..];
        let series = |f: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
            steady.iter().map(|s| (s.minute / 60.0, f(s))).collect()
        };
        let report = |name: &str, unit: &str, f: fn(&Sample) -> f64| {
            let first = f(&steady[0]);
            let last = f(&steady[steady.len() - 1]);
            let (low, high) = steady
                .iter()
                .map(f)
                .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
            row(
                &format!(
                    "{name}: first / last of the steady samples (from minute {:.0}), lowest - highest, slope per hour",
                    steady[0].minute
                ),
                &format!(
                    "{first:.2} / {last:.2} {unit}, {low:.2} - {high:.2}, {:+.2} {unit}/h",
                    slope(&series(f))
                ),
                None,
            );
        };
        report("resident memory, interval low", "MiB", |s| s.rss_low_mib);
        report("resident memory, interval high", "MiB", |s| s.rss_high_mib);
        report("alarm latency p50", "ms", |s| s.p50_ms);
        report("alarm latency p99", "ms", |s| s.p99_ms);
        report("data directory", "MiB", |s| s.disk_mib);
        row(
            "readings acknowledged / taken / late",
            &format!(
                "{} / {} / {late}",
                published.readings,
                samples.last().map_or(0, |s| s.readings)
            ),
            None,
        );
        row(
            "probes sent / never seen; events at the other subscribers",
            &format!(
                "{sent_probes} / {lost}; {}",
                events.load(Ordering::Relaxed)
            ),
            None,
        );
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn slope_is_least_squares() {
        assert_eq!(super::slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), 2.0);
        assert_eq!(super::slope(&[(0.0, 1.0)]), 0.0);
        assert_eq!(super::slope(&[(1.0, 1.0), (1.0, 2.0)]), 0.0);
    }

    #[test]
    fn watermarks_hold_an_interval_s_extremes_and_start_again() {
        let m = super::Watermarks::new();
        assert_eq!(m.take(), (0.0, 0.0));
        for mib in [5, 3, 9, 4] {
            m.record(mib << 20);
        }
        assert_eq!(m.take(), (3.0, 9.0));
        m.record(7 << 20);
        assert_eq!(m.take(), (7.0, 7.0));
    }
}
