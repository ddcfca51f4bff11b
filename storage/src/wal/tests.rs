#![allow(clippy::unwrap_used)]

use super::*;
use hazardwatch_proto::{PointKind, PointMeta};

fn catalog(n: usize) -> Catalog {
    let mut c = Catalog::default();
    for i in 0..n {
        c.insert(PointMeta::new(
            &format!("P{i}"),
            "E",
            "HS",
            "U",
            PointKind::Level,
            "m",
        ));
    }
    c
}

fn batch(points: std::ops::Range<u32>, ts_ms: i64) -> Vec<Reading> {
    points
        .map(|p| Reading {
            point: p,
            ts_ms,
            value: f64::from(p) + 0.25,
            quality: if p % 3 == 0 {
                Quality::Bad
            } else {
                Quality::Good
            },
        })
        .collect()
}

fn entry(received_ms: i64, readings: &[Reading]) -> Entry<'_> {
    Entry {
        message: received_ms as u128 * 1000 + 1,
        received_ms,
        readings,
    }
}

/// A disk that, while `full`, writes half of what it is given and then
/// fails, as a full disk does.
#[derive(Default)]
struct FullDisk {
    full: std::sync::atomic::AtomicBool,
}

impl WalIo for FullDisk {
    fn write(&self, file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(std::io::Error::from_raw_os_error(28));
        }
        file.write_all(bytes)
    }
}

#[test]
fn a_failed_append_leaves_nothing_and_the_next_one_goes_to_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(10);
    let disk = Arc::new(FullDisk::default());
    let (mut wal, _) = Wal::open_with(dir.path(), WalConfig::default(), disk.clone()).unwrap();
    let first = wal.append(&[entry(1, &batch(0..5, 1))], &c).unwrap();
    disk.full.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = wal
        .append(
            &[entry(2, &batch(0..10, 2)), entry(3, &batch(5..10, 3))],
            &c,
        )
        .unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    disk.full.store(false, std::sync::atomic::Ordering::SeqCst);
    let again = wal
        .append(
            &[entry(2, &batch(0..10, 2)), entry(3, &batch(5..10, 3))],
            &c,
        )
        .unwrap();
    assert!(again > first, "a new segment after the failure");
    drop(wal);
    let (_, back) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    let got: Vec<_> = back.iter().map(|b| (b.message, b.readings.len())).collect();
    assert_eq!(got, [(1001, 5), (2001, 10), (3001, 5)]);
    assert_eq!(back[2].readings[0].point, "P5");
}

#[test]
fn batches_come_back_in_order_across_segments_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(50);
    let config = WalConfig { segment_bytes: 600 };
    let (mut wal, _) = Wal::open(dir.path(), config).unwrap();
    let mut written = Vec::new();
    for s in 0..20 {
        let b = batch((s % 5) * 10..(s % 5) * 10 + 10, i64::from(s) * 1000);
        wal.append(&[entry(i64::from(s), &b)], &c).unwrap();
        written.push(b);
    }
    assert!(wal.segment() > 3, "rolled");
    drop(wal);
    let (wal, back) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(back.len(), 20);
    for (b, w) in back.iter().zip(&written) {
        let names: Vec<_> = b.readings.iter().map(|r| r.point.clone()).collect();
        let want: Vec<_> = w.iter().map(|r| format!("P{}", r.point)).collect();
        assert_eq!(names, want);
        assert!(
            b.readings
                .iter()
                .zip(w)
                .all(|(x, y)| x.value == y.value && x.ts_ms == y.ts_ms && x.quality == y.quality)
        );
    }
    // Released segments are gone, the rest still read back.
    let keep_from = back[10].segment;
    assert!(release_before(dir.path(), keep_from, 1000).unwrap() > 0);
    drop(wal);
    let (_, back) = Wal::open(dir.path(), config).unwrap();
    assert_eq!(back[0].segment, keep_from);
    assert_eq!(back.last().unwrap().received_ms, 19);
    // The released messages' ids are kept, in order.
    let released = released_ids(dir.path()).unwrap();
    let want: Vec<u128> = (0..10).map(|s| entry(s, &[]).message).collect();
    assert_eq!(released, want);
}

#[test]
fn released_ids_keep_the_newest_window_and_a_damaged_record_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(2);
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert!(released_ids(dir.path()).unwrap().is_empty());
    let b = batch(0..2, 1);
    for round in 0..3i64 {
        for m in 0..4 {
            wal.append(&[entry(round * 4 + m, &b)], &c).unwrap();
        }
        let next = wal.roll().unwrap();
        release_before(dir.path(), next, 6).unwrap();
    }
    let want: Vec<u128> = (6..12).map(|m| entry(m, &[]).message).collect();
    assert_eq!(released_ids(dir.path()).unwrap(), want);

    let path = dir.path().join(released::RELEASED);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = released_ids(dir.path()).unwrap_err().to_string();
    assert!(e.contains("checksum"), "{e}");
    // The next release starts the record again rather than failing.
    wal.append(&[entry(100, &b)], &c).unwrap();
    let next = wal.roll().unwrap();
    release_before(dir.path(), next, 6).unwrap();
    assert_eq!(
        released_ids(dir.path()).unwrap(),
        vec![entry(100, &[]).message]
    );
}

