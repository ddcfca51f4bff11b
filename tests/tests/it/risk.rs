//! Live risk colours through the real gRPC service: SiteService reports
//! each hazard source's grade and colour, a colour change is an event on
//! the alarm feed, and a scoped token sees only its enterprises.

use hazardwatch_proto::pb;
use hazardwatch_proto::pb::site_service_client::SiteServiceClient;
use hazardwatch_tests::{Gateway, TestService, next_event, next_feed_event, now_ms};

fn colours(r: &pb::RiskResponse) -> Vec<(String, i32)> {
    r.enterprises
        .iter()
        .flat_map(|e| e.hazard_sources.iter())
        .map(|hs| (hs.id.clone(), hs.colour))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colours_rise_with_alarms_and_every_change_is_on_the_feed() {
    let svc = TestService::start().await.unwrap();
    let mut site = SiteServiceClient::connect(format!("http://{}", svc.running.grpc_addr))
        .await
        .unwrap();
    let (_, mut feed) = svc.subscribe_all().await.unwrap();
    let report = site
        .risk(pb::RiskRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Grade 2 starts yellow, grade 3 blue; the park takes the worst.
    assert_eq!(
        colours(&report),
        [
            ("E01-HS1".to_string(), pb::RiskColour::Yellow as i32),
            ("E02-HS1".to_string(), pb::RiskColour::Blue as i32)
        ]
    );
    assert_eq!(report.park_colour, pb::RiskColour::Yellow as i32);
    assert_eq!(report.enterprises[0].hazard_sources[0].grade, 2);

    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-risk").await.unwrap();
    let publish = |point: &str, value: f64| serde_json::json!([{"point": point, "ts": now_ms() + 300, "value": value}]);
    // A medium alarm (H) changes nothing; the HH (high) makes it orange.
    gw.publish_json("E01", publish("T101.LT", 18.5))
        .await
        .unwrap();
    assert_eq!(next_event(&mut feed).await.unwrap().alarm_id, "T101.LT/H");
    gw.publish_json("E01", publish("T101.LT", 19.5))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(next_feed_event(&mut feed).await.unwrap());
    }
    assert_eq!(got[0].alarm_id, "T101.LT/HH");
    assert_eq!(got[1].alarm_id, "E01-HS1/RISK");
    assert_eq!(got[1].transition, pb::Transition::RiskChanged as i32);
    assert_eq!(got[1].risk_colour, pb::RiskColour::Orange as i32);
    assert_eq!(got[1].seq, got[0].seq + 1, "numbered with the alarms");
    assert!(
        got[1].message.contains("high-priority alarm: T101.LT/HH"),
        "{}",
        got[1].message
    );
    // Gas at its second level (critical): red.
    gw.publish_json("E01", publish("E01-GT01", 45.0))
        .await
        .unwrap();
    loop {
        let e = next_feed_event(&mut feed).await.unwrap();
        if e.alarm_id == "E01-HS1/RISK" {
            assert_eq!(e.risk_colour, pb::RiskColour::Red as i32);
            break;
        }
    }
    let report = site
        .risk(pb::RiskRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.park_colour, pb::RiskColour::Red as i32);
    let e01 = &report.enterprises[0];
    assert_eq!(e01.colour, pb::RiskColour::Red as i32);
    assert!(
        e01.hazard_sources[0]
            .reasons
            .iter()
            .any(|r| r.contains("critical alarm: E01-GT01/HH")),
        "{:?}",
        e01.hazard_sources[0].reasons
    );
    // Asking for one enterprise gives that one; the park colour follows it.
    let e02 = site
        .risk(pb::RiskRequest {
            enterprises: vec!["E02".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e02.enterprises.len(), 1);
    assert_eq!(e02.park_colour, pb::RiskColour::Blue as i32);

    // The console's EEMUA 191 figures for the last ten minutes.
    let mut alarms = svc.alarms().await.unwrap();
    let stats = alarms
        .stats(pb::StatsRequest {
            enterprise: "E01".into(),
            from_ms: now_ms() - 600_000,
            to_ms: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.raises, 4, "{stats:?}");
    assert_eq!(stats.per_10min_peak, 4);
    let mut bad: Vec<_> = stats
        .bad_actors
        .iter()
        .map(|b| b.alarm_id.as_str())
        .collect();
    bad.sort();
    assert_eq!(
        bad,
        ["E01-GT01/H", "E01-GT01/HH", "T101.LT/H", "T101.LT/HH"]
    );
    let by_priority: Vec<_> = stats
        .priorities
        .iter()
        .map(|p| (p.priority, p.raises))
        .collect();
    assert_eq!(
        by_priority,
        [
            (pb::Priority::Medium as i32, 1),
            (pb::Priority::High as i32, 2),
            (pb::Priority::Critical as i32, 1)
        ]
    );
    // Filters by hazard source and by state.
    let list = |hazard_sources: &[&str], states: &[pb::AlarmState]| pb::ListActiveRequest {
        filter: Some(pb::AlarmFilter {
            hazard_sources: hazard_sources.iter().map(|h| h.to_string()).collect(),
            states: states.iter().map(|&s| s as i32).collect(),
            ..Default::default()
        }),
    };
    let count = |r: pb::ListActiveResponse| r.alarms.len();
    let unacked = pb::AlarmState::UnackedActive;
    assert_eq!(
        count(
            alarms
                .list_active(list(&["E01-HS1"], &[unacked]))
                .await
                .unwrap()
                .into_inner()
        ),
        4
    );
    assert_eq!(
        count(
            alarms
                .list_active(list(&["E02-HS1"], &[]))
                .await
                .unwrap()
                .into_inner()
        ),
        0
    );
    assert_eq!(
        count(
            alarms
                .list_active(list(&[], &[pb::AlarmState::AckedActive]))
                .await
                .unwrap()
                .into_inner()
        ),
        0
    );
    let err = alarms
        .list_active(pb::ListActiveRequest {
            filter: Some(pb::AlarmFilter {
                states: vec![42],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = alarms
        .stats(pb::StatsRequest {
            enterprise: "E99".into(),
            from_ms: 0,
            to_ms: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    gw.close().await;
}
