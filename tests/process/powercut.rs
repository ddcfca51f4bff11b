//! Power cuts below the service: its data directory on a file system that
//! drops everything not yet synced ([`PowerCut`]), the process killed and
//! the power cut at random moments, then started again on what is left.
//! Every reading the broker acknowledged to the gateway must be archived
//! exactly once, and the alarm journal must number its events without a
//! gap.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hazardwatch::sim::Rng;
use hazardwatch_tests::powercut::PowerCut;
use hazardwatch_tests::{Mosquitto, TEST_PARK, now_ms};
use tokio_util::sync::CancellationToken;

use crate::harness::{Key, Process, gateway, last_run};

/// The file system keeps what was synced, and only that.
#[test]
fn the_file_system_keeps_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = PowerCut::mount(&dir.path().join("mnt")) else {
        eprintln!("powercut: cannot mount a FUSE file system here (needs /dev/fuse and root)");
        return;
    };
    let root = fs.path();
    let synced = root.join("synced");
    let mut f = std::fs::File::create(&synced).unwrap();
    f.write_all(b"kept").unwrap();
    f.sync_all().unwrap();
    f.write_all(b" and lost").unwrap();
    std::fs::File::open(root).unwrap().sync_all().unwrap();
    // Written and synced, but its directory entry never was.
    let mut g = std::fs::File::create(root.join("unlinked")).unwrap();
    g.write_all(b"x").unwrap();
    g.sync_all().unwrap();
    drop((f, g));
    let cut = fs.cut();
    assert_eq!(std::fs::read(&synced).unwrap(), b"kept");
    assert!(!root.join("unlinked").exists());
    assert_eq!(cut.files_rolled_back, 1);
    assert_eq!(cut.entries_rolled_back, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_lose_no_acknowledged_reading() {
    let Some(broker) = Mosquitto::start().unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = PowerCut::mount(&dir.path().join("data")) else {
        eprintln!("powercut: cannot mount a FUSE file system here (needs /dev/fuse and root)");
        return;
    };
    let cuts = std::env::var("HAZARDWATCH_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize);
    let seed = now_ms() as u64;
    eprintln!("powercut: {cuts} cuts, seed {seed}");
    let mut rng = Rng::new(seed);
    let config = dir.path().join("park.toml");
    let text = TEST_PARK
        .replace(
            "[mqtt]\n",
            &format!("[mqtt]\nbroker = \"127.0.0.1:{}\"\n", broker.port),
        )
        .replace("[archive]\nroll_secs = 3600", "[archive]\nroll_secs = 1");
    std::fs::write(&config, text).unwrap();

    let acknowledged = Arc::new(Mutex::new(Vec::<Key>::new()));
    let stop = CancellationToken::new();
    let mut publisher = None;
    let mut dropped = (0u64, 0usize);
    for _ in 0..cuts {
        let p = Process::start(&config, fs.path()).unwrap();
        publisher.get_or_insert_with(|| {
            tokio::spawn(gateway(
                broker.port,
                ("cut-gw", "E01", "T101.LT", [10.0, 18.5, 19.5, 1.0]),
                acknowledged.clone(),
                stop.clone(),
            ))
        });
        tokio::time::sleep(Duration::from_millis(200 + rng.next_u64() % 2_300)).await;
        p.kill().unwrap();
        let cut = fs.cut();
        dropped.0 += cut.bytes_dropped;
        dropped.1 += cut.entries_rolled_back;
    }
    stop.cancel();
    let messages = publisher.unwrap().await.unwrap().unwrap();
    let want: BTreeSet<Key> = acknowledged.lock().unwrap().iter().cloned().collect();
    assert_eq!(want.len() as u64, messages * 10, "keys are unique");
    let outcome = last_run(&config, fs.path(), &want, Duration::from_secs(120))
        .await
        .unwrap();
    eprintln!(
        "powercut: {cuts} power cuts ({} unsynced bytes and {} directory entries dropped), {} readings acknowledged, {} lost, {} archived twice",
        dropped.0,
        dropped.1,
        want.len(),
        outcome.missing.len(),
        outcome.twice.len()
    );
    outcome.assert_exactly_once();
    assert!(
        dropped.0 > 0 || dropped.1 > 0,
        "the cuts dropped nothing: they tested nothing"
    );
}
