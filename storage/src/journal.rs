//! The alarm journal: every alarm event (condition changes and operator
//! actions), numbered, in an embedded crash-safe database, with the alarms
//! that are not normal kept alongside, so the alarm table is rebuilt at
//! start without reading the whole history.
//!
//! The database is [redb]: pure Rust (nothing to build or install beside
//! the service), ACID with copy-on-write B-trees and checksummed commits in
//! one file, actively maintained. The journal needs ordered ranges (by
//! sequence number to resume a feed, by time for history) and atomic
//! multi-table commits, nothing relational, so an embedded key-value store
//! fits better than SQLite and its C build.
//!
//! Tables:
//! - `events`: sequence number → `AlarmEvent` (protobuf);
//! - `events_by_time`: (event time, sequence number) → nothing, the index
//!   history pages walk;
//! - `active`: alarm id → `JournalAlarm` (protobuf), the alarms that are
//!   active, latched or unacknowledged.
//!
//! - `outbox` and `outbox_cursor`: notifications waiting for their
//!   recipients, and how far the events have been scanned for them;
//! - `upstream_cursor`: on a regional instance, park id → the sequence
//!   number at that park of the last of its events merged here;
//! - `merged_active`: on a regional instance, (park, alarm id) →
//!   `JournalAlarm`, the merged alarms that are not closed.
//!
//! Each [`AlarmJournal::commit`] is one durable transaction (fsync before
//! it returns): a batch of events and the alarm states they leave behind
//! are on disk together or not at all.
//!
//! After an I/O error (a full disk) redb refuses every later transaction
//! until the database is opened again: the journal then reopens the file
//! before its next transaction, and keeps failing (with the reason) until
//! that works. Writes go through a [`JournalFaults`], so tests can make the
//! disk fail.
//!
//! ```
//! use hazardwatch_proto::pb;
//! use hazardwatch_storage::AlarmJournal;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("alarms.redb");
//! let journal = AlarmJournal::open(&path).unwrap();
//! let raised = pb::AlarmEvent { seq: 1, alarm_id: "T101.LT/HH".into(), event_time_ms: 1_000, ..Default::default() };
//! let state = pb::JournalAlarm { last: Some(raised.clone()), condition: true, ..Default::default() };
//! journal.commit(&[raised], &[("T101.LT/HH", Some(&state))]).unwrap();
//! drop(journal);
//!
//! let journal = AlarmJournal::open(&path).unwrap();
//! assert_eq!(journal.last_seq().unwrap(), 1);
//! assert_eq!(journal.active().unwrap(), vec![state]);
//! let (events, next) = journal.page_after(0, 100, |_| true).unwrap();
//! assert_eq!((events.len(), next), (1, 1));
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use hazardwatch_proto::pb;
use prost::Message;
use redb::backends::FileBackend;
use redb::{Database, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition};

use crate::error::{Error, Result};

mod outbox;
mod upstream;
pub use outbox::OUTBOX_CAP;
pub use upstream::MergedChange;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const BY_TIME: TableDefinition<(i64, u64), ()> = TableDefinition::new("events_by_time");
const ACTIVE: TableDefinition<&str, &[u8]> = TableDefinition::new("active");

/// `[journal]` settings.
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Events older than this many days are deleted from the journal once
    /// the Parquet archive holds them (its `alarms` dataset keeps them, as
    /// long as `archive.retention_days` does); 0 keeps every event.
    pub retention_days: u32,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig { retention_days: 90 }
    }
}

impl JournalConfig {
    /// Checks the settings, naming the field that is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.retention_days != 0 && !(8..=36_500).contains(&self.retention_days) {
            return Err(Error::Config(format!(
                "journal.retention_days: {} must be 0 (keep everything) or from 8 (the console statistics look back 7 days) to 36500",
                self.retention_days
            )));
        }
        Ok(())
    }

    /// How long events are kept, ms; `None`: forever.
    pub fn keep_ms(&self) -> Option<i64> {
        (self.retention_days > 0).then(|| i64::from(self.retention_days) * 86_400_000)
    }
}

