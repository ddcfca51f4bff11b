//! A big park across processes: two `hazardwatch run` processes on
//! loopback, one timely cluster, each with its own broker, write-ahead
//! log and archive, and the gateways split between them. The alarms the
//! lead journals are exactly those one process journals on the same
//! readings, unit rules included (a 2-of-4 gas vote and a runaway
//! correlation whose points reach different processes).

use std::path::Path;
use std::time::Duration;

use hazardwatch_proto::pb;
use hazardwatch_storage::AlarmJournal;
use hazardwatch_tests::{Gateway, free_loopback_addr, now_ms};

use crate::harness::Process;

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

    // Two processes, one cluster: both must be up before either
    // subscribes.
    let links = [free_loopback_addr().unwrap(), free_loopback_addr().unwrap()];
    let cluster = dir.path().join("cluster.toml");
    let list = format!("cluster = [\"{}\", \"{}\"]", links[0], links[1]);
    std::fs::write(&cluster, PARK.replace("CLUSTER", &list)).unwrap();
    let datas = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mqtts = [free_loopback_addr().unwrap(), free_loopback_addr().unwrap()];
    let mut processes = Vec::new();
    for i in 0..2 {
        let mut more = mqtt_arg(mqtts[i]);
        more.extend(["--process".to_owned(), i.to_string()]);
        let p = Process::spawn(&cluster, datas[i].path(), "127.0.0.1:0", &more).unwrap();
        processes.push(p);
    }
    for p in &mut processes {
        p.subscribed().unwrap();
    }
    let base = play([mqtts[0].port(), mqtts[1].port()]).await.unwrap();
    // A cluster stops together: each process's rules finish when every
    // process's input has ended.
    let stops: Vec<_> = processes
        .into_iter()
        .map(|p| std::thread::spawn(move || p.stop()))
        .collect();
    let logs: Vec<String> = stops
        .into_iter()
        .map(|s| s.join().unwrap().unwrap())
        .collect();
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
    let archived = |d: &Path| crate::harness::archived(&d.join("archive")).len();
    let (lead_rows, member_rows) = (archived(datas[0].path()), archived(datas[1].path()));
    assert!(
        member_rows >= 3 * STEPS as usize && lead_rows >= 3 * STEPS as usize,
        "each process archives what its gateways sent: {lead_rows}, {member_rows}"
    );
}
