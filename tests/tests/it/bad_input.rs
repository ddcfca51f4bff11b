//! Hostile input: every bad message is quarantined with its reason, and
//! valid messages after it still flow.

use hazardwatch_ingest::quarantine::QuarantineRecord;
use hazardwatch_proto::pb;
use hazardwatch_tests::{Gateway, TestService, now_ms, read_archive};
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_quarantined_with_reasons_and_ingest_continues() {
    let svc = TestService::start().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-bad").await.unwrap();
    let t0 = now_ms();
    let json = |point: &str, value: f64| {
        serde_json::to_vec(&serde_json::json!({"readings": [
            {"point": point, "ts": t0, "value": value}]}))
        .unwrap()
    };
    // Malformed JSON.
    gw.publish("hw/v1/E01/GW1/telemetry", b"{\"readings\": [".to_vec())
        .await
        .unwrap();
    // A point of E02 on E01's topic.
    gw.publish("hw/v1/E01/GW1/telemetry", json("T201.TE", 20.0))
        .await
        .unwrap();
    // An unknown point.
    gw.publish("hw/v1/E01/GW1/telemetry", json("T999.XX", 1.0))
        .await
        .unwrap();
    // NaN (JSON cannot carry it; protobuf can).
    let nan = pb::ReadingBatch {
        readings: vec![pb::Reading {
            point: "T101.LT".into(),
            ts_ms: t0,
            value: f64::NAN,
            quality: 0,
        }],
        ..Default::default()
    };
    gw.publish("hw/v1/E01/GW1/telemetry/pb", nan.encode_to_vec())
        .await
        .unwrap();
    // Over the 4096-byte limit of the test config.
    let mut big = br#"{"readings":[],"gateway":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 5000));
    big.extend(br#""}"#);
    let big_len = big.len();
    gw.publish("hw/v1/E01/GW1/telemetry", big).await.unwrap();
    // And a valid one after all of them.
    gw.publish("hw/v1/E01/GW1/telemetry", json("T101.LT", 7.5))
        .await
        .unwrap();
    svc.wait_for_readings(1).await.unwrap();
    gw.close().await;

    let quarantine = svc.running.quarantine_file.clone();
    let archive = svc.running.archive_dir.clone();
    let summary = svc.running.shutdown().await.unwrap();
    assert_eq!(summary.readings_in, 1);

    let text = std::fs::read_to_string(&quarantine).unwrap();
    let records: Vec<QuarantineRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "malformed",
            "wrong_enterprise",
            "unknown_point",
            "bad_value",
            "too_large"
        ]
    );
    assert!(records[0].reason.contains("JSON"), "{}", records[0].reason);
    assert!(records[1].reason.contains("`E02`"), "{}", records[1].reason);
    assert!(
        records[2].reason.contains("T999.XX"),
        "{}",
        records[2].reason
    );
    assert!(records[3].reason.contains("NaN"), "{}", records[3].reason);
    assert!(records[4].reason.contains("4096"), "{}", records[4].reason);
    assert_eq!(records[4].payload_bytes, big_len);
    assert!(
        records
            .iter()
            .all(|r| r.topic.starts_with("hw/v1/E01/GW1/telemetry"))
    );

    let rows = read_archive(&archive).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].point.as_str(), rows[0].value), ("T101.LT", 7.5));
}
