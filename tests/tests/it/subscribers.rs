//! A hundred alarm subscribers, one of which stops reading: the other 99
//! get every event at once, in order, with no gap; the stalled one holds
//! nothing up, and when it reads again it gets every event too (from the
//! journal, once it has fallen behind the live feed).

use std::time::Duration;

use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_client::AlarmServiceClient;
use hazardwatch_tests::{Gateway, TEST_PARK, TestService, all_alarms, now_ms};

const SUBSCRIBERS: usize = 100;

async fn subscribe(svc: &TestService, window: Option<u32>) -> tonic::Streaming<pb::AlarmEvent> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", svc.running.grpc_addr))
            .unwrap()
            .initial_stream_window_size(window)
            .initial_connection_window_size(window)
            .connect()
            .await
            .unwrap();
    AlarmServiceClient::new(channel)
        .subscribe(pb::SubscribeRequest {
            filter: all_alarms(),
            resume_after: 0,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Reads `n` events (by sequence number) with a time limit.
async fn take(stream: &mut tonic::Streaming<pb::AlarmEvent>, n: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("events in time")
            .unwrap()
            .expect("the feed goes on");
        seqs.push(e.seq);
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_holds_up_no_other_and_misses_nothing() {
    let text = TEST_PARK.replace("max_payload_bytes = 4096", "max_payload_bytes = 262144");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    // The stalled one: a small HTTP/2 window, and it never reads until the
    // end.
    let mut stalled = subscribe(&svc, Some(65_535)).await;
    let mut readers = Vec::new();
    for _ in 1..SUBSCRIBERS {
        readers.push(subscribe(&svc, None).await);
    }
    // The level crosses H and returns, 3,000 times: 6,000 events, more
    // than the stalled subscriber's queue, its window and the live feed's
    // buffer together.
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-many").await.unwrap();
    let t0 = now_ms() - 10_000;
    for chunk in 0..3 {
        let batch: Vec<serde_json::Value> = (chunk * 2_000..(chunk + 1) * 2_000)
            .map(|i| {
                let value = if i % 2 == 0 { 18.5 } else { 10.0 };
                serde_json::json!({"point": "T101.LT", "ts": t0 + i, "value": value})
            })
            .collect();
        gw.publish_json("E01", serde_json::Value::Array(batch))
            .await
            .unwrap();
    }
    let hub = svc.running.hub.clone();
    hazardwatch_tests::wait_until(Duration::from_secs(30), || hub.last_seq() >= 6_000)
        .await
        .unwrap();
    let events = hub.last_seq() as usize;
    let want: Vec<u64> = (1..=events as u64).collect();
    // Every reader gets every event, in order, while the stalled one
    // still does not read.
    let mut tasks = Vec::new();
    for mut r in readers {
        tasks.push(tokio::spawn(async move { take(&mut r, events).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), want);
    }
    // And so does the stalled one, once it reads.
    assert_eq!(take(&mut stalled, events).await, want);
    gw.close().await;
    svc.running.shutdown().await.unwrap();
}
