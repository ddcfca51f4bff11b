//! `hazardwatch import` (issue 17): exports of other systems become an
//! archive with exactly their readings, read back by the archive's reader
//! and replayed: a wide CSV with local time stamps, and Parquet files
//! written by pyarrow (Snappy, its default) in both layouts.

use std::path::{Path, PathBuf};

use clap::Parser;
use hazardwatch::config::Config;
use hazardwatch::import::ImportCommand;
use hazardwatch_storage::reader::{self, Range};

use crate::independent_reader::{pyarrow, pyarrow_available};
use crate::learn::PARK;

/// One reading as the archive holds it: point, event time (ms), value,
/// quality.
type Row = (String, i64, f64, String);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    import: ImportCommand,
}

/// A scratch directory with the park's configuration.
fn park() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("park.toml");
    std::fs::write(&config, PARK).unwrap();
    (dir, config)
}

/// Runs `hazardwatch import ARGS --config CONFIG` as the command line
/// would.
fn import(config: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["import", "--config", config.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv)?;
    hazardwatch::import::command(cli.import)
}

/// Every reading of the archive at `root`, sorted.
fn archived(root: &Path) -> Vec<Row> {
    let range = Range::default();
    let plan = reader::plan(root, &range).unwrap();
    let mut rows = Vec::new();
    for part in &plan.parts {
        reader::read_part(part, &range, reader::all_points, |r| {
            assert!(!r.late, "imported readings are not late");
            rows.push((
                r.point.to_owned(),
                r.ts_ms,
                r.value,
                r.quality.as_str().to_owned(),
            ));
        })
        .unwrap();
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    rows
}

/// Replays the archive at `root`: how many readings the rules judged.
fn replayed(root: &Path, config: &Path) -> u64 {
    let config = Config::load(config).unwrap();
    let engine = hazardwatch_rules::EngineConfig {
        workers: 1,
        ..Default::default()
    };
    hazardwatch::replay::replay(root, &Range::default(), &config.site, None, &engine, false)
        .unwrap()
        .readings
}

fn utc(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

#[test]
fn a_wide_csv_with_local_time_stamps_is_imported_with_the_readings_of_its_source() {
    let (dir, config) = park();
    // A DCS export in Shanghai time across local 07:59 to 08:01, which is
    // midnight UTC: two days of the archive. Its tags are not point ids;
    // pressure is in MPa where the point is in kPa; some cells are empty
    // and one column is a spare the map leaves out.
    let csv = dir.path().join("export.csv");
    let map = dir.path().join("map.csv");
    std::fs::write(
        &map,
        "tag,point,scale\nTI-101,R1.TE,\nPI-101,R1.PT,1000\nFI-101,R1.FT,\n",
    )
    .unwrap();
    let mut text = String::from("\u{feff}时间,TI-101,PI-101,FI-101,备用\n");
    let mut expected: Vec<Row> = Vec::new();
    let start = utc("2026-03-01T23:59:00Z");
    for i in 0..120i64 {
        let ts = start + i * 1000;
        let local = chrono::DateTime::from_timestamp_millis(ts + 8 * 3_600_000)
            .unwrap()
            .naive_utc()
            .format("%Y/%m/%d %H:%M:%S");
        let te = 20.0 + i as f64 / 8.0;
        let pt = 0.25 + (i % 7) as f64 / 1000.0;
        let ft = if i % 5 == 0 {
            String::new()
        } else {
            format!("{}", 40 + i % 3)
        };
        text.push_str(&format!("{local},{te},{pt},{ft},x\n"));
        expected.push(("R1.TE".into(), ts, te, "good".into()));
        expected.push(("R1.PT".into(), ts, pt * 1000.0, "good".into()));
        if !ft.is_empty() {
            expected.push(("R1.FT".into(), ts, (40 + i % 3) as f64, "good".into()));
        }
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.path().join("imported");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a = vec![
            "--out".to_owned(),
            out.display().to_string(),
            "--map".to_owned(),
            map.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(csv.display().to_string());
        a
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        import(&config, &a).map_err(|e| e.to_string())
    };

    // Local time stamps and no zone stated: refused, nothing written.
    let err = run(&["--ignore-unmapped"]).unwrap_err();
    assert!(
        err.contains("line 2") && err.contains("--timezone"),
        "{err}"
    );
    // The spare column is not mapped: named, and refused.
    let err = run(&["--timezone", "Asia/Shanghai"]).unwrap_err();
    assert!(
        err.contains("备用") && err.contains("--ignore-unmapped"),
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "no half archive left behind"
    );

    run(&["--timezone", "Asia/Shanghai", "--ignore-unmapped"]).unwrap();
    expected.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(archived(&out), expected);
    let days: Vec<String> = std::fs::read_dir(out.join("readings"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(days.len(), 2, "{days:?}");
    assert_eq!(replayed(&out, &config), expected.len() as u64);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("import.json")).unwrap()).unwrap();
    assert_eq!(manifest["readings"], expected.len());
    assert_eq!(manifest["empty_cells"], 24);
    assert_eq!(manifest["unmapped_tags"]["备用"], 120);

    // The same import again: the archive exists, and is not written into.
    let err = run(&["--timezone", "Asia/Shanghai", "--ignore-unmapped"]).unwrap_err();
    assert!(err.contains("exists"), "{err}");
}

#[test]
fn bad_values_are_counted_by_reason_and_too_many_stop_the_import() {
    let (dir, config) = park();
    let csv = dir.path().join("long.csv");
    std::fs::write(
        &csv,
        "time;tag;value;quality\n\
         2026-03-01T08:00:00+08:00;R1.TE;21.5;good\n\
         2026-03-01T08:00:01+08:00;R1.TE;Bad Input;good\n\
         2026-03-01T08:00:02+08:00;R1.XX;1;good\n\
         soon;R1.TE;1;good\n\
         2026-03-01T08:00:03+08:00;R1.TE;1;offline\n\
         1999-03-01T08:00:03+08:00;R1.TE;1;good\n\
         2026-03-01T08:00:04+08:00;R1.TE;NaN;good\n\
         2026-03-01T08:00:05+08:00;R1.TE\n\
         2026-03-01T08:00:06+08:00;R1.PT;300;uncertain\n",
    )
    .unwrap();
    let out = dir.path().join("a");
    let o = out.to_str().unwrap();
    let c = csv.to_str().unwrap();
    let base = [
        "--layout",
        "long",
        "--delimiter",
        ";",
        "--quality-column",
        "quality",
    ];
    let mut args = base.to_vec();
    args.extend(["--max-rejected", "6", "--out", o, c]);
    let err = import(&config, &args).unwrap_err().to_string();
    assert!(
        err.contains("7 values rejected, more than --max-rejected 6"),
        "{err}"
    );
    assert!(!out.exists() && !dir.path().join(".a.partial").exists());

    let mut args = base.to_vec();
    args.extend(["--out", o, c]);
    import(&config, &args).unwrap();
    assert_eq!(
        archived(&out),
        vec![
            (
                "R1.PT".into(),
                utc("2026-03-01T00:00:06Z"),
                300.0,
                "uncertain".into()
            ),
            (
                "R1.TE".into(),
                utc("2026-03-01T00:00:00Z"),
                21.5,
                "good".into()
            ),
        ]
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("import.json")).unwrap()).unwrap();
    let rejected = &manifest["rejected"];
    for (reason, example) in [
        ("not_a_number", "long.csv, line 3: `Bad Input`"),
        ("unmapped_tag", "line 4: R1.XX"),
        ("bad_time", "line 5: `soon`"),
        ("bad_quality", "line 6: offline"),
        ("too_old", "line 7"),
        ("not_finite", "line 8: NaN"),
        ("malformed", "line 9: 2 fields where the header has 4"),
    ] {
        assert_eq!(rejected[reason]["count"], 1, "{reason}: {rejected}");
        let e = rejected[reason]["examples"][0].as_str().unwrap();
        assert!(e.contains(example), "{reason}: {e}");
    }
}

const WRITE_PARQUET: &str = r#"
import json, sys, datetime
import pyarrow as pa, pyarrow.parquet as pq
out = sys.argv[1]
t0 = 1772323200000  # 2026-03-01T00:00:00Z
n = 500
# Long: tz-aware timestamps, tags dictionary-encoded, OPC quality codes.
ts = [t0 + 1000 * (i // 2) for i in range(n)]
tags = ["TI-101" if i % 2 == 0 else "PI-101" for i in range(n)]
vals = [20.0 + i / 16 if i % 2 == 0 else 0.25 + (i % 9) / 1000 for i in range(n)]
qual = [0 if i == 7 else (0x44 if i == 8 else 192) for i in range(n)]
long = pa.table({
    "timestamp": pa.array(ts, pa.timestamp("ms", tz="UTC")),
    "tag": pa.array(tags).dictionary_encode(),
    "value": pa.array(vals, pa.float64()),
    "quality": pa.array(qual, pa.int32()),
})
pq.write_table(long, out + "/long.parquet")
# Wide: pandas-style microsecond timestamps with no zone (local, +08:00),
# a float32 column and nulls.
local = [datetime.datetime(2026, 3, 1, 9, 0, 0) + datetime.timedelta(seconds=i) for i in range(100)]
wide = pa.table({
    "Zeit": pa.array(local, pa.timestamp("us")),
    "FI-101": pa.array([None if i % 4 == 0 else float(i) for i in range(100)], pa.float32()),
})
pq.write_table(wide, out + "/wide.parquet")
codecs = sorted({pq.ParquetFile(out + f).metadata.row_group(0).column(c).compression
                 for f in ["/long.parquet", "/wide.parquet"] for c in range(2)})
expected = []
qname = {0: "bad", 0x44: "uncertain", 192: "good"}
for i in range(n):
    point, v = ("R1.TE", vals[i]) if tags[i] == "TI-101" else ("R1.PT", vals[i] * 1000)
    expected.append([point, ts[i], v, qname[qual[i]]])
for i in range(100):
    if i % 4:
        expected.append(["R1.FT", t0 + 3600000 + 1000 * i, float(i), "good"])
print(json.dumps({"codecs": codecs, "expected": expected}))
"#;

#[test]
fn parquet_files_written_by_pyarrow_are_imported_with_the_readings_of_their_source() {
    if !pyarrow_available() {
        return;
    }
    let (dir, config) = park();
    let map = dir.path().join("map.csv");
    std::fs::write(
        &map,
        "tag,point,scale\nTI-101,R1.TE,\nPI-101,R1.PT,1000\nFI-101,R1.FT,\n",
    )
    .unwrap();
    let source = pyarrow(WRITE_PARQUET, dir.path());
    assert_eq!(
        source["codecs"],
        serde_json::json!(["SNAPPY"]),
        "pyarrow's default"
    );
    let m = map.to_str().unwrap();
    let long_out = dir.path().join("long");
    let wide_out = dir.path().join("wide");
    let long_in = dir.path().join("long.parquet");
    let wide_in = dir.path().join("wide.parquet");
    import(
        &config,
        &[
            "--layout",
            "long",
            "--time-column",
            "timestamp",
            "--quality-column",
            "quality",
            "--map",
            m,
            "--out",
            long_out.to_str().unwrap(),
            long_in.to_str().unwrap(),
        ],
    )
    .unwrap();
    import(
        &config,
        &[
            "--timezone",
            "+08:00",
            "--map",
            m,
            "--out",
            wide_out.to_str().unwrap(),
            wide_in.to_str().unwrap(),
        ],
    )
    .unwrap();
    let mut expected: Vec<Row> = source["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_i64().unwrap(),
                r[2].as_f64().unwrap(),
                r[3].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    expected.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut got = archived(&long_out);
    got.extend(archived(&wide_out));
    got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(got, expected);
    // Both archives replayed as one, as learn and replay read them.
    let config = Config::load(&config).unwrap();
    let engine = hazardwatch_rules::EngineConfig {
        workers: 1,
        ..Default::default()
    };
    let both = hazardwatch::replay::replay_all(
        &[long_out.as_path(), wide_out.as_path()],
        &Range::default(),
        &config.site,
        None,
        &engine,
        false,
    )
    .unwrap();
    assert_eq!(both.readings, expected.len() as u64);
}