/// Events deleted in one journal transaction at most (see
/// [`AlarmJournal::prune`]).
pub const PRUNE_BATCH: usize = 10_000;

/// What the journal's writes pass through: nothing in production; in
/// tests, a disk that fails on demand.
pub trait JournalFaults: Send + Sync + std::fmt::Debug {
    /// Called before every write and sync of the journal's file; an error
    /// is returned in their place.
    fn before_write(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// No faults: the file as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFaults;

impl JournalFaults for NoFaults {}

/// The journal's file, through its [`JournalFaults`].
#[derive(Debug)]
struct Backend {
    file: FileBackend,
    faults: Arc<dyn JournalFaults>,
}

impl StorageBackend for Backend {
    fn len(&self) -> std::io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.faults.before_write()?;
        self.file.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.faults.before_write()?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.faults.before_write()?;
        self.file.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.file.close()
    }
}

/// The alarm journal (see the module docs).
pub struct AlarmJournal {
    /// `None` between a failed reopen and the next attempt.
    db: RwLock<Option<Database>>,
    /// An I/O error happened: reopen before the next transaction.
    broken: AtomicBool,
    faults: Arc<dyn JournalFaults>,
    path: PathBuf,
}

/// Where a page of history ended: pass it back to get the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryCursor {
    /// Event time of the last event returned, Unix ms.
    pub time_ms: i64,
    /// Its sequence number.
    pub seq: u64,
}

impl HistoryCursor {
    /// The cursor's wire form, `TIME.SEQ`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.time_ms, self.seq)
    }

    /// Parses [`HistoryCursor::token`]'s form; `None` for anything else.
    pub fn parse(token: &str) -> Option<HistoryCursor> {
        let (t, s) = token.split_once('.')?;
        Some(HistoryCursor {
            time_ms: t.parse().ok()?,
            seq: s.parse().ok()?,
        })
    }
}

/// One page of history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryPage {
    /// Events in (event time, sequence number) order.
    pub events: Vec<pb::AlarmEvent>,
    /// Set when the page is full: more events may follow after it.
    pub next: Option<HistoryCursor>,
}

impl AlarmJournal {
    /// Opens the journal at `path`, creating it (and its directory) if
    /// needed. A file that is not a journal is an error, never overwritten.
    pub fn open(path: &Path) -> Result<AlarmJournal> {
        Self::open_with(path, Arc::new(NoFaults))
    }

