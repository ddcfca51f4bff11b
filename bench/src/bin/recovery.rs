//! Recovery: how long the real binary takes, after a SIGKILL, to serve
//! alarms again, with a write-ahead log and an alarm journal of a
//! realistic size.
//!
//! `hazardwatch run` (the release binary beside this one) on a park of
//! 8,000 points with lateness 200 ms. Before each kill:
//! - the journal is filled with EVENTS alarm events (H raised and cleared
//!   on 80 points, 80 a message) and every one is seen on a gRPC feed;
//! - the write-ahead log is filled with WAL_READINGS more readings that the
//!   archive has not taken (checkpoints are held off), every message
//!   acknowledged by the service, i.e. in the log. The default, 2,000,000,
//!   is the default `archive.roll_rows`: the most the log holds between
//!   two checkpoints of a default configuration. Both grow round by round:
//!   round k recovers k times WAL_READINGS readings and k times EVENTS.
//!
//! Then SIGKILL, a new process on the same data directory at once, and,
//! from the kill: when `/livez` answers, when `/readyz` says ready, and when
//! a gRPC subscriber gets the first alarm raised by a reading published
//! after the kill (a probe publishes one every 20 ms, reconnecting as the
//! broker comes back). Each round adds to the journal; every round is
//! printed, then the median.
//!
//! `cargo build --release --bin hazardwatch && cargo run --release -p hazardwatch-bench --bin recovery [ROUNDS] [EVENTS] [WAL_READINGS]`
//! (default 3 rounds, 100000 events, 2000000 readings)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hazardwatch_bench::{bench_park_text, disk_usage, header, row};
use hazardwatch_proto::pb;
use hazardwatch_tests::{free_loopback_addr, now_ms};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const POINTS: usize = 8_000;
/// Points the journal fill and the probe flip (H at 18 on the bench park).
const FLIP: usize = 80;
/// The probe's point, apart from the flipped ones.
const PROBE_POINT: usize = 100;
const LATENESS_MS: u64 = 200;

struct Addrs {
    mqtt: SocketAddr,
    grpc: SocketAddr,
    ops: SocketAddr,
}

fn config(addrs: &Addrs) -> String {
    format!(
        "[mqtt]\nlisten = \"{}\"\nmax_payload_bytes = 1048576\n\
         [grpc]\nlisten = \"{}\"\n[metrics]\nlisten = \"{}\"\n\
         [engine]\nworkers = 2\nlateness_ms = {LATENESS_MS}\nepoch_ms = 10\n\
         [archive]\nroll_rows = 100000000\nroll_secs = 86400\n{}",
        addrs.mqtt,
        addrs.grpc,
        addrs.ops,
        bench_park_text(POINTS, true)
    )
}

/// The release binary beside this one.
fn binary() -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?
        .parent()
        .ok_or_else(|| anyhow::anyhow!("this binary has no directory"))?
        .join("hazardwatch");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: cargo build --release --bin hazardwatch",
        bin.display()
    );
    Ok(bin)
}

