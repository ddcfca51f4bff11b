//! The archiver: the one thread that writes the Parquet archive. Readings
//! are buffered and sealed at each write-ahead log segment the feeder
//! passes on (a checkpoint), with the alarm events journaled since; then
//! the log segments the archive now covers are released, touched
//! partitions compacted and partitions past the retention deleted. A
//! failed checkpoint is retried every [`CHECKPOINT_RETRY`], the readings
//! staying in the log meanwhile, but only as long as nothing was buffered
//! since: rows of later segments sealed as covering the log before the old
//! segment would be archived again after a crash. Once more rows came, the
//! next checkpoint (which covers them) is the retry.
//!
//! After each checkpoint, and whenever it is idle, the thread also deletes
//! journal events past `journal.retention_days` that the archive holds.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hazardwatch_alarms::AlarmHub;
use hazardwatch_proto::clock::Clock;
use hazardwatch_storage::{ArchiveWriter, wal};

use super::archive_queue::ArchiveReceiver;
use super::{ArchiveMsg, Counters};
use crate::telemetry::{self, Snapshot};

/// Alarm events archived per checkpoint at most (the rest go with the next).
pub const ALARMS_PER_CHECKPOINT: usize = 200_000;
/// Journal batches pruned per round at most (see
/// [`hazardwatch_alarms::AlarmHub::prune_journal`]).
const PRUNE_BATCHES: usize = 10;
/// How soon a failed archive checkpoint is tried again.
pub const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);

/// The segment to retry a failed checkpoint with: the failed one, if no
/// rows were buffered since it failed (its rows are exactly the ones
/// before it); otherwise none, and the next checkpoint covers them all.
pub fn exact_retry(failed: Option<(u64, usize)>, buffered_now: usize) -> Option<u64> {
    let (segment, buffered_then) = failed?;
    (buffered_now == buffered_then).then_some(segment)
}

/// What the archiver trims once the archive holds it: the write-ahead log's
/// segments, and journal events past the retention.
pub struct Trim {
    /// The write-ahead log's directory.
    pub wal_dir: std::path::PathBuf,
    /// How many ids of released messages to keep (the ingest window).
    pub keep_ids: usize,
    /// How long journal events are kept, ms; `None`: forever.
    pub journal_keep_ms: Option<i64>,
}

