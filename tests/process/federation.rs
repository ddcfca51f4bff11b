//! Regulators' federation: three park instances (the real binary, as
//! processes) and a province instance following their alarm feeds. One
//! park is killed with SIGKILL mid-stream and restarted; another is
//! partitioned away for a while behind a proxy. At the end, the province's
//! journal holds every event of every park's journal exactly once, in the
//! park's order, and the partitioned park's upstream alarm was raised while
//! it was away and cleared when it came back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hazardwatch::region::{self, RegionConfig};
use hazardwatch_proto::clock::WallClock;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_client::AlarmServiceClient;
use hazardwatch_proto::pb::site_service_client::SiteServiceClient;
use hazardwatch_rules::Source;
use hazardwatch_storage::AlarmJournal;
use hazardwatch_tests::proxy::Proxy;
use hazardwatch_tests::{
    Gateway, TEST_PARK, alarms_client, free_loopback_addr, now_ms, site_client,
};

use crate::harness::Process;

/// The tests' small park ([`TEST_PARK`]) as park `park`, its broker on
/// `mqtt`; the load raises and clears T101.LT's H and HH.
fn park_config(park: &str, mqtt: std::net::SocketAddr) -> String {
    TEST_PARK
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{mqtt}\""),
            1,
        )
        .replacen("id = \"TEST\"", &format!("id = \"{park}\""), 1)
}

struct Park {
    id: String,
    config: PathBuf,
    data: tempfile::TempDir,
    mqtt: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
    process: Option<Process>,
}

impl Park {
    fn start(id: &str, dir: &Path) -> anyhow::Result<Park> {
        let (mqtt, grpc) = (free_loopback_addr()?, free_loopback_addr()?);
        let config = dir.join(format!("{id}.toml"));
        std::fs::write(&config, park_config(id, mqtt))?;
        let data = tempfile::tempdir()?;
        let process = Process::start_on(&config, data.path(), &grpc.to_string())?;
        Ok(Park {
            id: id.to_owned(),
            config,
            data,
            mqtt,
            grpc,
            process: Some(process),
        })
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        let p = Process::start_on(&self.config, self.data.path(), &self.grpc.to_string())?;
        self.process = Some(p);
        Ok(())
    }

    /// The sequence number of the park's newest event.
    async fn last_seq(&self) -> anyhow::Result<u64> {
        let mut client = AlarmServiceClient::connect(format!("http://{}", self.grpc)).await?;
        let list = client
            .list_active(pb::ListActiveRequest::default())
            .await?
            .into_inner();
        Ok(list.as_of_seq)
    }
}

