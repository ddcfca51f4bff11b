//! Shared pieces of the benchmarks: synthetic parks and readings, and the
//! report format (a Markdown row per figure plus the command to reproduce,
//! and the same as JSON in `target/bench-results/{binary}.json`).
//!
//! ```
//! assert_eq!(hazardwatch_bench::number("1,234,567/s"), Some(1_234_567.0));
//! assert_eq!(hazardwatch_bench::number("49.7 MiB"), Some(49.7));
//! assert_eq!(hazardwatch_bench::number("baseline"), None);
//! ```
//!
//! Scenarios are binaries in `src/bin/`, one per scenario
//! (`cargo run --release -p hazardwatch-bench --bin NAME`): `ingest`
//! (the bare broker relay and the full service), `latency` (publish to gRPC
//! alarm event), `replay`, `archive`, `memory` (resident bytes per point),
//! `decode`, `engine`, `wal`, `journal`, and `quick` (all of them at a
//! reduced size, with the targets). [`load`] is the shared load generator.
//!
//! ```
//! let (catalog, points) = hazardwatch_bench::synthetic_catalog(2, 3);
//! assert_eq!(catalog.len(), 6);
//! assert_eq!(points[0].1, "E00");
//! ```

use std::time::{Duration, Instant};

use hazardwatch::sim::Rng;
use hazardwatch_proto::{Catalog, PointIdx, PointKind, PointMeta, Quality, Reading};

pub mod load;
pub mod probe;

/// A catalog of `enterprises` x `per_enterprise` level points, with (name,
/// enterprise) of each point in index order.
pub fn synthetic_catalog(
    enterprises: usize,
    per_enterprise: usize,
) -> (Catalog, Vec<(String, String)>) {
    let mut catalog = Catalog::default();
    let mut names = Vec::new();
    let mut metas = Vec::new();
    for e in 0..enterprises {
        let ent = format!("E{e:02}");
        for p in 0..per_enterprise {
            let unit = format!("T{e:02}{:03}", p / 4);
            let id = format!("{unit}.P{}", p % 4);
            metas.push(PointMeta::new(
                &id,
                &ent,
                &format!("{ent}-HS1"),
                &unit,
                PointKind::Level,
                "m",
            ));
            names.push((id, ent.clone()));
        }
    }
    catalog.extend(metas);
    (catalog, names)
}

/// A quantised random walk, as an instrument with 0.01 resolution reports.
pub struct Walk {
    rng: Rng,
    value: f64,
}

impl Walk {
    /// A walk starting at `value`.
    pub fn new(seed: u64, value: f64) -> Walk {
        Walk {
            rng: Rng::new(seed),
            value,
        }
    }

    /// The next value.
    pub fn next_value(&mut self) -> f64 {
        let step = (self.rng.uniform() - 0.5) * 0.04;
        self.value = ((self.value + step) * 100.0).round() / 100.0;
        self.value
    }
}

/// Readings of `points` points at 1 Hz for `seconds`, from `ts0_ms`: one
/// batch per second holding every point, as gateways deliver them. Each
/// point is its own quantised random walk from 10.0 (seeded by its index).
pub fn park_seconds(points: usize, seconds: i64, ts0_ms: i64) -> Vec<Vec<Reading>> {
    let mut walks: Vec<Walk> = (0..points).map(|i| Walk::new(i as u64 + 1, 10.0)).collect();
    (0..seconds)
        .map(|s| {
            walks
                .iter_mut()
                .enumerate()
                .map(|(p, w)| Reading {
                    point: p as PointIdx,
                    ts_ms: ts0_ms + s * 1000,
                    value: w.next_value(),
                    quality: Quality::Good,
                })
                .collect()
        })
        .collect()
}

/// Runs `f` repeatedly for at least `min`, returning (iterations, elapsed).
pub fn time_for(min: Duration, mut f: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < min {
        f();
        n += 1;
    }
    (n, start.elapsed())
}

/// The figures printed so far, also kept as JSON: a list of tables, each
/// `{title, command, rows: [{figure, value, number, ratio}]}` (`value` as
/// printed, `number` its leading number, `ratio` `"baseline"`, a number, or
/// null), rewritten after every row to
/// `target/bench-results/{binary}.json` (or `$HAZARDWATCH_BENCH_RESULTS/`).
static RESULTS: std::sync::Mutex<Vec<serde_json::Value>> = std::sync::Mutex::new(Vec::new());

fn record(row: Option<serde_json::Value>, table: Option<serde_json::Value>) {
    let mut results = RESULTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = table {
        results.push(t);
    }
    if let (Some(r), Some(serde_json::Value::Object(t))) = (row, results.last_mut())
        && let Some(serde_json::Value::Array(rows)) = t.get_mut("rows")
    {
        rows.push(r);
    }
    let dir = std::env::var_os("HAZARDWATCH_BENCH_RESULTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results")
        });
    let name = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "bench".into());
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let text = serde_json::to_string_pretty(&*results).unwrap_or_default();
        std::fs::write(dir.join(format!("{name}.json")), text)
    });
    if let Err(e) = written {
        eprintln!("results not written to {}: {e}", dir.display());
    }
}

