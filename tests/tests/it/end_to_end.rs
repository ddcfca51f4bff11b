//! The whole path: MQTT (JSON and protobuf) -> rules -> gRPC alarm stream
//! and acknowledgement -> sealed Parquet read back by the parquet crate.

use hazardwatch_proto::pb;
use hazardwatch_tests::{Gateway, TestService, next_event, now_ms, read_archive, row_counts};
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_readings_raise_alarms_on_grpc_and_land_in_parquet_exactly_once() {
    let svc = TestService::start().await.unwrap();
    let mut alarms = svc.alarms().await.unwrap();
    let mut stream = alarms
        .subscribe(pb::SubscribeRequest {
            filter: Some(pb::AlarmFilter {
                enterprises: vec!["E01".into()],
                ..Default::default()
            }),
            resume_after: 0,
        })
        .await
        .unwrap()
        .into_inner();

    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-e01").await.unwrap();
    let t0 = now_ms();
    // JSON: the level climbs past H and HH.
    let json = serde_json::json!({"gateway": "GW1", "seq": 1, "readings": [
        {"point": "T101.LT", "ts": t0, "value": 10.0},
        {"point": "T101.LT", "ts": t0 + 10, "value": 18.5, "quality": "good"},
        {"point": "T101.LT", "ts": t0 + 20, "value": 19.5},
    ]});
    gw.publish(
        "hw/v1/E01/GW1/telemetry",
        serde_json::to_vec(&json).unwrap(),
    )
    .await
    .unwrap();
    // Protobuf: pressure stays normal.
    let batch = pb::ReadingBatch {
        gateway: "GW1".into(),
        seq: 2,
        readings: (0..5)
            .map(|i| pb::Reading {
                point: "T101.PT".into(),
                ts_ms: t0 + i * 10,
                value: 300.0 + i as f64,
                quality: pb::Quality::Good as i32,
            })
            .collect(),
    };
    gw.publish("hw/v1/E01/GW1/telemetry/pb", batch.encode_to_vec())
        .await
        .unwrap();

    // H then HH, in event-time order, on the Subscribe stream.
    let h = next_event(&mut stream).await.unwrap();
    assert_eq!(h.alarm_id, "T101.LT/H");
    assert_eq!(h.transition, pb::Transition::Raised as i32);
    assert_eq!((h.event_time_ms, h.value, h.limit), (t0 + 10, 18.5, 18.0));
    let hh = next_event(&mut stream).await.unwrap();
    assert_eq!(hh.alarm_id, "T101.LT/HH");
    assert_eq!(hh.priority, pb::Priority::High as i32);
    assert_eq!(hh.state, pb::AlarmState::UnackedActive as i32);
    assert!(hh.seq > h.seq);

    // Acknowledge over gRPC: the stream shows it, the active list too.
    let ack = alarms
        .acknowledge(pb::AcknowledgeRequest {
            alarm_id: "T101.LT/HH".into(),
            operator: "operator-1".into(),
            comment: "transfer stopped".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(ack.state, pb::AlarmState::AckedActive as i32);
    assert_eq!(ack.actor, "operator-1");
    let seen = next_event(&mut stream).await.unwrap();
    assert_eq!(seen.seq, ack.seq);
    assert_eq!(seen.transition, pb::Transition::Acknowledged as i32);
    let err = alarms
        .acknowledge(pb::AcknowledgeRequest {
            alarm_id: "T101.LT/HH".into(),
            operator: "operator-1".into(),
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let active = alarms
        .list_active(pb::ListActiveRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let states: Vec<(String, i32)> = active
        .alarms
        .iter()
        .map(|a| (a.alarm_id.clone(), a.state))
        .collect();
    assert_eq!(
        states,
        [
            ("T101.LT/HH".to_string(), pb::AlarmState::AckedActive as i32),
            (
                "T101.LT/H".to_string(),
                pb::AlarmState::UnackedActive as i32
            ),
        ]
    );
    assert_eq!(active.as_of_seq, ack.seq);

    gw.close().await;
    svc.wait_for_readings(8).await.unwrap();
    let archive = svc.running.archive_dir.clone();
    let summary = svc.running.shutdown().await.unwrap();
    assert_eq!(summary.readings_in, 8);
    // The readings, and one `expected` marker for each of the park's four
    // watched points at the start.
    assert_eq!(summary.archive_rows, 8 + 4);

    // Every published value is in the sealed archive exactly once.
    let rows = read_archive(&archive).unwrap();
    let counts = row_counts(&rows);
    let mut expected = vec![
        ("T101.LT", t0, 10.0),
        ("T101.LT", t0 + 10, 18.5),
        ("T101.LT", t0 + 20, 19.5),
    ];
    expected.extend((0..5).map(|i| ("T101.PT", t0 + i * 10, 300.0 + i as f64)));
    assert_eq!(rows.len(), expected.len());
    for (p, ts, v) in expected {
        assert_eq!(
            counts.get(&(p.to_string(), ts, f64::to_bits(v))),
            Some(&1),
            "{p} {ts} {v}"
        );
    }
    assert!(rows.iter().all(|r| r.partition.ends_with("enterprise=E01")));
    assert!(rows.iter().all(|r| !r.late));
    // Sorted by (point, ts) within the file.
    let keys: Vec<(String, i64)> = rows.iter().map(|r| (r.point.clone(), r.ts)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_resuming_after_a_sequence_number_gets_only_later_events_and_bad_cursors_are_refused()
 {
    let svc = TestService::start().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-resume").await.unwrap();
    let t0 = now_ms();
    let json = serde_json::json!({"readings": [
        {"point": "T201.TE", "ts": t0, "value": 50.0},
        {"point": "T201.TE", "ts": t0 + 10, "value": 20.0},
        {"point": "T201.TE", "ts": t0 + 20, "value": 50.0},
    ]});
    gw.publish(
        "hw/v1/E02/GW2/telemetry",
        serde_json::to_vec(&json).unwrap(),
    )
    .await
    .unwrap();
    let mut alarms = svc.alarms().await.unwrap();
    let mut first = alarms
        .subscribe(pb::SubscribeRequest {
            filter: None,
            resume_after: 0,
        })
        .await
        .unwrap()
        .into_inner();
    // Raised, cleared, raised again: wait until all three happened.
    hazardwatch_tests::wait_until(std::time::Duration::from_secs(20), || {
        svc.running.hub.last_seq() >= 3
    })
    .await
    .unwrap();
    let current = next_event(&mut first).await.unwrap();
    assert_eq!(current.alarm_id, "T201.TE/H");
    let mut resumed = alarms
        .subscribe(pb::SubscribeRequest {
            filter: None,
            resume_after: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let a = next_event(&mut resumed).await.unwrap();
    let b = next_event(&mut resumed).await.unwrap();
    assert_eq!((a.seq, b.seq), (2, 3));
    assert_eq!(a.transition, pb::Transition::Cleared as i32);
    assert_eq!(b.transition, pb::Transition::Raised as i32);

    // A cursor from before a restart (ahead of this journal) must not be
    // served as if nothing happened since: the client is told to resync.
    let ahead = alarms
        .subscribe(pb::SubscribeRequest {
            filter: None,
            resume_after: 1_000,
        })
        .await
        .unwrap_err();
    assert_eq!(ahead.code(), tonic::Code::OutOfRange);
    assert!(
        ahead.message().contains("ListActive"),
        "{}",
        ahead.message()
    );
    let bad_filter = alarms
        .list_active(pb::ListActiveRequest {
            filter: Some(pb::AlarmFilter {
                enterprises: vec![],
                min_priority: 99,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_filter.code(), tonic::Code::InvalidArgument);
    gw.close().await;
    svc.running.shutdown().await.unwrap();
}
