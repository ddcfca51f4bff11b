//! Chaos: the real binary under a QoS 1 load from four gateways (two
//! enterprises, limits crossed all the time, so alarms come and go), with
//! gRPC queries running, is killed with SIGKILL at random moments: during
//! checkpoints (every second), compactions, configuration reloads (SIGHUP
//! just before some kills), queries, a restart of the external broker, and
//! a full disk (the data directory on a small tmpfs, filled and freed, where
//! the test may mount one). Afterwards:
//! - every reading the broker acknowledged to a gateway is archived exactly
//!   once;
//! - the alarm journal numbers its events without a gap, holds no condition
//!   change twice, and the archive holds each of its events exactly once.
//!
//! CI runs 12 kills; the long run is `bash tests/chaos.sh` (100 kills).
//! `HAZARDWATCH_CHAOS_KILLS` and `HAZARDWATCH_CHAOS_SEED` set the count and
//! the random moments (the seed is printed, so a failure can be replayed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hazardwatch::sim::Rng;
use hazardwatch_proto::pb;
use hazardwatch_storage::AlarmJournal;
use hazardwatch_tests::{Mosquitto, TEST_PARK, archived_alarm_seqs, now_ms};
use tokio_util::sync::CancellationToken;

use crate::harness::{Key, Process, gateway, last_run};

