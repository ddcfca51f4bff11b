//! Federation lag: how long after a park's own subscribers get an alarm
//! event its regional instance's subscribers get it.
//!
//! Three park services (100 level points each, no on/off delays, lateness
//! 200 ms) and a province following them, in one process on loopback. A
//! gateway per park flips FLIPS points across their H limit every 100 ms
//! (an H raise or clear per point and flip: FLIPS × 10 alarm events a
//! second per park). A gRPC subscriber at each park and one at the
//! province record when each event arrives; the lag of an event is its
//! arrival at the province minus its arrival at its park (the park's own
//! latency, lateness included, is the same for both and drops out). The
//! figures: the lag's percentiles, and the events merged per second.
//!
//! `cargo run --release -p hazardwatch-bench --bin federation [SECONDS] [FLIPS]`
//! (default 30 seconds, 20 points per flip)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hazardwatch::region::{self, RegionConfig};
use hazardwatch_bench::probe::{histogram, lock};
use hazardwatch_bench::{Setup, header, per_sec, row, start_service};
use hazardwatch_proto::clock::WallClock;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_client::AlarmServiceClient;
use hazardwatch_rules::Source;
use hazardwatch_tests::{Gateway, now_ms};

const PARKS: [&str; 3] = ["P1", "P2", "P3"];
const POINTS: usize = 100;

/// When each (park, park sequence number) arrived, at the park and at the
/// province.
type Arrivals = Arc<Mutex<HashMap<(String, u64), Instant>>>;

/// Follows every event at `addr` (from now on) into `arrivals`, keyed by
/// the park and the park's number: `park` for a park's own feed, the
/// event's `park` and `upstream_seq` for the province's.
async fn follow(
    addr: std::net::SocketAddr,
    park: Option<String>,
    arrivals: Arrivals,
) -> anyhow::Result<()> {
    let mut client = AlarmServiceClient::connect(format!("http://{addr}")).await?;
    let mut feed = client
        .subscribe(pb::SubscribeRequest {
            filter: Some(pb::AlarmFilter {
                include_suppressed: true,
                include_shelved: true,
                ..Default::default()
            }),
            resume_after: 0,
        })
        .await?
        .into_inner();
    while let Some(e) = feed.message().await? {
        let at = Instant::now();
        let key = match &park {
            Some(p) => (p.clone(), e.seq),
            None => (e.park.clone(), e.upstream_seq),
        };
        lock(&arrivals).insert(key, at);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hazardwatch::service::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(30), |a| a.parse())?;
    let flips: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    anyhow::ensure!((1..=POINTS).contains(&flips), "FLIPS is 1 to {POINTS}");

    let mut parks = Vec::new();
    for id in PARKS {
        parks.push(
            start_service(&Setup {
                points: POINTS,
                lateness_ms: 200,
                epoch_ms: 50,
                no_delays: true,
                park: id.into(),
                ..Setup::default()
            })
            .await?,
        );
    }
    let mut text = String::from(
        "[region]\nid = \"PROVINCE\"\nlevel = \"province\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nenabled = false\n",
    );
    for (id, p) in PARKS.iter().zip(&parks) {
        text.push_str(&format!(
            "[[upstream]]\npark = \"{id}\"\nurl = \"http://{}\"\n",
            p.running.grpc_addr
        ));
    }
    let mut config = RegionConfig::from_source(
        &Source {
            path: "province.toml".into(),
            text,
        },
        |_| None,
    )?;
    let region_data = tempfile::tempdir()?;
    config.data_dir = region_data.path().to_owned();
    let province = region::start(config, Arc::new(WallClock)).await?;
    let until = Instant::now() + Duration::from_secs(20);
    while !province
        .upstreams
        .iter()
        .all(|(_, s)| s.connected.load(std::sync::atomic::Ordering::Acquire))
    {
        anyhow::ensure!(
            Instant::now() < until,
            "the province did not reach its parks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let at_parks: Arrivals = Arc::default();
    let at_province: Arrivals = Arc::default();
    for (id, p) in PARKS.iter().zip(&parks) {
        tokio::spawn(follow(
            p.running.grpc_addr,
            Some((*id).to_owned()),
            at_parks.clone(),
        ));
    }
    tokio::spawn(follow(province.grpc_addr, None, at_province.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let mut loads = Vec::new();
    for (i, p) in parks.iter().enumerate() {
        let mut gw = Gateway::connect(&p.host, p.port, &format!("flipper-{i}")).await?;
        loads.push(tokio::spawn(async move {
            let mut high = true;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while started.elapsed() < Duration::from_secs(seconds) {
                tick.tick().await;
                let ts = now_ms();
                let value = if high { 18.5 } else { 10.0 };
                let batch: Vec<_> = (0..flips)
                    .map(
                        |p| serde_json::json!({"point": format!("P{p}"), "ts": ts, "value": value}),
                    )
                    .collect();
                gw.publish_json("E", serde_json::Value::Array(batch))
                    .await?;
                high = !high;
            }
            anyhow::Ok(())
        }));
    }
    for l in loads {
        l.await??;
    }
    // The last events through both.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let elapsed = started.elapsed().as_secs_f64();

    let mut lag = histogram()?;
    let (parks_seen, province_seen) = (lock(&at_parks).clone(), lock(&at_province).clone());
    let mut missing = 0u64;
    for (key, park_at) in &parks_seen {
        match province_seen.get(key) {
            Some(at) => {
                let us = at.saturating_duration_since(*park_at).as_micros();
                lag.record(u64::try_from(us).unwrap_or(u64::MAX).max(1))?;
            }
            None => missing += 1,
        }
    }
    header(
        "Federation lag: park subscriber to province subscriber",
        &format!("cargo run --release -p hazardwatch-bench --bin federation {seconds} {flips}"),
    );
    let ms = |q: f64| format!("{:.2} ms", lag.value_at_quantile(q) as f64 / 1000.0);
    row("events at the parks", &parks_seen.len().to_string(), None);
    row("of them at the province", &lag.len().to_string(), None);
    row("missing at the province", &missing.to_string(), None);
    row(
        "merged at the province",
        &per_sec(lag.len() as f64 / elapsed),
        None,
    );
    row("lag p50", &ms(0.5), None);
    row("lag p99", &ms(0.99), None);
    row("lag p99.9", &ms(0.999), None);
    row(
        "lag max",
        &format!("{:.2} ms", lag.max() as f64 / 1000.0),
        None,
    );
    province.shutdown().await?;
    for p in parks {
        p.running.shutdown().await?;
    }
    Ok(())
}
