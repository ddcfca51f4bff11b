//! Scale of state: resident memory per monitored point. Each size runs in a
//! child process of its own: the full service starts with N points (every
//! point with H, HH and L limits, fault and stale rules; a distinct set of
//! limits per [`POINTS_PER_LIMIT_SET`] points, or as many as
//! `--points-per-limit-set N` says: 1 gives every point its own) on an external
//! mosquitto, every point reports about once over MQTT, the archive seals,
//! the rules judge, and the child reports its resident set (which also
//! holds what the allocator kept from parsing the configuration). Per point
//! is the difference to a 1,000-point service, divided by the difference in
//! points.
//!
//! `cargo run --release -p hazardwatch-bench --bin memory
//! [--points-per-limit-set N] [SIZES...]` (default 1000; 10000 100000
//! 1000000)

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hazardwatch_bench::load::{self, Format, Load};
use hazardwatch_bench::{Setup, baseline, header, row, rss, start_service};

/// Points per distinct set of limits, by default: a park's points share a
/// few (every tank of a type, every gas detector of a gas), and a
/// province's million points a thousand.
const POINTS_PER_LIMIT_SET: usize = 1_000;

/// The child: one service of `points` points, a set of limits per
/// `per_set` of them; prints its resident bytes.
fn child(points: usize, per_set: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // An external broker, so that the broker's buffers of published
        // messages are not counted as the service's state.
        let broker = hazardwatch_tests::Mosquitto::start()?.ok_or_else(|| {
            anyhow::anyhow!("this benchmark needs mosquitto (apt-get install mosquitto)")
        })?;
        // Keeps the data directory until the end of the scope. The default
        // lateness: the rules hold a reading only that long.
        let lateness = Duration::from_secs(2);
        let svc = start_service(&Setup {
            points,
            broker: Some(broker.port),
            lateness_ms: lateness.as_millis() as u64,
            roll_secs: 1,
            limit_sets: points.div_ceil(per_set),
            ..Setup::default()
        })
        .await?;
        // Each gateway reports its points in turn, at most 200,000 readings/s
        // in all: every point about once, so what is measured is the state
        // per point, not a backlog of readings.
        let rate = points.min(200_000) as f64;
        let load = Load {
            gateways: 4,
            batch: 80,
            format: Format::Protobuf,
            points,
            rate: Some(rate),
            secure: None,
        };
        let stats = svc.running.counters.clone();
        let until = Instant::now() + Duration::from_secs(300);
        let once = Duration::from_secs_f64(points as f64 / rate);
        while stats.readings_in.load(Ordering::Relaxed) < points as u64 && Instant::now() < until {
            load::publish_apart(&svc.host, svc.port, &load, once).await?;
        }
        // Sealed and judged: nothing per reading is left buffered.
        let until = Instant::now() + Duration::from_secs(60);
        while stats.archive_rows.load(Ordering::Relaxed) < stats.readings_in.load(Ordering::Relaxed)
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(lateness + Duration::from_secs(1)).await;
        println!("rss {}", rss()?);
        svc.running.shutdown().await?;
        anyhow::Ok(())
    })
}

fn measure(points: usize, per_set: usize) -> anyhow::Result<u64> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["--child", &points.to_string(), &per_set.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "child for {points} points failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("rss ").and_then(|v| v.trim().parse().ok()))
        .ok_or_else(|| anyhow::anyhow!("child for {points} points printed no rss: {text}"))
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let number = |a: Option<&String>, what: &str| -> anyhow::Result<usize> {
        let a = a.ok_or_else(|| anyhow::anyhow!("{what}: a number is missing"))?;
        a.parse()
            .map_err(|e| anyhow::anyhow!("{what}: `{a}` is not a number: {e}"))
    };
    if args.first().map(String::as_str) == Some("--child") {
        let n = number(args.get(1), "--child")?;
        let per_set = number(args.get(2), "--child N")?;
        return child(n, per_set.max(1));
    }
    let mut per_set = POINTS_PER_LIMIT_SET;
    if args.first().map(String::as_str) == Some("--points-per-limit-set") {
        per_set = number(args.get(1), "--points-per-limit-set")?.max(1);
        args.drain(..2);
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        args.iter()
            .map(|a| number(Some(a), "a size"))
            .collect::<anyhow::Result<_>>()?
    };
    let base_points = 1_000;
    if let Some(n) = sizes.iter().find(|&&n| n <= base_points) {
        anyhow::bail!("size {n}: each size must be above the {base_points}-point baseline");
    }
    let flag = if per_set == POINTS_PER_LIMIT_SET {
        String::new()
    } else {
        format!("--points-per-limit-set {per_set} ")
    };
    header(
        "scale of state: resident memory per monitored point (full service)",
        &format!(
            "cargo run --release -p hazardwatch-bench --bin memory {flag}{}",
            sizes
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    let base = measure(base_points, per_set)?;
    baseline(
        &format!("service with {base_points} points, resident"),
        &format!("{:.1} MiB", base as f64 / (1 << 20) as f64),
    );
    for n in sizes {
        let r = measure(n, per_set)?;
        let per = (r.saturating_sub(base)) as f64 / (n - base_points) as f64;
        row(
            &format!(
                "{n} points ({} sets of limits): resident, and per point above the baseline",
                n.div_ceil(per_set)
            ),
            &format!(
                "{:.1} MiB, {per:.0} bytes/point",
                r as f64 / (1 << 20) as f64
            ),
            None,
        );
    }
    Ok(())
}