/// The number a formatted figure starts with (`"1,234,567/s"` is
/// 1234567, `"0.421"` is 0.421), for the JSON results.
pub fn number(value: &str) -> Option<f64> {
    let digits: String = value
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.' || *c == '-')
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

/// Prints the header of a figures table.
pub fn header(title: &str, command: &str) {
    println!("## {title}\n");
    println!("reproduce: `{command}`\n");
    println!("| figure | value | ratio to baseline |");
    println!("| --- | --- | --- |");
    record(
        None,
        Some(serde_json::json!({"title": title, "command": command, "rows": []})),
    );
}

/// Prints the baseline figure that later rows are compared with.
pub fn baseline(name: &str, value: &str) {
    println!("| {name} | {value} | baseline |");
    record(
        Some(
            serde_json::json!({"figure": name, "value": value, "number": number(value), "ratio": "baseline"}),
        ),
        None,
    );
}

/// Prints one figure; `ratio` is against the baseline measured in the same
/// run, `None` where there is nothing to compare with.
pub fn row(name: &str, value: &str, ratio: Option<f64>) {
    let r = ratio.map_or("-".into(), |r| format!("{r:.2}"));
    println!("| {name} | {value} | {r} |");
    record(
        Some(
            serde_json::json!({"figure": name, "value": value, "number": number(value), "ratio": ratio}),
        ),
        None,
    );
}

/// Formats a rate with thousands separators.
pub fn per_sec(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out + "/s"
}

/// The site-model text of [`bench_park`]; with `no_delays`, level points
/// have no on- or off-delay (an alarm is raised by the reading that
/// crosses its limit and cleared by the one that returns).
pub fn bench_park_text(points: usize, no_delays: bool) -> String {
    bench_park_named("B", points, no_delays, 1)
}

/// [`bench_park_text`] for park id `park`, its points' HH limits in
/// `limit_sets` variants (in turn, from 19 m up to 19.9 m), so that they
/// share that many distinct parameter sets.
pub fn bench_park_named(park: &str, points: usize, no_delays: bool, limit_sets: usize) -> String {
    let mut text = format!("[park]\nid = \"{park}\"\n");
    if no_delays {
        text.push_str("[defaults.level]\non_delay_s = 0\noff_delay_s = 0\n");
    }
    text.push_str(
        "[[enterprise]]\nid = \"E\"\n[[enterprise.hazard_source]]\nid = \"HS\"\ngrade = 2\n[[enterprise.hazard_source.unit]]\nid = \"U\"\n",
    );
    for p in 0..points {
        let sets = limit_sets.max(1);
        let hh = 19.0 + 0.9 * (p % sets) as f64 / sets as f64;
        text.push_str(&format!(
            "[[enterprise.hazard_source.unit.point]]\nid = \"P{p}\"\nkind = \"level\"\neng_unit = \"m\"\nrange = [0.0, 20.0]\nl = 2.0\nh = 18.0\nhh = {hh:?}\n"
        ));
    }
    text
}

/// A site model of `points` level points with H, HH and L limits (and the
/// default fault and stale rules), named `P0`, `P1`, ..., all of
/// enterprise `E`.
pub fn bench_park(points: usize) -> anyhow::Result<hazardwatch_rules::SiteModel> {
    let src = hazardwatch_rules::Source {
        path: "bench-park.toml".into(),
        text: bench_park_text(points, false),
    };
    Ok(hazardwatch_rules::SiteModel::parse(&src)?)
}

/// Resident set size of this process, bytes (`/proc/self/statm`).
pub fn rss() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("statm: no resident field"))?
        .parse()?;
    Ok(pages * 4096)
}

/// How a benchmark's service is set up: [`bench_park`] of `points` points,
/// 2 workers, metrics off.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Points in the park.
    pub points: usize,
    /// The broker at `127.0.0.1:{broker}`, or the embedded one.
    pub broker: Option<u16>,
    /// `[engine] lateness_ms`.
    pub lateness_ms: u64,
    /// `[engine] epoch_ms`.
    pub epoch_ms: u64,
    /// `[engine] watermark`.
    pub watermark: hazardwatch_rules::WatermarkPolicy,
    /// `[archive] roll_secs`.
    pub roll_secs: u64,
    /// No on- and off-delays (see [`bench_park_text`]).
    pub no_delays: bool,
    /// Distinct HH limits among the points (see [`bench_park_named`]).
    pub limit_sets: usize,
    /// The embedded broker on TLS, with this many gateways `GW{g}` of `E`
    /// registered (each with its share of the points, as
    /// [`load::Load`] splits them) and one password for all of them: see
    /// [`BenchService::secure`].
    pub secure_gateways: Option<usize>,
    /// The park's id.
    pub park: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            points: 8_000,
            broker: None,
            lateness_ms: 60_000,
            epoch_ms: hazardwatch_rules::EngineConfig::default().epoch_ms,
            watermark: hazardwatch_rules::WatermarkPolicy::default(),
            roll_secs: 10,
            no_delays: false,
            limit_sets: 1,
            secure_gateways: None,
            park: "B".into(),
        }
    }
}