/// (gateway, enterprise, point, values it cycles through)
const GATEWAYS: [(&str, &str, &str, [f64; 4]); 4] = [
    ("chaos-gw1", "E01", "T101.LT", [10.0, 18.5, 19.5, 1.0]),
    ("chaos-gw2", "E01", "T101.PT", [300.0, 700.0, 300.0, 650.0]),
    ("chaos-gw3", "E01", "E01-GT01", [5.0, 25.0, 45.0, 5.0]),
    ("chaos-gw4", "E02", "T201.TE", [20.0, 50.0, 20.0, 60.0]),
];

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Queries whichever service runs now (Query, History, ListActive), over
/// and over; counts the answers.
async fn queries(
    addr: Arc<Mutex<Option<String>>>,
    answered: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    use pb::alarm_service_client::AlarmServiceClient;
    use pb::telemetry_service_client::TelemetryServiceClient;
    while !stop.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(addr) = addr.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            continue;
        };
        let url = format!("http://{addr}");
        let Ok(channel) = tonic::transport::Endpoint::from_shared(url) else {
            continue;
        };
        let Ok(channel) = channel.connect().await else {
            continue;
        };
        let now = now_ms();
        let mut telemetry = TelemetryServiceClient::new(channel.clone());
        if let Ok(r) = telemetry
            .query(pb::QueryRequest {
                points: vec!["T101.LT".into(), "E01-GT01".into()],
                from_ms: now - 5_000,
                to_ms: now,
                ..Default::default()
            })
            .await
        {
            let mut stream = r.into_inner();
            while let Ok(Some(_)) = stream.message().await {}
            answered.fetch_add(1, Ordering::Relaxed);
        }
        let mut alarms = AlarmServiceClient::new(channel);
        if alarms
            .history(pb::HistoryRequest {
                from_ms: now - 60_000,
                ..Default::default()
            })
            .await
            .is_ok()
        {
            answered.fetch_add(1, Ordering::Relaxed);
        }
        if alarms
            .list_active(pb::ListActiveRequest { filter: None })
            .await
            .is_ok()
        {
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A small tmpfs for the data directory, where this process may mount one
/// (it is root with the mount capability); unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk {
            dir: dir.to_owned(),
        })
    }

    /// Fills what is free with a file; returns it.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        if let Ok(mut f) = std::fs::File::create(&path) {
            let block = vec![0u8; 1 << 20];
            while f.write_all(&block).is_ok() {}
            let _ = f.sync_all();
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kills_broker_restarts_reloads_and_a_full_disk_lose_and_double_nothing() {
    let Some(mut broker) = Mosquitto::start().unwrap() else {
        return;
    };
    let kills = setting("HAZARDWATCH_CHAOS_KILLS", 12) as usize;
    let seed = setting("HAZARDWATCH_CHAOS_SEED", now_ms() as u64);
    eprintln!(
        "chaos: {kills} kills, seed {seed} (HAZARDWATCH_CHAOS_SEED={seed} replays the moments)"
    );
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let disk = SmallDisk::mount(&data);
    if disk.is_none() {
        eprintln!("chaos: cannot mount a tmpfs here; the full-disk phases are left out");
    }
    let config = dir.path().join("park.toml");
    let broker_port = broker.port;
    let text = |h: u32| {
        TEST_PARK
            .replace(
                "[mqtt]\n",
                &format!("[mqtt]\nbroker = \"127.0.0.1:{broker_port}\"\n"),
            )
            .replace("[archive]\nroll_secs = 3600", "[archive]\nroll_secs = 1")
            .replace("h = 600.0", &format!("h = {h}.0"))
    };
    std::fs::write(&config, text(600)).unwrap();

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let grpc = Arc::new(Mutex::new(None));
    let answered = Arc::new(AtomicU64::new(0));
    let mut gateways = Vec::new();
    let (mut reloads, mut broker_restarts, mut full_disks, mut replayed) = (0, 0, 0, 0usize);
    for k in 0..kills {
        let p = Process::start(&config, &data).unwrap();
        if p.log()
            .contains("write-ahead log: judging and archiving again")
        {
            replayed += 1;
        }
        *grpc.lock().unwrap() = p.grpc_addr();
        if gateways.is_empty() {
            // Once the service's persistent session exists at the broker.
            for g in GATEWAYS {
                gateways.push(tokio::spawn(gateway(
                    broker.port,
                    g,
                    acknowledged.clone(),
                    stop.clone(),
                )));
            }
            tokio::spawn(queries(grpc.clone(), answered.clone(), stop.clone()));
        }
        let before = Duration::from_millis(50 + rng.next_u64() % 2_500);
        match k % 10 {
            3 => {
                // A reload, and the kill soon after it.
                reloads += 1;
                std::fs::write(&config, text(if reloads % 2 == 1 { 650 } else { 600 })).unwrap();
                p.signal("HUP").unwrap();
                tokio::time::sleep(Duration::from_millis(rng.next_u64() % 300)).await;
            }
            6 => {
                broker_restarts += 1;
                tokio::time::sleep(before / 2).await;
                broker.restart(Duration::from_millis(500)).unwrap();
                tokio::time::sleep(before / 2).await;
            }
            8 if disk.is_some() => {
                full_disks += 1;
                let filler = disk.as_ref().map(SmallDisk::fill);
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                if let Some(f) = filler {
                    std::fs::remove_file(f).unwrap();
                }
                tokio::time::sleep(before).await;
            }
            _ => tokio::time::sleep(before).await,
        }
        p.kill().unwrap();
    }
    stop.cancel();
    let mut messages = 0;
    for g in gateways {
        messages += g.await.unwrap().unwrap();
    }
    let want: BTreeSet<Key> = acknowledged.lock().unwrap().iter().cloned().collect();
    assert_eq!(want.len() as u64, messages * 10, "keys are unique");

    // A last run takes the rest from the broker and stops cleanly.
    let outcome = last_run(&config, &data, &want, Duration::from_secs(120))
        .await
        .unwrap();
    replayed += usize::from(outcome.replayed);
    let archive = data.join("archive");

    // Alarm events: numbered without a gap, no condition change twice,
    // each archived once.
    let journal = AlarmJournal::open(&data.join("journal").join("alarms.redb")).unwrap();
    let last = journal.last_seq().unwrap();
    let (events, _) = journal.page_after(0, usize::MAX, |_| true).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let changes = [
        pb::Transition::Raised as i32,
        pb::Transition::Cleared as i32,
    ];
    let mut seen = BTreeMap::new();
    for e in events.iter().filter(|e| changes.contains(&e.transition)) {
        *seen
            .entry((e.alarm_id.clone(), e.transition, e.event_time_ms))
            .or_insert(0usize) += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let mut archived_seqs: BTreeMap<u64, usize> = BTreeMap::new();
    for s in archived_alarm_seqs(&archive).unwrap() {
        *archived_seqs.entry(s).or_default() += 1;
    }
    let unarchived = seqs
        .iter()
        .filter(|s| !archived_seqs.contains_key(s))
        .count();
    let archived_twice = archived_seqs.values().filter(|&&n| n > 1).count();

    eprintln!(
        "chaos: {kills} SIGKILLs survived ({replayed} restarts replayed the log; {reloads} during reloads, {broker_restarts} broker restarts, {full_disks} full disks); \
         {} readings acknowledged, {} lost, {} archived twice, {} not published; \
         {} alarm events journaled, {} condition changes twice, {unarchived} not archived, {archived_twice} archived twice; {} gRPC answers",
        want.len(),
        outcome.missing.len(),
        outcome.twice.len(),
        outcome.extra,
        seqs.len(),
        repeated.len(),
        answered.load(Ordering::Relaxed),
    );
    outcome.assert_exactly_once();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "journal numbering");
    assert!(
        repeated.is_empty(),
        "condition changes journaled twice: {repeated:?}"
    );
    assert_eq!(
        (unarchived, archived_twice),
        (0, 0),
        "alarm events in the archive"
    );
    assert!(
        replayed > 0,
        "no restart replayed the log: the kills tested nothing"
    );
}
