//! SIGKILL mid-stream, several times, then a clean stop: every reading the
//! broker acknowledged to the gateway is in the archive exactly once.
//!
//! The broker is Debian's mosquitto, outside the killed process, as in a
//! deployment that needs this guarantee: it holds the service's persistent
//! session and the QoS 1 messages the service had not acknowledged (those
//! not yet in its write-ahead log) while the service is down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hazardwatch_tests::{Gateway, Mosquitto, TEST_PARK, now_ms};

use std::collections::BTreeSet;

use crate::harness::{Key, Process, last_run};

/// How long each run lives before its SIGKILL, after it has subscribed:
/// spread over the one-second checkpoint cycle, so kills land while
/// readings are only in the log, during a checkpoint, and right after one.
const KILL_AFTER_MS: [u64; 5] = [150, 700, 1_250, 1_900, 2_600];

/// Publishes 10-reading messages until told to stop; records the readings
/// of every message the broker acknowledged.
async fn publish(
    port: u16,
    acknowledged: Arc<Mutex<Vec<Key>>>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<u64> {
    let mut gw = Gateway::connect("127.0.0.1", port, "crash-gw").await?;
    let points = ["T101.LT", "T101.PT", "E01-GT01"];
    let mut n: i64 = 0;
    while !stop.is_cancelled() {
        let mut keys = Vec::new();
        let t = now_ms();
        let readings: Vec<serde_json::Value> = (0..10)
            .map(|i| {
                let point = points[(i % 3) as usize];
                // Unique with the value, which counts the readings.
                let ts = t + i;
                let value = ((n * 10 + i) % 1000) as f64 / 100.0;
                keys.push((point.to_string(), ts, value.to_bits()));
                serde_json::json!({"point": point, "ts": ts, "value": value})
            })
            .collect();
        let payload = serde_json::json!({"gateway": "GW1", "seq": n, "readings": readings});
        gw.publish("hw/v1/E01/GW1/telemetry", serde_json::to_vec(&payload)?)
            .await?;
        acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(keys);
        n += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    gw.close().await;
    Ok(n as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_reading_and_archives_none_twice() {
    let Some(broker) = Mosquitto::start().unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("park.toml");
    let text = TEST_PARK
        .replace(
            "[mqtt]\n",
            &format!("[mqtt]\nbroker = \"127.0.0.1:{}\"\n", broker.port),
        )
        .replace("[archive]\nroll_secs = 3600", "[archive]\nroll_secs = 1");
    assert!(text.contains("roll_secs = 1\n") && text.contains("broker ="));
    std::fs::write(&config, text).unwrap();

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut publisher = None;

    let mut recovered_runs = 0;
    for after in KILL_AFTER_MS {
        let p = Process::start(&config, &data).unwrap();
        // The gateway starts once the service's persistent session exists
        // at the broker: before that, nobody subscribes to keep a message.
        publisher.get_or_insert_with(|| {
            tokio::spawn(publish(broker.port, acknowledged.clone(), stop.clone()))
        });
        tokio::time::sleep(Duration::from_millis(after)).await;
        let log = p.kill().unwrap();
        if log.contains("write-ahead log: judging and archiving again") {
            recovered_runs += 1;
        }
    }
    stop.cancel();
    let messages = publisher.unwrap().await.unwrap().unwrap();
    let want: BTreeSet<Key> = acknowledged.lock().unwrap().iter().cloned().collect();
    assert_eq!(want.len() as u64, messages * 10, "keys are unique");

    // A last run takes the rest from the broker and stops cleanly.
    let outcome = last_run(&config, &data, &want, Duration::from_secs(60))
        .await
        .unwrap();
    recovered_runs += usize::from(outcome.replayed);
    eprintln!(
        "crash test: {} SIGKILLs, {} restarts replayed the log, {} messages / {} readings acknowledged, {} archived, {} lost, {} archived twice",
        KILL_AFTER_MS.len(),
        recovered_runs,
        messages,
        want.len(),
        outcome.archived,
        outcome.missing.len(),
        outcome.twice.len()
    );
    outcome.assert_exactly_once();
    assert!(
        recovered_runs > 0,
        "no restart found anything in the log to replay: the kills did not test recovery"
    );
}
