//! Alarm latency: at fixed background loads, the time from a gateway's
//! publish of a reading that crosses a limit (or returns from it) to the
//! alarm event arriving at a gRPC `Subscribe` client, with hdrhistogram.
//!
//! For each load, two runs on the embedded broker:
//! - **relay** (the baseline): the same background load and probes through
//!   the bare broker to a plain MQTT subscriber of every gateway topic;
//! - **service**: the full service (decode, write-ahead log with fsync,
//!   rules, alarm journal with fsync, gRPC), level points with no on- or
//!   off-delay, 1 ms epochs and `LATENESS_MS`.
//!
//! The probes are 20 points of their own gateway, one JSON reading every
//! 5 ms in turn, alternately 18.5 (above H = 18) and 10.0 (normal): each
//! probe is an H raise or clear. A reading can be judged only once event
//! time has passed it, `LATENESS_MS` + 1 ms after its time stamp at the
//! earliest, so the service's figures are also split into that wait and
//! the rest ("beyond the wait": queues, rules, journal, gRPC).
//!
//! `cargo run --release -p hazardwatch-bench --bin latency [SECONDS] [LATENESS_MS] [LOADS...]`
//! (default 10 s of probes per run, 2 ms, loads 10000 100000 500000)

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hazardwatch_bench::load::{self, Format, Load};
use hazardwatch_bench::probe::{
    PROBES, Sent, alarm_subscriber, histogram, lock, probe, probe_key, seen, stragglers,
};
use hazardwatch_bench::{Setup, baseline, header, per_sec, row, start_service};
use hdrhistogram::Histogram;

/// Load before the probes start (connections, caches, first checkpoint).
const WARMUP: Duration = Duration::from_secs(2);
/// Background load: gateways and points.
const GATEWAYS: usize = 4;
const POINTS: usize = 8_000;

/// What one run measured.
struct Probed {
    /// Probes seen.
    sent: u64,
    /// Publish to arrival, µs.
    total: Histogram<u64>,
}

/// What the service run measured besides [`Probed`].
struct Service {
    probed: Probed,
    /// Arrival after the earliest time the reading could be judged, µs.
    beyond: Histogram<u64>,
    /// Readings turned away as late.
    late: u64,
    /// Readings taken in.
    taken: u64,
}

/// The bare relay: the probes through the broker to a subscriber of every
/// gateway topic, while the background load runs.
async fn relay(
    host: &str,
    port: u16,
    reader: &load::Reader,
    load: &Load,
    seconds: u64,
) -> anyhow::Result<Probed> {
    let sent: Sent = Arc::default();
    let total = Arc::new(Mutex::new(histogram()?));
    let subscriber = load::relay_subscriber(reader, {
        let (sent, total) = (sent.clone(), total.clone());
        move |p: &rumqttc::Publish| {
            if !p.topic.contains("/GWprobe/") {
                return;
            }
            if let Some(key) = probe_key(&p.payload) {
                seen(&sent, &total, &key, None);
            }
        }
    })
    .await?;
    let n = run_probes(host, port, load, seconds, sent.clone()).await?;
    let lost = stragglers(&sent).await;
    subscriber.abort();
    anyhow::ensure!(lost == 0, "the relay lost {lost} of {n} probes");
    let total = lock(&total).clone();
    Ok(Probed { sent: n, total })
}

/// The background load and, after the warm-up, the probes: each on a
/// runtime of its own.
async fn run_probes(
    host: &str,
    port: u16,
    load: &Load,
    seconds: u64,
    sent: Sent,
) -> anyhow::Result<u64> {
    let probing = Duration::from_secs(seconds);
    let background = load::publish_apart(host, port, load, WARMUP + probing + WARMUP);
    let host2 = host.to_owned();
    let probes = load::apart("probe", 1, async move {
        tokio::time::sleep(WARMUP).await;
        probe(&host2, port, POINTS, sent, probing).await
    });
    let (published, n) = tokio::join!(background, probes);
    let published = published?;
    let offered = load.rate.unwrap_or(0.0) * (WARMUP + probing + WARMUP).as_secs_f64();
    anyhow::ensure!(
        published.readings as f64 >= offered * 0.9,
        "the background load fell behind: {} of {offered:.0} readings acknowledged",
        published.readings
    );
    n
}

