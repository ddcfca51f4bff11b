//! Alarm latency: at fixed background loads, the time from a gateway's
//! publish of a reading that crosses a limit (or returns from it) to the
//! alarm event arriving at a gRPC `Subscribe` client, with hdrhistogram.
//!
//! For each load, three runs on the embedded broker:
//! - **relay** (the baseline): the same background load and probes through
//!   the bare broker to a plain MQTT subscriber of every gateway topic;
//! - **service, learned**: the full service (decode, write-ahead log with
//!   fsync, rules, alarm journal with fsync, gRPC) in its default
//!   configuration (lateness 2 s, live event time learned from the
//!   gateways), level points with no on- or off-delay;
//! - **service, fixed**: the same with `watermark = "fixed"` (event time is
//!   the clock less the lateness: every reading waits 2 s), as before the
//!   event time was learned.
//!
//! The probes are 20 points of their own gateway, one JSON reading every
//! 5 ms in turn, alternately 18.5 (above H = 18) and 10.0 (normal): each
//! probe is an H raise or clear. Before them, the same gateway sends normal
//! readings for `LEARN` (the service trusts a gateway's figures after 10 s).
//!
//! `cargo run --release -p hazardwatch-bench --bin latency [SECONDS] [EPOCH_MS] [LOADS...]`
//! (default 10 s of probes per run, the default epoch, loads 10000 100000 500000)

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hazardwatch_bench::load::{self, Format, Load};
use hazardwatch_bench::probe::{
    PROBES, Sent, alarm_subscriber, histogram, lock, probe, probe_key, seen, stragglers,
};
use hazardwatch_bench::{Setup, baseline, header, per_sec, row, start_service};
use hazardwatch_rules::{EngineConfig, WatermarkPolicy};
use hdrhistogram::Histogram;

/// Load before the probes start (connections, caches, first checkpoint).
const WARMUP: Duration = Duration::from_secs(2);
/// Normal readings from the probe gateway before its probes, for the
/// service to learn how its readings arrive (`WARMUP_MS` and
/// `WARMUP_MESSAGES` of `pipeline::watermark`, with a margin).
const LEARN: Duration = Duration::from_secs(12);
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
    /// Readings later than the watermark (judged by the backfill).
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
                seen(&sent, &total, &key);
            }
        }
    })
    .await?;
    let n = run_probes(host, port, load, Duration::ZERO, seconds, sent.clone()).await?;
    let lost = stragglers(&sent).await;
    subscriber.abort();
    anyhow::ensure!(lost == 0, "the relay lost {lost} of {n} probes");
    let total = lock(&total).clone();
    Ok(Probed { sent: n, total })
}

/// The background load and, after the warm-up and `learn`, the probes:
/// each on a runtime of its own.
async fn run_probes(
    host: &str,
    port: u16,
    load: &Load,
    learn: Duration,
    seconds: u64,
    sent: Sent,
) -> anyhow::Result<u64> {
    let probing = Duration::from_secs(seconds);
    let all = WARMUP + learn + probing + WARMUP;
    let background = load::publish_apart(host, port, load, all);
    let host2 = host.to_owned();
    let probes = load::apart("probe", 1, async move {
        tokio::time::sleep(WARMUP).await;
        probe(&host2, port, POINTS, sent, learn, probing).await
    });
    let (published, n) = tokio::join!(background, probes);
    let published = published?;
    let offered = load.rate.unwrap_or(0.0) * all.as_secs_f64();
    anyhow::ensure!(
        published.readings as f64 >= offered * 0.9,
        "the background load fell behind: {} of {offered:.0} readings acknowledged",
        published.readings
    );
    n
}

/// The full service in its default configuration (but `epoch_ms` and the
/// watermark policy): probes to alarm events at a gRPC subscriber.
async fn service(
    load: &Load,
    seconds: u64,
    epoch_ms: u64,
    watermark: WatermarkPolicy,
) -> anyhow::Result<Service> {
    let defaults = EngineConfig::default();
    let svc = start_service(&Setup {
        points: POINTS + PROBES,
        lateness_ms: defaults.lateness_ms,
        epoch_ms,
        watermark,
        no_delays: true,
        ..Setup::default()
    })
    .await?;
    let sent: Sent = Arc::default();
    let total = Arc::new(Mutex::new(histogram()?));
    let grpc = format!("http://{}", svc.running.grpc_addr);
    let subscriber = tokio::spawn(alarm_subscriber(grpc, sent.clone(), total.clone()));
    // The subscriber connects during the warm-up.
    let n = run_probes(&svc.host, svc.port, load, LEARN, seconds, sent.clone()).await?;
    let lost = stragglers(&sent).await;
    let stats = svc.running.counters.clone();
    let late = stats.readings_late.load(Ordering::Relaxed);
    let taken = stats.readings_in.load(Ordering::Relaxed);
    svc.running.shutdown().await?;
    subscriber.abort();
    let total = lock(&total).clone();
    anyhow::ensure!(
        lost == 0 || late > 0,
        "{lost} of {n} probes raised no alarm event and no reading was late"
    );
    Ok(Service {
        probed: Probed {
            sent: n - lost,
            total,
        },
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
    let epoch_ms: u64 = args
        .next()
        .map_or(Ok(EngineConfig::default().epoch_ms), |s| s.parse())?;
    anyhow::ensure!(epoch_ms >= 1, "EPOCH_MS at least 1");
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
        "cargo run --release -p hazardwatch-bench --bin latency {seconds} {epoch_ms} {}",
        loads_arg.join(" ")
    );
    let lateness_ms = EngineConfig::default().lateness_ms;
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
                    "alarm latency at {} readings/s ({GATEWAYS} gateways, JSON batches of 80), {seconds} s of probes, lateness {lateness_ms} ms, epochs of {epoch_ms} ms",
                    per_sec(rate).trim_end_matches("/s")
                ),
                &command,
            );
            let (broker, reader) = load::embedded_broker()?;
            let (host, port) = (broker.addr.ip().to_string(), broker.addr.port());
            let bare = relay(&host, port, &reader, &load, seconds).await?;
            drop(broker);
            let learned = service(&load, seconds, epoch_ms, WatermarkPolicy::Learned).await?;
            let fixed = service(&load, seconds, epoch_ms, WatermarkPolicy::Fixed).await?;
            for (name, q) in QUANTILES {
                let r = bare.total.value_at_quantile(q);
                let figure = format!("relay, publish to MQTT subscriber, {name}");
                if q == 0.5 {
                    baseline(&figure, &ms(r));
                } else {
                    row(&figure, &ms(r), None);
                }
            }
            for (run, label) in [(&learned, "learned"), (&fixed, "fixed")] {
                for (name, q) in QUANTILES {
                    let (r, s) = (
                        bare.total.value_at_quantile(q),
                        run.probed.total.value_at_quantile(q),
                    );
                    row(
                        &format!("service ({label} event time), publish to gRPC alarm event, {name}"),
                        &ms(s),
                        Some(s as f64 / r.max(1) as f64),
                    );
                }
            }
            row(
                "probes: relay / learned / fixed alarm events measured",
                &format!("{} / {} / {}", bare.sent, learned.probed.sent, fixed.probed.sent),
                None,
            );
            for (run, label) in [(&learned, "learned"), (&fixed, "fixed")] {
                row(
                    &format!("service ({label}): readings taken, of which later than event time (backfilled)"),
                    &format!("{}, {}", run.taken, run.late),
                    None,
                );
            }
            println!(
                "\n(ratios: the service's percentile over the relay's same percentile)\n"
            );
        }
        anyhow::Ok(())
    })
}