    /// [`AlarmJournal::open`], writing through `faults`.
    pub fn open_with(path: &Path, faults: Arc<dyn JournalFaults>) -> Result<AlarmJournal> {
        // The directory and the file must survive a power cut as well as
        // the commits inside the file.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            crate::txn::create_dir_durably(dir)?;
        }
        let db = Self::database(path, &faults)?;
        if let Some(dir) = dir {
            crate::txn::sync_dir(dir)?;
        }
        let journal = AlarmJournal {
            db: RwLock::new(Some(db)),
            broken: AtomicBool::new(false),
            faults,
            path: path.to_owned(),
        };
        // Create the tables, so readers never meet a missing one.
        let tx = journal.db()?.begin_write().map_err(|e| journal.error(e))?;
        tx.open_table(EVENTS).map_err(|e| journal.error(e))?;
        tx.open_table(BY_TIME).map_err(|e| journal.error(e))?;
        tx.open_table(ACTIVE).map_err(|e| journal.error(e))?;
        tx.open_table(outbox::OUTBOX)
            .map_err(|e| journal.error(e))?;
        tx.open_table(outbox::CURSOR)
            .map_err(|e| journal.error(e))?;
        tx.open_table(upstream::CURSORS)
            .map_err(|e| journal.error(e))?;
        tx.open_table(upstream::MERGED)
            .map_err(|e| journal.error(e))?;
        tx.commit().map_err(|e| journal.error(e))?;
        Ok(journal)
    }

    fn database(path: &Path, faults: &Arc<dyn JournalFaults>) -> Result<Database> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(crate::error::io(path))?;
        let backend = Backend {
            file: FileBackend::new(file).map_err(|e| journal_error(path, e))?,
            faults: faults.clone(),
        };
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| journal_error(path, e))
    }

    /// The database, reopened first if an I/O error broke it.
    fn db(&self) -> Result<DbGuard<'_>> {
        if self.broken.load(Ordering::Acquire) {
            let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
            if self.broken.load(Ordering::Acquire) {
                // The old handle holds the file's lock: close it first.
                *db = None;
                *db = Some(Self::database(&self.path, &self.faults)?);
                self.broken.store(false, Ordering::Release);
                tracing::info!(path = %self.path.display(), "alarm journal reopened after an I/O error");
            }
        }
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err(Error::Journal {
                path: self.path.clone(),
                message: "not open (the last attempt to reopen it failed)".into(),
            });
        }
        Ok(DbGuard(guard))
    }

    fn error(&self, e: impl Into<redb::Error>) -> Error {
        let e = e.into();
        if matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo) {
            self.broken.store(true, Ordering::Release);
        }
        journal_error(&self.path, e)
    }

    fn corrupt(&self, what: &str, e: prost::DecodeError) -> Error {
        Error::Journal {
            path: self.path.clone(),
            message: format!("{what} does not decode: {e}"),
        }
    }

    /// The sequence number of the newest event; 0 for an empty journal.
    pub fn last_seq(&self) -> Result<u64> {
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let events = tx.open_table(EVENTS).map_err(|e| self.error(e))?;
        let last = events.last().map_err(|e| self.error(e))?;
        Ok(last.map_or(0, |(k, _)| k.value()))
    }

    /// The sequence number of the oldest event held; 0 for an empty
    /// journal. Events before it were pruned (see [`AlarmJournal::prune`]).
    pub fn first_seq(&self) -> Result<u64> {
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let events = tx.open_table(EVENTS).map_err(|e| self.error(e))?;
        let first = events.first().map_err(|e| self.error(e))?;
        Ok(first.map_or(0, |(k, _)| k.value()))
    }

    /// Deletes up to `limit` events whose event time is before `before_ms`
    /// and whose sequence number is at most `archived` (the archive holds
    /// them) and at most the outbox's scan cursor, if it has one (they
    /// were looked at for notifications), in one transaction; the newest event always stays, so
    /// numbering goes on after a restart. Returns how many were deleted.
    /// Finding none takes no write transaction.
    pub fn prune(&self, before_ms: i64, archived: u64, limit: usize) -> Result<usize> {
        let newest = self.last_seq()?;
        // Events not yet scanned for notifications stay.
        let archived = archived.min(self.outbox_scanned()?.unwrap_or(u64::MAX));
        let doomed: Vec<(i64, u64)> = {
            let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
            let index = tx.open_table(BY_TIME).map_err(|e| self.error(e))?;
            let mut doomed = Vec::new();
            // Old events not archived yet are passed over; look at a
            // bounded number of them.
            let rows = index
                .range(..(before_ms, 0))
                .map_err(|e| self.error(e))?
                .take(limit.saturating_mul(4));
            for row in rows {
                let (key, _) = row.map_err(|e| self.error(e))?;
                let (time_ms, seq) = key.value();
                if seq <= archived && seq < newest {
                    doomed.push((time_ms, seq));
                    if doomed.len() == limit {
                        break;
                    }
                }
            }
            doomed
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let tx = self.db()?.begin_write().map_err(|e| self.error(e))?;
        {
            let mut by_seq = tx.open_table(EVENTS).map_err(|e| self.error(e))?;
            let mut by_time = tx.open_table(BY_TIME).map_err(|e| self.error(e))?;
            for &(time_ms, seq) in &doomed {
                by_time.remove((time_ms, seq)).map_err(|e| self.error(e))?;
                by_seq.remove(seq).map_err(|e| self.error(e))?;
            }
        }
        tx.commit().map_err(|e| self.error(e))?;
        Ok(doomed.len())
    }

    /// Number of events held.
    pub fn event_count(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let events = tx.open_table(EVENTS).map_err(|e| self.error(e))?;
        events.len().map_err(|e| self.error(e))
    }

    /// Appends events (sequence numbers increasing, after every one held)
    /// and sets the stored state of the alarms they touched (`None`: back
    /// to normal, forgotten), in one durable transaction.
    pub fn commit(
        &self,
        events: &[pb::AlarmEvent],
        alarms: &[(&str, Option<&pb::JournalAlarm>)],
    ) -> Result<()> {
        let tx = self.db()?.begin_write().map_err(|e| self.error(e))?;
        self.append(&tx, events, alarms)?;
        tx.commit().map_err(|e| self.error(e))
    }

    /// Writes `events` and the alarm states into `tx` (see [`Self::commit`]).
    fn append(
        &self,
        tx: &redb::WriteTransaction,
        events: &[pb::AlarmEvent],
        alarms: &[(&str, Option<&pb::JournalAlarm>)],
    ) -> Result<()> {
        let mut by_seq = tx.open_table(EVENTS).map_err(|e| self.error(e))?;
        let mut by_time = tx.open_table(BY_TIME).map_err(|e| self.error(e))?;
        let mut last = by_seq
            .last()
            .map_err(|e| self.error(e))?
            .map_or(0, |(k, _)| k.value());
        let mut buf = Vec::new();
        for e in events {
            if e.seq <= last {
                return Err(Error::Journal {
                    path: self.path.clone(),
                    message: format!("event {} does not follow event {last}", e.seq),
                });
            }
            last = e.seq;
            buf.clear();
            e.encode(&mut buf).expect("a Vec grows to hold any message");
            by_seq
                .insert(e.seq, buf.as_slice())
                .map_err(|e| self.error(e))?;
            by_time
                .insert((e.event_time_ms, e.seq), ())
                .map_err(|e| self.error(e))?;
        }
        let mut active = tx.open_table(ACTIVE).map_err(|e| self.error(e))?;
        for (id, state) in alarms {
            match state {
                Some(s) => {
                    active
                        .insert(*id, s.encode_to_vec().as_slice())
                        .map_err(|e| self.error(e))?;
                }
                None => {
                    active.remove(*id).map_err(|e| self.error(e))?;
                }
            }
        }
        Ok(())
    }

    /// Every alarm that is not normal, by alarm id.
    pub fn active(&self) -> Result<Vec<pb::JournalAlarm>> {
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let table = tx.open_table(ACTIVE).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (id, bytes) = row.map_err(|e| self.error(e))?;
            let alarm = pb::JournalAlarm::decode(bytes.value())
                .map_err(|e| self.corrupt(&format!("active alarm {}", id.value()), e))?;
            out.push(alarm);
        }
        Ok(out)
    }

    /// Events after sequence number `after`, at most `scan` of them looked
    /// at, those passing `filter` returned; and the sequence number scanned
    /// up to, to continue from (equal to `after` when nothing follows).
    pub fn page_after(
        &self,
        after: u64,
        scan: usize,
        filter: impl Fn(&pb::AlarmEvent) -> bool,
    ) -> Result<(Vec<pb::AlarmEvent>, u64)> {
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let table = tx.open_table(EVENTS).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        let mut upto = after;
        let start = after.saturating_add(1);
        for row in table.range(start..).map_err(|e| self.error(e))?.take(scan) {
            let (seq, bytes) = row.map_err(|e| self.error(e))?;
            upto = seq.value();
            let event = pb::AlarmEvent::decode(bytes.value())
                .map_err(|e| self.corrupt(&format!("event {upto}"), e))?;
            if filter(&event) {
                out.push(event);
            }
        }
        Ok((out, upto))
    }

    /// One page of the events whose event time is in `[from_ms, to_ms)`
    /// and that pass `filter`, in (time, sequence) order, starting after
    /// `after` (the previous page's cursor); at most `limit` events.
    pub fn history(
        &self,
        from_ms: i64,
        to_ms: i64,
        after: Option<HistoryCursor>,
        limit: usize,
        filter: impl Fn(&pb::AlarmEvent) -> bool,
    ) -> Result<HistoryPage> {
        let mut page = HistoryPage::default();
        if limit == 0 || from_ms >= to_ms {
            return Ok(page);
        }
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let index = tx.open_table(BY_TIME).map_err(|e| self.error(e))?;
        let events = tx.open_table(EVENTS).map_err(|e| self.error(e))?;
        let start = match after {
            Some(c) if c.time_ms >= from_ms => match c.seq.checked_add(1) {
                Some(s) => (c.time_ms, s),
                None => (c.time_ms.saturating_add(1), 0),
            },
            _ => (from_ms, 0),
        };
        for row in index.range(start..(to_ms, 0)).map_err(|e| self.error(e))? {
            let (key, _) = row.map_err(|e| self.error(e))?;
            let (time_ms, seq) = key.value();
            let bytes =
                events
                    .get(seq)
                    .map_err(|e| self.error(e))?
                    .ok_or_else(|| Error::Journal {
                        path: self.path.clone(),
                        message: format!("time index names event {seq}, which is missing"),
                    })?;
            let event = pb::AlarmEvent::decode(bytes.value())
                .map_err(|e| self.corrupt(&format!("event {seq}"), e))?;
            if filter(&event) {
                page.events.push(event);
                if page.events.len() == limit {
                    page.next = Some(HistoryCursor { time_ms, seq });
                    break;
                }
            }
        }
        Ok(page)
    }
}

