//! The archive writer: checkpoints, compaction, retention, exports.

#![allow(clippy::unwrap_used)]

use super::maintenance::merge_group;
use super::*;
use crate::reader;
use hazardwatch_proto::{PointKind, PointMeta, Quality};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn writer(dir: &Path, config: ArchiveConfig) -> (ArchiveWriter, Progress) {
    let mut c = Catalog::default();
    // A unit belongs to one enterprise.
    for (id, e, u) in [
        ("A.LT", "E1", "U1"),
        ("B.LT", "E1", "U1"),
        ("C.LT", "E2", "U2"),
    ] {
        c.insert(PointMeta::new(id, e, "HS", u, PointKind::Level, "m"));
    }
    ArchiveWriter::open(dir, Arc::new(c), config).unwrap()
}

fn reading(point: PointIdx, ts_ms: i64) -> Reading {
    Reading {
        point,
        ts_ms,
        value: ts_ms as f64 / 1000.0,
        quality: Quality::Good,
    }
}

fn rows_in(root: &Path, dataset: Dataset) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for dir in txn::partition_dirs(root).unwrap() {
        if dir.starts_with(root.join(dataset.dir())) {
            for f in parquet_files(&dir).unwrap() {
                out.extend(read_all(&f).unwrap());
            }
        }
    }
    out
}

fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn event(seq: u64, enterprise: &str, ts: i64) -> pb::AlarmEvent {
    pb::AlarmEvent {
        seq,
        alarm_id: "A.LT/HH".into(),
        enterprise: enterprise.into(),
        point: "A.LT".into(),
        kind: pb::AlarmKind::HighHigh as i32,
        priority: pb::Priority::High as i32,
        transition: pb::Transition::Raised as i32,
        event_time_ms: ts,
        value: 19.5,
        limit: 19.0,
        ..Default::default()
    }
}

#[test]
fn a_checkpoint_seals_readings_and_alarms_at_once_and_records_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, p) = writer(dir.path(), ArchiveConfig::default());
    assert_eq!(p, Progress::default());
    // Two days, two enterprises.
    w.append(
        &[reading(0, T0), reading(2, T0 + 5), reading(1, T0 + DAY_MS)],
        T0,
        &[],
    );
    let events = [
        event(1, "E1", T0),
        event(2, "E2", T0 + 1),
        event(3, "E1", T0 + 2),
    ];
    let sealed = w.checkpoint(4, &events).unwrap();
    assert_eq!(sealed.len(), 3 + 2);
    assert_eq!(w.buffered_rows(), 0);
    assert_eq!(count(&rows_in(dir.path(), Dataset::Readings)), 3);
    let alarms = rows_in(dir.path(), Dataset::Alarms);
    assert_eq!(count(&alarms), 3);
    assert!(sealed.iter().any(|f| {
        f.path
            .to_string_lossy()
            .contains("alarms/date=2026-01-01/enterprise=E1/part-")
    }));
    // Events already archived are not archived again.
    w.append(&[reading(0, T0 + 1000)], T0, &[]);
    w.checkpoint(5, &events).unwrap();
    assert_eq!(count(&rows_in(dir.path(), Dataset::Alarms)), 3);
    drop(w);
    let (_, p) = writer(dir.path(), ArchiveConfig::default());
    assert_eq!(
        p,
        Progress {
            wal_segment: 5,
            alarms_seq: 3
        }
    );
}

