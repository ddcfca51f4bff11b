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

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hazardwatch_bench::load::{self, Format, Load};
use hazardwatch_bench::{Setup, baseline, header, per_sec, row, start_service};
use hazardwatch_proto::pb;
use hdrhistogram::Histogram;
use rumqttc::QoS;

/// Probe points, after the load's.
const PROBES: usize = 20;
/// One probe every this often.
const PROBE_EVERY: Duration = Duration::from_millis(5);
/// Load before the probes start (connections, caches, first checkpoint).
const WARMUP: Duration = Duration::from_secs(2);
/// Background load: gateways and points.
const GATEWAYS: usize = 4;
const POINTS: usize = 8_000;

/// Probes sent and not yet seen, by (point, time stamp).
type Sent = Arc<Mutex<HashMap<(String, i64), Instant>>>;

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

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 60 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Publishes the probes for `duration`, recording each in `sent` before it
/// goes out; returns how many.
async fn probe(host: &str, port: u16, sent: Sent, duration: Duration) -> anyhow::Result<u64> {
    let (client, mut eventloop) = load::options("bench-probe", host, port);
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = hazardwatch_ingest::topic::telemetry("hw/v1", "E", "GWprobe", Format::Json);
    let start = tokio::time::Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        tokio::time::sleep_until(start + PROBE_EVERY * n as u32).await;
        let k = n as usize % PROBES;
        let value = if (n as usize / PROBES).is_multiple_of(2) {
            18.5
        } else {
            10.0
        };
        let point = format!("P{}", POINTS + k);
        let ts = chrono::Utc::now().timestamp_millis();
        let body = format!(
            "{{\"gateway\":\"GWprobe\",\"seq\":{n},\"readings\":[{{\"point\":\"{point}\",\"ts\":{ts},\"value\":{value}}}]}}"
        );
        lock(&sent).insert((point, ts), Instant::now());
        client
            .publish(&topic, QoS::AtLeastOnce, false, body)
            .await?;
        n += 1;
    }
    // Let the last acknowledgements come in before the connection goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = client.disconnect().await;
    poller.abort();
    Ok(n)
}

/// Waits up to 5 s for the probes still outstanding; returns how many were
/// never seen.
async fn stragglers(sent: &Sent) -> u64 {
    // A timeout is the answer here, not an error: the count says how many.
    let _ = hazardwatch_tests::wait_until(Duration::from_secs(5), || lock(sent).is_empty()).await;
    lock(sent).len() as u64
}

/// Records a probe seen at `now` in the histograms.
fn seen(
    sent: &Sent,
    total: &Mutex<Histogram<u64>>,
    key: &(String, i64),
    beyond: Option<(&Mutex<Histogram<u64>>, f64)>,
) {
    let now = Instant::now();
    let Some(t0) = lock(sent).remove(key) else {
        return;
    };
    let us = (now - t0).as_micros().max(1) as u64;
    lock(total).saturating_record(us);
    if let Some((h, judgeable_ms)) = beyond {
        let us = ((wall_ms() - judgeable_ms) * 1000.0).max(1.0) as u64;
        lock(h).saturating_record(us);
    }
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

/// (point, time stamp) of a probe's JSON payload.
fn probe_key(payload: &[u8]) -> Option<(String, i64)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let r = v.get("readings")?.get(0)?;
    Some((r.get("point")?.as_str()?.to_owned(), r.get("ts")?.as_i64()?))
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
        probe(&host2, port, sent, probing).await
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
    let subscriber = load::apart("subscriber", 1, {
        let (sent, total, beyond) = (sent.clone(), total.clone(), beyond.clone());
        async move {
            let mut client = pb::alarm_service_client::AlarmServiceClient::connect(grpc).await?;
            let filter = pb::AlarmFilter {
                include_suppressed: true,
                include_shelved: true,
                ..Default::default()
            };
            let mut stream = client
                .subscribe(pb::SubscribeRequest {
                    filter: Some(filter),
                    resume_after: 0,
                })
                .await?
                .into_inner();
            let high = pb::AlarmKind::High as i32;
            let changes = [
                pb::Transition::Raised as i32,
                pb::Transition::Cleared as i32,
            ];
            while let Some(e) = stream.message().await? {
                if e.kind == high && changes.contains(&e.transition) {
                    let judgeable = (e.event_time_ms + 1 + lateness_ms as i64) as f64;
                    let key = (e.point, e.event_time_ms);
                    seen(&sent, &total, &key, Some((&beyond, judgeable)));
                }
            }
            anyhow::Ok(())
        }
    });
    let subscriber = tokio::spawn(subscriber);
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

// The probe key of a relay message is its reading's (point, ts); check the
// parser on a payload as `probe` writes it.
#[cfg(test)]
mod tests {
    #[test]
    fn probe_key_reads_the_probe_payload() {
        let body = br#"{"gateway":"GWprobe","seq":3,"readings":[{"point":"P8001","ts":1700000000123,"value":18.5}]}"#;
        assert_eq!(
            super::probe_key(body),
            Some(("P8001".to_owned(), 1_700_000_000_123))
        );
        assert_eq!(super::probe_key(b"{}"), None);
    }
}