/// A read guard on the open database.
struct DbGuard<'a>(RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for DbGuard<'_> {
    type Target = Database;

    fn deref(&self) -> &Database {
        // `db()` returns a guard only when the database is open.
        self.0.as_ref().expect("checked open")
    }
}

/// Memory the journal's page cache may use. redb keeps every page written
/// until the cache is full: its default, 1 GiB, made a 30-minute soak's
/// resident memory rise by about 90 MiB an hour, and 64 MiB took 40
/// minutes of 200 events/s to fill. The journal is written at the end and
/// read back near the end (catch-up, recent history), so a small cache
/// serves it: at 8 MiB the journal bench is no slower than at 64, and the
/// soak's memory is flat after five minutes (BENCHMARKS.md, Soak).
const CACHE_BYTES: usize = 8 << 20;

fn journal_error(path: &Path, e: impl Into<redb::Error>) -> Error {
    Error::Journal {
        path: path.to_owned(),
        message: e.into().to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn event(seq: u64, time_ms: i64, enterprise: &str) -> pb::AlarmEvent {
        pb::AlarmEvent {
            seq,
            alarm_id: format!("P{seq}/H"),
            enterprise: enterprise.into(),
            event_time_ms: time_ms,
            ..Default::default()
        }
    }

    #[test]
    fn history_pages_by_time_with_a_filter_and_no_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let j = AlarmJournal::open(&dir.path().join("j.redb")).unwrap();
        // Times out of sequence order (operator actions are wall time,
        // conditions event time), two enterprises.
        let events: Vec<_> = (1..=100)
            .map(|s| {
                event(
                    s,
                    1_000 + (s as i64 * 37) % 50,
                    if s % 2 == 0 { "E1" } else { "E2" },
                )
            })
            .collect();
        j.commit(&events, &[]).unwrap();
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page = j
                .history(1_010, 1_040, after, 7, |e| e.enterprise == "E1")
                .unwrap();
            assert!(page.events.len() <= 7);
            got.extend(page.events.iter().map(|e| (e.event_time_ms, e.seq)));
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        let mut want: Vec<_> = events
            .iter()
            .filter(|e| e.enterprise == "E1" && (1_010..1_040).contains(&e.event_time_ms))
            .map(|e| (e.event_time_ms, e.seq))
            .collect();
        want.sort();
        assert!(!want.is_empty());
        assert_eq!(got, want);
    }

    #[test]
    fn a_sequence_that_does_not_increase_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let j = AlarmJournal::open(&dir.path().join("j.redb")).unwrap();
        j.commit(&[event(5, 1, "E1")], &[]).unwrap();
        let err = j
            .commit(&[event(6, 1, "E1"), event(5, 1, "E1")], &[])
            .unwrap_err();
        assert!(err.to_string().contains("does not follow"), "{err}");
        assert_eq!(j.last_seq().unwrap(), 5);
        assert_eq!(j.event_count().unwrap(), 1);
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.redb");
        std::fs::write(&path, b"not a database, and long enough to look like one?").unwrap();
        let err = AlarmJournal::open(&path).err().unwrap();
        assert!(err.to_string().contains("j.redb"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"not a database, and long enough to look like one?"
        );
    }

    #[test]
    fn pruning_deletes_only_old_archived_events_and_never_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let j = AlarmJournal::open(&dir.path().join("j.redb")).unwrap();
        // Events 1..=10 at times 100..=1000; event 5 is late (time 50).
        let events: Vec<_> = (1..=10)
            .map(|s| event(s, if s == 5 { 50 } else { s as i64 * 100 }, "E1"))
            .collect();
        j.commit(&events, &[]).unwrap();
        // Before 450, archived up to 3: 1, 2, 3 go; 4 (time 400) is not
        // archived, 5 (time 50) neither.
        assert_eq!(j.prune(450, 3, 100).unwrap(), 3);
        assert_eq!(j.first_seq().unwrap(), 4);
        // A small batch takes the oldest first: 5 (time 50), then 4.
        assert_eq!(j.prune(450, 10, 1).unwrap(), 1);
        assert_eq!(j.prune(450, 10, 100).unwrap(), 1);
        assert_eq!(j.first_seq().unwrap(), 6);
        // Everything is old and archived: all but the newest go.
        assert_eq!(j.prune(i64::MAX, 10, 100).unwrap(), 4);
        assert_eq!((j.first_seq().unwrap(), j.last_seq().unwrap()), (10, 10));
        assert_eq!(j.prune(i64::MAX, 10, 100).unwrap(), 0);
        let page = j.history(i64::MIN, i64::MAX, None, 100, |_| true).unwrap();
        assert_eq!(page.events.len(), 1);
    }

    /// A disk that fails every write while `full`.
    #[derive(Debug, Default)]
    struct Full(AtomicBool);

    impl JournalFaults for Full {
        fn before_write(&self) -> std::io::Result<()> {
            if self.0.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            Ok(())
        }
    }

    #[test]
    fn after_a_write_error_the_journal_reopens_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(Full::default());
        let j = AlarmJournal::open_with(&dir.path().join("j.redb"), disk.clone()).unwrap();
        j.commit(&[event(1, 1, "E1")], &[]).unwrap();
        disk.0.store(true, Ordering::SeqCst);
        let err = j.commit(&[event(2, 2, "E1")], &[]).unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        // Still full: still refused, with a reason.
        assert!(j.commit(&[event(2, 2, "E1")], &[]).is_err());
        disk.0.store(false, Ordering::SeqCst);
        // Space again: the journal reopens and takes the same events.
        j.commit(&[event(2, 2, "E1"), event(3, 3, "E1")], &[])
            .unwrap();
        assert_eq!(j.last_seq().unwrap(), 3);
        assert_eq!(j.event_count().unwrap(), 3);
        drop(j);
        let j = AlarmJournal::open(&dir.path().join("j.redb")).unwrap();
        assert_eq!(j.event_count().unwrap(), 3);
    }

    #[test]
    fn resolved_alarms_leave_the_active_table() {
        let dir = tempfile::tempdir().unwrap();
        let j = AlarmJournal::open(&dir.path().join("j.redb")).unwrap();
        let a = pb::JournalAlarm {
            last: Some(event(1, 1, "E1")),
            condition: true,
            ..Default::default()
        };
        j.commit(&[event(1, 1, "E1")], &[("P1/H", Some(&a))])
            .unwrap();
        assert_eq!(j.active().unwrap().len(), 1);
        j.commit(&[event(2, 2, "E1")], &[("P1/H", None)]).unwrap();
        assert!(j.active().unwrap().is_empty());
        let (page, upto) = j.page_after(0, 1, |_| true).unwrap();
        assert_eq!((page.len(), upto), (1, 1));
        let (page, upto) = j.page_after(upto, 10, |_| true).unwrap();
        assert_eq!((page.len(), upto), (1, 2));
        let (page, upto) = j.page_after(upto, 10, |_| true).unwrap();
        assert_eq!((page.len(), upto), (0, 2));
    }
}
