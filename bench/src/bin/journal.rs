//! The alarm journal: durable commits per second against the disk's own
//! fsync rate measured in the same run, bulk append, reopening a journal
//! of N events, subscriber catch-up and a History page.
//!
//! `cargo run --release -p hazardwatch-bench --bin journal [EVENTS]`

use std::io::Write;
use std::time::{Duration, Instant};

use hazardwatch_bench::{baseline, header, per_sec, row, time_for};
use hazardwatch_proto::pb;
use hazardwatch_storage::AlarmJournal;

const T0: i64 = 1_767_225_600_000;

/// An event as the service writes one: ids, place, message.
fn event(seq: u64) -> pb::AlarmEvent {
    let e = seq % 20;
    let p = seq % 5_000;
    pb::AlarmEvent {
        seq,
        alarm_id: format!("T{e:02}{p:04}.LT/H"),
        enterprise: format!("E{e:02}"),
        hazard_source: format!("E{e:02}-HS1"),
        unit: format!("T{e:02}{p:04}"),
        point: format!("T{e:02}{p:04}.LT"),
        kind: pb::AlarmKind::High as i32,
        priority: pb::Priority::Medium as i32,
        transition: pb::Transition::Raised as i32,
        state: pb::AlarmState::UnackedActive as i32,
        event_time_ms: T0 + seq as i64 * 10,
        value: 18.42,
        limit: 18.0,
        eng_unit: "m".into(),
        message: format!("T{e:02}{p:04}.LT level H 18.420 m (limit 18.000)"),
        ..Default::default()
    }
}

fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    header(
        &format!("alarm journal (redb), {events} events"),
        &format!("cargo run --release -p hazardwatch-bench --bin journal {events}"),
    );

    // The disk's limit for durable commits: a 4 KiB write and fsync.
    let mut f = std::fs::File::create(dir.path().join("fsync-probe"))?;
    let block = [0u8; 4096];
    let (n, took) = time_for(Duration::from_secs(2), || {
        f.write_all(&block).expect("writing the probe file");
        f.sync_data().expect("fsync of the probe file");
    });
    let fsyncs = n as f64 / took.as_secs_f64();
    baseline("write 4 KiB + fsync", &per_sec(fsyncs));

    // Durable commits of the sizes the service makes: one event per
    // operator action, tens per engine epoch in an incident.
    let path = dir.path().join("commits.redb");
    let journal = AlarmJournal::open(&path)?;
    let mut seq = 0u64;
    for batch in [1u64, 10, 100, 1_000] {
        let (commits, took) = time_for(Duration::from_secs(2), || {
            let evs: Vec<_> = (1..=batch).map(|i| event(seq + i)).collect();
            seq += batch;
            journal.commit(&evs, &[]).expect("commit");
        });
        let rate = commits as f64 / took.as_secs_f64();
        row(
            &format!("commit of {batch} event(s), fsync each: commits"),
            &per_sec(rate),
            Some(rate / fsyncs),
        );
        row(
            &format!("commit of {batch} event(s): events"),
            &per_sec(rate * batch as f64),
            None,
        );
    }
    drop(journal);

    // A big journal: bulk append, then reopen.
    let path = dir.path().join("big.redb");
    let journal = AlarmJournal::open(&path)?;
    let t = Instant::now();
    let mut next = 1;
    while next <= events {
        let last = (next + 9_999).min(events);
        let evs: Vec<_> = (next..=last).map(event).collect();
        // 1,000 alarms left standing, as the active table after a busy day.
        let standing: Vec<(String, pb::JournalAlarm)> = evs
            .iter()
            .filter(|e| e.seq % 5_000 < 1_000 && e.seq + 5_000 > events)
            .map(|e| {
                let a = pb::JournalAlarm {
                    last: Some(e.clone()),
                    state: pb::AlarmState::UnackedActive as i32,
                    raised_at_ms: e.event_time_ms,
                    latch: false,
                    condition: true,
                    awaiting_since_ms: 0,
                };
                (e.alarm_id.clone(), a)
            })
            .collect();
        let standing: Vec<(&str, Option<&pb::JournalAlarm>)> = standing
            .iter()
            .map(|(id, a)| (id.as_str(), Some(a)))
            .collect();
        journal.commit(&evs, &standing)?;
        next = last + 1;
    }
    let rate = events as f64 / t.elapsed().as_secs_f64();
    row(
        "bulk append, 10,000 events per commit",
        &per_sec(rate),
        None,
    );
    drop(journal);
    let size = std::fs::metadata(&path)?.len();
    row(
        "journal file: bytes per event",
        &format!("{:.0}", size as f64 / events as f64),
        None,
    );

    let t = Instant::now();
    let journal = AlarmJournal::open(&path)?;
    let last = journal.last_seq()?;
    let active = journal.active()?;
    let reopen = t.elapsed();
    anyhow::ensure!(last == events, "reopened at {last}, not {events}");
    row(
        &format!(
            "reopen: open + newest seq + {} standing alarms",
            active.len()
        ),
        &format!("{:.1} ms", reopen.as_secs_f64() * 1e3),
        None,
    );

    // A subscriber catching up on everything, in the service's pages.
    let t = Instant::now();
    let mut after = 0;
    let mut sent = 0usize;
    loop {
        let (page, upto) = journal.page_after(after, 4_096, |e| e.enterprise != "E99")?;
        if upto == after {
            break;
        }
        sent += page.len();
        after = upto;
    }
    let rate = sent as f64 / t.elapsed().as_secs_f64();
    row("subscriber catch-up from the journal", &per_sec(rate), None);

    // A History page from the middle, one enterprise of twenty.
    let from = T0 + events as i64 / 2 * 10;
    let (n, took) = time_for(Duration::from_secs(1), || {
        let page = journal
            .history(from, i64::MAX, None, 1_000, |e| e.enterprise == "E07")
            .expect("history");
        assert_eq!(page.events.len(), 1_000);
    });
    row(
        "History page: 1,000 events of one enterprise in 20",
        &format!("{:.1} ms", took.as_secs_f64() * 1e3 / n as f64),
        None,
    );
    Ok(())
}
