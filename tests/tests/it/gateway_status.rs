//! Gateway liveness and latched gas alarms, end to end: a real MQTT last
//! will, a real tonic client.

use hazardwatch_proto::pb;
use hazardwatch_tests::{Gateway, TestService, all_alarms, next_event, now_ms, read_archive};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_drops_off_makes_its_points_stale_at_once_through_its_last_will() {
    let svc = TestService::start().await.unwrap();
    let (_alarms, mut stream) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect_with_will(&host, port, "gw1", Some("hw/v1/E01/GW1/status"))
        .await
        .unwrap();
    let t0 = now_ms();
    let json = serde_json::json!({"gateway": "GW1", "readings": [
        {"point": "T101.LT", "ts": t0, "value": 10.0},
        {"point": "T101.PT", "ts": t0, "value": 300.0},
    ]});
    gw.publish(
        "hw/v1/E01/GW1/telemetry",
        serde_json::to_vec(&json).unwrap(),
    )
    .await
    .unwrap();
    svc.wait_for_readings(2).await.unwrap();
    let cut_at = now_ms();
    gw.cut().await;
    // Both points go stale within seconds, not after their 60 s stale time.
    let mut stale = Vec::new();
    while stale.len() < 2 {
        let e = next_event(&mut stream).await.unwrap();
        assert_eq!(e.kind, pb::AlarmKind::Stale as i32, "{e:?}");
        assert_eq!(e.transition, pb::Transition::Raised as i32);
        assert!(
            e.event_time_ms >= cut_at && e.event_time_ms < cut_at + 30_000,
            "{e:?}"
        );
        stale.push(e.point);
    }
    stale.sort();
    assert_eq!(stale, ["T101.LT", "T101.PT"]);
    // The offline markers are archived with the readings (NaN values), so
    // a replay sees the same communication loss.
    let archive = svc.running.archive_dir.clone();
    svc.running.shutdown().await.unwrap();
    let mut markers: Vec<String> = read_archive(&archive)
        .unwrap()
        .into_iter()
        .filter(|r| r.quality == "offline")
        .map(|r| {
            assert!(r.value.is_nan());
            r.point
        })
        .collect();
    markers.sort();
    assert_eq!(markers, ["T101.LT", "T101.PT"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gas_alarm_stays_latched_after_the_gas_clears_until_an_operator_resets_it() {
    let svc = TestService::start().await.unwrap();
    let (mut alarms, mut stream) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-gas").await.unwrap();
    let t0 = now_ms();
    let json = serde_json::json!({"gateway": "GW1", "readings": [
        {"point": "E01-GT01", "ts": t0, "value": 2.0},
        {"point": "E01-GT01", "ts": t0 + 100, "value": 24.0},
        {"point": "E01-GT01", "ts": t0 + 200, "value": 1.0},
    ]});
    gw.publish(
        "hw/v1/E01/GW1/telemetry",
        serde_json::to_vec(&json).unwrap(),
    )
    .await
    .unwrap();
    let raised = next_event(&mut stream).await.unwrap();
    assert_eq!(
        (raised.alarm_id.as_str(), raised.transition),
        ("E01-GT01/H", pb::Transition::Raised as i32)
    );
    let cleared = next_event(&mut stream).await.unwrap();
    assert_eq!(cleared.transition, pb::Transition::Cleared as i32);
    assert!(
        cleared.latched,
        "the condition cleared, the alarm stays latched"
    );
    assert_eq!(cleared.state, pb::AlarmState::UnackedActive as i32);
    let active = alarms
        .list_active(pb::ListActiveRequest {
            filter: all_alarms(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.alarms.len(), 1);
    assert!(active.alarms[0].latched);

    // Reset needs an operator; it leaves the unacknowledged alarm owed its
    // acknowledgement.
    let no_operator = alarms
        .reset(pb::ResetRequest {
            alarm_id: "E01-GT01/H".into(),
            operator: " ".into(),
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_operator.code(), tonic::Code::InvalidArgument);
    let reset = alarms
        .reset(pb::ResetRequest {
            alarm_id: "E01-GT01/H".into(),
            operator: "operator-2".into(),
            comment: "detector checked, area clear".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(reset.transition, pb::Transition::Reset as i32);
    assert_eq!(reset.state, pb::AlarmState::UnackedRtn as i32);
    assert!(!reset.latched);
    assert_eq!(reset.actor, "operator-2");
    let ack = alarms
        .acknowledge(pb::AcknowledgeRequest {
            alarm_id: "E01-GT01/H".into(),
            operator: "operator-2".into(),
            comment: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(ack.state, pb::AlarmState::Normal as i32);
    // A second reset finds nothing; resetting a non-latching alarm is refused.
    let gone = alarms
        .reset(pb::ResetRequest {
            alarm_id: "E01-GT01/H".into(),
            operator: "operator-2".into(),
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    gw.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_never_heard_from_goes_stale_stale_s_after_the_start() {
    let text = format!(
        "{}\n[defaults.level]\nstale_s = 1\n",
        hazardwatch_tests::TEST_PARK
    );
    let started = now_ms();
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let (_alarms, mut stream) = svc.subscribe_all().await.unwrap();
    // Nothing is published: the level goes stale a second after the start.
    let e = next_event(&mut stream).await.unwrap();
    assert_eq!(
        (e.point.as_str(), e.kind, e.transition),
        (
            "T101.LT",
            pb::AlarmKind::Stale as i32,
            pb::Transition::Raised as i32
        ),
        "{e:?}"
    );
    assert!(
        e.event_time_ms >= started + 1_000 && e.event_time_ms < now_ms(),
        "{e:?}"
    );
    assert!(e.value.is_nan(), "never heard from: no value");
    // The marker is archived, so a replay expects the point from the same
    // time; it is not counted as a reading.
    assert_eq!(
        svc.running
            .counters
            .readings_in
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let archive = svc.running.archive_dir.clone();
    svc.running.shutdown().await.unwrap();
    let rows = hazardwatch_tests::read_archive_all(&archive).unwrap();
    assert!(
        rows.iter()
            .any(|r| r.point == "T101.LT" && r.quality == "expected"),
        "{rows:?}"
    );
}