#[test]
fn a_torn_tail_is_cut_and_everything_before_it_survives() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(10);
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    wal.append(&[entry(1, &batch(0..5, 1))], &c).unwrap();
    wal.append(&[entry(2, &batch(5..10, 2))], &c).unwrap();
    let segment = wal.segment();
    drop(wal);
    let path = segment_path(dir.path(), segment);
    let full = std::fs::read(&path).unwrap();
    // A crash in the middle of the second record, and one that flipped
    // a byte of it.
    for damage in [full.len() - 7, full.len() - 1] {
        let mut bytes = full.clone();
        if damage == full.len() - 1 {
            bytes[damage] ^= 0xff;
        } else {
            bytes.truncate(damage);
        }
        std::fs::write(&path, &bytes).unwrap();
        let (_, back) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        let firsts: Vec<_> = back.iter().map(|b| b.received_ms).collect();
        assert_eq!(firsts, [1], "damage at {damage}");
        assert!(std::fs::metadata(&path).unwrap().len() < bytes.len() as u64);
        // Reopening left a new empty segment; clear it for the next round.
        for s in segments(dir.path()).unwrap() {
            if s > segment {
                std::fs::remove_file(segment_path(dir.path(), s)).unwrap();
            }
        }
    }
}

#[test]
fn damage_in_an_older_segment_stops_recovery_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(10);
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    wal.append(&[entry(1, &batch(0..5, 1))], &c).unwrap();
    wal.append(&[entry(2, &batch(5..10, 2))], &c).unwrap();
    let older = wal.segment();
    drop(wal);
    // A restart begins a newer segment, which gets a record too.
    let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    wal.append(&[entry(3, &batch(0..5, 3))], &c).unwrap();
    drop(wal);
    // A byte of the older segment's first record rots.
    let path = segment_path(dir.path(), older);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER + 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = Wal::open(dir.path(), WalConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is damaged"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "kept as it was");
}

/// A disk that counts the log's writes and syncs.
#[derive(Default)]
struct Counting {
    writes: std::sync::atomic::AtomicUsize,
    syncs: std::sync::atomic::AtomicUsize,
}

impl WalIo for Counting {
    fn write(&self, file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        file.write_all(bytes)
    }
    fn sync(&self, file: &File) -> std::io::Result<()> {
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        file.sync_data()
    }
}

#[test]
fn a_group_commit_is_one_sync_and_one_write_per_megabyte_for_many_batches() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(200);
    let disk = Arc::new(Counting::default());
    let (mut wal, _) = Wal::open_with(dir.path(), WalConfig::default(), disk.clone()).unwrap();
    let counts = || {
        let n = |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::SeqCst);
        (n(&disk.writes), n(&disk.syncs))
    };
    let a = batch(0..10, 1);
    let b = batch(10..20, 2);
    wal.append(&[entry(1, &a), entry(2, &b)], &c).unwrap();
    assert_eq!(counts(), (1, 1));
    // 300 messages of 200 readings: more than a megabyte in one group.
    let big: Vec<Vec<Reading>> = (0..300).map(|m| batch(0..200, 10 + m)).collect();
    let entries: Vec<Entry<'_>> = big
        .iter()
        .enumerate()
        .map(|(m, b)| entry(10 + m as i64, b))
        .collect();
    wal.append(&entries, &c).unwrap();
    assert_eq!(counts(), (3, 2));
    drop(wal);
    let (_, back) = Wal::open(dir.path(), WalConfig::default()).unwrap();
    assert_eq!(back.len(), 2 + 300);
    assert_eq!(back[1].readings[0].point, "P10");
    for (m, got) in back[2..].iter().enumerate() {
        assert_eq!(got.received_ms, 10 + m as i64);
        assert_eq!(got.readings.len(), 200);
        assert_eq!(got.readings[199].point, "P199");
        assert_eq!(got.readings[199].ts_ms, 10 + m as i64);
    }
}

#[test]
fn recovery_checks_everything_first_then_reads_one_record_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(50);
    let config = WalConfig { segment_bytes: 600 };
    let (mut wal, _) = Wal::open(dir.path(), config).unwrap();
    for s in 0..20 {
        wal.append(
            &[entry(i64::from(s), &batch(0..10, 100 - i64::from(s)))],
            &c,
        )
        .unwrap();
    }
    drop(wal);
    let (_wal, mut recovery) = Wal::open_with(dir.path(), config, Arc::new(FileIo)).unwrap();
    let scanned = recovery.scanned();
    assert_eq!((scanned.batches, scanned.readings), (20, 200));
    assert_eq!(scanned.oldest_ms, Some(81));
    assert!(scanned.segments > 3);
    // Nothing is held: the records come from the files as they are taken.
    // (A file removed after the check is an error when it is reached.)
    let first = recovery.next().unwrap().unwrap();
    assert_eq!(first.received_ms, 0);
    let last = *segments(dir.path()).unwrap().iter().rev().nth(1).unwrap();
    std::fs::remove_file(segment_path(dir.path(), last)).unwrap();
    let rest: Vec<_> = recovery.collect();
    let err = rest.last().unwrap().as_ref().unwrap_err().to_string();
    assert!(err.contains(&format!("wal-{last:016}.log")), "{err}");
    assert!(rest[..rest.len() - 1].iter().all(Result::is_ok));
}
