//! Health that tells the truth: gRPC health and HTTP `/readyz` turn
//! NOT_SERVING (503) while the write-ahead log cannot be written, the
//! broker is unreachable or the disk is nearly full, say why, and come
//! back when the cause goes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hazardwatch_tests::{FillableDisk, Gateway, TEST_PARK, TestService, now_ms};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// TEST_PARK with the metrics and health endpoint on a free port, and a
/// free-space threshold of `disk_mb`.
fn park(disk_mb: u64) -> String {
    TEST_PARK.replace(
        "[metrics]\nenabled = false",
        &format!(
            "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\n[health]\ndisk_min_free_mb = {disk_mb}"
        ),
    )
}

/// A plain HTTP/1.1 GET: the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

async fn grpc_status(svc: &TestService, service: &str) -> ServingStatus {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", svc.running.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

/// Waits until `/readyz` answers `status` with a body of exactly these
/// causes (by label; "ready" when there are none).
async fn wait_ready(addr: SocketAddr, status: u16, causes: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = get(addr, "/readyz").await;
        let labels: Vec<&str> = body
            .lines()
            .filter_map(|l| l.split_once(':').map(|(label, _)| label))
            .filter(|l| *l != "not ready")
            .collect();
        if code == status && labels == causes {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz: {code} {body:?}, waiting for {status} with {causes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_write_ahead_log_makes_the_instance_not_ready_until_it_recovers() {
    let disk = Arc::new(FillableDisk::default());
    let svc = TestService::start_with(tempfile::tempdir().unwrap(), &park(1), disk.clone())
        .await
        .unwrap();
    let http = svc.running.metrics_addr.expect("the endpoint is on");
    assert_eq!(get(http, "/livez").await.0, 200);
    wait_ready(http, 200, &[]).await;
    assert_eq!(grpc_status(&svc, "").await, ServingStatus::Serving);
    assert_eq!(
        grpc_status(&svc, "hazardwatch.v1.AlarmService").await,
        ServingStatus::Serving
    );

    disk.fill();
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-health").await.unwrap();
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.PT", "ts": now_ms(), "value": 100.0}]),
    )
    .await
    .unwrap();
    let body = wait_ready(http, 503, &["wal_stalled"]).await;
    assert!(body.contains("no reading is acknowledged"), "{body}");
    assert_eq!(grpc_status(&svc, "").await, ServingStatus::NotServing);
    assert_eq!(
        grpc_status(&svc, "hazardwatch.v1.TelemetryService").await,
        ServingStatus::NotServing
    );
    let (code, metrics) = get(http, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("hazardwatch_unready{cause=\"wal_stalled\"} 1"),
        "{metrics}"
    );

    disk.free();
    svc.wait_for_readings(1).await.unwrap();
    wait_ready(http, 200, &[]).await;
    assert_eq!(grpc_status(&svc, "").await, ServingStatus::Serving);
    gw.close().await;
    svc.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_and_a_lost_broker_are_told_as_causes() {
    let Some(broker) = hazardwatch_tests::Mosquitto::start().unwrap() else {
        return;
    };
    // A threshold above any disk: the data directory is "nearly full".
    let text = park(1 << 30).replacen(
        "listen = \"127.0.0.1:0\"\nmax_payload_bytes = 4096",
        &format!(
            "broker = \"127.0.0.1:{}\"\nmax_payload_bytes = 4096",
            broker.port
        ),
        1,
    );
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let http = svc.running.metrics_addr.expect("the endpoint is on");
    let body = wait_ready(http, 503, &["disk_nearly_full"]).await;
    assert!(body.contains("MiB free"), "{body}");
    assert_eq!(grpc_status(&svc, "").await, ServingStatus::NotServing);

    drop(broker);
    wait_ready(http, 503, &["broker_unreachable", "disk_nearly_full"]).await;
    svc.running.shutdown().await.unwrap();
}
