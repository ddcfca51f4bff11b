//! The quick run: every scenario at a reduced size, in under 5 minutes,
//! for use before every performance-relevant change. It builds the
//! scenario binaries (release), runs each as a child process with its
//! output shown, then reads their JSON results and prints issue 6's
//! targets against the figures reached.
//!
//! `cargo run --release -p hazardwatch-bench --bin quick` (`-- --report`
//! prints the targets from the scenarios' last results without running
//! them)
//!
//! The full-size runs are each scenario's own command (see BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hazardwatch_bench::{header, row};
use serde_json::Value;

/// Each scenario and its reduced arguments.
const SCENARIOS: [(&str, &[&str]); 9] = [
    ("decode", &["1"]),
    ("wal", &["2000", "50"]),
    ("archive", &["2000", "200"]),
    ("engine", &["5000", "100"]),
    ("journal", &["50000"]),
    ("replay", &["5000", "600"]),
    ("ingest", &["2", "4000", "2"]),
    ("latency", &["3", "10", "10000", "100000", "500000"]),
    ("memory", &["10000", "100000"]),
];

fn results_dir() -> PathBuf {
    std::env::var_os("HAZARDWATCH_BENCH_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results")
        })
}

/// One figure of a scenario's results.
struct Row {
    table: String,
    figure: String,
    value: String,
    number: Option<f64>,
    ratio: Option<f64>,
}

/// The rows of a scenario's results.
fn rows(dir: &Path, scenario: &str) -> Vec<Row> {
    let path = dir.join(format!("{scenario}.json"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let Ok(Value::Array(tables)) = serde_json::from_str::<Value>(&text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in &tables {
        let title = t.get("title").and_then(Value::as_str).unwrap_or_default();
        for r in t
            .get("rows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| {
                r.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            out.push(Row {
                table: title.to_owned(),
                figure: s("figure"),
                value: s("value"),
                number: r.get("number").and_then(Value::as_f64),
                ratio: r.get("ratio").and_then(Value::as_f64),
            });
        }
    }
    out
}

/// The best (largest) figure whose name starts with `prefix`, with its ratio.
fn best(dir: &Path, scenario: &str, prefix: &str) -> Option<(f64, Option<f64>)> {
    rows(dir, scenario)
        .into_iter()
        .filter(|r| r.figure.starts_with(prefix))
        .filter_map(|r| Some((r.number?, r.ratio)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The figure named `figure` in the table whose title contains `table`.
fn figure(dir: &Path, scenario: &str, table: &str, figure: &str) -> Option<(f64, Option<f64>)> {
    rows(dir, scenario)
        .into_iter()
        .find(|r| r.table.contains(table) && r.figure == figure)
        .and_then(|r| Some((r.number?, r.ratio)))
}

/// Bytes per point of the largest memory run ("186.4 MiB, 1448 bytes/point").
fn bytes_per_point(dir: &Path) -> Option<f64> {
    rows(dir, "memory")
        .into_iter()
        .filter(|r| r.value.ends_with("bytes/point"))
        .filter_map(|r| {
            let (_, tail) = r.value.rsplit_once(", ")?;
            hazardwatch_bench::number(tail)
        })
        .next_back()
}

/// One target row: the figure reached (`unit` after it) and whether it
/// meets the target; nothing to compare with, so no ratio.
fn target(name: &str, reached: Option<f64>, unit: &str, met: impl Fn(f64) -> bool) {
    let value = match reached {
        None => "not measured".to_owned(),
        Some(v) => {
            let shown = if v >= 1000.0 {
                hazardwatch_bench::per_sec(v)
                    .trim_end_matches("/s")
                    .to_owned()
            } else {
                format!("{v:.2}")
            };
            let verdict = if met(v) { "met" } else { "missed" };
            format!("{shown} {unit}: {verdict}")
        }
    };
    row(name, &value, None);
}

fn targets(dir: &Path) {
    header(
        "issue 6 targets, from this quick run",
        "cargo run --release -p hazardwatch-bench --bin quick",
    );
    let ingest = best(dir, "ingest", "full service");
    target(
        "ingest >= 1,000,000 readings/s",
        ingest.map(|i| i.0),
        "readings/s",
        |v| v >= 1e6,
    );
    target(
        "ingest >= 40 % of the bare relay",
        ingest.and_then(|i| i.1).map(|r| r * 100.0),
        "% of the relay",
        |v| v >= 40.0,
    );
    let table = "at 100,000 readings/s";
    let p50 = figure(
        dir,
        "latency",
        table,
        "service (learned event time), publish to gRPC alarm event, p50",
    );
    let p99 = figure(
        dir,
        "latency",
        table,
        "service (learned event time), publish to gRPC alarm event, p99",
    );
    target(
        "alarm latency at 100 k/s, p50 <= 2 ms",
        p50.map(|p| p.0),
        "ms",
        |v| v <= 2.0,
    );
    target(
        "alarm latency at 100 k/s, p99 <= 20 ms",
        p99.map(|p| p.0),
        "ms",
        |v| v <= 20.0,
    );
    let replay = best(dir, "replay", "replay through the rules");
    target(
        "replay >= 20,000,000 readings/s",
        replay.map(|r| r.0),
        "readings/s",
        |v| v >= 2e7,
    );
    let bytes = best(dir, "archive", "hazardwatch archive: bytes/reading");
    target(
        "archive <= 1.0 byte/reading",
        bytes.map(|b| b.0),
        "bytes/reading",
        |v| v <= 1.0,
    );
    target(
        "resident memory <= 256 bytes/point (largest size run)",
        bytes_per_point(dir),
        "bytes/point",
        |v| v <= 256.0,
    );
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--report") {
        // The targets from the scenarios' last results, without running them.
        targets(&results_dir());
        return Ok(());
    }
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .args(["build", "--release", "-p", "hazardwatch-bench", "--bins"])
        .status()?;
    anyhow::ensure!(built.success(), "building the scenarios failed");
    let exe = std::env::current_exe()?;
    let dir = results_dir();
    let mut failed = Vec::new();
    for (name, args) in SCENARIOS {
        let t = Instant::now();
        // A stale result must not pass for this run's.
        let _ = std::fs::remove_file(dir.join(format!("{name}.json")));
        let status = Command::new(exe.with_file_name(name)).args(args).status();
        match status {
            Ok(s) if s.success() => {
                eprintln!("[quick] {name} done in {:.0} s", t.elapsed().as_secs_f64())
            }
            Ok(s) => failed.push(format!("{name}: {s}")),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    println!();
    targets(&dir);
    println!(
        "\nquick run: {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(failed.is_empty(), "scenarios failed: {}", failed.join("; "));
    Ok(())
}
