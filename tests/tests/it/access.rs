//! Scoped access through the real gRPC service: a token scoped to one
//! enterprise never receives another's alarms, in any RPC or stream; a
//! viewer cannot act; a call without a valid token is refused.

use hazardwatch_proto::pb;
use hazardwatch_tests::{Gateway, TEST_PARK, TestService, next_event, now_ms};

const TOKENS: &str = r#"
[[access.token]]
name = "E01 control room"
token = "e01-operator-0123456789"
role = "operator"
enterprises = ["E01"]

[[access.token]]
name = "E02 viewer"
token = "e02-viewer-0123456789"
role = "viewer"
enterprises = ["E02"]

[[access.token]]
name = "county"
token = "county-viewer-0123456789"
role = "viewer"
level = "county"
enterprises = ["*"]
"#;

fn ids(events: &[pb::AlarmEvent]) -> Vec<String> {
    events.iter().map(|e| e.alarm_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_sees_only_its_enterprises_and_a_viewer_cannot_act() {
    let text = format!("{TEST_PARK}{TOKENS}");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let subscribe = pb::SubscribeRequest {
        filter: None,
        resume_after: 0,
    };
    // No token, or a wrong one: refused.
    let mut anonymous = svc.alarms().await.unwrap();
    let err = anonymous
        .list_active(pb::ListActiveRequest { filter: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut wrong = svc.alarms_as("e01-operator-012345678X").await.unwrap();
    let err = wrong.subscribe(subscribe.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let mut e01 = svc.alarms_as("e01-operator-0123456789").await.unwrap();
    let mut e02 = svc.alarms_as("e02-viewer-0123456789").await.unwrap();
    let mut county = svc.alarms_as("county-viewer-0123456789").await.unwrap();
    let mut e01_stream = e01.subscribe(subscribe.clone()).await.unwrap().into_inner();
    let mut e02_stream = e02.subscribe(subscribe.clone()).await.unwrap().into_inner();
    let mut county_stream = county.subscribe(subscribe).await.unwrap().into_inner();

    // E02's alarm first, then E01's: E01's stream must show its own first.
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-access").await.unwrap();
    gw.publish_json(
        "E02",
        serde_json::json!([{"point": "T201.TE", "ts": now_ms(), "value": 50.0}]),
    )
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut e02_stream).await.unwrap().alarm_id,
        "T201.TE/H"
    );
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": now_ms(), "value": 18.5}]),
    )
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut e01_stream).await.unwrap().alarm_id,
        "T101.LT/H"
    );
    let mut both = vec![
        next_event(&mut county_stream).await.unwrap(),
        next_event(&mut county_stream).await.unwrap(),
    ];
    both.sort_by(|a, b| a.alarm_id.cmp(&b.alarm_id));
    assert_eq!(
        ids(&both),
        ["T101.LT/H", "T201.TE/H"],
        "the park's token sees both"
    );

    // ListActive and History: each sees its own only.
    let listed = |r: pb::ListActiveResponse| -> Vec<String> {
        r.alarms.into_iter().map(|a| a.alarm_id).collect()
    };
    let all = pb::ListActiveRequest { filter: None };
    assert_eq!(
        listed(e01.list_active(all.clone()).await.unwrap().into_inner()),
        ["T101.LT/H"]
    );
    assert_eq!(
        listed(e02.list_active(all.clone()).await.unwrap().into_inner()),
        ["T201.TE/H"]
    );
    let history = pb::HistoryRequest {
        from_ms: now_ms() - 60_000,
        ..Default::default()
    };
    let e01_history = e01.history(history.clone()).await.unwrap().into_inner();
    assert!(!e01_history.events.is_empty());
    assert!(e01_history.events.iter().all(|e| e.enterprise == "E01"));
    // Naming another enterprise in a filter is refused, not ignored.
    let err = e01
        .list_active(pb::ListActiveRequest {
            filter: Some(pb::AlarmFilter {
                enterprises: vec!["E02".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // The site's risk report too: E01's token sees E01 only.
    let mut e01_site = svc.site_as("e01-operator-0123456789").await.unwrap();
    let risk = e01_site
        .risk(pb::RiskRequest::default())
        .await
        .unwrap()
        .into_inner();
    let seen: Vec<_> = risk.enterprises.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(seen, ["E01"]);
    let err = e01_site
        .risk(pb::RiskRequest {
            enterprises: vec!["E02".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // And the console statistics.
    let err = e01
        .stats(pb::StatsRequest {
            enterprise: "E02".into(),
            from_ms: 0,
            to_ms: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // Acting: outside the scope the alarm does not exist; a viewer may not.
    let ack = |id: &str| pb::AcknowledgeRequest {
        alarm_id: id.into(),
        operator: "zhang.wei".into(),
        comment: String::new(),
    };
    let err = e01.acknowledge(ack("T201.TE/H")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = e02.acknowledge(ack("T201.TE/H")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let done = e01
        .acknowledge(ack("T101.LT/H"))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(done.actor, "zhang.wei via E01 control room");

    // More E02 alarms, then an E01 one: E01's stream goes straight to its
    // own acknowledgement and the new alarm; nothing of E02's in between.
    gw.publish_json(
        "E02",
        serde_json::json!([{"point": "T201.TE", "ts": now_ms(), "value": 20.0}]),
    )
    .await
    .unwrap();
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": now_ms(), "value": 19.5}]),
    )
    .await
    .unwrap();
    let next = [
        next_event(&mut e01_stream).await.unwrap(),
        next_event(&mut e01_stream).await.unwrap(),
    ];
    assert_eq!(ids(&next), ["T101.LT/H", "T101.LT/HH"]);
    assert!(next.iter().all(|e| e.enterprise == "E01"));
    // And a resume from the start of the journal is scoped as well.
    let mut replay = e02
        .subscribe(pb::SubscribeRequest {
            filter: None,
            resume_after: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let first = next_event(&mut replay).await.unwrap();
    assert_eq!(first.enterprise, "E02");
    gw.close().await;
}

/// Operator actions are one journal commit each: a token that sends them
/// without pause is refused past its burst (and told when to try again),
/// while another token acts as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_acting_without_pause_is_limited_and_others_are_not() {
    use hazardwatch_alarms::rate::ACTION_BURST;
    let second = r#"
[[access.token]]
name = "E01 night shift"
token = "e01-night-0123456789"
role = "operator"
enterprises = ["E01"]
"#;
    let text = format!("{TEST_PARK}{TOKENS}{second}");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-rate").await.unwrap();
    let mut day = svc.alarms_as("e01-operator-0123456789").await.unwrap();
    let mut night = svc.alarms_as("e01-night-0123456789").await.unwrap();
    let mut feed = day
        .subscribe(pb::SubscribeRequest {
            filter: None,
            resume_after: 0,
        })
        .await
        .unwrap()
        .into_inner();
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": now_ms(), "value": 18.5}]),
    )
    .await
    .unwrap();
    assert_eq!(next_event(&mut feed).await.unwrap().alarm_id, "T101.LT/H");
    let comment = |n: usize| pb::ActionRequest {
        alarm_id: "T101.LT/H".into(),
        operator: "zhang.wei".into(),
        comment: format!("note {n}"),
    };
    let mut refused = None;
    for n in 0..ACTION_BURST as usize + 50 {
        if let Err(e) = day.comment(comment(n)).await {
            refused = Some((n, e));
            break;
        }
    }
    let (n, err) = refused.expect("a token commenting without pause is limited");
    assert!(n >= ACTION_BURST as usize, "refused after {n}");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("try again in"), "{}", err.message());
    night.comment(comment(0)).await.unwrap();
    gw.close().await;
    svc.running.shutdown().await.unwrap();
}
