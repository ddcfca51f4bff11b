//! A big park across processes: two `hazardwatch run` processes on
//! loopback, one timely cluster, each with its own broker, write-ahead
//! log and archive, and the gateways split between them. The alarms the
//! lead journals are exactly those one process journals on the same
//! readings, unit rules included (a 2-of-4 gas vote and a runaway
//! correlation whose points reach different processes).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_client::AlarmServiceClient;
use hazardwatch_storage::AlarmJournal;
use hazardwatch_tests::{Gateway, free_loopback_addr, now_ms};

use crate::harness::{Key, Process};

/// One enterprise: four gas detectors voting two of four, and a reactor
/// whose temperature and pressure rising together is one unit alarm.
const PARK: &str = r#"
[mqtt]
listen = "127.0.0.1:0"

[grpc]
listen = "127.0.0.1:0"

[metrics]
enabled = false

[engine]
workers = 1
lateness_ms = 1000
epoch_ms = 50
CLUSTER

[archive]
roll_secs = 3600

[park]
id = "BIG"

[[enterprise]]
id = "E01"
[[enterprise.hazard_source]]
id = "E01-HS1"
grade = 1

[[enterprise.hazard_source.unit]]
id = "GAS"
voting = { k = 2, priority = "critical" }
[[enterprise.hazard_source.unit.point]]
id = "GT01"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = 20.0
hh = 40.0
[[enterprise.hazard_source.unit.point]]
id = "GT02"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = 20.0
hh = 40.0
[[enterprise.hazard_source.unit.point]]
id = "GT03"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = 20.0
hh = 40.0
[[enterprise.hazard_source.unit.point]]
id = "GT04"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = 20.0
hh = 40.0

[[enterprise.hazard_source.unit]]
id = "R1"
correlation = { window_s = 60 }
[[enterprise.hazard_source.unit.point]]
id = "R1.TE"
kind = "temperature"
eng_unit = "degC"
range = [-20.0, 200.0]
h = 80.0
hh = 90.0
on_delay_s = 0
off_delay_s = 0
roc = { limit_per_min = 20.0, window_s = 2 }
[[enterprise.hazard_source.unit.point]]
id = "R1.PT"
kind = "pressure"
eng_unit = "kPa"
range = [0.0, 1000.0]
h = 600.0
on_delay_s = 0
off_delay_s = 0
roc = { limit_per_min = 200.0, window_s = 2 }

[[enterprise]]
id = "E02"
[[enterprise.hazard_source]]
id = "E02-HS1"
grade = 3
[[enterprise.hazard_source.unit]]
id = "T2"
[[enterprise.hazard_source.unit.point]]
id = "T2.TE"
kind = "temperature"
eng_unit = "degC"
range = [-20.0, 200.0]
h = 45.0
on_delay_s = 0
off_delay_s = 0
"#;

/// Steps of the script, 500 ms apart.
const STEPS: i64 = 24;
const STEP_MS: i64 = 500;

/// The value of `point` at step `k`: detectors crossing their levels one
/// after another, temperature and pressure climbing fast from steps 6
/// and 8, and back down at the end.
fn value(point: &str, k: i64) -> f64 {
    let from = |start: i64, per_step: f64, base: f64| base + per_step * (k - start).max(0) as f64;
    match point {
        "GT01" if k >= 4 => 30.0,
        "GT02" if (7..18).contains(&k) => 25.0,
        "GT03" if k >= 10 => 45.0,
        "R1.TE" if k < 20 => from(6, 3.0, 50.0),
        "R1.PT" if k < 20 => from(8, 25.0, 300.0),
        "R1.TE" => 60.0,
        "R1.PT" => 320.0,
        _ => 5.0,
    }
}

/// Which gateway reports which points: in the cluster, GW-A's broker is
/// process 0's and GW-B's is process 1's.
const GATEWAYS: [(&str, [&str; 3]); 2] = [
    ("GW-A", ["GT01", "GT02", "R1.TE"]),
    ("GW-B", ["GT03", "GT04", "R1.PT"]),
];

