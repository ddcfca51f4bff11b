//! The service's wall clock stepped forward an hour and back (an NTP
//! correction, a mis-set clock): every reading still archived exactly once,
//! the alarm journal numbered without a gap, and the rules go on (readings
//! behind the stepped-ahead event time are judged by the backfill).

use std::sync::Arc;
use std::time::Duration;

use hazardwatch_tests::{
    Gateway, SteppedClock, TEST_PARK, TestService, now_ms, read_archive, row_counts,
};

const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_stepped_forward_and_back_loses_and_doubles_nothing() {
    let clock = Arc::new(SteppedClock::default());
    let env = hazardwatch::service::Environment {
        clock: clock.clone(),
        ..Default::default()
    };
    let text = TEST_PARK.replace("[archive]\nroll_secs = 3600", "[archive]\nroll_secs = 1");
    let svc = TestService::start_env(tempfile::tempdir().unwrap(), &text, env)
        .await
        .unwrap();
    let (_alarms, mut feed) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-clock").await.unwrap();
    let mut published = Vec::new();
    let mut publish = async |gw: &mut Gateway, value: f64| {
        let ts = now_ms();
        gw.publish_json(
            "E01",
            serde_json::json!([{"point": "T101.PT", "ts": ts, "value": value}]),
        )
        .await
        .unwrap();
        published.push(("T101.PT".to_owned(), ts, value.to_bits()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for i in 0..5 {
        publish(&mut gw, 100.0 + f64::from(i)).await;
    }
    // An hour ahead: event time jumps with it.
    clock.step(HOUR_MS);
    for i in 0..5 {
        publish(&mut gw, 200.0 + f64::from(i)).await;
    }
    // Back, to two minutes behind the true time (within the clock-skew
    // allowance, so the gateways' readings are still taken): event time
    // never goes back, so these readings are behind it, and late.
    clock.step(-HOUR_MS - 120_000);
    for i in 0..5 {
        publish(&mut gw, 300.0 + f64::from(i)).await;
    }
    // A high pressure behind event time: the backfill judges it.
    publish(&mut gw, 700.0).await;
    clock.step(120_000);
    loop {
        let e = hazardwatch_tests::next_event(&mut feed).await.unwrap();
        if e.alarm_id == "T101.PT/H" {
            assert!(e.backfilled, "judged by the backfill: {e:?}");
            break;
        }
    }
    svc.wait_for_readings(published.len() as u64).await.unwrap();
    gw.close().await;
    let archive = svc.running.archive_dir.clone();
    let hub = svc.running.hub.clone();
    svc.running.shutdown().await.unwrap();
    let counts = row_counts(&read_archive(&archive).unwrap());
    for key in &published {
        assert_eq!(counts.get(key), Some(&1), "{key:?} archived once");
    }
    assert_eq!(counts.len(), published.len(), "nothing else");
    let last = hub.last_seq();
    let events = hub.journal_after(0, usize::MAX).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "no gap");
}
