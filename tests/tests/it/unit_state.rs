//! A unit's operating state set through the API (admin only): recorded on
//! the feed with who and why, and from then on the unit's alarms are
//! suppressed by design (recorded, not annunciated).

use hazardwatch_proto::pb;
use hazardwatch_tests::{Gateway, TEST_PARK, TestService, next_feed_event, now_ms};

const TOKENS: &str = r#"
[[access.token]]
name = "park admin"
token = "park-admin-0123456789"
role = "admin"
level = "park"
enterprises = ["*"]

[[access.token]]
name = "E02 control room"
token = "e02-operator-0123456789"
role = "operator"
enterprises = ["E02"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overhauled_unit_set_through_the_api_has_its_alarms_suppressed() {
    let text = format!("{TEST_PARK}{TOKENS}");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let mut admin = svc.site_as("park-admin-0123456789").await.unwrap();
    let mut operator = svc.site_as("e02-operator-0123456789").await.unwrap();
    let mut feed = svc
        .alarms_as("park-admin-0123456789")
        .await
        .unwrap()
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let request = |unit: &str, comment: &str| pb::SetUnitStateRequest {
        unit: unit.into(),
        state: pb::UnitState::Overhaul as i32,
        operator: "sun.li".into(),
        comment: comment.into(),
    };
    let err = operator
        .set_unit_state(request("T201", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = admin
        .set_unit_state(request("T999", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = admin
        .set_unit_state(request("T201", " "))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let set = admin
        .set_unit_state(request("T201", "annual inspection, tank emptied"))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(set.transition, pb::Transition::UnitStateChanged as i32);
    assert_eq!(set.alarm_id, "T201/STATE");
    assert!(
        set.message.contains("overhaul (was running)"),
        "{}",
        set.message
    );
    assert_eq!(set.actor, "sun.li via park admin");
    assert_eq!(next_feed_event(&mut feed).await.unwrap().seq, set.seq);

    // From now on T201's alarms are recorded but not annunciated.
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-unit-state")
        .await
        .unwrap();
    let t = now_ms() + 500;
    gw.publish_json(
        "E02",
        serde_json::json!([{"point": "T201.TE", "ts": t, "value": 50.0}]),
    )
    .await
    .unwrap();
    let mut alarms = svc.alarms_as("park-admin-0123456789").await.unwrap();
    let mut recorded = Vec::new();
    for _ in 0..100 {
        recorded = alarms
            .history(pb::HistoryRequest {
                filter: Some(pb::AlarmFilter {
                    include_suppressed: true,
                    ..Default::default()
                }),
                from_ms: t - 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        if !recorded.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].alarm_id, "T201.TE/H");
    assert!(recorded[0].suppressed);
    // The annunciating feed got nothing of it.
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(500), feed.message()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    gw.close().await;
}