/// Plays the script in real time (each step published when its time
/// comes) through one gateway per broker port, and returns the base time.
async fn play(ports: [u16; 2]) -> anyhow::Result<i64> {
    let mut gateways = Vec::new();
    for ((id, _), port) in GATEWAYS.iter().zip(ports) {
        gateways.push(Gateway::connect("127.0.0.1", port, id).await?);
    }
    let base = now_ms() + 1_000;
    for k in 0..STEPS {
        let ts = base + k * STEP_MS;
        let wait = ts - now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        for ((id, points), gw) in GATEWAYS.iter().zip(gateways.iter_mut()) {
            let readings: Vec<_> = points
                .iter()
                .map(|p| serde_json::json!({"point": p, "ts": ts, "value": value(p, k)}))
                .collect();
            let body = serde_json::json!({"gateway": id, "readings": readings});
            gw.publish(
                &format!("hw/v1/E01/{id}/telemetry"),
                serde_json::to_vec(&body)?,
            )
            .await?;
        }
    }
    // Past the lateness, so the last step is judged before the stop.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for gw in gateways {
        gw.close().await;
    }
    Ok(base)
}

/// The journal's events as (alarm, transition, event time from `base`).
fn journaled(data: &Path, base: i64) -> Vec<(String, i32, i64)> {
    let journal = AlarmJournal::open(&data.join("journal/alarms.redb")).expect("the journal opens");
    let (events, _) = journal
        .page_after(0, 1_000_000, |_| true)
        .expect("the journal reads");
    events
        .iter()
        .map(|e: &pb::AlarmEvent| (e.alarm_id.clone(), e.transition, e.event_time_ms - base))
        .collect()
}

fn mqtt_arg(addr: std::net::SocketAddr) -> Vec<String> {
    vec!["--mqtt".into(), addr.to_string()]
}

/// A cluster of two on loopback: its configuration file, and each
/// process's data directory, broker and gRPC address.
struct Cluster {
    config: std::path::PathBuf,
    data: [tempfile::TempDir; 2],
    mqtt: [std::net::SocketAddr; 2],
    grpc: [std::net::SocketAddr; 2],
}

impl Cluster {
    fn new(dir: &Path) -> anyhow::Result<Cluster> {
        let links = [free_loopback_addr()?, free_loopback_addr()?];
        let config = dir.join("cluster.toml");
        let list = format!("cluster = [\"{}\", \"{}\"]", links[0], links[1]);
        std::fs::write(&config, PARK.replace("CLUSTER", &list))?;
        Ok(Cluster {
            config,
            data: [tempfile::tempdir()?, tempfile::tempdir()?],
            mqtt: [free_loopback_addr()?, free_loopback_addr()?],
            grpc: [free_loopback_addr()?, free_loopback_addr()?],
        })
    }

    /// Starts both processes, each with its embedded broker, and waits
    /// until both have subscribed (each waits for the other while it
    /// starts).
    fn start(&self) -> anyhow::Result<Vec<Process>> {
        self.start_with(&[])
    }

    /// [`Cluster::start`] with `more` arguments for both processes.
    fn start_with(&self, more: &[String]) -> anyhow::Result<Vec<Process>> {
        let mut processes = Vec::new();
        for i in 0..2 {
            let mut more = [mqtt_arg(self.mqtt[i]), more.to_vec()].concat();
            more.extend(["--process".to_owned(), i.to_string()]);
            let grpc = self.grpc[i].to_string();
            processes.push(Process::spawn(
                &self.config,
                self.data[i].path(),
                &grpc,
                &more,
            )?);
        }
        for p in &mut processes {
            p.subscribed()?;
        }
        Ok(processes)
    }

    fn ports(&self) -> [u16; 2] {
        [self.mqtt[0].port(), self.mqtt[1].port()]
    }
}

