//! The durable alarm journal through the real gRPC service: a subscriber
//! resumes after a disconnect and across a restart with no gap and no
//! duplicate; the restarted service carries its alarms on (and the rules
//! clear them); a journal of a million events reopens and serves History
//! pages.

use hazardwatch_proto::pb;
use hazardwatch_storage::AlarmJournal;
use hazardwatch_tests::{Gateway, TestService, all_alarms, next_event, next_feed_event, now_ms};

/// Publishes a level reading. Each gets its own millisecond (readings of
/// one point at the same time have no order but their values'), stamped a
/// little ahead so a loaded machine cannot make it late (lateness is 300 ms
/// here).
async fn level(gw: &mut Gateway, value: f64) {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": now_ms() + 500, "value": value}]),
    )
    .await
    .unwrap();
}

fn seen(e: &pb::AlarmEvent) -> (String, i32) {
    (e.alarm_id.clone(), e.transition)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_across_a_restart_with_no_gap_and_no_duplicate() {
    let svc = TestService::start().await.unwrap();
    let (_, mut stream) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-journal-1").await.unwrap();
    level(&mut gw, 18.5).await;
    let h = next_event(&mut stream).await.unwrap();
    assert_eq!(
        seen(&h),
        ("T101.LT/H".into(), pb::Transition::Raised as i32)
    );
    let last_seen = h.seq;
    // The control room's connection drops; the level climbs to HH.
    drop(stream);
    level(&mut gw, 19.5).await;
    let (mut alarms, mut watcher) = svc.subscribe_all().await.unwrap();
    // The watcher's snapshot has H, then HH comes live.
    loop {
        let e = next_event(&mut watcher).await.unwrap();
        if e.alarm_id == "T101.LT/HH" {
            break;
        }
    }
    drop(watcher);
    let before_restart = alarms
        .list_active(pb::ListActiveRequest {
            filter: all_alarms(),
        })
        .await
        .unwrap()
        .into_inner();
    gw.close().await;

    // Restart on the same data directory.
    let svc = svc.restart().await.unwrap();
    let mut alarms = svc.alarms().await.unwrap();
    let after_restart = alarms
        .list_active(pb::ListActiveRequest {
            filter: all_alarms(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        after_restart, before_restart,
        "the alarm table is rebuilt exactly"
    );
    let mut resumed = alarms
        .subscribe(pb::SubscribeRequest {
            filter: all_alarms(),
            resume_after: last_seen,
        })
        .await
        .unwrap()
        .into_inner();
    // Missed while disconnected: the HH raise and the hazard source's
    // colour going to orange, from the journal.
    let hh = next_feed_event(&mut resumed).await.unwrap();
    assert_eq!(hh.seq, last_seen + 1);
    assert_eq!(
        seen(&hh),
        ("T101.LT/HH".into(), pb::Transition::Raised as i32)
    );
    let orange = next_feed_event(&mut resumed).await.unwrap();
    assert_eq!(orange.seq, last_seen + 2);
    assert_eq!(orange.risk_colour, pb::RiskColour::Orange as i32);

    // The level falls back after the restart: the restarted rules knew H
    // and HH were active and clear them; then L is raised.
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-journal-2").await.unwrap();
    level(&mut gw, 17.0).await;
    level(&mut gw, 1.5).await;
    // H and HH cleared, the colour back to yellow, L raised.
    let mut rest = Vec::new();
    for _ in 0..4 {
        rest.push(next_feed_event(&mut resumed).await.unwrap());
    }
    let seqs: Vec<u64> = rest.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (last_seen + 3..=last_seen + 6).collect();
    assert_eq!(seqs, want, "consecutive: no gap, no duplicate");
    let mut got: Vec<_> = rest
        .iter()
        .filter(|e| e.transition != pb::Transition::RiskChanged as i32)
        .map(seen)
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("T101.LT/H".into(), pb::Transition::Cleared as i32),
            ("T101.LT/HH".into(), pb::Transition::Cleared as i32),
            ("T101.LT/L".into(), pb::Transition::Raised as i32),
        ]
    );
    // A restored alarm can be acted on like any other.
    let ack = alarms
        .acknowledge(pb::AcknowledgeRequest {
            alarm_id: "T101.LT/H".into(),
            operator: "shift-lead".into(),
            comment: "level back after the restart".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    let journal = alarms
        .history(pb::HistoryRequest {
            filter: all_alarms(),
            from_ms: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let journal: Vec<_> = journal
        .iter()
        .map(|e| {
            format!(
                "{} {} {:?}",
                e.seq,
                e.alarm_id,
                pb::Transition::try_from(e.transition)
            )
        })
        .collect();
    assert_eq!(ack.seq, last_seen + 7, "{journal:#?}");
    assert_eq!(ack.state, pb::AlarmState::Normal as i32);
    gw.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_a_million_events_reopens_and_serves_history_pages() {
    const EVENTS: u64 = 1_000_000;
    const T0: i64 = 1_767_225_600_000;
    let data = tempfile::tempdir().unwrap();
    {
        let journal = AlarmJournal::open(&data.path().join("journal").join("alarms.redb")).unwrap();
        let mut batch = Vec::with_capacity(10_000);
        for seq in 1..=EVENTS {
            let (id, enterprise) = if seq % 2 == 0 {
                ("T101.LT/H", "E01")
            } else {
                ("T201.TE/H", "E02")
            };
            batch.push(pb::AlarmEvent {
                seq,
                alarm_id: id.into(),
                enterprise: enterprise.into(),
                priority: pb::Priority::Medium as i32,
                transition: if seq % 4 < 2 {
                    pb::Transition::Raised as i32
                } else {
                    pb::Transition::Cleared as i32
                },
                event_time_ms: T0 + seq as i64 * 100,
                ..Default::default()
            });
            if batch.len() == 10_000 {
                journal.commit(&batch, &[]).unwrap();
                batch.clear();
            }
        }
    }
    let svc = TestService::start_in(data).await.unwrap();
    assert_eq!(svc.running.hub.last_seq(), EVENTS);
    let mut alarms = svc.alarms().await.unwrap();
    // E02's events in ten minutes from the middle: 6,000 events in all, 3,000
    // of them E02's, in pages of 1,000.
    let from = T0 + 500_000 * 100;
    let to = from + 600_000;
    let mut token = String::new();
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = alarms
            .history(pb::HistoryRequest {
                filter: Some(pb::AlarmFilter {
                    enterprises: vec!["E02".into()],
                    ..Default::default()
                }),
                from_ms: from,
                to_ms: to,
                page_size: 1_000,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        got.extend(page.events.iter().map(|e| (e.seq, e.enterprise.clone())));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!((3..=4).contains(&pages), "{pages} pages");
    assert_eq!(got.len(), 3_000);
    assert!(got.iter().all(|(_, e)| e == "E02"));
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "in order, no repeats"
    );
    assert_eq!(got[0].0, 500_001);
    // A bad token is refused with a reason.
    let err = alarms
        .history(pb::HistoryRequest {
            from_ms: from,
            to_ms: to,
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // A subscriber resuming from the start catches up on everything.
    let mut all = alarms
        .subscribe(pb::SubscribeRequest {
            filter: all_alarms(),
            resume_after: EVENTS - 10_000,
        })
        .await
        .unwrap()
        .into_inner();
    for want in EVENTS - 10_000 + 1..=EVENTS {
        assert_eq!(next_event(&mut all).await.unwrap().seq, want);
    }
    svc.running.shutdown().await.unwrap();
}

/// Past `journal.retention_days`, events the archive holds leave the
/// journal (the newest always stays); a subscriber asking to resume before
/// the oldest kept is told so instead of being served a hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_the_retention_leave_the_journal_once_archived() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use hazardwatch_tests::{SteppedClock, TEST_PARK, wait_until};
    let clock = Arc::new(SteppedClock::default());
    let text = TEST_PARK.replace("[archive]\nroll_secs = 3600", "[archive]\nroll_secs = 1")
        + "\n[journal]\nretention_days = 8\n";
    let env = hazardwatch::service::Environment {
        clock: clock.clone(),
        ..Default::default()
    };
    let svc = TestService::start_env(tempfile::tempdir().unwrap(), &text, env)
        .await
        .unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-retention").await.unwrap();
    let (mut alarms, mut feed) = svc.subscribe_all().await.unwrap();
    level(&mut gw, 19.5).await;
    level(&mut gw, 10.0).await;
    let mut seen_events = Vec::new();
    while seen_events.len() < 4 {
        seen_events.push(seen(&next_event(&mut feed).await.unwrap()));
    }
    let counters = svc.running.counters.clone();
    let hub = svc.running.hub.clone();
    let newest = hub.last_seq();
    wait_until(std::time::Duration::from_secs(20), || {
        counters.archive_alarm_events.load(Ordering::Relaxed) >= newest
    })
    .await
    .unwrap();
    assert_eq!(counters.journal_pruned.load(Ordering::Relaxed), 0);

    // Nine days on: every event but the newest is past the retention.
    clock.step(9 * 86_400_000);
    wait_until(std::time::Duration::from_secs(20), || {
        counters.journal_pruned.load(Ordering::Relaxed) >= newest - 1
    })
    .await
    .unwrap();
    let err = alarms
        .subscribe(pb::SubscribeRequest {
            filter: all_alarms(),
            resume_after: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert!(
        err.message().contains("Parquet archive"),
        "{}",
        err.message()
    );
    // The events are in the archive.
    let archived: i64 = hazardwatch_tests::parquet_files(&svc.running.archive_dir.join("alarms"))
        .iter()
        .map(|f| {
            use parquet::file::reader::FileReader;
            let file = std::fs::File::open(f).unwrap();
            parquet::file::reader::SerializedFileReader::new(file)
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows()
        })
        .sum();
    assert!(archived as u64 >= newest, "{archived} archived of {newest}");
    gw.close().await;
    svc.running.shutdown().await.unwrap();
}
