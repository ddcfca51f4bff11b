//! Closed-loop escalation through the real gRPC service, on an injected
//! clock: an alarm without a disposal record climbs the chain as its times
//! pass (acknowledging does not stop it), a regulator's feed gets it when
//! it reaches its level, and a disposal record stops it.

use hazardwatch_proto::pb;
use hazardwatch_tests::{Gateway, TEST_PARK, TestService, next_event, now_ms};

const CHAIN: &str = r#"
[[escalation]]
enterprises = ["E01"]
min_priority = "medium"
park_min = 10
county_min = 30
city_min = 60
province_min = 120

[[access.token]]
name = "E01 duty officer"
token = "e01-operator-0123456789"
role = "operator"
enterprises = ["E01"]

[[access.token]]
name = "county bureau"
token = "county-viewer-0123456789"
role = "viewer"
level = "county"
enterprises = ["E01"]
"#;

const MIN: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undisposed_alarm_climbs_the_chain_until_its_disposal_is_recorded() {
    let text = format!("{TEST_PARK}{CHAIN}");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let mut duty = svc.alarms_as("e01-operator-0123456789").await.unwrap();
    let mut county = svc.alarms_as("county-viewer-0123456789").await.unwrap();
    let mut duty_feed = duty
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The regulator's feed: what has reached the county.
    let mut county_feed = county
        .subscribe(pb::SubscribeRequest {
            filter: Some(pb::AlarmFilter {
                min_escalation: pb::EscalationLevel::County as i32,
                ..Default::default()
            }),
            resume_after: 0,
        })
        .await
        .unwrap()
        .into_inner();

    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-escalation")
        .await
        .unwrap();
    let t0 = now_ms();
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": t0, "value": 18.5}]),
    )
    .await
    .unwrap();
    let raised = next_event(&mut duty_feed).await.unwrap();
    assert_eq!(raised.alarm_id, "T101.LT/H");
    assert!(raised.awaiting_disposal);
    assert_eq!(
        raised.escalation_level,
        pb::EscalationLevel::Enterprise as i32
    );
    duty.acknowledge(pb::AcknowledgeRequest {
        alarm_id: "T101.LT/H".into(),
        operator: "zhao.lei".into(),
        comment: "checking".into(),
    })
    .await
    .unwrap();

    let hub = &svc.running.hub;
    let level = |events: &[pb::AlarmEvent]| -> Vec<i32> {
        events.iter().map(|e| e.escalation_level).collect()
    };
    // Just before the park's deadline nothing happens; after it, one level.
    assert!(hub.tick(t0 + 10 * MIN - 1_000).is_empty());
    let up = hub.tick(t0 + 10 * MIN + 1_000);
    assert_eq!(level(&up), [pb::EscalationLevel::Park as i32]);
    assert_eq!(up[0].transition, pb::Transition::Escalated as i32);
    // The county's feed is still quiet; at 30 minutes it gets the alarm.
    let up = hub.tick(t0 + 30 * MIN + 1_000);
    assert_eq!(level(&up), [pb::EscalationLevel::County as i32]);
    let at_county = next_event(&mut county_feed).await.unwrap();
    assert_eq!(at_county.seq, up[0].seq, "the first the county hears of it");
    assert_eq!(at_county.alarm_id, "T101.LT/H");
    assert!(
        at_county.message.contains("county"),
        "{}",
        at_county.message
    );

    // The regulator may not close it; the duty officer must give cause and
    // action.
    let dispose = |cause: &str, action: &str| pb::DisposeRequest {
        alarm_id: "T101.LT/H".into(),
        operator: "zhao.lei".into(),
        cause: cause.into(),
        action: action.into(),
    };
    let err = county.dispose(dispose("x", "y")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let err = duty
        .dispose(dispose("", "closed the inlet"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let done = duty
        .dispose(dispose(
            "transfer pump left running after shift change",
            "stopped the pump, added a hand-over checklist item",
        ))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(done.transition, pb::Transition::Disposed as i32);
    assert!(!done.awaiting_disposal);
    assert_eq!(
        done.action,
        "stopped the pump, added a hand-over checklist item"
    );
    // The county sees the loop closed; nothing escalates any more.
    assert_eq!(next_event(&mut county_feed).await.unwrap().seq, done.seq);
    assert!(hub.tick(t0 + 600 * MIN).is_empty());

    // Back to normal: acknowledged and disposed, so closed.
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": now_ms() + 500, "value": 17.0}]),
    )
    .await
    .unwrap();
    loop {
        let e = next_event(&mut duty_feed).await.unwrap();
        if e.transition == pb::Transition::Cleared as i32 {
            assert_eq!(e.state, pb::AlarmState::Normal as i32);
            break;
        }
    }
    let listed = duty
        .list_active(pb::ListActiveRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.alarms.is_empty(), "{listed:?}");
    gw.close().await;
}