#[test]
fn a_failed_checkpoint_changes_nothing_and_the_next_one_archives_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = writer(dir.path(), ArchiveConfig::default());
    w.append(&[reading(0, T0)], T0, &[]);
    w.checkpoint(2, &[]).unwrap();
    // The enterprise E2 partition cannot be created: a file is in the way.
    let blocked = dir.path().join("readings/date=2026-01-01/enterprise=E2");
    std::fs::write(&blocked, b"in the way").unwrap();
    w.append(&[reading(1, T0 + 1), reading(2, T0 + 2)], T0, &[]);
    assert!(w.checkpoint(3, &[event(1, "E1", T0)]).is_err());
    assert_eq!(w.progress().wal_segment, 2);
    assert_eq!(w.buffered_rows(), 2);
    assert_eq!(count(&rows_in(dir.path(), Dataset::Readings)), 1);
    // Nothing written aside is left behind.
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path().join("readings/date=2026-01-01/enterprise=E1"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .collect();
    assert!(leftovers.is_empty());
    std::fs::remove_file(&blocked).unwrap();
    w.append(&[reading(0, T0 + 3)], T0, &[]);
    w.checkpoint(4, &[event(1, "E1", T0)]).unwrap();
    assert_eq!(count(&rows_in(dir.path(), Dataset::Readings)), 4);
    assert_eq!(count(&rows_in(dir.path(), Dataset::Alarms)), 1);
    assert_eq!(w.progress().wal_segment, 4);
}

/// A partition larger than a sealing chunk, its points interleaved, one
/// point's readings out of time order and some rows equal in point, time
/// and value: sealed in (point, time, value) order, equal rows in the order
/// they came, as a stable sort would leave them.
#[test]
fn a_partition_seals_sorted_across_chunks_with_equal_rows_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = writer(dir.path(), ArchiveConfig::default());
    let n = 2 * SEAL_CHUNK as i64 + 100;
    let mut want: Vec<(&str, i64, f64, i64)> = Vec::new();
    for (ingest, round) in [(T0, 0..n), (T0 + 7, 0..50)] {
        let mut batch = Vec::new();
        for i in round {
            // B.LT comes backwards in time; A.LT forwards, its values
            // repeating every ten readings.
            let b = reading(1, T0 + 3 * (n - i));
            let a = Reading {
                value: (i % 10) as f64,
                ..reading(0, T0 + i / 2)
            };
            for r in [b, a] {
                let name = if r.point == 0 { "A.LT" } else { "B.LT" };
                want.push((name, r.ts_ms, r.value, ingest));
                batch.push(r);
            }
        }
        w.append(&batch, ingest, &[]);
    }
    want.sort_by(|x, y| (x.0, x.1, x.2.to_bits()).cmp(&(y.0, y.1, y.2.to_bits())));
    let sealed = w.checkpoint(2, &[]).unwrap();
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].rows, want.len());
    let mut got = Vec::new();
    for b in read_all(&sealed[0].path).unwrap() {
        let point = b.column(0).as_string::<i32>();
        let ts = b.column(4).as_primitive::<TimestampMillisecondType>();
        let ingest = b.column(5).as_primitive::<TimestampMillisecondType>();
        let value = b.column(6).as_primitive::<Float64Type>();
        let unit = b.column(2).as_string::<i32>();
        for i in 0..b.num_rows() {
            assert_eq!(unit.value(i), "U1");
            got.push((
                point.value(i).to_owned(),
                ts.value(i),
                value.value(i),
                ingest.value(i),
            ));
        }
    }
    let want: Vec<_> = want
        .into_iter()
        .map(|(p, t, v, g)| (p.to_owned(), t, v, g))
        .collect();
    assert!(got == want, "sealed rows out of order");
    // The partition's room is kept for the next checkpoint, and given back
    // at one without its readings.
    fn room(w: &ArchiveWriter) -> Vec<(&str, usize)> {
        let p = &w.partitions.buffers;
        p.iter()
            .map(|((_, e), b)| (&**e, b.point.capacity()))
            .collect()
    }
    assert!(matches!(room(&w)[..], [("E1", c)] if c >= sealed[0].rows));
    w.append(&[reading(2, T0)], T0, &[]);
    w.checkpoint(3, &[]).unwrap();
    assert!(matches!(room(&w)[..], [("E2", _)]));
    assert_eq!(
        count(&rows_in(dir.path(), Dataset::Readings)),
        sealed[0].rows + 1
    );
}

