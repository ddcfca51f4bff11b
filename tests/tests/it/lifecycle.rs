//! The ISA-18.2 operator actions beyond acknowledge and reset, through the
//! real gRPC service: shelving (hidden while shelved, back on its own when
//! the shelf expires), comments, and out of service, each recording who
//! and why.

use hazardwatch_proto::pb;
use hazardwatch_tests::{Gateway, TestService, all_alarms, next_event, now_ms};

fn transition(e: &pb::AlarmEvent) -> pb::Transition {
    pb::Transition::try_from(e.transition).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shelved_alarm_is_hidden_and_comes_back_when_the_shelf_expires() {
    let svc = TestService::start().await.unwrap();
    let (mut alarms, mut stream) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-shelve").await.unwrap();
    // Readings stamped a little ahead, each in its own millisecond, so a
    // loaded machine cannot make them late (lateness is 300 ms here).
    let level = |v: f64, ahead_ms: i64| serde_json::json!([{"point": "T101.LT", "ts": now_ms() + ahead_ms, "value": v}]);
    gw.publish_json("E01", level(18.5, 0)).await.unwrap();
    let raised = next_event(&mut stream).await.unwrap();
    assert_eq!(raised.alarm_id, "T101.LT/H");

    let shelve = |comment: &str, duration_s| pb::ShelveRequest {
        alarm_id: "T101.LT/H".into(),
        operator: "wang.fang".into(),
        comment: comment.into(),
        duration_s,
    };
    // Why and how long are required, and a shelf ends within a shift.
    for bad in [
        shelve("", 2),
        shelve("upset", 0),
        shelve("upset", 8 * 3600 + 1),
    ] {
        let err = alarms.shelve(bad).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    }
    let before = now_ms();
    let shelved = alarms
        .shelve(shelve("level swings during the transfer", 4))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(transition(&shelved), pb::Transition::Shelved);
    assert!((before + 4_000..=now_ms() + 4_000).contains(&shelved.shelved_until_ms));
    assert_eq!(shelved.actor, "wang.fang");
    let next = next_event(&mut stream).await.unwrap();
    assert_eq!(next.seq, shelved.seq, "{next:?}");

    // Cleared and raised again while shelved: journaled, not annunciated.
    gw.publish_json("E01", level(17.0, 500)).await.unwrap();
    gw.publish_json("E01", level(18.6, 600)).await.unwrap();
    // The shelf expires (the service's clock ticks every second): the
    // alarm is back, still active, owed a new acknowledgement. Nothing of
    // the shelved period came in between.
    let back = next_event(&mut stream).await.unwrap();
    // The shelved period is in the history for whoever asks for it.
    let history = alarms
        .history(pb::HistoryRequest {
            filter: Some(pb::AlarmFilter {
                include_shelved: true,
                ..Default::default()
            }),
            from_ms: before - 60_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let journal: Vec<_> = history
        .iter()
        .map(|e| format!("{} {} {:?} {}", e.seq, e.alarm_id, transition(e), e.value))
        .collect();
    assert_eq!(transition(&back), pb::Transition::Unshelved, "{journal:#?}");
    assert_eq!(back.comment, "shelf expired");
    assert_eq!(
        back.state,
        pb::AlarmState::UnackedActive as i32,
        "{journal:#?}"
    );
    assert_eq!(back.shelved_until_ms, 0);
    assert!(
        back.seq >= shelved.seq + 3,
        "the hidden events took numbers"
    );
    let hidden: Vec<_> = history
        .iter()
        .filter(|e| e.shelved_until_ms != 0)
        .map(transition)
        .collect();
    assert_eq!(
        hidden,
        [
            pb::Transition::Shelved,
            pb::Transition::Cleared,
            pb::Transition::Raised
        ],
        "{journal:#?}"
    );
    gw.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_service_and_comments_record_who_and_why() {
    let svc = TestService::start().await.unwrap();
    let (mut alarms, mut stream) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-oos").await.unwrap();
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": now_ms(), "value": 18.5}]),
    )
    .await
    .unwrap();
    next_event(&mut stream).await.unwrap();
    let oos = |out: bool, comment: &str| pb::SetOutOfServiceRequest {
        alarm_id: "T101.LT/H".into(),
        operator: "li.ming".into(),
        comment: comment.into(),
        out_of_service: out,
    };
    let err = alarms.set_out_of_service(oos(true, " ")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let out = alarms
        .set_out_of_service(oos(true, "LT transmitter replaced, loop check pending"))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(transition(&out), pb::Transition::RemovedFromService);
    assert!(out.out_of_service);
    // Out of service: not listed for the control room, cannot be shelved.
    let listed = alarms
        .list_active(pb::ListActiveRequest {
            filter: all_alarms(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.alarms.is_empty(), "{listed:?}");
    let err = alarms
        .shelve(pb::ShelveRequest {
            alarm_id: "T101.LT/H".into(),
            operator: "li.ming".into(),
            comment: "x".into(),
            duration_s: 60,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let note = alarms
        .comment(pb::ActionRequest {
            alarm_id: "T101.LT/H".into(),
            operator: "li.ming".into(),
            comment: "loop check done 15:10".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(transition(&note), pb::Transition::Commented);
    assert_eq!(note.comment, "loop check done 15:10");
    let back = alarms
        .set_out_of_service(oos(false, ""))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(transition(&back), pb::Transition::ReturnedToService);
    assert_eq!(back.state, pb::AlarmState::UnackedActive as i32);
    let err = alarms.set_out_of_service(oos(false, "")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // The console saw every action, in order.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(transition(&next_event(&mut stream).await.unwrap()));
    }
    assert_eq!(
        seen,
        [
            pb::Transition::RemovedFromService,
            pb::Transition::Commented,
            pb::Transition::ReturnedToService
        ]
    );
    gw.close().await;
}