/// The full service on [`bench_park`] in a temporary data directory.
pub struct BenchService {
    /// The service.
    pub running: hazardwatch::service::Running,
    /// Its broker's host.
    pub host: String,
    /// Its broker's port.
    pub port: u16,
    /// With [`Setup::secure_gateways`]: what the load's gateways need.
    pub secure: Option<load::Secure>,
    /// The certificates the broker was started with.
    _pki: Option<hazardwatch_tests::Pki>,
    _data: tempfile::TempDir,
}

impl BenchService {
    /// The service's data directory (log, archive, journal).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }
}

/// Bytes of the files under `dir`, recursively (files that vanish while
/// it looks, as compaction deletes them, count nothing).
pub fn disk_usage(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The password of every gateway of a secured benchmark.
const BENCH_PASSWORD: &str = "bench-gateway-password";

/// The broker's certificate and key for 127.0.0.1 from `pki`, and the
/// `[mqtt] tls` line and gateway registry of `gateways` gateways over
/// `points` points for [`Setup::secure_gateways`].
fn secure_setup(
    pki: &hazardwatch_tests::Pki,
    points: usize,
    gateways: usize,
) -> anyhow::Result<(String, String, load::Secure)> {
    let ca_file = pki.ca_file()?;
    let (cert_file, key_file) =
        pki.issue("broker", "broker", &["127.0.0.1"], &pki.ca, (2020, 2100))?;
    let tls_line = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}",
        cert_file.display(),
        key_file.display()
    );
    let hash =
        hazardwatch_ingest::auth::hash_password(BENCH_PASSWORD).map_err(anyhow::Error::msg)?;
    let per = (points / gateways).max(1);
    let mut registry = String::new();
    for g in 0..gateways {
        let names: Vec<String> = (g * per..((g + 1) * per).min(points))
            .map(|p| format!("\"P{p}\""))
            .collect();
        registry.push_str(&format!(
            "[[enterprise.gateway]]\nid = \"GW{g}\"\npoints = [{}]\ninterval_s = 1\npassword_hash = \"{hash}\"\n",
            names.join(", ")
        ));
    }
    // Points beyond an even split go to the last gateway.
    let rest: Vec<String> = (gateways * per..points)
        .map(|p| format!("\"P{p}\""))
        .collect();
    if !rest.is_empty() {
        registry.push_str(&format!(
            "[[enterprise.gateway]]\nid = \"GW-REST\"\npoints = [{}]\ninterval_s = 1\npassword_hash = \"{hash}\"\n",
            rest.join(", ")
        ));
    }
    let secure = load::Secure {
        tls: hazardwatch_ingest::tls::client_config(&ca_file, None)?,
        password: BENCH_PASSWORD.into(),
    };
    Ok((tls_line, registry, secure))
}

/// Starts the service as `setup` says.
pub async fn start_service(setup: &Setup) -> anyhow::Result<BenchService> {
    let data = tempfile::tempdir()?;
    let pki = match setup.secure_gateways {
        Some(_) => Some(hazardwatch_tests::Pki::new()?),
        None => None,
    };
    let (tls_line, registry, secure) = match (setup.secure_gateways, &pki) {
        (Some(n), Some(pki)) => {
            let (t, r, s) = secure_setup(pki, setup.points, n)?;
            (t, r, Some(s))
        }
        _ => (String::new(), String::new(), None),
    };
    let mqtt = match setup.broker {
        Some(port) => format!("broker = \"127.0.0.1:{port}\""),
        None => format!("listen = \"127.0.0.1:0\"\n{tls_line}"),
    };
    let text = format!(
        "[mqtt]\n{mqtt}\nmax_payload_bytes = 1048576\n\
         [grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nenabled = false\n\
         [engine]\nworkers = 2\nlateness_ms = {}\nepoch_ms = {}\nwatermark = \"{}\"\n\
         [archive]\nroll_secs = {}\n{}",
        setup.lateness_ms,
        setup.epoch_ms,
        match setup.watermark {
            hazardwatch_rules::WatermarkPolicy::Learned => "learned",
            hazardwatch_rules::WatermarkPolicy::Fixed => "fixed",
        },
        setup.roll_secs,
        bench_park_named(&setup.park, setup.points, setup.no_delays, setup.limit_sets) + &registry
    );
    let mut config = hazardwatch::config::Config::from_source(&hazardwatch_rules::Source {
        path: "bench.toml".into(),
        text,
    })?;
    config.settings.data_dir = data.path().to_owned();
    let running = hazardwatch::service::start(config).await?;
    let (host, port) = running
        .mqtt_addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("broker address {}", running.mqtt_addr))?;
    let (host, port) = (host.to_owned(), port.parse()?);
    Ok(BenchService {
        running,
        host,
        port,
        secure,
        _pki: pki,
        _data: data,
    })
}