/// Publishes T101.LT through 10, 18.5, 19.5, 18.5 (H and HH raised and
/// cleared) every 100 ms until `stop`, reconnecting when the park is down.
async fn load(mqtt: std::net::SocketAddr, id: String, stop: Arc<AtomicBool>) {
    let values = [10.0, 18.5, 19.5, 18.5];
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut gw) = Gateway::connect("127.0.0.1", mqtt.port(), &format!("load-{id}")).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            let reading =
                serde_json::json!([{"point": "T101.LT", "ts": now_ms(), "value": values[i % 4]}]);
            if gw.publish_json("E01", reading).await.is_err() {
                break;
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn wait_for(limit: Duration, what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !ok().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_province_has_every_park_event_once_in_order_across_a_kill_and_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut parks: Vec<Park> = ["P1", "P2", "P3"]
        .iter()
        .map(|id| Park::start(id, dir.path()).unwrap())
        .collect();
    let mut proxy = Proxy::start(parks[1].grpc).await.unwrap();
    let text = format!(
        r#"
[region]
id = "PROVINCE"
level = "province"
lost_after_s = 1

[grpc]
listen = "127.0.0.1:0"

[metrics]
enabled = false

[[access.token]]
name = "province"
token = "province-viewer-0123456789"
role = "viewer"
level = "province"
enterprises = ["*"]

[[access.token]]
name = "P1's county"
token = "county-of-p1-0123456789"
role = "operator"
level = "county"
enterprises = ["*"]
parks = ["P1"]

[[upstream]]
park = "P1"
url = "http://{}"

[[upstream]]
park = "P2"
url = "http://{}"

[[upstream]]
park = "P3"
url = "http://{}"
"#,
        parks[0].grpc,
        proxy.addr(),
        parks[2].grpc
    );
    let src = Source {
        path: "province.toml".into(),
        text,
    };
    let mut config = RegionConfig::from_source(&src, |_| None).unwrap();
    let region_data = tempfile::tempdir().unwrap();
    config.data_dir = region_data.path().to_owned();
    let province = region::start(config, Arc::new(WallClock)).await.unwrap();
    let connected = |i: usize| province.upstreams[i].1.connected.load(Ordering::Acquire);
    wait_for(
        Duration::from_secs(20),
        "the province follows the parks",
        async || (0..3).all(connected),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = parks
        .iter()
        .map(|p| tokio::spawn(load(p.mqtt, p.id.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // P1: killed mid-stream, restarted on the same ports and data.
    parks[0].process.take().unwrap().kill().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    parks[0].restart().unwrap();

    // P2: partitioned away for longer than lost_after_s, then back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut().await;
    let lost = &province.upstreams[1].1.lost;
    wait_for(Duration::from_secs(15), "P2 counted as lost", async || {
        lost.load(Ordering::Acquire)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.heal().await.unwrap();
    wait_for(Duration::from_secs(20), "P2 back", async || {
        connected(1) && !lost.load(Ordering::Acquire)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.await.unwrap();
    }
    // Every reading judged (the lateness is 200 ms): the parks are quiet.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // Caught up: each park's newest event is merged.
    for p in &parks {
        let last = p.last_seq().await.unwrap();
        assert!(last > 20, "{}: only {last} events", p.id);
        let hub = province.hub.clone();
        let id = p.id.clone();
        wait_for(
            Duration::from_secs(20),
            "the province catches up",
            async || hub.journal().upstream_cursor(&id).unwrap() == last,
        )
        .await;
    }
    let merged = province.hub.journal_after(0, 1_000_000).unwrap();

    // Regulators' view: the province lists each park's open alarms as the
    // park does; a county token sees its park only; alarms are acted on
    // at their park.
    let every = || pb::ListActiveRequest {
        filter: Some(pb::AlarmFilter {
            include_suppressed: true,
            include_shelved: true,
            ..Default::default()
        }),
    };
    let mut whole = alarms_client(province.grpc_addr, "province-viewer-0123456789")
        .await
        .unwrap();
    let listed = whole
        .list_active(every())
        .await
        .unwrap()
        .into_inner()
        .alarms;
    for p in &parks {
        let mut at_park = AlarmServiceClient::connect(format!("http://{}", p.grpc))
            .await
            .unwrap();
        let mut want: Vec<(String, i32)> = at_park
            .list_active(every())
            .await
            .unwrap()
            .into_inner()
            .alarms
            .into_iter()
            .map(|a| (a.alarm_id, a.state))
            .collect();
        let mut got: Vec<(String, i32)> = listed
            .iter()
            .filter(|a| a.park == p.id)
            .map(|a| (a.alarm_id.clone(), a.state))
            .collect();
        want.sort();
        got.sort();
        assert!(!want.is_empty(), "{}: the load leaves alarms open", p.id);
        assert_eq!(
            got, want,
            "{}: the province lists what the park lists",
            p.id
        );
    }
    let mut county = alarms_client(province.grpc_addr, "county-of-p1-0123456789")
        .await
        .unwrap();
    let theirs = county
        .list_active(every())
        .await
        .unwrap()
        .into_inner()
        .alarms;
    assert!(!theirs.is_empty() && theirs.iter().all(|a| a.park == "P1"));
    let elsewhere = pb::ListActiveRequest {
        filter: Some(pb::AlarmFilter {
            parks: vec!["P2".into()],
            ..Default::default()
        }),
    };
    let refused = county.list_active(elsewhere).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let ack = county
        .acknowledge(pb::AcknowledgeRequest {
            alarm_id: theirs[0].alarm_id.clone(),
            operator: "wang.fang".into(),
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(ack.code(), tonic::Code::FailedPrecondition, "{ack:?}");
    assert!(ack.message().contains("park `P1`"), "{ack:?}");

    // Risk across parks: each park's colours as the park gives them.
    let colours = |r: &pb::RiskResponse| -> Vec<(String, i32)> {
        r.enterprises
            .iter()
            .flat_map(|e| e.hazard_sources.iter().map(|h| (h.id.clone(), h.colour)))
            .collect()
    };
    let province_site = || async {
        let mut c = site_client(province.grpc_addr, "province-viewer-0123456789")
            .await
            .unwrap();
        c.risk(pb::RiskRequest::default())
            .await
            .unwrap()
            .into_inner()
    };
    for p in &parks {
        let mut at_park = SiteServiceClient::connect(format!("http://{}", p.grpc))
            .await
            .unwrap();
        let want = at_park
            .risk(pb::RiskRequest::default())
            .await
            .unwrap()
            .into_inner();
        wait_for(
            Duration::from_secs(20),
            "the province has the park's colours",
            async || {
                let region = province_site().await;
                region.parks.iter().any(|r| {
                    r.park == p.id
                        && r.reachable
                        && r.risk
                            .as_ref()
                            .is_some_and(|r| colours(r) == colours(&want))
                })
            },
        )
        .await;
    }
    let mut county_site = site_client(province.grpc_addr, "county-of-p1-0123456789")
        .await
        .unwrap();
    let theirs = county_site
        .risk(pb::RiskRequest::default())
        .await
        .unwrap()
        .into_inner();
    let seen: Vec<&str> = theirs.parks.iter().map(|r| r.park.as_str()).collect();
    assert_eq!(seen, ["P1"]);

    // EEMUA 191 figures per park: the province's equal the park's own.
    let to_ms = now_ms();
    let stats = |park: &str| pb::StatsRequest {
        enterprise: "E01".into(),
        from_ms: 0,
        to_ms,
        park: park.into(),
    };
    for p in &parks {
        let mut at_park = AlarmServiceClient::connect(format!("http://{}", p.grpc))
            .await
            .unwrap();
        let want = at_park.stats(stats("")).await.unwrap().into_inner();
        let got = whole.stats(stats(&p.id)).await.unwrap().into_inner();
        assert!(want.raises > 0, "{}: {want:?}", p.id);
        assert_eq!(got, want, "{}: the province's figures are the park's", p.id);
    }
    let refused = county.stats(stats("P2")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let unnamed = whole.stats(stats("")).await.unwrap_err();
    assert_eq!(unnamed.code(), tonic::Code::InvalidArgument);
    province.shutdown().await.unwrap();

    for p in &mut parks {
        p.process.take().unwrap().stop().unwrap();
        let journal = AlarmJournal::open(&p.data.path().join("journal/alarms.redb")).unwrap();
        let (events, _) = journal.page_after(0, 1_000_000, |_| true).unwrap();
        let at_park: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let here: Vec<&pb::AlarmEvent> = merged
            .iter()
            .filter(|e| e.park == p.id && e.upstream_seq != 0)
            .collect();
        let upstream: Vec<u64> = here.iter().map(|e| e.upstream_seq).collect();
        assert_eq!(
            upstream, at_park,
            "{}: the province must hold each of its events once, in order",
            p.id
        );
        // The same events, renumbered.
        for (mine, theirs) in here.iter().zip(&events) {
            assert_eq!(mine.alarm_id, theirs.alarm_id);
            assert_eq!(mine.transition, theirs.transition);
            assert_eq!(mine.event_time_ms, theirs.event_time_ms);
        }
    }
    // P2's absence is itself an alarm on the province's feed.
    let offline: Vec<i32> = merged
        .iter()
        .filter(|e| e.alarm_id == "P2/OFFLINE")
        .map(|e| e.transition)
        .collect();
    assert_eq!(
        offline,
        vec![
            pb::Transition::Raised as i32,
            pb::Transition::Cleared as i32
        ]
    );
    // The province numbers its journal without gaps.
    let seqs: Vec<u64> = merged.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=merged.len() as u64).collect::<Vec<_>>());
}
