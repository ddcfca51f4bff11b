use super::*;
use hazardwatch_proto::{PointKind, PointMeta};

const NOW: i64 = 1_732_262_400_000;

fn catalog() -> Catalog {
    let mut c = Catalog::default();
    c.insert(PointMeta::new(
        "T101.LT",
        "E01",
        "HS1",
        "T101",
        PointKind::Level,
        "m",
    ));
    c.insert(PointMeta::new(
        "T201.TE",
        "E02",
        "HS2",
        "T201",
        PointKind::Temperature,
        "degC",
    ));
    c
}

fn limits() -> Limits {
    Limits {
        topic_prefix: "hw/v1".into(),
        max_payload_bytes: 1024,
        max_clock_skew_ms: 300_000,
        min_timestamp_ms: 946_684_800_000,
    }
}

fn run(topic: &str, payload: &[u8]) -> Checked {
    check(
        &catalog(),
        &Registry::default(),
        &limits(),
        topic,
        payload,
        NOW,
    )
}

#[test]
fn json_batch_single_reading_and_rfc3339_are_accepted() {
    let c = run(
        "hw/v1/E01/GW1/telemetry",
        br#"{"gateway":"GW1","seq":7,"readings":[{"point":"T101.LT","ts":1732262400123,"value":12.34,"quality":"uncertain"},{"point":"T101.LT","ts":"2024-11-22T08:00:00.5Z","value":1}]}"#,
    );
    assert!(c.rejections.is_empty(), "{:?}", c.rejections);
    assert_eq!(c.seq, Some(7));
    assert_eq!(c.readings.len(), 2);
    assert_eq!(c.readings[0].quality, Quality::Uncertain);
    assert_eq!(c.readings[1].ts_ms, 1_732_262_400_500);
    let c = run(
        "hw/v1/E01/GW1/telemetry",
        br#"{"point":"T101.LT","ts":1732262400000,"value":3}"#,
    );
    assert_eq!((c.readings.len(), c.rejections.len()), (1, 0));
}

/// A protobuf batch of GW1 with one T101.LT reading at [`NOW`].
fn pb_one(value: f64, quality: pb::Quality) -> Vec<u8> {
    pb::ReadingBatch {
        gateway: "GW1".into(),
        seq: 3,
        readings: vec![pb::Reading {
            point: "T101.LT".into(),
            ts_ms: NOW,
            value,
            quality: quality as i32,
        }],
    }
    .encode_to_vec()
}

#[test]
fn protobuf_batch_is_accepted() {
    let c = run("hw/v1/E01/GW1/telemetry/pb", &pb_one(5.0, pb::Quality::Bad));
    assert_eq!(c.readings.len(), 1);
    assert_eq!(c.readings[0].quality, Quality::Bad);
}

#[test]
fn a_gateway_cannot_send_the_services_offline_marker() {
    let c = run(
        "hw/v1/E01/GW1/telemetry/pb",
        &pb_one(5.0, pb::Quality::Offline),
    );
    assert!(c.readings.is_empty());
    assert_eq!(c.rejections[0].kind, RejectKind::BadQuality);
}

#[test]
fn bad_readings_are_rejected_one_by_one_with_reasons() {
    let c = run(
        "hw/v1/E01/GW1/telemetry",
        br#"{"readings":[
            {"point":"NOPE","ts":1732262400000,"value":1},
            {"point":"T201.TE","ts":1732262400000,"value":1},
            {"point":"T101.LT","ts":1,"value":1},
            {"point":"T101.LT","ts":1832262400000,"value":1},
            {"point":"T101.LT","ts":1732262400000,"value":1,"quality":"meh"},
            {"point":"T101.LT","ts":1732262400000,"value":2}]}"#,
    );
    let kinds: Vec<_> = c.rejections.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RejectKind::UnknownPoint,
            RejectKind::WrongEnterprise,
            RejectKind::BadTimestamp,
            RejectKind::BadTimestamp,
            RejectKind::BadQuality
        ]
    );
    assert!(c.rejections[1].reason.contains("enterprise `E02`"));
    assert_eq!(c.readings.len(), 1);
}

