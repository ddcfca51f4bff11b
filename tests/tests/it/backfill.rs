//! Backfill: a gateway back after a two-hour outage sends its buffered
//! readings; the overfill they contain is judged after the fact, at its
//! true event times, once, and a replay of the archive agrees.

use std::collections::BTreeSet;
use std::time::Duration;

use hazardwatch::config::Config;
use hazardwatch_proto::pb;
use hazardwatch_storage::reader::Range;
use hazardwatch_tests::{Gateway, TEST_PARK, TestService, now_ms};

/// (alarm id, raised, event time) of the H and HH alarms of T101.LT.
type Change = (String, bool, i64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overfill_during_an_outage_is_reported_afterwards_once_at_its_true_times() {
    let svc = TestService::start().await.unwrap();
    let (_alarms, mut stream) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-backfill").await.unwrap();
    // The buffer: T101.LT every 10 s from two hours ago for 100 minutes;
    // an overfill from +30 min (past H at 18 m and HH at 19 m) back to
    // normal by +45 min. Sent in messages of 60 readings.
    let t0 = now_ms() - 2 * 3_600_000;
    let level = |i: i64| match i {
        180..=269 => 10.0 + (i - 180) as f64 * 0.11, // rising to 19.9
        270..=279 => 19.9,
        280..=299 => 10.0,
        _ => 10.0,
    };
    let readings: Vec<(i64, f64)> = (0..600).map(|i| (t0 + i * 10_000, level(i))).collect();
    for chunk in readings.chunks(60) {
        let batch: Vec<serde_json::Value> = chunk
            .iter()
            .map(|(ts, v)| serde_json::json!({"point": "T101.LT", "ts": ts, "value": v}))
            .collect();
        gw.publish_json("E01", serde_json::Value::Array(batch))
            .await
            .unwrap();
    }
    svc.wait_for_readings(600).await.unwrap();
    // Their alarms come once the buffer is in (the episode is idle).
    let mut live: Vec<Change> = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while live.len() < 4 && tokio::time::Instant::now() < until {
        let e = hazardwatch_tests::next_event(&mut stream).await.unwrap();
        if e.point != "T101.LT" || !(e.alarm_id.ends_with("/H") || e.alarm_id.ends_with("/HH")) {
            continue;
        }
        assert!(e.backfilled, "{e:?}");
        assert!(e.message.contains("backfilled"), "{}", e.message);
        assert!(e.event_time_ms < t0 + 3_600_000, "true event time: {e:?}");
        live.push((
            e.alarm_id.clone(),
            e.transition == pb::Transition::Raised as i32,
            e.event_time_ms,
        ));
    }
    let first_above = |limit: f64| readings.iter().find(|(_, v)| *v > limit).unwrap().0;
    let first_back = readings
        .iter()
        .skip_while(|(_, v)| *v <= 18.0)
        .find(|(_, v)| *v <= 18.0)
        .unwrap()
        .0;
    let mut want = vec![
        ("T101.LT/H".to_string(), true, first_above(18.0)),
        ("T101.LT/HH".to_string(), true, first_above(19.0)),
        ("T101.LT/H".to_string(), false, first_back),
        ("T101.LT/HH".to_string(), false, first_back),
    ];
    want.sort();
    live.sort();
    assert_eq!(live, want);
    // Once: nothing more about them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = svc.running.counters.clone();
    assert_eq!(
        stats
            .readings_backfilled
            .load(std::sync::atomic::Ordering::Relaxed),
        600
    );
    gw.close().await;
    let archive = svc.running.archive_dir.clone();
    svc.running.shutdown().await.unwrap();

    // Replay of the archive: the same alarms at the same times.
    let config = Config::from_source(&hazardwatch_rules::Source {
        path: "test-park.toml".into(),
        text: TEST_PARK.into(),
    })
    .unwrap();
    let replayed = hazardwatch::replay::replay(
        &archive,
        &Range::default(),
        &config.site,
        None,
        &config.settings.engine,
        false,
    )
    .unwrap();
    assert_eq!(
        replayed.readings, 600,
        "the backfilled readings are judged in replay"
    );
    let again: BTreeSet<Change> = replayed
        .events
        .iter()
        .map(|e| {
            (
                hazardwatch::replay::alarm_id(&config.site.catalog, e),
                e.active,
                e.ts_ms,
            )
        })
        .filter(|(id, _, _)| id == "T101.LT/H" || id == "T101.LT/HH")
        .collect();
    assert_eq!(again, want.into_iter().collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_beyond_the_horizon_are_archived_flagged_and_recorded_not_judged() {
    let text = format!("{TEST_PARK}\n[backfill]\nhorizon_s = 3600\n");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-ancient").await.unwrap();
    // Two hours old, far past HH: beyond the one-hour horizon.
    let t0 = now_ms() - 2 * 3_600_000;
    let batch: Vec<serde_json::Value> = (0..5)
        .map(|i| serde_json::json!({"point": "T101.LT", "ts": t0 + i * 1000, "value": 19.9}))
        .collect();
    gw.publish_json("E01", serde_json::Value::Array(batch))
        .await
        .unwrap();
    svc.wait_for_readings(5).await.unwrap();
    let stats = svc.running.counters.clone();
    hazardwatch_tests::wait_until(Duration::from_secs(10), || {
        stats
            .readings_not_judged
            .load(std::sync::atomic::Ordering::Relaxed)
            == 5
    })
    .await
    .unwrap();
    let record = svc
        .running
        .quarantine_file
        .with_file_name("not_judged.jsonl");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.contains("older than the backfill horizon (3600 s)"),
        "{text}"
    );
    assert!(text.contains("5 readings from"), "{text}");
    assert!(text.contains("beyond_horizon"), "{text}");
    gw.close().await;
    let archive = svc.running.archive_dir.clone();
    let summary = svc.running.shutdown().await.unwrap();
    assert_eq!(summary.alarms_raised, 0, "not judged");
    let rows = hazardwatch_tests::read_archive(&archive).unwrap();
    assert_eq!(
        rows.iter()
            .filter(|r| r.point == "T101.LT" && r.late)
            .count(),
        5
    );
}
