//! Writes the seed corpus, `corpus/<target>/`, from the project's own
//! encoders: valid messages, files and requests for each fuzz target to
//! mutate from. Run from `fuzz/`: `cargo +nightly run --example seeds`.

use std::path::Path;

use hazardwatch_fuzz::{NOW_MS, example};
use hazardwatch_ingest::encode::{OutReading, batch};
use hazardwatch_ingest::topic::Format;
use hazardwatch_proto::sparkplug::Payload;
use hazardwatch_proto::sparkplug::payload::{Metric, metric::Value};
use hazardwatch_proto::{Quality, Reading, pb};
use hazardwatch_storage::wal::{Entry, Wal, WalConfig};
use hazardwatch_storage::{ArchiveConfig, ArchiveWriter};
use prost::Message;

fn put(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)
}

fn readings() -> Vec<OutReading<'static>> {
    ["T101.LT", "T101.TE", "T101.PT", "NOPE"]
        .into_iter()
        .enumerate()
        .map(|(i, point)| OutReading {
            point,
            ts_ms: NOW_MS - 1_000 * i as i64,
            value: 10.0 + i as f64,
            quality: if i == 2 { Quality::Bad } else { Quality::Good },
        })
        .collect()
}

fn metric(name: Option<&str>, alias: u64, value: f64) -> Metric {
    Metric {
        name: name.map(Into::into),
        alias: Some(alias),
        timestamp: Some(NOW_MS as u64),
        datatype: Some(10),
        value: Some(Value::DoubleValue(value)),
        ..Metric::default()
    }
}

fn sparkplug(seq: u64, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(NOW_MS as u64),
        metrics,
        seq: Some(seq),
        ..Payload::default()
    }
    .encode_to_vec()
}

fn main() -> anyhow::Result<()> {
    // Ingest: JSON and protobuf batches.
    put(
        "json_batch",
        "batch.json",
        &batch(Format::Json, "E01-GW1", 7, readings()),
    )?;
    put(
        "json_batch",
        "wrong_gateway.json",
        &batch(Format::Json, "E02-GW1", 1, readings()),
    )?;
    put("json_batch", "empty.json", br#"{"readings": []}"#)?;
    put(
        "json_batch",
        "bare_array.json",
        br#"[{"point": "T101.LT", "ts": 1800000000000, "value": 1e308}]"#,
    )?;
    put(
        "protobuf_batch",
        "batch.pb",
        &batch(Format::Protobuf, "E01-GW1", 7, readings()),
    )?;

    // Sparkplug: birth, data by alias, device birth and data, death; each
    // message prefixed by its topic index, separated by ff fe.
    let mut session = Vec::new();
    let mut add = |kind: u8, payload: Vec<u8>| {
        if !session.is_empty() {
            session.extend_from_slice(&[0xff, 0xfe]);
        }
        session.push(kind);
        session.extend_from_slice(&payload);
    };
    add(
        0,
        sparkplug(
            0,
            vec![
                metric(Some("T101.LT"), 1, 5.0),
                metric(Some("T101.TE"), 2, 30.0),
            ],
        ),
    );
    add(1, sparkplug(1, vec![metric(None, 1, 6.0)]));
    add(
        3,
        sparkplug(2, vec![metric(Some("PLC1/T101.PT"), 3, 120.0)]),
    );
    add(4, sparkplug(3, vec![metric(None, 3, 121.0)]));
    add(1, sparkplug(9, vec![metric(None, 2, 31.0)]));
    add(2, sparkplug(0, vec![]));
    put("sparkplug", "session.bin", &session)?;

    // Configuration.
    put(
        "config",
        "example-park.toml",
        hazardwatch::config::EXAMPLE_CONFIG.as_bytes(),
    )?;
    put(
        "config",
        "minimal.toml",
        b"[park]\nid = \"P\"\n[[enterprise]]\nid = \"E\"\n[[enterprise.hazard_source]]\nid = \"HS\"\ngrade = 1\n[[enterprise.hazard_source.unit]]\nid = \"U\"\n[[enterprise.hazard_source.unit.point]]\nid = \"U.LT\"\nkind = \"level\"\neng_unit = \"m\"\nrange = [0.0, 10.0]\nh = 9.0\n",
    )?;

    // A write-ahead log segment with two records.
    let catalog = example().site.catalog.clone();
    let ids: Vec<_> = ["T101.LT", "T101.TE"]
        .iter()
        .filter_map(|p| catalog.lookup(p))
        .collect();
    let logged: Vec<Reading> = ids
        .iter()
        .map(|&point| Reading {
            point,
            ts_ms: NOW_MS,
            value: 1.5,
            quality: Quality::Good,
        })
        .collect();
    let dir = tempfile::tempdir()?;
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default())?;
    let segment = wal.append(
        &[
            Entry {
                message: 1,
                received_ms: NOW_MS,
                readings: &logged,
            },
            Entry {
                message: 2,
                received_ms: NOW_MS,
                readings: &logged[..1],
            },
        ],
        &catalog,
    )?;
    drop(wal);
    put(
        "wal_segment",
        "two_records.log",
        &std::fs::read(dir.path().join(format!("wal-{segment:016}.log")))?,
    )?;

    // An archive file: readings sealed by the archive writer.
    let root = tempfile::tempdir()?;
    let (mut writer, _) = ArchiveWriter::open(root.path(), catalog, ArchiveConfig::default())?;
    writer.append(&logged, NOW_MS, &[false, true]);
    let sealed = writer.checkpoint(2, &[])?;
    if let Some(file) = sealed.first() {
        put(
            "archive_file",
            "readings.parquet",
            &std::fs::read(&file.path)?,
        )?;
    }

    // gRPC: "<authorization>\xff\xfe<rpc><request>".
    let grpc = |header: &str, rpc: u8, request: Vec<u8>| {
        let mut v = header.as_bytes().to_vec();
        v.extend_from_slice(&[0xff, 0xfe, rpc]);
        v.extend_from_slice(&request);
        v
    };
    let filter = Some(pb::AlarmFilter {
        enterprises: vec!["E01".into()],
        ..Default::default()
    });
    let requests = [
        (
            "list_active",
            0,
            pb::ListActiveRequest {
                filter: filter.clone(),
            }
            .encode_to_vec(),
        ),
        (
            "history",
            1,
            pb::HistoryRequest {
                filter: filter.clone(),
                from_ms: NOW_MS - 86_400_000,
                to_ms: NOW_MS,
                page_size: 100,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "stats",
            2,
            pb::StatsRequest {
                enterprise: "E01".into(),
                from_ms: NOW_MS - 86_400_000,
                to_ms: NOW_MS,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "acknowledge",
            3,
            pb::AcknowledgeRequest {
                alarm_id: "T101.LT/H".into(),
                operator: "zhang.wei".into(),
                comment: String::new(),
            }
            .encode_to_vec(),
        ),
        (
            "subscribe",
            7,
            pb::SubscribeRequest {
                filter,
                resume_after: 3,
            }
            .encode_to_vec(),
        ),
        (
            "query",
            9,
            pb::QueryRequest {
                points: vec!["T101.LT".into()],
                from_ms: NOW_MS - 60_000,
                to_ms: NOW_MS,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ];
    for (name, rpc, request) in requests {
        put(
            "grpc_requests",
            &format!("{name}.bin"),
            &grpc("Bearer county-viewer-0123456789", rpc, request),
        )?;
    }
    Ok(())
}