#[test]
fn malformed_oversize_nan_and_mismatched_messages_are_rejected_whole() {
    for (topic, payload, kind) in [
        (
            "hw/v1/E01/GW1/telemetry",
            &b"{not json"[..],
            RejectKind::Malformed,
        ),
        (
            "hw/v1/E01/GW1/telemetry",
            br#"{"readings":[{"point":"T101.LT","ts":1,"value":NaN}]}"#,
            RejectKind::Malformed,
        ),
        (
            "hw/v1/E01/GW1/telemetry",
            br#"{"readings":[],"extra":1}"#,
            RejectKind::Malformed,
        ),
        (
            "hw/v1/E01/GW1/telemetry",
            br#"{"gateway":"GW9","readings":[]}"#,
            RejectKind::GatewayMismatch,
        ),
        (
            "hw/v1/E01/GW1/telemetry/pb",
            &b"\xff\xff\xff"[..],
            RejectKind::Malformed,
        ),
        ("hw/v1/E01/telemetry", &b"{}"[..], RejectKind::BadTopic),
    ] {
        let c = run(topic, payload);
        assert_eq!(c.rejections.len(), 1, "{payload:?}");
        assert_eq!(c.rejections[0].kind, kind, "{payload:?}");
        assert!(c.readings.is_empty());
    }
    let big = vec![b' '; 1025];
    assert_eq!(
        run("hw/v1/E01/GW1/telemetry", &big).rejections[0].kind,
        RejectKind::TooLarge
    );
    let c = run(
        "hw/v1/E01/GW1/telemetry/pb",
        &pb_one(f64::NAN, pb::Quality::Unspecified),
    );
    assert_eq!(c.rejections[0].kind, RejectKind::BadValue);
}

#[test]
fn status_payloads_plain_or_json() {
    assert_eq!(status(b"offline"), Ok(GatewayStatus::Offline));
    assert_eq!(status(b" Online\n"), Ok(GatewayStatus::Online));
    assert_eq!(
        status(br#"{"status":"OFFLINE","ts":1}"#),
        Ok(GatewayStatus::Offline)
    );
    for bad in [&b"gone"[..], b"{\"state\":\"offline\"}", b"\xff\xfe", b""] {
        let r = status(bad).unwrap_err();
        assert_eq!(r.kind, RejectKind::Malformed);
        assert!(r.reason.contains("online"), "{}", r.reason);
    }
}

mod registry_tests {
    use super::*;
    use hazardwatch_proto::{Credential, GatewayInfo, PointKind, PointMeta};

    #[test]
    fn a_reading_of_a_point_another_gateway_reports_is_refused() {
        let mut catalog = Catalog::default();
        for (p, u) in [("T101.LT", "T101"), ("T102.LT", "T102")] {
            catalog.insert(PointMeta::new(p, "E01", "HS1", u, PointKind::Level, "m"));
        }
        let gw = |id: &str, points: Vec<u32>| GatewayInfo {
            id: id.into(),
            name: String::new(),
            enterprise: "E01".into(),
            points,
            interval_ms: 1000,
            offline_after_ms: 10_000,
            credential: Credential {
                password_hash: None,
                cert_cn: Some(id.into()),
            },
        };
        let registry = Registry::new(vec![gw("GW1", vec![0]), gw("GW2", vec![1])], 2);
        let limits = Limits {
            topic_prefix: "hw/v1".into(),
            max_payload_bytes: 4096,
            max_clock_skew_ms: 300_000,
            min_timestamp_ms: 0,
        };
        let payload = br#"{"readings":[{"point":"T101.LT","ts":1000,"value":1},{"point":"T102.LT","ts":1000,"value":2}]}"#;
        let on = |topic: &str| check(&catalog, &registry, &limits, topic, payload, 2000);
        let c = on("hw/v1/E01/GW1/telemetry");
        assert_eq!(c.readings.len(), 1);
        assert_eq!(c.readings[0].point, 0);
        assert_eq!(c.rejections.len(), 1);
        assert_eq!(c.rejections[0].kind, RejectKind::WrongGateway);
        assert!(
            c.rejections[0]
                .reason
                .contains("reported by gateway `GW2`, not the topic's `GW1`"),
            "{:?}",
            c.rejections
        );
        let c = on("hw/v1/E01/GW9/telemetry");
        assert!(c.readings.is_empty());
        assert_eq!(c.rejections.len(), 2);
        assert!(
            c.rejections[0]
                .reason
                .contains("gateway `GW9` is not registered")
        );
        // Open mode: the topic's gateway is not checked.
        let open = check(
            &catalog,
            &Registry::default(),
            &limits,
            "hw/v1/E01/GW9/telemetry",
            payload,
            2000,
        );
        assert_eq!(open.readings.len(), 2);
    }
}
