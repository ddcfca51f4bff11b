//! Notifications through the durable outbox, end to end: alarms routed by
//! enterprise and priority, POSTed to a real HTTP receiver that refuses its first
//! attempts, then is down while the service restarts. Every notification
//! arrives exactly once, to the recipient routed to it, and the alarms'
//! timelines record the failures and the deliveries.

use std::collections::BTreeMap;
use std::time::Duration;

use hazardwatch_proto::pb;
use hazardwatch_tests::webhook::Receiver;
use hazardwatch_tests::{Gateway, TEST_PARK, TestService, now_ms, wait_until};

fn config(url: &str) -> String {
    format!(
        r#"{TEST_PARK}
[notify]
retry_min_s = 0.1
retry_max_s = 0.4

[[notify.webhook]]
name = "E01 值班"
url = "{url}"
enterprises = ["E01"]
min_priority = "high"

[[notify.webhook]]
name = "E02 desk"
url = "{url}"
enterprises = ["E02"]
min_priority = "medium"
lang = "en"
"#
    )
}

/// Every journaled event.
fn journal(svc: &TestService) -> Vec<pb::AlarmEvent> {
    svc.running.hub.journal_after(0, 100_000).unwrap()
}

fn is(e: &pb::AlarmEvent, t: pb::Transition) -> bool {
    e.transition == t as i32
}

