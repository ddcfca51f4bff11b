//! Ingest: the bare broker relay (publisher to subscriber, nothing else)
//! for each broker, then the full service (decode, write-ahead log with
//! fsync, rules, archive, alarms) at QoS 1 with JSON and protobuf batches
//! of 1, 10 and 80 readings, with the CPU split of the service's threads,
//! and the service on mosquitto with JSON batches of 80. Every figure is a
//! ratio to the embedded broker's bare relay of 80-reading batches in the
//! same run; the end gives the service's share of the relay of the broker
//! it ran on, for both brokers.
//!
//! `cargo run --release -p hazardwatch-bench --bin ingest [SECONDS] [POINTS] [GATEWAYS]`

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hazardwatch_bench::load::{self, Format, Load};
use hazardwatch_bench::{Setup, baseline, header, per_sec, row, start_service};

/// The bare relay through a broker: readings/s the subscriber received.
async fn relay(
    host: &str,
    port: u16,
    reader: &load::Reader,
    load: &Load,
    seconds: u64,
) -> anyhow::Result<f64> {
    let (received, task) = load::count_received(reader).await?;
    let t = Instant::now();
    let published = load::publish_apart(host, port, load, Duration::from_secs(seconds)).await?;
    // Wait for the subscriber to get what was acknowledged.
    let until = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < published.messages && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = received.load(Ordering::Relaxed) * load.batch as u64;
    task.abort();
    Ok(got as f64 / t.elapsed().as_secs_f64())
}

/// The full service on the embedded broker (or on the external one at
/// port `broker`): readings/s ingested (logged, judged, archived) from the
/// first publish until every acknowledged reading was taken in.
async fn service_rate(
    load: &Load,
    seconds: u64,
    points: usize,
    secure: bool,
    broker: Option<u16>,
) -> anyhow::Result<(f64, Vec<String>)> {
    // Keeps the data directory until the end of the scope.
    let svc = start_service(&Setup {
        points,
        secure_gateways: secure.then_some(load.gateways),
        broker,
        ..Setup::default()
    })
    .await?;
    let load = &Load {
        secure: svc.secure.clone(),
        ..load.clone()
    };
    let cpu = load::cpu_by_thread();
    let t = Instant::now();
    let published =
        load::publish_apart(&svc.host, svc.port, load, Duration::from_secs(seconds)).await?;
    let stats = svc.running.counters.clone();
    let until = Instant::now() + Duration::from_secs(60);
    while stats.readings_in.load(Ordering::Relaxed) < published.readings && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let taken = stats.readings_in.load(Ordering::Relaxed);
    let rate = taken as f64 / t.elapsed().as_secs_f64();
    let split = load::cpu_split(&cpu, &load::cpu_by_thread());
    svc.running.shutdown().await?;
    anyhow::ensure!(
        taken >= published.readings,
        "the service took {taken} of {} acknowledged readings within 60 s",
        published.readings
    );
    Ok((rate, split))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let points: usize = args.next().map_or(Ok(8_000), |s| s.parse())?;
    let gateways: usize = args.next().map_or(Ok(4), |s| s.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("service-io")
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        header(
            &format!("ingest: {gateways} gateways, {points} points, {seconds} s per figure, QoS 1"),
            &format!("cargo run --release -p hazardwatch-bench --bin ingest {seconds} {points} {gateways}"),
        );
        let load = |format, batch| Load {
            gateways,
            batch,
            format,
            points,
            rate: None,
            secure: None,
        };
        let (broker, reader) = load::embedded_broker()?;
        let (host, port) = (broker.addr.ip().to_string(), broker.addr.port());
        let base = relay(&host, port, &reader, &load(Format::Json, 80), seconds).await?;
        drop(broker);
        baseline("bare relay, embedded rmqtt, JSON 80-reading batches", &per_sec(base));
        // The service on mosquitto, against mosquitto's own relay in this
        // run: the target is a ratio to the relay of the broker the
        // service runs on, so both brokers are reported.
        let on_mosquitto = match hazardwatch_tests::Mosquitto::start()? {
            Some(m) => {
                let reader = load::Reader::anonymous("127.0.0.1", m.port);
                let r = relay("127.0.0.1", m.port, &reader, &load(Format::Json, 80), seconds).await?;
                row("bare relay, mosquitto, JSON 80-reading batches", &per_sec(r), Some(r / base));
                let (s, _) =
                    service_rate(&load(Format::Json, 80), seconds, points, false, Some(m.port)).await?;
                row("full service on mosquitto, json batches of 80", &per_sec(s), Some(s / base));
                Some((s, r))
            }
            None => {
                println!("| bare relay, mosquitto | not installed | - |");
                None
            }
        };
        let mut splits = Vec::new();
        let mut json80 = 0.0;
        for format in [Format::Json, Format::Protobuf] {
            for batch in [1, 10, 80] {
                let (rate, split) = service_rate(&load(format, batch), seconds, points, false, None).await?;
                let name = format!("full service, {} batches of {batch}", format.as_str());
                row(&name, &per_sec(rate), Some(rate / base));
                splits.push((name, split));
                if format == Format::Json && batch == 80 {
                    json80 = rate;
                }
            }
        }
        // The trusted edge's cost: the same JSON load, once plain and
        // anonymous, once over TLS with every gateway registered and
        // authenticated (argon2id at connect, the ACL on every publish).
        let (plain, _) = service_rate(&load(Format::Json, 80), seconds, points, false, None).await?;
        row("full service, json batches of 80, plain (again)", &per_sec(plain), Some(plain / base));
        let (secure, split) = service_rate(&load(Format::Json, 80), seconds, points, true, None).await?;
        let name = "full service, json batches of 80, TLS + registered gateways";
        row(name, &per_sec(secure), Some(secure / base));
        splits.push((name.to_owned(), split));
        println!(
            "\nThe service's share of the bare relay of the broker it runs on (JSON batches of 80; target: at least 0.40): embedded rmqtt {:.2} (the two plain runs' mean){}.",
            (plain + json80) / 2.0 / base,
            on_mosquitto.map_or(String::new(), |(s, r)| format!(", mosquitto {:.2}", s / r))
        );
        println!(
            "\nTLS and authentication keep {:.2} of the plain service's rate in this run (target: at least 0.8).",
            secure / plain
        );
        println!("\nCPU split of the service and broker threads while they took the load (the load generator runs on its own threads, not shown):\n");
        for (name, split) in splits {
            println!("- {name}: {}", split.join(", "));
        }
        anyhow::Ok(())
    })
}