#[test]
fn compaction_merges_eight_small_files_of_a_tier_into_one_sorted_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = writer(dir.path(), ArchiveConfig::default());
    for i in 0..9 {
        // Both points of E1, newest first within a file, so merging has
        // to sort.
        w.append(&[reading(1, T0 + 10 - i), reading(0, T0 + 20 - i)], T0, &[]);
        w.checkpoint(i as u64 + 1, &[event(i as u64 + 1, "E1", T0)])
            .unwrap();
    }
    let part = dir.path().join("readings/date=2026-01-01/enterprise=E1");
    assert_eq!(parquet_files(&part).unwrap().len(), 9);
    let written = w.compact(None).unwrap();
    // Readings: 8 of tier 0 (2 rows each) merged; alarms: 8 of 9 too.
    assert_eq!(written.len(), 2);
    assert_eq!(parquet_files(&part).unwrap().len(), 2);
    let batches = rows_in(dir.path(), Dataset::Readings);
    assert_eq!(count(&batches), 18);
    let merged = read_all(&written[0].path).unwrap();
    let merged = arrow_select::concat::concat_batches(&readings_schema(), &merged).unwrap();
    let point = merged.column_by_name("point").unwrap().as_string::<i32>();
    let ts = merged
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    let keys: Vec<_> = (0..merged.num_rows())
        .map(|i| (point.value(i), ts.value(i)))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(count(&rows_in(dir.path(), Dataset::Alarms)), 9);
    // Nothing more to do.
    assert!(w.compact(None).unwrap().is_empty());
}

/// A merge holds at most `roll_rows` rows, as a checkpoint does: files
/// near the top tier merge by two, not eight.
#[test]
fn a_merge_never_holds_more_than_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = ArchiveConfig {
        roll_rows: 1_000,
        ..ArchiveConfig::default()
    };
    let (mut w, _) = writer(dir.path(), config);
    // Nine files of 450 rows: below `roll_rows / 2`, all in tier 2.
    for f in 0..9i64 {
        let batch: Vec<_> = (0..450)
            .map(|i| reading((i % 2) as u32, T0 + f * 1_000 + i))
            .collect();
        w.append(&batch, T0, &[]);
        w.checkpoint(f as u64 + 1, &[]).unwrap();
    }
    let part = dir.path().join("readings/date=2026-01-01/enterprise=E1");
    let written = w.compact(None).unwrap();
    let sizes: Vec<u64> = written
        .iter()
        .map(|f| file_rows(&f.path).unwrap())
        .collect();
    assert_eq!(sizes, [900, 900, 900, 900], "pairs, one file left over");
    assert_eq!(parquet_files(&part).unwrap().len(), 5);
    assert_eq!(count(&rows_in(dir.path(), Dataset::Readings)), 9 * 450);
    // Each merged file is above `roll_rows / 2` now: nothing more to do.
    assert!(w.compact(None).unwrap().is_empty());
}

#[test]
fn the_merge_group_is_full_at_the_fan_in_or_at_the_row_limit() {
    let files = |rows: &[u64]| -> Vec<(PathBuf, u64)> {
        rows.iter()
            .enumerate()
            .map(|(i, &n)| (PathBuf::from(format!("f{i}")), n))
            .collect()
    };
    let names = |g: Option<Vec<PathBuf>>| g.map(|g| g.len());
    assert_eq!(
        names(merge_group(files(&[10; 9]), 1_000)),
        Some(COMPACT_FANIN)
    );
    assert_eq!(
        names(merge_group(files(&[10; 7]), 1_000)),
        None,
        "waits for an eighth"
    );
    assert_eq!(names(merge_group(files(&[400, 400, 400]), 1_000)), Some(2));
    assert_eq!(
        names(merge_group(files(&[400, 400]), 1_000)),
        None,
        "may still fit a third"
    );
    assert_eq!(
        names(merge_group(files(&[600, 600]), 1_000)),
        None,
        "two do not fit"
    );
}

#[test]
fn retention_deletes_whole_days_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = ArchiveConfig {
        retention_days: 2,
        ..ArchiveConfig::default()
    };
    let (mut w, _) = writer(dir.path(), config);
    for day in 0..4 {
        w.append(&[reading(0, T0 + day * DAY_MS)], T0, &[]);
    }
    w.checkpoint(1, &[event(1, "E1", T0)]).unwrap();
    let gone = w.expire(T0 + 3 * DAY_MS + 5).unwrap();
    // Today is day 3: days 1, 2, 3 are kept.
    assert_eq!(gone.len(), 2, "{gone:?}");
    let left: Vec<_> = txn::subdirs(&dir.path().join("readings"))
        .unwrap()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["date=2026-01-02", "date=2026-01-03", "date=2026-01-04"]
    );
    assert!(txn::subdirs(&dir.path().join("alarms")).unwrap().is_empty());
}

