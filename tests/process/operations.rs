//! What operations tooling relies on (issue 18): `hazardwatch health`, the
//! probe of a container's health check and of exec probes, answers 0 when
//! the service is ready, 1 with the causes when it is not and 2 when it
//! cannot ask; `--log-format json` writes one JSON object per log line.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hazardwatch_tests::{TEST_PARK, free_loopback_addr};

/// `hazardwatch health --metrics ADDR [args]`.
fn health(metrics: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hazardwatch"))
        .args(["health", "--timeout", "5", "--metrics"])
        .arg(metrics.to_string())
        .args(args)
        .output()
        .unwrap()
}

/// The demo (the example park with its simulated gateways, so that the
/// rules advance and it can be ready) with JSON logs, free ports, its
/// endpoints on `metrics` and `disk_min_free_mb`; returns it and its
/// stderr lines up to "subscribed to telemetry".
fn start(
    dir: &std::path::Path,
    metrics: SocketAddr,
    disk_min_free_mb: u64,
) -> (Child, Vec<String>) {
    let config = dir.join("park.toml");
    let example = include_str!("../../deploy/config/example-park.toml");
    let setting = "disk_min_free_mb = 1024";
    assert!(example.contains(setting), "the example park sets {setting}");
    let park = example.replace(setting, &format!("disk_min_free_mb = {disk_min_free_mb}"));
    std::fs::write(&config, park).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hazardwatch"))
        .args([
            "--log-format",
            "json",
            "demo",
            "--duration",
            "120",
            "--config",
        ])
        .arg(&config)
        .arg("--data")
        .arg(dir.join("data"))
        .args(["--mqtt", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
        .args(["--console", "127.0.0.1:0", "--metrics"])
        .arg(metrics.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in stderr.by_ref() {
        let line = line.unwrap();
        let done = line.contains("subscribed to telemetry");
        lines.push(line);
        if done {
            break;
        }
    }
    // Keep reading, so that the service never waits on a full pipe.
    std::thread::spawn(move || stderr.for_each(drop));
    (child, lines)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Asks until the answer is `want` (readiness is checked every second).
fn health_until(metrics: SocketAddr, want: i32) -> Output {
    let start = Instant::now();
    loop {
        let out = health(metrics, &[]);
        if out.status.code() == Some(want) || start.elapsed() > Duration::from_secs(30) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn health_says_ready_and_the_logs_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_loopback_addr().unwrap();
    let (child, lines) = start(dir.path(), metrics, 1024);
    assert!(
        lines.last().is_some_and(|l| l.contains("subscribed")),
        "{lines:?}"
    );
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(v.get(field).is_some(), "no {field}: {line}");
        }
    }
    let out = health_until(metrics, 0);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
    let live = health(metrics, &["--live"]);
    assert_eq!(live.status.code(), Some(0), "{live:?}");
    stop(child);
    let gone = health(metrics, &[]);
    assert_eq!(gone.status.code(), Some(2), "{gone:?}");
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("cannot ask"),
        "{gone:?}"
    );
}

#[test]
fn health_says_why_the_service_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_loopback_addr().unwrap();
    // More free space than any disk has: never ready, for a reason.
    let (child, _) = start(dir.path(), metrics, 1_000_000_000);
    let out = health_until(metrics, 1);
    stop(child);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("503: not ready"), "{text}");
    assert!(text.contains("disk"), "{text}");
}

#[test]
fn the_endpoints_leave_loopback_only_when_the_file_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("park.toml");
    let park = TEST_PARK.replace("[metrics]\nenabled = false", "[metrics]\nenabled = true");
    std::fs::write(&config, park).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hazardwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("HAZARDWATCH_METRICS", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("metrics.allow_off_loopback") && stderr.contains("overrides"),
        "{stderr}"
    );
}
