//! A disk that fills up, and an archive directory that cannot be written:
//! ingest stops acknowledging (or the archive waits), says why, and
//! resumes without losing or doubling a reading.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hazardwatch_tests::{
    Burst, FillableDisk, Gateway, TEST_PARK, TestService, now_ms, read_archive, row_counts,
    wait_until,
};

async fn publish(gw: &mut Gateway, from: i64, n: i64, t0: i64) {
    for i in from..from + n {
        gw.publish_json(
            "E01",
            serde_json::json!([{"point": "T101.PT", "ts": t0 + i, "value": 100.0 + i as f64}]),
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_acks_and_nothing_is_lost_when_space_returns() {
    let disk = Arc::new(FillableDisk::default());
    let svc = TestService::start_with(tempfile::tempdir().unwrap(), TEST_PARK, disk.clone())
        .await
        .unwrap();
    let stats = svc.running.counters.clone();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-disk").await.unwrap();
    let t0 = now_ms();
    publish(&mut gw, 0, 5, t0).await;
    svc.wait_for_readings(5).await.unwrap();

    disk.fill();
    // The broker takes these from the gateway; the service cannot log them,
    // so it takes none of them and acknowledges none.
    publish(&mut gw, 5, 5, t0).await;
    wait_until(Duration::from_secs(10), || {
        stats.wal_stalled.load(Ordering::Relaxed)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stats.readings_in.load(Ordering::Relaxed), 5);
    assert!(stats.wal_errors.load(Ordering::Relaxed) >= 2, "retried");

    disk.free();
    svc.wait_for_readings(10).await.unwrap();
    assert!(!stats.wal_stalled.load(Ordering::Relaxed));
    publish(&mut gw, 10, 2, t0).await;
    svc.wait_for_readings(12).await.unwrap();
    gw.close().await;

    let archive = svc.running.archive_dir.clone();
    let summary = svc.running.shutdown().await.unwrap();
    assert_eq!(summary.readings_in, 12);
    let counts = row_counts(&read_archive(&archive).unwrap());
    let want: Vec<_> = (0..12)
        .map(|i| ("T101.PT".to_string(), t0 + i, (100.0 + i as f64).to_bits()))
        .collect();
    for k in &want {
        assert_eq!(counts.get(k), Some(&1), "{k:?} archived once");
    }
    assert_eq!(counts.len(), want.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_archive_keeps_the_readings_in_the_log_until_it_can_be_written() {
    let text = TEST_PARK.replace("[archive]\nroll_secs = 3600", "[archive]\nroll_secs = 1");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let stats = svc.running.counters.clone();
    let archive = svc.running.archive_dir.clone();
    // Something is in the way of the readings' directory.
    let readings = archive.join("readings");
    std::fs::remove_dir_all(&readings).unwrap();
    std::fs::write(&readings, b"not a directory").unwrap();

    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-archive").await.unwrap();
    let t0 = now_ms();
    publish(&mut gw, 0, 5, t0).await;
    // The log takes them (and the gateway's messages are acknowledged);
    // the checkpoints fail and say so.
    svc.wait_for_readings(5).await.unwrap();
    wait_until(Duration::from_secs(10), || {
        stats.archive_errors.load(Ordering::Relaxed) >= 2
    })
    .await
    .unwrap();
    let wal = svc.data.path().join("wal");
    assert!(
        std::fs::read_dir(&wal).unwrap().count() >= 2,
        "segments kept"
    );
    // Readiness says so (see health.rs for the endpoints).
    assert!(stats.checkpoint_failing.load(Ordering::Relaxed));

    std::fs::remove_file(&readings).unwrap();
    wait_until(Duration::from_secs(10), || {
        stats.archive_rows.load(Ordering::Relaxed) >= 5
    })
    .await
    .unwrap();
    assert!(!stats.checkpoint_failing.load(Ordering::Relaxed));
    gw.close().await;
    svc.running.shutdown().await.unwrap();
    let counts = row_counts(&read_archive(&archive).unwrap());
    assert_eq!(counts.len(), 5);
    assert!(counts.values().all(|&n| n == 1));
    // Archived segments are gone: what is left holds nothing unarchived.
    let left: Vec<_> = std::fs::read_dir(&wal).unwrap().collect();
    assert!(left.len() <= 2, "{left:?}");
}

/// Message `seq` of gateway GW1: two readings at `t0 + seq`.
fn message(t0: i64, seq: i64) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"gateway": "GW1", "seq": seq, "readings": [
        {"point": "T101.PT", "ts": t0 + seq, "value": 100.0},
        {"point": "T101.LT", "ts": t0 + seq, "value": 10.0}]}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_again_is_recognised_and_taken_once() {
    let svc = TestService::start().await.unwrap();
    let (host, port) = svc.broker();
    let gw = Gateway::connect(&host, port, "gw-again").await.unwrap();
    // A gateway that did not get its acknowledgement sends message 1 again,
    // byte for byte; message 2 has the same readings' values but is another
    // message (another sequence number and time).
    publish_and_expect_once(svc, gw, now_ms(), &[1, 1, 2], 4, 4).await;
}

/// Publishes GW1's messages `seqs` (see [`message`]) on `gw`; then the
/// service must have taken `taken` readings and recognised one message
/// (2 readings) as sent again, and after it stops its archive must hold
/// `archived` readings, each once.
async fn publish_and_expect_once(
    svc: TestService,
    mut gw: Gateway,
    t0: i64,
    seqs: &[i64],
    taken: u64,
    archived: usize,
) {
    let stats = svc.running.counters.clone();
    for &seq in seqs {
        gw.publish("hw/v1/E01/GW1/telemetry", message(t0, seq))
            .await
            .unwrap();
    }
    svc.wait_for_readings(taken).await.unwrap();
    wait_until(Duration::from_secs(10), || {
        stats.readings_duplicate.load(Ordering::Relaxed) == 2
    })
    .await
    .unwrap();
    gw.close().await;
    let archive = svc.running.archive_dir.clone();
    let summary = svc.running.shutdown().await.unwrap();
    assert_eq!(
        (summary.readings_in, summary.readings_duplicate),
        (taken, 2)
    );
    let counts = row_counts(&read_archive(&archive).unwrap());
    assert_eq!(counts.len(), archived);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// A gateway whose acknowledgement was lost sends its message again only
/// after the service restarted, by which time the message was archived and
/// its write-ahead segment deleted: the service still recognises it (the
/// ids of released segments are kept). Before, it was archived twice (a
/// chaos run with broker restarts found it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_again_after_it_was_archived_and_released_is_taken_once() {
    let svc = TestService::start().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-late-again")
        .await
        .unwrap();
    let t0 = now_ms();
    gw.publish("hw/v1/E01/GW1/telemetry", message(t0, 1))
        .await
        .unwrap();
    svc.wait_for_readings(2).await.unwrap();
    gw.close().await;
    // A clean stop archives everything; the start deletes the segments.
    let svc = svc.restart().await.unwrap();
    let wal = svc.data.path().join("wal");
    let logged: u64 = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(logged, 0, "the segment holding the message is gone");

    let (host, port) = svc.broker();
    let gw = Gateway::connect(&host, port, "gw-late-again")
        .await
        .unwrap();
    // Message 1 again (recognised), and message 2; the archive holds both
    // messages' readings once.
    publish_and_expect_once(svc, gw, t0, &[1, 2], 2, 4).await;
}

/// A broker that lets more messages be in flight than the MQTT client's
/// request queue holds acks (mosquitto here lets well over a thousand
/// through) must not stall ingest: the acks wait in the write-ahead stage,
/// never the stage on the acks. Before that, the stage blocked on a full
/// request queue that only the (blocked) ingest poller drains, and nothing
/// more was taken in or archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_ack_queue_is_taken_in_and_archived() {
    let Some(broker) = hazardwatch_tests::Mosquitto::start().unwrap() else {
        return;
    };
    let text = TEST_PARK
        .replacen(
            "listen = \"127.0.0.1:0\"\nmax_payload_bytes = 4096",
            &format!(
                "broker = \"127.0.0.1:{}\"\nmax_payload_bytes = 65536",
                broker.port
            ),
            1,
        )
        .replace("roll_secs = 3600", "roll_secs = 1");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let stats = svc.running.counters.clone();

    // One gateway publishing as fast as the broker acknowledges, 100 in
    // flight: 6,000 messages of 20 readings.
    let (messages, per) = (6_000i64, 20i64);
    let burst = Burst::connect("127.0.0.1", broker.port, "gw-burst");
    let client = burst.client.clone();
    let t0 = now_ms() - 1_000;
    for m in 0..messages {
        let readings: Vec<serde_json::Value> = (0..per)
            .map(
                |k| serde_json::json!({"point": "T101.PT", "ts": t0 - (m * per + k), "value": 1.0}),
            )
            .collect();
        let body = serde_json::json!({"gateway": "GWB", "seq": m, "readings": readings});
        client
            .publish(
                "hw/v1/E01/GWB/telemetry",
                rumqttc::QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap();
    }
    wait_until(Duration::from_secs(60), || burst.acked() >= messages)
        .await
        .unwrap();
    let total = (messages * per) as u64;
    wait_until(Duration::from_secs(60), || {
        stats.readings_in.load(Ordering::Relaxed) >= total
            && stats.archive_rows.load(Ordering::Relaxed) >= total
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "taken in {} and archived {} of {total} readings",
            stats.readings_in.load(Ordering::Relaxed),
            stats.archive_rows.load(Ordering::Relaxed)
        )
    });
    svc.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_far_behind_holds_the_gateways_instead_of_the_broker_dropping_their_data() {
    const MESSAGES: i64 = 30_000;
    let disk = Arc::new(FillableDisk::default());
    let svc = TestService::start_with(tempfile::tempdir().unwrap(), TEST_PARK, disk.clone())
        .await
        .unwrap();
    let broker = svc.running.broker().unwrap();
    // The write-ahead log cannot be written: the service takes nothing.
    disk.fill();
    let (host, port) = svc.broker();
    let burst = Burst::connect(&host, port, "gw-flood");
    let client = burst.client.clone();
    let t0 = now_ms();
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let payload = serde_json::to_vec(&serde_json::json!({"readings": [
                {"point": "T101.PT", "ts": t0 + i, "value": i as f64}]}))
            .unwrap();
            client
                .publish(
                    "hw/v1/E01/GW1/telemetry",
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .unwrap();
        }
        client
    });
    // The broker acknowledges until the service's queue is full, then
    // holds the gateway: acks stop short of everything, nothing dropped.
    let mut last = -1;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = burst.acked();
        if now == last {
            break;
        }
        last = now;
    }
    assert!(last < MESSAGES, "the broker kept acknowledging: {last}");
    assert!(broker.held() >= 1, "a publish is held");
    assert_eq!(broker.dropped(), 0);
    // Space returns: everything arrives, once.
    disk.free();
    let client = publisher.await.unwrap();
    svc.wait_for_readings(MESSAGES as u64).await.unwrap();
    wait_until(Duration::from_secs(30), || burst.acked() == MESSAGES)
        .await
        .unwrap();
    assert_eq!(broker.dropped(), 0);
    assert_eq!(broker.held(), 0);
    let _ = client.disconnect().await;
    let summary = svc.running.shutdown().await.unwrap();
    assert_eq!(summary.readings_in, MESSAGES as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_that_cannot_be_written_stalls_ingest_and_skips_nothing() {
    // The quarantine file writes to /dev/full: every write fails (ENOSPC).
    let data = tempfile::tempdir().unwrap();
    let quarantine = data.path().join("quarantine");
    std::fs::create_dir_all(&quarantine).unwrap();
    let file = quarantine.join("quarantine.jsonl");
    std::os::unix::fs::symlink("/dev/full", &file).unwrap();
    let svc = TestService::start_in(data).await.unwrap();
    let stats = svc.running.counters.clone();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-quarantine")
        .await
        .unwrap();
    let t0 = now_ms();
    // One good and one bad reading: the bad one cannot be recorded.
    gw.publish_json(
        "E01",
        serde_json::json!([
            {"point": "T101.LT", "ts": t0, "value": 5.0},
            {"point": "NOPE", "ts": t0, "value": 1.0},
        ]),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stats.readings_in.load(Ordering::Relaxed),
        0,
        "stalled, not skipped"
    );
    // The disk "returns": the message is taken whole, then the next one.
    std::fs::remove_file(&file).unwrap();
    svc.wait_for_readings(1).await.unwrap();
    publish(&mut gw, 1, 1, t0).await;
    svc.wait_for_readings(2).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("unknown_point"), "{text}");
    gw.close().await;
    let summary = svc.running.shutdown().await.unwrap();
    assert_eq!(summary.readings_in, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_holds_alarm_events_until_it_can() {
    let disk = Arc::new(FillableDisk::default());
    let env = hazardwatch::service::Environment {
        journal_faults: disk.clone(),
        ..Default::default()
    };
    let svc = TestService::start_env(tempfile::tempdir().unwrap(), TEST_PARK, env)
        .await
        .unwrap();
    let (mut alarms, mut feed) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-journal").await.unwrap();
    disk.fill();
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": now_ms(), "value": 18.5}]),
    )
    .await
    .unwrap();
    // Live subscribers see it at once; the journal cannot take it.
    let raised = hazardwatch_tests::next_event(&mut feed).await.unwrap();
    assert_eq!(raised.alarm_id, "T101.LT/H");
    let hub = svc.running.hub.clone();
    assert!(hub.unjournaled() >= 1);
    let history =
        |alarms: &mut hazardwatch_proto::pb::alarm_service_client::AlarmServiceClient<_>| {
            let mut alarms = alarms.clone();
            async move {
                alarms
                    .history(hazardwatch_proto::pb::HistoryRequest {
                        filter: hazardwatch_tests::all_alarms(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner().events)
            }
        };
    // History cannot be read from a journal that cannot be reopened (it
    // says so); in any case it does not hold the event yet.
    match history(&mut alarms).await {
        Ok(events) => assert!(events.iter().all(|e| e.seq != raised.seq)),
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
    }

    // Space again: the next clock tick journals what waited, in order.
    disk.free();
    wait_until(Duration::from_secs(10), || hub.unjournaled() == 0)
        .await
        .unwrap();
    let journaled = history(&mut alarms).await.unwrap();
    assert!(
        journaled
            .iter()
            .any(|e| e.seq == raised.seq && e.alarm_id == raised.alarm_id),
        "{journaled:?}"
    );
    gw.close().await;
    svc.running.shutdown().await.unwrap();
}

/// Messages taken on one broker connection but not yet logged when it
/// drops: their acks are never sent on the next connection (packet ids
/// start again there and would acknowledge other messages); the broker
/// sends them again and they are recognised. Each reading once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_owed_on_a_lost_broker_connection_are_not_sent_on_the_next() {
    let Some(mut broker) = hazardwatch_tests::Mosquitto::start().unwrap() else {
        return;
    };
    let text = TEST_PARK.replacen(
        "listen = \"127.0.0.1:0\"\nmax_payload_bytes = 4096",
        &format!(
            "broker = \"127.0.0.1:{}\"\nmax_payload_bytes = 4096",
            broker.port
        ),
        1,
    );
    let disk = Arc::new(FillableDisk::default());
    let svc = TestService::start_with(tempfile::tempdir().unwrap(), &text, disk.clone())
        .await
        .unwrap();
    let stats = svc.running.counters.clone();
    let t0 = now_ms();
    let mut gw = Gateway::connect("127.0.0.1", broker.port, "gw-reconnect")
        .await
        .unwrap();
    publish(&mut gw, 0, 5, t0).await;
    svc.wait_for_readings(5).await.unwrap();

    // The service takes these from the broker but cannot log them, so it
    // owes their acks ...
    disk.fill();
    publish(&mut gw, 5, 5, t0).await;
    gw.close().await;
    wait_until(Duration::from_secs(10), || {
        stats.wal_stalled.load(Ordering::Relaxed)
    })
    .await
    .unwrap();
    // ... when the connection goes: the broker restarts (keeping its
    // sessions), and the service connects again.
    broker.restart(Duration::from_millis(200)).unwrap();
    disk.free();
    svc.wait_for_readings(10).await.unwrap();
    let mut gw = Gateway::connect("127.0.0.1", broker.port, "gw-reconnect")
        .await
        .unwrap();
    publish(&mut gw, 10, 5, t0).await;
    svc.wait_for_readings(15).await.unwrap();
    gw.close().await;
    // The broker sent the unacknowledged messages again: recognised.
    wait_until(Duration::from_secs(10), || {
        stats.readings_duplicate.load(Ordering::Relaxed) >= 1
    })
    .await
    .unwrap();
    let archive = svc.running.archive_dir.clone();
    let summary = svc.running.shutdown().await.unwrap();
    assert_eq!(summary.readings_in, 15);
    let counts = row_counts(&read_archive(&archive).unwrap());
    assert_eq!(counts.len(), 15);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}
