//! `TelemetryService`: the latest values from memory, and a trend query
//! that sees every reading exactly once whether it is sealed in the archive
//! or not yet.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hazardwatch_proto::pb;
use hazardwatch_proto::pb::telemetry_service_client::TelemetryServiceClient;
use hazardwatch_tests::{Gateway, TEST_PARK, TestService, next_event, now_ms, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_and_a_query_across_the_seal_boundary_see_every_reading_once() {
    let text = TEST_PARK.replace("[archive]\nroll_secs = 3600", "[archive]\nroll_secs = 1");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let stats = svc.running.counters.clone();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-trend").await.unwrap();
    let mut client = TelemetryServiceClient::connect(format!("http://{}", svc.running.grpc_addr))
        .await
        .unwrap();
    let t0 = now_ms() - 60_000;
    let publish = |from: i64| {
        serde_json::Value::Array(
            (from..from + 10)
                .map(|i| serde_json::json!({"point": "T101.LT", "ts": t0 + i * 100, "value": 5.0 + i as f64 / 10.0}))
                .collect(),
        )
    };
    // Ten readings, sealed.
    gw.publish_json("E01", publish(0)).await.unwrap();
    wait_until(Duration::from_secs(10), || {
        stats.archive_rows.load(Ordering::Relaxed) >= 10
    })
    .await
    .unwrap();
    // Ten more, not sealed yet when the queries start; checkpoints seal
    // them while the queries go on.
    gw.publish_json("E01", publish(10)).await.unwrap();
    svc.wait_for_readings(20).await.unwrap();

    let latest = client
        .latest(pb::LatestRequest {
            points: vec!["T101.LT".into(), "T101.PT".into()],
        })
        .await
        .unwrap()
        .into_inner();
    // T101.PT has not reported: only T101.LT, at its newest reading.
    assert_eq!(latest.readings.len(), 1);
    assert_eq!(latest.readings[0].ts_ms, t0 + 1900);
    assert_eq!(latest.readings[0].value, 6.9);

    let want: Vec<(i64, f64)> = (0..20)
        .map(|i| (t0 + i * 100, 5.0 + i as f64 / 10.0))
        .collect();
    let mut saw_both = false;
    for _ in 0..30 {
        let buffered_before = stats.archive_rows.load(Ordering::Relaxed) < 20;
        let mut stream = client
            .query(pb::QueryRequest {
                points: vec!["T101.LT".into()],
                from_ms: t0 - 1,
                to_ms: t0 + 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Some(page) = stream.message().await.unwrap() {
            got.extend(page.readings.into_iter().map(|r| (r.ts_ms, r.value)));
        }
        assert_eq!(got, want, "every reading once, in time order");
        saw_both |= buffered_before;
        if stats.archive_rows.load(Ordering::Relaxed) >= 20 && saw_both {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        saw_both,
        "a query ran while part of the range was not sealed"
    );

    let unknown = client
        .query(pb::QueryRequest {
            points: vec!["NOPE".into()],
            from_ms: t0,
            to_ms: t0 + 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let backwards = client
        .query(pb::QueryRequest {
            points: vec!["T101.LT".into()],
            from_ms: t0,
            to_ms: t0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(backwards.code(), tonic::Code::InvalidArgument);
    gw.close().await;
    svc.running.shutdown().await.unwrap();
}

/// At most four queries run at once: a fifth is refused as busy while four
/// clients hold answers they do not read, and served once one of them goes.
/// Meanwhile the rules go on. An oversized request is refused unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_bounded_and_clients_that_do_not_read_hold_nothing_up() {
    use hazardwatch::telemetry::{MAX_CONCURRENT_QUERIES, PAGE};
    let text = TEST_PARK.replace("max_payload_bytes = 4096", "max_payload_bytes = 262144");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-bounds").await.unwrap();
    // Four pages of readings, 1 ms apart, below every limit.
    let t0 = now_ms() - 120_000;
    let total = 4 * PAGE as i64;
    for chunk in 0..total / 2_000 {
        let batch = (chunk * 2_000..(chunk + 1) * 2_000)
            .map(|i| serde_json::json!({"point": "T101.LT", "ts": t0 + i, "value": 10.0}))
            .collect();
        gw.publish_json("E01", serde_json::Value::Array(batch))
            .await
            .unwrap();
    }
    svc.wait_for_readings(total as u64).await.unwrap();
    let request = || pb::QueryRequest {
        points: vec!["T101.LT".into()],
        from_ms: t0,
        to_ms: t0 + total,
        ..Default::default()
    };
    // Clients with small HTTP/2 windows: the server can send little ahead
    // of what they read (the defaults would take 2 MB without reading).
    let client = || async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", svc.running.grpc_addr))
                .unwrap()
                .initial_stream_window_size(Some(65_535))
                .initial_connection_window_size(Some(65_535))
                .connect()
                .await
                .unwrap();
        TelemetryServiceClient::new(channel)
    };
    // Four clients take the first page of their answer and stop reading.
    let mut held = Vec::new();
    for _ in 0..MAX_CONCURRENT_QUERIES {
        let mut c = client().await;
        let mut stream = c.query(request()).await.unwrap().into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert_eq!(first.readings.len(), PAGE);
        held.push((c, stream));
    }
    let mut fifth = client().await;
    let busy = fifth.query(request()).await.unwrap_err();
    assert_eq!(busy.code(), tonic::Code::Unavailable, "{busy:?}");

    // The rules are not held up: a high level is raised at once.
    let (_alarms, mut feed) = svc.subscribe_all().await.unwrap();
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": now_ms(), "value": 18.5}]),
    )
    .await
    .unwrap();
    let raised = next_event(&mut feed).await.unwrap();
    assert_eq!(raised.alarm_id, "T101.LT/H");

    // One client goes away: its slot frees, and the fifth is served whole.
    held.pop();
    let mut served = None;
    for _ in 0..100 {
        match fifth.query(request()).await {
            Ok(r) => {
                served = Some(r.into_inner());
                break;
            }
            Err(e) if e.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let mut stream = served.expect("a slot freed when its client went away");
    let mut got = 0;
    while let Some(page) = stream.message().await.unwrap() {
        got += page.readings.len();
    }
    assert_eq!(got, total as usize);

    // A request larger than the limit is refused before it is decoded.
    let huge = fifth
        .query(pb::QueryRequest {
            points: vec!["X".repeat(2 << 20)],
            from_ms: t0,
            to_ms: t0 + 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(huge.code(), tonic::Code::OutOfRange, "{huge:?}");
    drop(held);
    gw.close().await;
    svc.running.shutdown().await.unwrap();
}
