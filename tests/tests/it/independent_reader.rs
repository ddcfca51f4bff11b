//! The archive as other tools see it: pyarrow reads it as a Hive-partitioned
//! dataset. Runs when the test command has installed pyarrow
//! (`HAZARDWATCH_REQUIRE_PYARROW=1` makes its absence a failure).

use std::process::Command;

use hazardwatch_tests::{Gateway, TestService, now_ms};

const READ_DATASET: &str = r#"
import json, sys
import pyarrow.dataset as ds
d = ds.dataset(sys.argv[1], format="parquet", partitioning="hive")
# Measurements only: the service's markers (quality offline or expected,
# value NaN) are rows of their own.
t = d.to_table(filter=ds.field("quality").isin(["good", "uncertain", "bad"]))
print(json.dumps({
    "rows": t.num_rows,
    "markers": d.count_rows(filter=ds.field("quality").isin(["offline", "expected"])),
    "columns": sorted(t.column_names),
    "enterprises": sorted(set(t.column("enterprise").to_pylist())),
    "sum": sum(t.column("value").to_pylist()),
}))
"#;

const READ_ALARMS: &str = r#"
import json, sys
import pyarrow.dataset as ds
t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table()
print(json.dumps({
    "rows": t.num_rows,
    "columns": sorted(t.column_names),
    "ids": sorted(set(t.column("alarm_id").to_pylist())),
    "transitions": sorted(set(t.column("transition").to_pylist())),
    "enterprises": sorted(set(t.column("enterprise").to_pylist())),
}))
"#;

/// Runs a Python script on a dataset directory; its JSON output.
pub(crate) fn pyarrow(script: &str, dir: &std::path::Path) -> serde_json::Value {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// True when pyarrow can be imported; false (the test is skipped, and
/// says so) when not, unless `HAZARDWATCH_REQUIRE_PYARROW` is set: then
/// its absence fails the test.
pub(crate) fn pyarrow_available() -> bool {
    let here = Command::new("python3")
        .args(["-c", "import pyarrow.dataset"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !here {
        assert!(
            std::env::var_os("HAZARDWATCH_REQUIRE_PYARROW").is_none(),
            "pyarrow is required here but `python3 -c 'import pyarrow'` fails"
        );
        eprintln!("skipped: pyarrow not installed (the README's test command installs it)");
    }
    here
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_reads_the_archive_as_a_hive_partitioned_dataset() {
    if !pyarrow_available() {
        return;
    }
    let svc = TestService::start().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-pyarrow").await.unwrap();
    let t0 = now_ms();
    for (enterprise, point) in [("E01", "T101.LT"), ("E02", "T201.TE")] {
        let readings: Vec<_> = (0..10)
            .map(|i| serde_json::json!({"point": point, "ts": t0 + i, "value": i as f64}))
            .collect();
        let payload = serde_json::to_vec(&serde_json::json!({ "readings": readings })).unwrap();
        gw.publish(&format!("hw/v1/{enterprise}/GW/telemetry"), payload)
            .await
            .unwrap();
    }
    svc.wait_for_readings(20).await.unwrap();
    gw.close().await;
    let readings_dir = svc.running.archive_dir.join("readings");
    let alarms_dir = svc.running.archive_dir.join("alarms");
    svc.running.shutdown().await.unwrap();

    let got = pyarrow(READ_DATASET, &readings_dir);
    assert_eq!(got["rows"], 20);
    assert_eq!(got["markers"], 4, "one expected marker per watched point");
    assert_eq!(got["enterprises"], serde_json::json!(["E01", "E02"]));
    assert_eq!(got["sum"], 90.0);
    let columns: Vec<&str> = got["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for c in [
        "date",
        "enterprise",
        "point",
        "hazard_source",
        "unit",
        "kind",
        "ts",
        "ingest_ts",
        "value",
        "quality",
        "late",
    ] {
        assert!(columns.contains(&c), "{c} missing from {columns:?}");
    }

    // The alarm events (T101.LT's 0 m and 1 m are below its L limit) are
    // a dataset of their own.
    let got = pyarrow(READ_ALARMS, &alarms_dir);
    assert!(got["rows"].as_u64().unwrap() >= 1, "{got}");
    assert!(
        got["ids"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("T101.LT/L")),
        "{got}"
    );
    assert!(
        got["transitions"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("TRANSITION_RAISED")),
        "{got}"
    );
    assert!(
        got["enterprises"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("E01"))
    );
    for c in [
        "seq",
        "alarm_id",
        "kind",
        "priority",
        "state",
        "event_time",
        "date",
    ] {
        assert!(
            got["columns"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(c)),
            "{c} missing from {got}"
        );
    }
}

/// Rewrites every archive file under `argv[1]` into `argv[2]` (same
/// partitions and names) with the compression `argv[3]`, as pyarrow writes
/// Parquet for other tools.
const REWRITE: &str = r#"
import os, sys
import pyarrow.parquet as pq
src, dst, codec = sys.argv[1], sys.argv[2], sys.argv[3]
n = 0
for root, _, files in os.walk(src):
    for f in files:
        if f.endswith(".parquet"):
            out = os.path.join(dst, os.path.relpath(root, src))
            os.makedirs(out, exist_ok=True)
            pq.write_table(pq.read_table(os.path.join(root, f)), os.path.join(out, f), compression=codec)
            n += 1
print(n)
"#;

/// Every common Parquet compression is read: pyarrow's default (Snappy),
/// and gzip, LZ4, Brotli and zstd, as other tools write them (issue 17:
/// history brought from other systems).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_reader_reads_parquet_as_pyarrow_compresses_it() {
    use hazardwatch_storage::reader::{self, Range};
    if !pyarrow_available() {
        return;
    }
    let svc = TestService::start().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-codecs").await.unwrap();
    let t0 = now_ms();
    let readings: Vec<_> = (0..50)
        .map(|i| serde_json::json!({"point": "T101.LT", "ts": t0 + i, "value": 5.0 + i as f64 / 10.0}))
        .collect();
    let payload = serde_json::to_vec(&serde_json::json!({ "readings": readings })).unwrap();
    gw.publish("hw/v1/E01/GW/telemetry", payload).await.unwrap();
    svc.wait_for_readings(50).await.unwrap();
    gw.close().await;
    let archive = svc.running.archive_dir.clone();
    svc.running.shutdown().await.unwrap();

    let rows = |root: &std::path::Path| {
        let plan = reader::plan(root, &Range::default()).unwrap();
        let mut out = Vec::new();
        for part in &plan.parts {
            reader::read_part(part, &Range::default(), reader::all_points, |r| {
                out.push((
                    r.point.to_owned(),
                    r.ts_ms,
                    r.value.to_bits(),
                    r.quality,
                    r.late,
                ));
            })
            .unwrap();
        }
        out.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        out
    };
    let ours = rows(&archive);
    assert!(ours.len() >= 50, "{}", ours.len());
    let dir = tempfile::tempdir().unwrap();
    for codec in ["snappy", "gzip", "lz4", "brotli", "zstd"] {
        let copy = dir.path().join(codec);
        let out = Command::new("python3")
            .args(["-c", REWRITE])
            .arg(archive.join("readings"))
            .arg(copy.join("readings"))
            .arg(codec)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(rows(&copy), ours, "{codec}");
    }
}