/// Publishes readings as a gateway of `enterprise`.
async fn publish(svc: &TestService, enterprise: &str, readings: serde_json::Value) {
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, &format!("gw-{enterprise}"))
        .await
        .unwrap();
    gw.publish_json(enterprise, readings).await.unwrap();
    gw.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notification_arrives_once_across_refusals_an_outage_and_a_restart() {
    let mut rx = Receiver::start(3).await.unwrap();
    let text = config(&rx.url());
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let t0 = now_ms();
    publish(
        &svc,
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": t0, "value": 19.5}]),
    )
    .await;
    publish(
        &svc,
        "E02",
        serde_json::json!([{"point": "T201.TE", "ts": t0, "value": 50.0}]),
    )
    .await;
    // Three 503s first, shared by the two recipients; then both arrive.
    // (The timeline's record follows the receiver's answer.)
    let notified = |svc: &TestService| {
        journal(svc)
            .iter()
            .filter(|e| is(e, pb::Transition::Notified))
            .count()
    };
    wait_until(Duration::from_secs(30), || {
        rx.accepted().len() == 2 && notified(&svc) == 2
    })
    .await
    .unwrap();
    assert!(rx.attempts() >= 5, "{} attempts", rx.attempts());
    let events = journal(&svc);
    let retried = events
        .iter()
        .filter(|e| is(e, pb::Transition::NotificationFailed) && e.action == "retrying")
        .count();
    assert!(
        (1..=2).contains(&retried),
        "the first failure of each: {retried}"
    );
    for (alarm, recipient) in [("T101.LT/HH", "E01 值班"), ("T201.TE/H", "E02 desk")] {
        let notified: Vec<_> = events
            .iter()
            .filter(|e| is(e, pb::Transition::Notified) && e.alarm_id == alarm)
            .collect();
        assert_eq!(notified.len(), 1, "{alarm}: {notified:?}");
        assert_eq!(notified[0].actor, recipient);
        assert!(notified[0].value >= 1.0, "the attempts it took");
        // The alarm itself is as it was: raised, unacknowledged.
        assert_eq!(notified[0].state, pb::AlarmState::UnackedActive as i32);
    }

    // The receiver goes down; a gas alarm comes; the service restarts;
    // another critical alarm comes; then the receiver is back.
    rx.down().await;
    publish(
        &svc,
        "E01",
        serde_json::json!([{"point": "E01-GT01", "ts": now_ms(), "value": 45.0}]),
    )
    .await;
    wait_until(Duration::from_secs(20), || {
        journal(&svc)
            .iter()
            .any(|e| is(e, pb::Transition::NotificationFailed) && e.alarm_id == "E01-GT01/HH")
    })
    .await
    .unwrap();
    let svc = svc.restart_text(&text).await.unwrap();
    let t1 = now_ms();
    publish(
        &svc,
        "E01",
        serde_json::json!([
            {"point": "T101.LT", "ts": t1, "value": 10.0},
            {"point": "T101.LT", "ts": t1 + 100, "value": 19.6}
        ]),
    )
    .await;
    let raised_again = || {
        journal(&svc)
            .iter()
            .filter(|e| is(e, pb::Transition::Raised) && e.alarm_id == "T101.LT/HH")
            .count()
            == 2
    };
    wait_until(Duration::from_secs(20), raised_again)
        .await
        .unwrap();
    // Let the new notification fail at least once while the receiver is
    // down, then bring it back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rx.up().await.unwrap();
    wait_until(Duration::from_secs(30), || {
        rx.accepted().len() >= 5 && notified(&svc) >= 5
    })
    .await
    .unwrap();
    // Time for a duplicate to show, if there were one.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let accepted = rx.accepted();
    let mut by_key: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &accepted {
        *by_key.entry(r.key.as_str()).or_default() += 1;
    }
    assert!(by_key.values().all(|&n| n == 1), "duplicates: {by_key:?}");
    let mut got: Vec<(String, String, String)> = accepted
        .iter()
        .map(|r| {
            (
                r.body["recipient"].as_str().unwrap().to_owned(),
                r.body["alarm_id"].as_str().unwrap().to_owned(),
                r.body["trigger"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let want = |r: &str, a: &str| (r.to_owned(), a.to_owned(), "raised".to_owned());
    assert_eq!(
        got,
        vec![
            want("E01 值班", "E01-GT01/H"),
            want("E01 值班", "E01-GT01/HH"),
            want("E01 值班", "T101.LT/HH"),
            want("E01 值班", "T101.LT/HH"),
            want("E02 desk", "T201.TE/H"),
        ]
    );
    // The id in the body and, percent-encoded, in the header; the text in
    // each recipient's language.
    for r in &accepted {
        let id = r.body["id"].as_str().unwrap();
        assert_eq!(
            id,
            format!(
                "TEST/{}/{}",
                r.body["seq"],
                r.body["recipient"].as_str().unwrap()
            )
        );
        if r.body["recipient"] == "E01 值班" {
            assert_eq!(r.key, id.replace("值班", "%E5%80%BC%E7%8F%AD"));
            let title = if r.body["alarm_id"] == "E01-GT01/HH" {
                "【紧急报警】E01 "
            } else {
                "【高优先级报警】E01 "
            };
            let got = r.body["title"].as_str().unwrap();
            assert!(got.starts_with(title), "{}", r.body);
        } else {
            assert_eq!(r.key, id);
            assert_eq!(r.body["title"], "[medium-priority alarm] E02 T201.TE/H");
        }
    }
    // Nothing waits; the timelines have one delivery per notification.
    assert!(
        svc.running
            .hub
            .journal()
            .outbox_waiting()
            .unwrap()
            .is_empty()
    );
    assert_eq!(notified(&svc), 5);
    svc.running.shutdown().await.unwrap();
}

/// An escalation reaches the recipient of its level, and the levels below
/// it do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_is_notified_at_the_recipients_level_only() {
    let mut rx = Receiver::start(0).await.unwrap();
    let text = format!(
        r#"{TEST_PARK}
[[escalation]]
enterprises = ["E01"]
min_priority = "medium"
park_min = 10
county_min = 30
city_min = 60
province_min = 120

[[notify.webhook]]
name = "county duty office"
url = "{}"
enterprises = ["E01"]
on = ["escalated"]
min_escalation = "county"
"#,
        rx.url()
    );
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let t0 = now_ms();
    publish(
        &svc,
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": t0, "value": 18.5}]),
    )
    .await;
    let hub = &svc.running.hub;
    wait_until(Duration::from_secs(20), || {
        journal(&svc)
            .iter()
            .any(|e| e.alarm_id == "T101.LT/H" && is(e, pb::Transition::Raised))
    })
    .await
    .unwrap();
    const MIN: i64 = 60_000;
    assert_eq!(hub.tick(t0 + 10 * MIN + 1_000).len(), 1, "to the park");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        rx.accepted().is_empty(),
        "the park's level is below the recipient's"
    );
    assert_eq!(hub.tick(t0 + 30 * MIN + 1_000).len(), 1, "to the county");
    wait_until(Duration::from_secs(20), || rx.accepted().len() == 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = rx.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["trigger"], "escalated");
    assert_eq!(got[0].body["escalation_level"], "county");
    assert_eq!(got[0].body["title"], "【报警已升级至县级】E01 T101.LT/H");
    rx.down().await;
    svc.running.shutdown().await.unwrap();
}
