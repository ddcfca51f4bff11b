//! Decode and validate an 80-reading gateway batch, JSON and protobuf, on
//! one core, against the bare prost / serde_json decode of the same bytes.
//!
//! `cargo run --release -p hazardwatch-bench --bin decode [SECONDS]`

use std::hint::black_box;
use std::time::Duration;

use hazardwatch_bench::{Walk, baseline, header, per_sec, row, synthetic_catalog, time_for};
use hazardwatch_ingest::decode::{Limits, check};
use hazardwatch_proto::{Credential, GatewayInfo, Registry, pb};
use prost::Message;

const BATCH: usize = 80;

fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args().nth(1).map_or(Ok(3), |s| s.parse())?;
    let dur = Duration::from_secs(secs);
    let (catalog, names) = synthetic_catalog(1, BATCH);
    let ts0 = 1_732_262_400_000i64;
    let mut walk = Walk::new(7, 10.0);
    let readings: Vec<(String, i64, f64)> = names
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.clone(), ts0 + i as i64, walk.next_value()))
        .collect();
    let json = serde_json::to_vec(&serde_json::json!({
        "gateway": "GW", "seq": 1,
        "readings": readings.iter().map(|(p, ts, v)| serde_json::json!({"point": p, "ts": ts, "value": v})).collect::<Vec<_>>(),
    }))?;
    let proto = pb::ReadingBatch {
        gateway: "GW".into(),
        seq: 1,
        readings: readings
            .iter()
            .map(|(p, ts, v)| pb::Reading {
                point: p.clone(),
                ts_ms: *ts,
                value: *v,
                quality: pb::Quality::Good as i32,
            })
            .collect(),
    }
    .encode_to_vec();
    let limits = Limits {
        topic_prefix: "hw/v1".into(),
        max_payload_bytes: 1 << 20,
        max_clock_skew_ms: 300_000,
        min_timestamp_ms: 0,
    };
    // One registered gateway reports them all: every reading's owner is
    // checked, as in a park with a registry.
    let registry = Registry::new(
        vec![GatewayInfo {
            id: "GW".into(),
            name: String::new(),
            enterprise: "E00".into(),
            points: (0..catalog.len() as u32).collect(),
            interval_ms: 1000,
            offline_after_ms: 10_000,
            credential: Credential {
                password_hash: None,
                cert_cn: Some("gw".into()),
            },
        }],
        catalog.len(),
    );
    let now = ts0 + 1_000;

    let rate = |(n, el): (u64, Duration)| (n as f64 * BATCH as f64) / el.as_secs_f64();
    let bare_pb = rate(time_for(dur, || {
        black_box(pb::ReadingBatch::decode(black_box(&proto[..])).ok());
    }));
    let full_pb = rate(time_for(dur, || {
        let c = check(
            &catalog,
            &registry,
            &limits,
            "hw/v1/E00/GW/telemetry/pb",
            black_box(&proto),
            now,
        );
        assert_eq!(c.readings.len(), BATCH);
        black_box(c);
    }));
    let bare_json = rate(time_for(dur, || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(&json)).ok());
    }));
    let full_json = rate(time_for(dur, || {
        let c = check(
            &catalog,
            &registry,
            &limits,
            "hw/v1/E00/GW/telemetry",
            black_box(&json),
            now,
        );
        assert_eq!(c.readings.len(), BATCH);
        black_box(c);
    }));

    header(
        "decode + validate, 80-reading batch, one core",
        &format!("cargo run --release -p hazardwatch-bench --bin decode {secs}"),
    );
    baseline("protobuf: prost decode only", &per_sec(bare_pb));
    row(
        "protobuf: hazardwatch decode + validate",
        &per_sec(full_pb),
        Some(full_pb / bare_pb),
    );
    baseline("JSON: serde_json::Value parse", &per_sec(bare_json));
    row(
        "JSON: hazardwatch decode + validate",
        &per_sec(full_json),
        Some(full_json / bare_json),
    );
    println!(
        "\npayload sizes: JSON {} bytes, protobuf {} bytes",
        json.len(),
        proto.len()
    );
    Ok(())
}