/// The full service: probes to alarm events at a gRPC subscriber.
async fn service(load: &Load, seconds: u64, lateness_ms: u64) -> anyhow::Result<Service> {
    let svc = start_service(&Setup {
        points: POINTS + PROBES,
        lateness_ms,
        epoch_ms: 1,
        no_delays: true,
        ..Setup::default()
    })
    .await?;
    let sent: Sent = Arc::default();
    let total = Arc::new(Mutex::new(histogram()?));
    let beyond = Arc::new(Mutex::new(histogram()?));
    let grpc = format!("http://{}", svc.running.grpc_addr);
    let subscriber = tokio::spawn(alarm_subscriber(
        grpc,
        sent.clone(),
        total.clone(),
        Some((beyond.clone(), lateness_ms)),
    ));
    // The subscriber connects during the warm-up.
    let n = run_probes(&svc.host, svc.port, load, seconds, sent.clone()).await?;
    let lost = stragglers(&sent).await;
    let stats = svc.running.counters.clone();
    let late = stats.readings_late.load(Ordering::Relaxed);
    let taken = stats.readings_in.load(Ordering::Relaxed);
    svc.running.shutdown().await?;
    subscriber.abort();
    let (total, beyond) = (lock(&total).clone(), lock(&beyond).clone());
    anyhow::ensure!(
        lost == 0 || late > 0,
        "{lost} of {n} probes raised no alarm event and no reading was late"
    );
    Ok(Service {
        probed: Probed {
            sent: n - lost,
            total,
        },
        beyond,
        late,
        taken,
    })
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(10), |s| s.parse())?;
    let lateness_ms: u64 = args.next().map_or(Ok(2), |s| s.parse())?;
    let mut loads: Vec<f64> = args.map(|s| s.parse()).collect::<Result<_, _>>()?;
    if loads.is_empty() {
        loads = vec![10_000.0, 100_000.0, 500_000.0];
    }
    if let Some(bad) = loads.iter().find(|&&l| !(l.is_finite() && l > 0.0)) {
        anyhow::bail!("load {bad}: loads are readings/s above 0");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("service-io")
        .enable_all()
        .build()?;
    let loads_arg: Vec<String> = loads.iter().map(|l| format!("{l:.0}")).collect();
    let command = format!(
        "cargo run --release -p hazardwatch-bench --bin latency {seconds} {lateness_ms} {}",
        loads_arg.join(" ")
    );
    runtime.block_on(async move {
        for rate in loads {
            let load = Load {
                gateways: GATEWAYS,
                batch: 80,
                format: Format::Json,
                points: POINTS,
                rate: Some(rate),
                secure: None,
            };
            header(
                &format!(
                    "alarm latency at {} readings/s ({GATEWAYS} gateways, JSON batches of 80), {seconds} s of probes, lateness {lateness_ms} ms, epochs of 1 ms",
                    per_sec(rate).trim_end_matches("/s")
                ),
                &command,
            );
            let (broker, reader) = load::embedded_broker()?;
            let (host, port) = (broker.addr.ip().to_string(), broker.addr.port());
            let bare = relay(&host, port, &reader, &load, seconds).await?;
            drop(broker);
            let Service {
                probed: full,
                beyond,
                late,
                taken,
            } = service(&load, seconds, lateness_ms).await?;
            for (name, q) in QUANTILES {
                let r = bare.total.value_at_quantile(q);
                let figure = format!("relay, publish to MQTT subscriber, {name}");
                if q == 0.5 {
                    baseline(&figure, &ms(r));
                } else {
                    row(&figure, &ms(r), None);
                }
            }
            for (name, q) in QUANTILES {
                let (r, s) = (bare.total.value_at_quantile(q), full.total.value_at_quantile(q));
                row(
                    &format!("service, publish to gRPC alarm event, {name}"),
                    &ms(s),
                    Some(s as f64 / r.max(1) as f64),
                );
            }
            for (name, q) in QUANTILES {
                row(
                    &format!("service, beyond the lateness wait, {name}"),
                    &ms(beyond.value_at_quantile(q)),
                    None,
                );
            }
            row(
                "probes: relay / service alarm events measured",
                &format!("{} / {}", bare.sent, full.sent),
                None,
            );
            row(
                "service: readings taken, of which late (not judged)",
                &format!("{taken}, {late}"),
                None,
            );
            println!(
                "\n(ratios: the service's percentile over the relay's same percentile)\n"
            );
        }
        anyhow::Ok(())
    })
}
