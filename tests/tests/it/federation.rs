//! A regional instance follows a park as it would over a network: gRPC
//! over TLS (the park's certificate checked against the configured CA) with
//! the viewer token the park issued for it. A region holding a wrong token
//! merges nothing and, once `lost_after_s` has passed, raises the park's
//! upstream alarm. (Kills and partitions: `tests/process/federation.rs`.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hazardwatch::region::{self, RegionConfig, RegionRunning};
use hazardwatch_proto::clock::WallClock;
use hazardwatch_proto::pb;
use hazardwatch_rules::Source;
use hazardwatch_tests::{Gateway, TEST_PARK, TestService, now_ms, wait_until};

const REGION_TOKEN: &str = "county-region-feed-0123456789";

async fn region_following(
    port: u16,
    ca: &std::path::Path,
    token: &'static str,
    data: &std::path::Path,
) -> RegionRunning {
    let text = format!(
        "[region]\nid = \"COUNTY\"\nlevel = \"county\"\nlost_after_s = 1\n\
         [grpc]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [[upstream]]\npark = \"TEST\"\nurl = \"https://localhost:{port}\"\n\
         ca_file = \"{}\"\ntoken_env = \"TEST_PARK_TOKEN\"\n",
        ca.display()
    );
    let src = Source {
        path: "county.toml".into(),
        text,
    };
    let mut config = RegionConfig::from_source(&src, |var| {
        (var == "TEST_PARK_TOKEN").then(|| token.to_owned())
    })
    .unwrap();
    config.data_dir = data.to_owned();
    region::start(config, Arc::new(WallClock)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_follows_a_park_over_tls_with_its_token_and_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = hazardwatch_tests::self_signed_localhost(dir.path()).unwrap();
    let text = TEST_PARK.replace(
        "[grpc]\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[grpc]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
             [[access.token]]\nname = \"county region\"\ntoken = \"{REGION_TOKEN}\"\n\
             role = \"viewer\"\nlevel = \"county\"\nenterprises = [\"*\"]",
            cert.display(),
            key.display()
        ),
    );
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let port = svc.running.grpc_addr.port();
    let region_data = tempfile::tempdir().unwrap();
    let county = region_following(port, &cert, REGION_TOKEN, region_data.path()).await;
    // Its own health endpoint, as `hazardwatch health` asks it.
    let metrics = county.metrics_addr.unwrap();
    wait_until(Duration::from_secs(10), || {
        hazardwatch::http::ask(metrics, "/readyz", Duration::from_secs(2))
            .is_ok_and(|(status, _)| status == 200)
    })
    .await
    .unwrap();
    let status = county.upstreams[0].1.clone();
    wait_until(Duration::from_secs(20), || {
        status.connected.load(Ordering::Acquire)
    })
    .await
    .unwrap();

    let (host, mqtt) = svc.broker();
    let mut gw = Gateway::connect(&host, mqtt, "gw-federation")
        .await
        .unwrap();
    gw.publish_json(
        "E01",
        serde_json::json!([{"point": "T101.LT", "ts": now_ms(), "value": 19.5}]),
    )
    .await
    .unwrap();
    let merged = || {
        county
            .hub
            .journal_after(0, 1_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.park == "TEST" && e.alarm_id == "T101.LT/HH")
            .count()
    };
    wait_until(Duration::from_secs(20), || merged() == 1)
        .await
        .unwrap();
    let (listed, _) = county.hub.list_active(
        &hazardwatch_alarms::Filter::for_caller(None, &hazardwatch_alarms::Caller::open()).unwrap(),
    );
    assert!(
        listed
            .iter()
            .any(|a| a.alarm_id == "T101.LT/HH" && a.park == "TEST")
    );
    county.shutdown().await.unwrap();

    // The wrong token: nothing is merged, and the park counts as lost.
    let other_data = tempfile::tempdir().unwrap();
    let stranger =
        region_following(port, &cert, "not-the-token-0123456789", other_data.path()).await;
    let lost = stranger.upstreams[0].1.clone();
    wait_until(Duration::from_secs(20), || {
        lost.lost.load(Ordering::Acquire)
    })
    .await
    .unwrap();
    assert!(!lost.connected.load(Ordering::Acquire));
    let events = stranger.hub.journal_after(0, 1_000).unwrap();
    assert!(
        events.iter().all(|e| e.upstream_seq == 0),
        "nothing of the park merged: {events:?}"
    );
    let offline = events
        .iter()
        .find(|e| e.alarm_id == "TEST/OFFLINE")
        .expect("the park's upstream alarm");
    assert_eq!(offline.transition, pb::Transition::Raised as i32);
    stranger.shutdown().await.unwrap();
    // Restarted while the park is still out of reach: its alarm stays
    // raised, not raised again.
    let stranger =
        region_following(port, &cert, "not-the-token-0123456789", other_data.path()).await;
    assert!(stranger.upstreams[0].1.lost.load(Ordering::Acquire));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let raised = stranger
        .hub
        .journal_after(0, 1_000)
        .unwrap()
        .iter()
        .filter(|e| e.alarm_id == "TEST/OFFLINE")
        .count();
    assert_eq!(raised, 1, "raised once");
    stranger.shutdown().await.unwrap();
    svc.running.shutdown().await.unwrap();
}