fn start(bin: &Path, config: &Path, data: &Path) -> anyhow::Result<Child> {
    Ok(Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// Time stamps from the wall clock, each after the one before (so that no
/// point has two readings with one time stamp).
#[derive(Default)]
struct Stamps(i64);

impl Stamps {
    fn next(&mut self) -> i64 {
        self.0 = now_ms().max(self.0 + 1);
        self.0
    }
}

fn message(seq: u64, readings: impl Iterator<Item = (usize, i64, f64)>) -> String {
    let body: Vec<String> = readings
        .map(|(p, ts, v)| format!("{{\"point\":\"P{p}\",\"ts\":{ts},\"value\":{v}}}"))
        .collect();
    format!(
        "{{\"gateway\":\"GW\",\"seq\":{seq},\"readings\":[{}]}}",
        body.join(",")
    )
}

/// Publishes `messages` at QoS 1 and returns once the service has
/// acknowledged every one (each is then in its write-ahead log).
async fn publish_acked(
    mqtt: SocketAddr,
    id: &str,
    messages: impl Iterator<Item = String> + Send + 'static,
) -> anyhow::Result<u64> {
    let mut o = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
    o.set_max_packet_size(4 << 20, 4 << 20).set_inflight(100);
    let (client, mut events) = AsyncClient::new(o, 1000);
    let topic = hazardwatch_ingest::topic::telemetry(
        "hw/v1",
        "E",
        "GW",
        hazardwatch_bench::load::Format::Json,
    );
    let sent = Arc::new(AtomicU64::new(0));
    let sender = tokio::spawn({
        let sent = sent.clone();
        async move {
            for m in messages {
                client.publish(&topic, QoS::AtLeastOnce, false, m).await?;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(client)
        }
    });
    let mut acked = 0u64;
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = events.poll().await? {
            acked += 1;
        }
        if sender.is_finished() && acked >= sent.load(Ordering::Relaxed) {
            break;
        }
    }
    let client = sender.await??;
    let _ = client.disconnect().await;
    Ok(acked)
}

/// Counts every alarm event on a gRPC feed and remembers when the first H
/// raise of the probe point with an event time after `after_ms` came.
async fn feed(
    grpc: SocketAddr,
    events: Arc<AtomicU64>,
    after_ms: Arc<AtomicI64>,
    first: Arc<std::sync::Mutex<Option<Instant>>>,
) {
    let probe = format!("P{PROBE_POINT}");
    loop {
        let Ok(mut client) =
            pb::alarm_service_client::AlarmServiceClient::connect(format!("http://{grpc}")).await
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let request = pb::SubscribeRequest {
            filter: Some(pb::AlarmFilter::default()),
            resume_after: 0,
        };
        let Ok(stream) = client.subscribe(request).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(e)) = stream.message().await {
            events.fetch_add(1, Ordering::Relaxed);
            if e.point == probe
                && e.transition == pb::Transition::Raised as i32
                && e.event_time_ms > after_ms.load(Ordering::Relaxed)
            {
                let mut f = first.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// Publishes the probe point high and normal in turn every 20 ms until
/// `stop`, reconnecting whenever the broker is gone.
async fn probe(mqtt: SocketAddr, stop: tokio_util::sync::CancellationToken) {
    let mut o = MqttOptions::new("recovery-probe", mqtt.ip().to_string(), mqtt.port());
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(o, 100);
    let poller = tokio::spawn(async move {
        loop {
            if events.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let topic = hazardwatch_ingest::topic::telemetry(
        "hw/v1",
        "E",
        "GW",
        hazardwatch_bench::load::Format::Json,
    );
    let mut n = 0u64;
    while !stop.is_cancelled() {
        let value = if n.is_multiple_of(2) { 18.5 } else { 10.0 };
        let body = message(1 << 40 | n, std::iter::once((PROBE_POINT, now_ms(), value)));
        let _ = client.try_publish(&topic, QoS::AtLeastOnce, false, body);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    poller.abort();
}

/// Polls `path` until it answers 200; the time it did.
async fn answered(ops: SocketAddr, path: &'static str) -> Instant {
    loop {
        let ok = tokio::task::spawn_blocking(move || {
            hazardwatch::http::ask(ops, path, Duration::from_millis(500))
        })
        .await
        .is_ok_and(|r| r.is_ok_and(|(status, _)| status == 200));
        if ok {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Round {
    wal_readings: u64,
    wal_mib: f64,
    journal_mib: f64,
    events: u64,
    live_s: f64,
    ready_s: f64,
    alarm_s: f64,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let events_per_round: u64 = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let wal_readings: u64 = args.next().map_or(Ok(2_000_000), |s| s.parse())?;
    anyhow::ensure!(rounds > 0, "ROUNDS above 0");
    let command = format!(
        "cargo build --release --bin hazardwatch && cargo run --release -p hazardwatch-bench --bin recovery {rounds} {events_per_round} {wal_readings}"
    );
    let bin = binary()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let addrs = Addrs {
        mqtt: free_loopback_addr()?,
        grpc: free_loopback_addr()?,
        ops: free_loopback_addr()?,
    };
    let config_file = dir.path().join("bench.toml");
    std::fs::write(&config_file, config(&addrs))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut child = start(&bin, &config_file, &data)?;
        answered(addrs.ops, "/readyz").await;
        let events = Arc::new(AtomicU64::new(0));
        let after_ms = Arc::new(AtomicI64::new(i64::MAX));
        let first = Arc::new(std::sync::Mutex::new(None));
        let feeder = tokio::spawn(feed(addrs.grpc, events.clone(), after_ms.clone(), first.clone()));
        let mut results = Vec::new();
        let mut seq = 0u64;
        for round in 0..rounds {
            // The journal: H raised and cleared on FLIP points, a message
            // of FLIP readings at a time, until the feed saw them all.
            let want = events.load(Ordering::Relaxed) + events_per_round;
            let flips = events_per_round.div_ceil(FLIP as u64);
            let base = seq;
            let mut clock = Stamps::default();
            let messages = (0..flips).map(move |i| {
                let value = if i % 2 == 0 { 18.5 } else { 10.0 };
                let ts = clock.next();
                message(base + i, (0..FLIP).map(move |p| (p, ts, value)))
            });
            seq += flips;
            publish_acked(addrs.mqtt, "recovery-journal", messages).await?;
            let waited = Instant::now();
            while events.load(Ordering::Relaxed) < want {
                anyhow::ensure!(
                    waited.elapsed() < Duration::from_secs(300),
                    "the feed saw {} of {want} events",
                    events.load(Ordering::Relaxed)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The log: readings the archive has not taken, all acknowledged.
            let per = 80usize;
            let n = wal_readings.div_ceil(per as u64);
            let base = seq;
            let mut clock = Stamps::default();
            let messages = (0..n).map(move |i| {
                // Points P200 on, each message the next 80, each reading
                // stamped when its message is made.
                let first = (i as usize * per) % (POINTS - 200) + 200;
                let ts = clock.next();
                message(base + i, (0..per).map(move |k| (first + k, ts, 5.0)))
            });
            seq += n;
            publish_acked(addrs.mqtt, "recovery-wal", messages).await?;
            let wal_mib = disk_usage(&data.join("wal")) as f64 / (1024.0 * 1024.0);
            let journal_mib = disk_usage(&data.join("journal")) as f64 / (1024.0 * 1024.0);
            let journaled = events.load(Ordering::Relaxed);

            // Kill, start again at once, and time the way back.
            let stop = tokio_util::sync::CancellationToken::new();
            child.kill()?;
            let killed = Instant::now();
            after_ms.store(now_ms(), Ordering::Relaxed);
            *first.lock().unwrap_or_else(|p| p.into_inner()) = None;
            child.wait()?;
            child = start(&bin, &config_file, &data)?;
            let prober = tokio::spawn(probe(addrs.mqtt, stop.clone()));
            let live = answered(addrs.ops, "/livez").await;
            let ready = answered(addrs.ops, "/readyz").await;
            let alarm = loop {
                if let Some(t) = *first.lock().unwrap_or_else(|p| p.into_inner()) {
                    break t;
                }
                anyhow::ensure!(
                    killed.elapsed() < Duration::from_secs(600),
                    "no alarm within 10 minutes of the kill"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            stop.cancel();
            prober.await?;
            let r = Round {
                wal_readings: wal_readings * (round as u64 + 1),
                wal_mib,
                journal_mib,
                events: journaled,
                live_s: (live - killed).as_secs_f64(),
                ready_s: (ready - killed).as_secs_f64(),
                alarm_s: (alarm - killed).as_secs_f64(),
            };
            println!(
                "round {}: log {:.1} MiB ({} readings), journal {:.1} MiB ({} events); from SIGKILL: live {:.2} s, ready {:.2} s, first new alarm on gRPC {:.2} s",
                round + 1,
                r.wal_mib,
                r.wal_readings,
                r.journal_mib,
                r.events,
                r.live_s,
                r.ready_s,
                r.alarm_s
            );
            results.push(r);
        }
        feeder.abort();
        let _ = child.kill();
        let _ = child.wait();
        header(
            &format!(
                "recovery: SIGKILL to serving again, {POINTS} points, each round {wal_readings} more unarchived readings in the log and {events_per_round} more journal events"
            ),
            &command,
        );
        let median = |f: fn(&Round) -> f64| {
            let mut v: Vec<f64> = results.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        row("rounds", &results.len().to_string(), None);
        row(
            "from SIGKILL to /livez, median",
            &format!("{:.2} s", median(|r| r.live_s)),
            None,
        );
        row(
            "from SIGKILL to /readyz ready, median",
            &format!("{:.2} s", median(|r| r.ready_s)),
            None,
        );
        row(
            "from SIGKILL to the first new alarm on gRPC, median",
            &format!("{:.2} s", median(|r| r.alarm_s)),
            None,
        );
        if let Some(last) = results.last() {
            row(
                "at the last kill: write-ahead log, journal",
                &format!(
                    "{:.1} MiB ({} readings), {:.1} MiB ({} events)",
                    last.wal_mib, last.wal_readings, last.journal_mib, last.events
                ),
                None,
            );
            row(
                "the last round: to /readyz ready, to the first new alarm",
                &format!("{:.2} s, {:.2} s", last.ready_s, last.alarm_s),
                None,
            );
        }
        anyhow::Ok(())
    })
}