/// `read_part` asks for each point's key once per row group, not once per
/// row, skips the points keyed `None`, and reads a file whose string
/// columns are not dictionary encoded (another writer's) the same way.
#[test]
fn rows_read_back_are_keyed_once_per_point_with_or_without_dictionary_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = writer(dir.path(), ArchiveConfig::default());
    let rows: Vec<Reading> = (0..300)
        .map(|i| reading(i as PointIdx % 2, T0 + i))
        .collect();
    w.append(&rows, T0, &[]);
    w.checkpoint(1, &[]).unwrap();
    let read = |root: &Path| {
        let range = reader::Range::default();
        let plan = reader::plan(root, &range).unwrap();
        assert_eq!(plan.parts.len(), 1);
        let (mut asked, mut got) = (Vec::new(), Vec::new());
        let key = |name: &str| {
            asked.push(name.to_owned());
            (name == "A.LT").then_some(7u8)
        };
        reader::read_part(&plan.parts[0], &range, key, |r| {
            got.push((
                r.point.to_owned(),
                r.key,
                r.ts_ms,
                r.value,
                r.quality,
                r.late,
            ));
        })
        .unwrap();
        asked.sort();
        (asked, got)
    };
    let (asked, got) = read(dir.path());
    assert_eq!(asked, ["A.LT", "B.LT"]);
    let want: Vec<_> = (0..300)
        .step_by(2)
        .map(|i| {
            (
                "A.LT".to_owned(),
                7u8,
                T0 + i,
                (T0 + i) as f64 / 1000.0,
                Quality::Good,
                false,
            )
        })
        .collect();
    assert_eq!(got, want);

    // The same rows, every column plain encoded.
    let file = parquet_files(&txn::partition_dirs(dir.path()).unwrap()[0])
        .unwrap()
        .remove(0);
    let batches = read_all(&file).unwrap();
    let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    let plain = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .build();
    write_parquet(&file, batch.schema(), &plain, [Ok(batch.clone())]).unwrap();
    let (asked, got_plain) = read(dir.path());
    assert_eq!(asked, ["A.LT", "B.LT"]);
    assert_eq!(got_plain, want);
}

/// A readings file from elsewhere whose point column has a null: reading
/// it is an error naming the file, not rows dropped without a word.
#[test]
fn a_row_without_a_point_is_an_error_not_a_row_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = writer(dir.path(), ArchiveConfig::default());
    let rows: Vec<Reading> = (0..10).map(|i| reading(0, T0 + i)).collect();
    w.append(&rows, T0, &[]);
    w.checkpoint(1, &[]).unwrap();
    let file = parquet_files(&txn::partition_dirs(dir.path()).unwrap()[0])
        .unwrap()
        .remove(0);
    let batches = read_all(&file).unwrap();
    let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    let schema = batch.schema();
    let at = schema.index_of("point").unwrap();
    let points: StringArray = (0..batch.num_rows())
        .map(|i| (i != 3).then_some("A.LT"))
        .collect();
    let mut fields: Vec<arrow_schema::Field> =
        schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[at] = fields[at].clone().with_nullable(true);
    let mut columns = batch.columns().to_vec();
    columns[at] = Arc::new(points);
    let holed = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).unwrap();
    write_parquet(
        &file,
        holed.schema(),
        &WriterProperties::builder().build(),
        [Ok(holed)],
    )
    .unwrap();
    let range = reader::Range::default();
    let plan = reader::plan(dir.path(), &range).unwrap();
    let mut read = 0;
    let err = reader::read_part(&plan.parts[0], &range, reader::all_points, |_| read += 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no point") && err.contains("part-"), "{err}");
    assert_eq!(read, 0);
}