/// The archiver thread: appends readings, seals at checkpoints (with the
/// alarm events journaled since), releases the archived log segments,
/// compacts and expires; between messages it answers telemetry snapshot
/// queries and retries a failed checkpoint.
pub fn archive_loop(
    rx: ArchiveReceiver,
    snapshots: crossbeam_channel::Receiver<Snapshot>,
    mut writer: ArchiveWriter,
    hub: &AlarmHub,
    trim: &Trim,
    counters: &Counters,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let record = |sealed: &[hazardwatch_storage::SealedFile]| {
        for f in sealed {
            if f.dataset == hazardwatch_storage::Dataset::Alarms {
                counters
                    .archive_alarm_events
                    .fetch_add(f.rows as u64, Ordering::Relaxed);
                metrics::counter!("hazardwatch_archive_alarm_events_total")
                    .increment(f.rows as u64);
                continue;
            }
            counters.archive_files.fetch_add(1, Ordering::Relaxed);
            counters
                .archive_rows
                .fetch_add(f.rows as u64, Ordering::Relaxed);
            counters.archive_bytes.fetch_add(f.bytes, Ordering::Relaxed);
            metrics::counter!("hazardwatch_archive_rows_total").increment(f.rows as u64);
            metrics::counter!("hazardwatch_archive_bytes_total").increment(f.bytes);
            metrics::counter!("hazardwatch_archive_files_total").increment(1);
            tracing::debug!(path = %f.path.display(), rows = f.rows, bytes = f.bytes, "sealed");
        }
    };
    let report = |what: &str, e: &dyn std::fmt::Display| {
        counters.archive_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("hazardwatch_archive_errors_total").increment(1);
        tracing::error!(error = %e, "archive {what} failed; the readings stay in the write-ahead log and the next checkpoint retries");
    };
    // Seals the buffered readings and the alarm events journaled since, as
    // covering the log before `segment`; `None` (reported) if that failed.
    let seal = |writer: &mut ArchiveWriter, segment: u64, what: &str| {
        let events = match hub.journal_after(writer.progress().alarms_seq, ALARMS_PER_CHECKPOINT) {
            Ok(e) => e,
            Err(e) => {
                report("reading the alarm journal", &e);
                Vec::new()
            }
        };
        match writer.checkpoint(segment, &events) {
            Ok(sealed) => {
                record(&sealed);
                Some(sealed)
            }
            Err(e) => {
                report(what, &e);
                None
            }
        }
    };
    // Journal events past the retention that the archive holds.
    let prune = |writer: &ArchiveWriter| {
        let Some(keep_ms) = trim.journal_keep_ms else {
            return;
        };
        let before_ms = clock.now_ms().saturating_sub(keep_ms);
        match hub.prune_journal(before_ms, writer.progress().alarms_seq, PRUNE_BATCHES) {
            Ok(0) => {}
            Ok(n) => {
                counters
                    .journal_pruned
                    .fetch_add(n as u64, Ordering::Relaxed);
                metrics::counter!("hazardwatch_journal_pruned_total").increment(n as u64);
                tracing::info!(
                    events = n,
                    "alarm journal: events past the retention deleted (the archive holds them)"
                );
            }
            Err(e) => report("journal retention", &e),
        }
    };
    // A checkpoint that failed and the rows buffered then, retried every
    // CHECKPOINT_RETRY while no more came (see `exact_retry`).
    let mut failed: Option<(u64, usize)> = None;
    // Snapshot queries are answered once the messages queued when they came
    // are taken: a query sees every reading the feeder passed on before it
    // was asked (read your writes), and a busy queue delays it by no more
    // than what was queued then.
    let mut waiting: Vec<Snapshot> = Vec::new();
    let mut owed = 0usize;
    loop {
        if owed == 0 {
            for q in waiting.drain(..) {
                let taken = telemetry::take(&writer, &q);
                // The caller may have gone; nothing to do then.
                let _ = q.reply.send(taken);
            }
        }
        let msg = crossbeam_channel::select! {
            recv(rx.channel()) -> msg => match msg {
                Ok(msg) => {
                    rx.taken(&msg);
                    owed = owed.saturating_sub(1);
                    msg
                }
                Err(_) => break,
            },
            recv(snapshots) -> q => {
                if let Ok(q) = q {
                    // Covers what the waiting ones were owed: those are
                    // still queued, ahead of what came since.
                    owed = rx.channel().len();
                    waiting.push(q);
                }
                continue;
            },
            default(CHECKPOINT_RETRY) => match exact_retry(failed, writer.buffered_rows()) {
                Some(segment) => ArchiveMsg::Checkpoint(segment),
                None => {
                    prune(&writer);
                    continue;
                }
            },
        };
        match msg {
            ArchiveMsg::Rows {
                readings,
                received_ms,
                late,
            } => writer.append(&readings, received_ms, &late),
            ArchiveMsg::Catalog(catalog) => writer.set_catalog(catalog),
            ArchiveMsg::Checkpoint(segment) => {
                let Some(sealed) = seal(&mut writer, segment, "checkpoint") else {
                    failed = Some((segment, writer.buffered_rows()));
                    counters.checkpoint_failing.store(true, Ordering::Relaxed);
                    continue;
                };
                failed = None;
                counters.checkpoint_failing.store(false, Ordering::Relaxed);
                if let Err(e) =
                    wal::release_before(&trim.wal_dir, writer.progress().wal_segment, trim.keep_ids)
                {
                    tracing::warn!(error = %e, "write-ahead log: cannot delete archived segments");
                }
                let mut touched: Vec<std::path::PathBuf> = sealed
                    .iter()
                    .filter_map(|f| f.path.parent().map(std::path::Path::to_owned))
                    .collect();
                touched.sort();
                touched.dedup();
                if let Err(e) = writer.compact(Some(&touched)) {
                    report("compaction", &e);
                }
                match writer.expire(clock.now_ms()) {
                    Ok(gone) => {
                        for d in gone {
                            tracing::info!(partition = %d.display(), "archive: deleted past the retention");
                        }
                    }
                    Err(e) => report("retention", &e),
                }
                prune(&writer);
            }
        }
    }
    let left = writer.buffered_rows();
    if left == 0 {
        // The engine has finished: the alarm events of its last epochs are
        // journaled now. Archive them with no readings (so the log's
        // progress stays exactly where the readings put it).
        let segment = writer.progress().wal_segment;
        seal(&mut writer, segment, "archiving the last alarm events");
    } else {
        tracing::warn!(
            readings = left,
            "archive: readings not sealed at shutdown; they are in the write-ahead log and are archived at the next start"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hazardwatch_alarms::{AlarmHub, EscalationPolicy, RiskModel};
    use hazardwatch_proto::clock::SettableClock;
    use hazardwatch_proto::{Quality, Reading};

    use hazardwatch_storage::{AlarmJournal, ArchiveConfig, ArchiveWriter};

    use super::{ArchiveMsg, Counters, Trim, archive_loop, exact_retry};
    use crate::pipeline::archive_queue::archive_queue;
    use crate::telemetry::Snapshot;

    /// Rows queued before a query are in its snapshot, whichever of the two
    /// queues the archive thread looks at first (it picks at random among
    /// those ready, so one round passes by luck half the time).
    #[test]
    fn a_query_sees_every_row_queued_before_it_was_asked() {
        let t0 = 1_800_000_000_000;
        let site = crate::test_park::site(&[]);
        let point = site.catalog.lookup("T101.LT").unwrap();
        for round in 0..16 {
            let dir = tempfile::tempdir().unwrap();
            let (writer, _) = ArchiveWriter::open(
                &dir.path().join("archive"),
                site.catalog.clone(),
                ArchiveConfig::default(),
            )
            .unwrap();
            let journal = AlarmJournal::open(&dir.path().join("alarms.redb")).unwrap();
            let (hub, _) = AlarmHub::open(
                site.catalog.clone(),
                journal,
                EscalationPolicy::default(),
                RiskModel::default(),
                t0,
            )
            .unwrap();
            let (tx, rx) = archive_queue(1_000);
            for i in 0..10 {
                let reading = Reading {
                    point,
                    ts_ms: t0 + i,
                    value: i as f64,
                    quality: Quality::Good,
                };
                let rows = ArchiveMsg::Rows {
                    readings: vec![reading],
                    received_ms: t0 + i,
                    late: vec![false],
                };
                tx.send(rows).unwrap();
            }
            let (snapshots, snapshot_rx) = crossbeam_channel::bounded(1);
            let (reply, answer) = tokio::sync::oneshot::channel();
            snapshots
                .send(Snapshot {
                    points: [point].into(),
                    enterprises: vec!["E01".into()],
                    from_ms: t0,
                    to_ms: t0 + 1_000,
                    reply,
                })
                .unwrap();
            let archiver = std::thread::spawn(move || {
                let trim = Trim {
                    wal_dir: dir.path().join("wal"),
                    keep_ids: 0,
                    journal_keep_ms: None,
                };
                let clock = SettableClock::new(t0);
                archive_loop(
                    rx,
                    snapshot_rx,
                    writer,
                    &hub,
                    &trim,
                    &Counters::default(),
                    &clock,
                )
            });
            let taken = answer.blocking_recv().unwrap().unwrap();
            let values: Vec<f64> = taken.buffered.iter().map(|r| r.value).collect();
            assert_eq!(
                values,
                (0..10).map(f64::from).collect::<Vec<_>>(),
                "round {round}"
            );
            drop((tx, snapshots));
            archiver.join().unwrap().unwrap();
        }
    }

    #[test]
    fn a_failed_checkpoint_is_retried_only_while_nothing_was_buffered_since() {
        assert_eq!(exact_retry(None, 10), None);
        assert_eq!(exact_retry(Some((7, 10)), 10), Some(7));
        // Rows of segment 7 arrived since: sealing them as "before 7"
        // would archive them twice after a crash. Wait for checkpoint 8.
        assert_eq!(exact_retry(Some((7, 10)), 11), None);
    }
}