/// Stops the processes of a cluster together: each one's rules finish
/// when every process's input has ended. Returns their logs.
fn stop_all(processes: Vec<Process>) -> Vec<String> {
    let stops: Vec<_> = processes
        .into_iter()
        .map(|p| std::thread::spawn(move || p.stop()))
        .collect();
    stops
        .into_iter()
        .map(|s| match s.join() {
            Ok(Ok(log)) => log,
            Ok(Err(e)) => panic!("a process did not stop cleanly: {e:#}"),
            Err(_) => panic!("stopping panicked"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_journal_exactly_the_alarms_one_process_does() {
    let dir = tempfile::tempdir().unwrap();

    // One process.
    let single = dir.path().join("single.toml");
    std::fs::write(&single, PARK.replace("CLUSTER", "")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mqtt = free_loopback_addr().unwrap();
    let mut one = Process::spawn(&single, data.path(), "127.0.0.1:0", &mqtt_arg(mqtt)).unwrap();
    one.subscribed().unwrap();
    let base = play([mqtt.port(), mqtt.port()]).await.unwrap();
    one.stop().unwrap();
    let alone = journaled(data.path(), base);

    // Two processes, one cluster.
    let cluster = Cluster::new(dir.path()).unwrap();
    let processes = cluster.start().unwrap();
    let base = play(cluster.ports()).await.unwrap();
    let logs = stop_all(processes);
    let datas = &cluster.data;
    let together = journaled(datas[0].path(), base);

    let raised = |events: &[(String, i32, i64)], id: &str| {
        events
            .iter()
            .any(|(a, t, _)| a.contains(id) && *t == pb::Transition::Raised as i32)
    };
    // Alarms of points that reach each process, and of units that span
    // both.
    for id in ["GT01/", "GT03/", "R1.TE/", "R1.PT/", "GAS/VOTE", "R1/CORR"] {
        assert!(raised(&alone, id), "{id} raised: {alone:?}");
    }
    assert_eq!(
        together, alone,
        "the cluster's alarms, in order, are one process's"
    );
    // The member journals nothing of its own; its readings are in its
    // archive.
    assert!(
        journaled(datas[1].path(), base).is_empty(),
        "the member's log:\n{}",
        logs[1]
    );
    // Engineers replay the park's history from the processes' archives
    // read as one, through one process's rules: the same alarms.
    let config = hazardwatch::config::Config::load(&single).unwrap();
    let roots = [
        datas[0].path().join("archive"),
        datas[1].path().join("archive"),
    ];
    let replayed = hazardwatch::replay::replay_all(
        &[&roots[0], &roots[1]],
        &hazardwatch_storage::reader::Range::default(),
        &config.site,
        None,
        &config.settings.engine,
        false,
    )
    .unwrap();
    // Up to the last reading: a replay ends there (what the live service's
    // clock did after it, such as GT02's off-delay clear 2.5 s later, is
    // not in the archives).
    let played = base + (STEPS - 1) * STEP_MS;
    let again: BTreeSet<(String, bool, i64)> = replayed
        .events
        .iter()
        .filter(|e| e.ts_ms <= played)
        .map(|e| {
            let id = hazardwatch::replay::alarm_id(&config.site.catalog, e);
            (id, e.active, e.ts_ms - base)
        })
        .collect();
    let live: BTreeSet<(String, bool, i64)> = together
        .iter()
        .filter(|e| base + e.2 <= played)
        .filter_map(|(a, t, at)| {
            let active = *t == pb::Transition::Raised as i32;
            (active || *t == pb::Transition::Cleared as i32).then(|| (a.clone(), active, *at))
        })
        .collect();
    assert_eq!(again, live, "replayed from both archives");
    let archived = |d: &Path| crate::harness::archived(&d.join("archive")).len();
    let (lead_rows, member_rows) = (archived(datas[0].path()), archived(datas[1].path()));
    assert!(
        member_rows >= 3 * STEPS as usize && lead_rows >= 3 * STEPS as usize,
        "each process archives what its gateways sent: {lead_rows}, {member_rows}"
    );
}

/// Publishes one reading of each of `points` at `value`, now, through the
/// gateway that reports it, to its process's broker.
async fn publish_now(
    ports: [u16; 2],
    acked: &mut [BTreeSet<Key>; 2],
    points: &[&str],
    value: f64,
) -> anyhow::Result<()> {
    let ts = now_ms();
    for (((id, theirs), port), acked) in GATEWAYS.iter().zip(ports).zip(acked.iter_mut()) {
        let theirs: Vec<&str> = theirs
            .iter()
            .copied()
            .filter(|p| points.contains(p))
            .collect();
        let readings: Vec<_> = theirs
            .iter()
            .map(|p| serde_json::json!({"point": p, "ts": ts, "value": value}))
            .collect();
        if readings.is_empty() {
            continue;
        }
        let mut gw = Gateway::connect("127.0.0.1", port, id).await?;
        let body = serde_json::json!({"gateway": id, "readings": readings});
        gw.publish(
            &format!("hw/v1/E01/{id}/telemetry"),
            serde_json::to_vec(&body)?,
        )
        .await?;
        acked.extend(theirs.iter().map(|p| (p.to_string(), ts, value.to_bits())));
        gw.close().await;
    }
    Ok(())
}

/// A cluster is one failure domain: when a process is lost, the others
/// stop (timely does not reconnect) and say why; started again together,
/// the lead gives every process the conditions its journal holds, so
/// alarms still active are not raised a second time, wherever their
/// points' rules now run, and they clear when they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_loses_a_process_stops_and_resumes_its_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path()).unwrap();
    let mut processes = cluster.start().unwrap();
    // What each process's broker acknowledged.
    let mut acked: [BTreeSet<Key>; 2] = Default::default();
    // T and P high, temperature and pressure over H; the detectors over H.
    let all = ["GT01", "GT02", "GT03", "GT04", "R1.TE", "R1.PT"];
    publish_now(
        cluster.ports(),
        &mut acked,
        &["GT01", "GT02", "GT03", "GT04"],
        30.0,
    )
    .await
    .unwrap();
    publish_now(cluster.ports(), &mut acked, &["R1.TE"], 85.0)
        .await
        .unwrap();
    publish_now(cluster.ports(), &mut acked, &["R1.PT"], 650.0)
        .await
        .unwrap();
    let mut alarms = AlarmServiceClient::connect(format!("http://{}", cluster.grpc[0]))
        .await
        .unwrap();
    let active = |list: &pb::ListActiveResponse| -> Vec<String> {
        let mut ids: Vec<String> = list.alarms.iter().map(|a| a.alarm_id.clone()).collect();
        ids.sort();
        ids
    };
    let want: Vec<String> = {
        let mut w: Vec<String> = all.iter().map(|p| format!("{p}/H")).collect();
        w.push("GAS/VOTE".into());
        w.sort();
        w
    };
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = alarms
            .list_active(pb::ListActiveRequest::default())
            .await
            .unwrap()
            .into_inner();
        if active(&list) == want {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "active at the lead: {:?}",
            active(&list)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(alarms);

    // The member is lost: the lead stops, with an error that says so.
    let lead = processes.remove(0);
    processes.remove(0).kill().unwrap();
    let mut lead = lead;
    let (status, log) = lead
        .exited(Duration::from_secs(60))
        .expect("the lead stops when its cluster loses a process");
    assert!(!status.success(), "{log}");
    assert!(log.contains("a process of the cluster was lost"), "{log}");

    // Together again: the alarms are as the journal left them, and
    // readings still high raise nothing again.
    let processes = cluster.start().unwrap();
    let mut alarms = AlarmServiceClient::connect(format!("http://{}", cluster.grpc[0]))
        .await
        .unwrap();
    let list = alarms
        .list_active(pb::ListActiveRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active(&list), want);
    publish_now(
        cluster.ports(),
        &mut acked,
        &["GT01", "GT02", "GT03", "GT04"],
        30.0,
    )
    .await
    .unwrap();
    publish_now(cluster.ports(), &mut acked, &["R1.TE"], 85.0)
        .await
        .unwrap();
    drop(alarms);
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // Stopped cleanly (the archives sealed, nothing left in the
    // write-ahead logs to judge again) and started once more: the rules'
    // state now comes from the lead's journal alone. The temperature falls
    // back, and the pressure is found back to normal (it fell while the
    // cluster was down): each rule clears an alarm it knows of only from
    // the journal, whichever process it runs in.
    stop_all(processes);
    let processes = cluster.start().unwrap();
    let mut alarms = AlarmServiceClient::connect(format!("http://{}", cluster.grpc[0]))
        .await
        .unwrap();
    publish_now(cluster.ports(), &mut acked, &["R1.TE"], 60.0)
        .await
        .unwrap();
    publish_now(cluster.ports(), &mut acked, &["R1.PT"], 300.0)
        .await
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = alarms
            .list_active(pb::ListActiveRequest::default())
            .await
            .unwrap()
            .into_inner();
        let returned = |id: &str| {
            list.alarms
                .iter()
                .any(|a| a.alarm_id == id && a.state == pb::AlarmState::UnackedRtn as i32)
        };
        if returned("R1.TE/H") && returned("R1.PT/H") {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "R1.TE/H and R1.PT/H must clear, wherever their rules run: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(alarms);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop_all(processes);
    let events = journaled(cluster.data[0].path(), 0);
    for id in &want {
        let raised = events
            .iter()
            .filter(|(a, t, _)| a == id && *t == pb::Transition::Raised as i32)
            .count();
        assert_eq!(raised, 1, "{id} raised once: {events:?}");
    }
    let cleared = |id: &str| {
        events
            .iter()
            .filter(|(a, t, _)| a == id && *t == pb::Transition::Cleared as i32)
            .count()
    };
    assert_eq!(cleared("R1.TE/H"), 1, "{events:?}");
    assert_eq!(cleared("R1.PT/H"), 1, "{events:?}");
    // Acknowledged means on disk, per process: the member's readings
    // outlived its SIGKILL. Each process archived exactly what its broker
    // acknowledged, once.
    for (i, want) in acked.iter().enumerate() {
        let have = crate::harness::archived(&cluster.data[i].path().join("archive"));
        let missing: Vec<&Key> = want.iter().filter(|k| !have.contains_key(*k)).collect();
        let twice: Vec<(&Key, &usize)> = have.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            missing.is_empty() && twice.is_empty(),
            "process {i}: missing {missing:?}, twice {twice:?}"
        );
    }
}

/// On an external broker that both processes share, each enterprise's
/// topics are taken by one process (the first enterprise by process 0,
/// the second by process 1): every reading is archived once, by the
/// process its enterprise is dealt to, and the lead journals the alarms
/// of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_shared_broker_each_enterprise_is_taken_by_one_process() {
    let Some(broker) = hazardwatch_tests::Mosquitto::start().unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path()).unwrap();
    let at = format!("127.0.0.1:{}", broker.port);
    let processes = cluster
        .start_with(&["--broker".to_owned(), at.clone()])
        .unwrap();
    let sent = [("E01", "GW-A", "GT01"), ("E02", "GW-C", "T2.TE")];
    let ts = now_ms();
    for (enterprise, id, point) in sent {
        let mut gw = Gateway::connect("127.0.0.1", broker.port, id)
            .await
            .unwrap();
        for k in 0..10 {
            let body = serde_json::json!({"gateway": id, "readings": [
                {"point": point, "ts": ts + k * 100, "value": 50.0}
            ]});
            gw.publish(
                &format!("hw/v1/{enterprise}/{id}/telemetry"),
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap();
        }
        gw.close().await;
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop_all(processes);
    let points = |i: usize| -> std::collections::BTreeMap<String, usize> {
        let mut by_point = std::collections::BTreeMap::new();
        for ((point, _, _), n) in crate::harness::archived(&cluster.data[i].path().join("archive"))
        {
            *by_point.entry(point).or_insert(0) += n;
        }
        by_point
    };
    assert_eq!(points(0), [("GT01".to_owned(), 10)].into());
    assert_eq!(points(1), [("T2.TE".to_owned(), 10)].into());
    let events = journaled(cluster.data[0].path(), 0);
    for id in ["GT01/H", "T2.TE/H"] {
        let raised = events
            .iter()
            .filter(|(a, t, _)| a == id && *t == pb::Transition::Raised as i32)
            .count();
        assert_eq!(raised, 1, "{id}: {events:?}");
    }
}
