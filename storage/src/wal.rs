//! The write-ahead log of readings: every decoded batch is appended here,
//! and made durable, before its MQTT message is acknowledged; on start the
//! log is read back so nothing a gateway was told was received is lost.
//!
//! Layout: `DIR/wal-{segment:016}.log`, segments numbered from 1, a new
//! one started at every open and whenever the current one passes the
//! configured size. A segment is a sequence of records:
//!
//! ```text
//! record  = len: u32 LE | crc32(payload): u32 LE | payload
//! payload = message: u128 | received_ms: i64
//!           | new_names: u32 | { id: u32, len: u16, utf-8 name }*
//!           | readings: u32 | { id: u32, ts_ms: i64, value: f64, quality: u8 }*
//! ```
//!
//! `message` identifies the MQTT message the batch came from (a hash of its
//! topic and payload; 0 for none), so a redelivery after a restart is
//! recognised as the message already logged. When archived segments are
//! deleted, their ids go to `DIR/released.ids` (the newest of them, as many
//! as the service's window of ids): a redelivery of a message already
//! archived is recognised too.
//!
//! Points are named, not numbered by the running catalog (whose numbering
//! a changed configuration may change across a restart): each segment
//! gives a point a local id the first time it carries one of its readings,
//! with its name. Reading a segment back rebuilds that table.
//!
//! [`Wal::append`] writes any number of batches and syncs once: group
//! commit, so the fsync cost is shared by every message waiting for its
//! acknowledgement. A record cut short by a crash (length past the end, or
//! a checksum that does not match) at the end of the newest segment was
//! never synced, so never acknowledged: the segment is truncated there.
//! Damage anywhere else (a segment that was complete before a newer one
//! began) is not a crash's tail but corruption of acknowledged data:
//! recovery stops with an error naming the file and the byte, and leaves
//! the file as it is for inspection.
//!
//! A failed write or sync (a full disk) cuts the segment back to where the
//! append began and starts a new segment for the next attempt: nothing of a
//! failed append stays, and a file whose sync failed is not trusted again.
//! Every write and sync goes through a [`WalIo`], so tests can make the disk
//! fail.
//!
//! ```
//! use hazardwatch_proto::{Catalog, PointKind, PointMeta, Quality, Reading};
//! use hazardwatch_storage::wal::{Entry, Wal, WalConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut catalog = Catalog::default();
//! let p = catalog.insert(PointMeta::new("T101.LT", "E01", "HS1", "T101", PointKind::Level, "m"));
//! let (mut wal, recovered) = Wal::open(dir.path(), WalConfig::default()).unwrap();
//! assert!(recovered.is_empty());
//! let r = Reading { point: p, ts_ms: 1_000, value: 12.5, quality: Quality::Good };
//! wal.append(&[Entry { message: 7, received_ms: 2_000, readings: &[r] }], &catalog).unwrap();
//! drop(wal);
//!
//! let (_wal, recovered) = Wal::open(dir.path(), WalConfig::default()).unwrap();
//! assert_eq!(recovered[0].message, 7);
//! assert_eq!(recovered[0].readings[0].point, "T101.LT");
//! assert_eq!(recovered[0].readings[0].value, 12.5);
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hazardwatch_proto::{Catalog, Quality, Reading};

use crate::error::{Error, Result, io};

/// Settings of the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WalConfig {
    /// A segment is closed, and a new one started, past this many bytes.
    pub segment_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes: 64 << 20,
        }
    }
}

/// Where the log's bytes go: the file system, or in tests a disk that
/// fails on demand.
pub trait WalIo: Send + Sync {
    /// Appends `bytes` to `file` (opened for appending).
    fn write(&self, file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
        file.write_all(bytes)
    }
    /// Makes what was written to `file` durable.
    fn sync(&self, file: &File) -> std::io::Result<()> {
        file.sync_data()
    }
}

/// The file system as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileIo;

impl WalIo for FileIo {}

/// One batch to log: the readings of one message.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The message they came from (see the module docs); 0 for none.
    pub message: u128,
    /// When the service received it, Unix ms.
    pub received_ms: i64,
    /// The readings.
    pub readings: &'a [Reading],
}

/// A reading read back from the log, its point by name.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedReading {
    /// Point id.
    pub point: String,
    /// Event time, Unix ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
    /// Quality.
    pub quality: Quality,
}

/// A batch read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedBatch {
    /// The segment it is in (see [`release_before`]).
    pub segment: u64,
    /// The message it came from; 0 for none.
    pub message: u128,
    /// When the service received it, Unix ms.
    pub received_ms: i64,
    /// Its readings.
    pub readings: Vec<LoggedReading>,
}

/// The log (see the module docs).
pub struct Wal {
    dir: PathBuf,
    config: WalConfig,
    segment: u64,
    file: File,
    bytes: u64,
    /// By point index, the local id this segment gave the point
    /// ([`UNNAMED`]: none yet).
    named: Vec<u32>,
    /// Points named in this segment.
    named_count: u32,
    buf: Vec<u8>,
    io: Arc<dyn WalIo>,
    /// A write or sync failed on the current segment: start a new one.
    broken: bool,
}

const HEADER: usize = 8;

/// Records of one append are written to the file this many bytes at a
/// time at most (or all at once when fewer).
const WRITE_BYTES: usize = 1 << 20;
/// [`Wal::named`] of a point not named in the current segment.
const UNNAMED: u32 = u32::MAX;
const READING: usize = 4 + 8 + 8 + 1;

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("wal-{segment:016}.log"))
}

fn quality_code(q: Quality) -> u8 {
    match q {
        Quality::Good => 0,
        Quality::Uncertain => 1,
        Quality::Bad => 2,
        Quality::Offline => 3,
        Quality::Expected => 4,
    }
}

fn quality_of(code: u8) -> Option<Quality> {
    Some(match code {
        0 => Quality::Good,
        1 => Quality::Uncertain,
        2 => Quality::Bad,
        3 => Quality::Offline,
        4 => Quality::Expected,
        _ => return None,
    })
}

/// The segments in `dir`, in order.
fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// A little-endian reader over a record's payload; `None` past its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Decodes one record's payload with the segment's names so far.
fn decode(payload: &[u8], names: &mut HashMap<u32, String>, segment: u64) -> Option<LoggedBatch> {
    let mut c = Cursor(payload);
    let message = u128::from_le_bytes(c.take(16)?.try_into().ok()?);
    let received_ms = c.i64()?;
    for _ in 0..c.u32()? {
        let id = c.u32()?;
        let len = usize::from(c.u16()?);
        let name = std::str::from_utf8(c.take(len)?).ok()?.to_owned();
        names.insert(id, name);
    }
    let count = c.u32()? as usize;
    if c.0.len() != count * READING {
        return None;
    }
    let mut readings = Vec::with_capacity(count);
    for _ in 0..count {
        let point = names.get(&c.u32()?)?.clone();
        let ts_ms = c.i64()?;
        let value = c.f64()?;
        let quality = quality_of(c.take(1)?[0])?;
        readings.push(LoggedReading {
            point,
            ts_ms,
            value,
            quality,
        });
    }
    Some(LoggedBatch {
        segment,
        message,
        received_ms,
        readings,
    })
}

/// Reads a segment record by record: memory for one record, whatever the
/// segment's size.
struct SegmentReader {
    path: PathBuf,
    segment: u64,
    file: BufReader<File>,
    /// The file's length when opened.
    len: u64,
    /// Bytes of whole, valid records read so far (where a torn or damaged
    /// record begins, once [`SegmentReader::next_batch`] returned `None`).
    at: u64,
    names: HashMap<u32, String>,
    payload: Vec<u8>,
}

impl SegmentReader {
    fn open(dir: &Path, segment: u64) -> Result<SegmentReader> {
        let path = segment_path(dir, segment);
        let file = File::open(&path).map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        Ok(SegmentReader {
            segment,
            file: BufReader::with_capacity(1 << 16, file),
            len,
            at: 0,
            names: HashMap::new(),
            payload: Vec::new(),
            path,
        })
    }

    /// Reads the next whole record's payload into `self.payload`; `false`
    /// at the end of the file or where a record is cut short or fails its
    /// checksum. Does not advance [`SegmentReader::at`].
    fn next_record(&mut self) -> Result<bool> {
        let left = self.len - self.at;
        if left < HEADER as u64 {
            return Ok(false);
        }
        let mut header = [0u8; HEADER];
        self.file.read_exact(&mut header).map_err(io(&self.path))?;
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let len = u64::from(u32::from_le_bytes([l0, l1, l2, l3]));
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        if len > left - HEADER as u64 {
            return Ok(false);
        }
        // At most the file's length: a damaged length cannot ask for more.
        self.payload.resize(len as usize, 0);
        self.file
            .read_exact(&mut self.payload)
            .map_err(io(&self.path))?;
        Ok(crc32fast::hash(&self.payload) == crc)
    }

    /// The next whole record; `None` at the end of the file or where a
    /// record is cut short or fails its checksum. A record whose checksum
    /// holds but that does not decode is an error.
    fn next_batch(&mut self) -> Result<Option<LoggedBatch>> {
        if !self.next_record()? {
            return Ok(None);
        }
        let Some(batch) = decode(&self.payload, &mut self.names, self.segment) else {
            return Err(Error::Wal {
                path: self.path.clone(),
                message: format!(
                    "record at byte {} has a valid checksum but does not decode",
                    self.at
                ),
            });
        };
        self.at += (HEADER + self.payload.len()) as u64;
        Ok(Some(batch))
    }

    /// The next whole record's message id (0: none), without decoding its
    /// readings; `None` where [`SegmentReader::next_batch`] would end.
    fn next_message(&mut self) -> Result<Option<u128>> {
        if !self.next_record()? {
            return Ok(None);
        }
        let Some(id) = self.payload.first_chunk::<16>() else {
            return Ok(None);
        };
        self.at += (HEADER + self.payload.len()) as u64;
        Ok(Some(u128::from_le_bytes(*id)))
    }
}

/// What the log held at open, found by reading it through once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scanned {
    /// Segments to read back.
    pub segments: usize,
    /// Batches in them.
    pub batches: u64,
    /// Readings in them.
    pub readings: u64,
    /// The oldest event time among them.
    pub oldest_ms: Option<i64>,
}

/// The log's records read back in order, one at a time, after [`Wal::open_with`]
/// checked them all: memory for one record, not for the whole log.
pub struct Recovery {
    dir: PathBuf,
    segments: std::collections::VecDeque<u64>,
    reader: Option<SegmentReader>,
    scanned: Scanned,
}

impl Recovery {
    /// What the check found (counts and the oldest event time), before any
    /// record is handed out.
    pub fn scanned(&self) -> Scanned {
        self.scanned
    }

    fn fail(&mut self, e: Error) -> Option<Result<LoggedBatch>> {
        self.segments.clear();
        self.reader = None;
        Some(Err(e))
    }
}

impl Iterator for Recovery {
    type Item = Result<LoggedBatch>;

    fn next(&mut self) -> Option<Result<LoggedBatch>> {
        loop {
            if let Some(reader) = &mut self.reader {
                match reader.next_batch() {
                    Ok(Some(batch)) => return Some(Ok(batch)),
                    Ok(None) => self.reader = None,
                    Err(e) => return self.fail(e),
                }
            }
            let segment = self.segments.pop_front()?;
            match SegmentReader::open(&self.dir, segment) {
                Ok(reader) => self.reader = Some(reader),
                Err(e) => return self.fail(e),
            }
        }
    }
}

impl Wal {
    /// Opens the log in `dir` (created if needed), reads back every whole
    /// record of the existing segments (all in memory: for tools and
    /// tests; the service reads them one at a time with
    /// [`Wal::open_with`]), cuts a torn tail off the last one, and starts a
    /// new segment for writing.
    pub fn open(dir: &Path, config: WalConfig) -> Result<(Wal, Vec<LoggedBatch>)> {
        let (wal, recovery) = Self::open_with(dir, config, Arc::new(FileIo))?;
        Ok((wal, recovery.collect::<Result<Vec<_>>>()?))
    }

    /// Opens the log in `dir` (created if needed), writing through `io`:
    /// checks every record of the existing segments (reading them through
    /// once, a record at a time), cuts a torn tail off the last one, starts
    /// a new segment for writing, and returns the records to read back.
    pub fn open_with(
        dir: &Path,
        config: WalConfig,
        disk: Arc<dyn WalIo>,
    ) -> Result<(Wal, Recovery)> {
        crate::txn::create_dir_durably(dir)?;
        let existing = segments(dir)?;
        let mut scanned = Scanned {
            segments: existing.len(),
            ..Scanned::default()
        };
        let newest = existing.last().copied();
        for &segment in &existing {
            let mut reader = SegmentReader::open(dir, segment)?;
            while let Some(batch) = reader.next_batch()? {
                scanned.batches += 1;
                scanned.readings += batch.readings.len() as u64;
                if let Some(oldest) = batch.readings.iter().map(|r| r.ts_ms).min() {
                    scanned.oldest_ms = Some(scanned.oldest_ms.map_or(oldest, |o| o.min(oldest)));
                }
            }
            let (valid, len, path) = (reader.at, reader.len, reader.path);
            if valid < len && Some(segment) != newest {
                return Err(Error::Wal {
                    path: path.clone(),
                    message: format!(
                        "the record at byte {valid} of {len} is damaged, in a segment that was complete before a newer one began: \
                         acknowledged readings are corrupt. Recovery stops and the file is left as it is; to start without what \
                         follows byte {valid}, move the file aside (those readings are then lost)"
                    ),
                });
            }
            if valid < len {
                tracing::warn!(
                    path = %path.display(),
                    kept = valid,
                    cut = len - valid,
                    "write-ahead log: a torn record (never acknowledged) cut off"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_len(valid).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
            }
        }
        let segment = newest.map_or(1, |s| s + 1);
        let file = Self::create(dir, segment)?;
        Ok((
            Wal {
                dir: dir.to_owned(),
                config,
                segment,
                file,
                bytes: 0,
                named: Vec::new(),
                named_count: 0,
                buf: Vec::new(),
                io: disk,
                broken: false,
            },
            Recovery {
                dir: dir.to_owned(),
                segments: existing.into(),
                reader: None,
                scanned,
            },
        ))
    }

    fn create(dir: &Path, segment: u64) -> Result<File> {
        let path = segment_path(dir, segment);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        // The new file's directory entry must survive a crash too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(file)
    }

    /// The segment being written.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends the entries (points named from `catalog`) and makes them
    /// durable with one sync. Returns the segment they went to: they may be
    /// released once everything up to it is in sealed archive files.
    /// Nothing may be acknowledged unless this returned `Ok`; on an error
    /// nothing of the entries is left in the log.
    pub fn append(&mut self, entries: &[Entry<'_>], catalog: &Catalog) -> Result<u64> {
        if self.broken || self.bytes >= self.config.segment_bytes {
            self.roll()?;
        }
        let start = self.bytes;
        let result = self.write_entries(entries, catalog);
        if result.is_err() {
            // Cut back what this append wrote, forget the names it gave,
            // and never write to this file again.
            self.broken = true;
            self.bytes = start;
            let path = segment_path(&self.dir, self.segment);
            if let Err(e) = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(start))
            {
                tracing::error!(path = %path.display(), error = %e, "cannot cut a failed append back");
            }
        }
        result.map(|()| self.segment)
    }

    /// Writes the entries' records with one write per [`WRITE_BYTES`] of
    /// them (a group commit is one write, not one per message), then syncs.
    fn write_entries(&mut self, entries: &[Entry<'_>], catalog: &Catalog) -> Result<()> {
        let path = segment_path(&self.dir, self.segment);
        let start = self.bytes;
        self.buf.clear();
        for e in entries {
            self.encode(e, catalog);
            if self.buf.len() >= WRITE_BYTES {
                self.write_buf(&path)?;
            }
        }
        self.write_buf(&path)?;
        if self.bytes > start {
            self.io.sync(&self.file).map_err(io(&path))?;
        }
        Ok(())
    }

    /// Writes the records encoded in `self.buf` and empties it.
    fn write_buf(&mut self, path: &Path) -> Result<()> {
        if !self.buf.is_empty() {
            self.io.write(&mut self.file, &self.buf).map_err(io(path))?;
            self.bytes += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// One record appended to `self.buf`: written in place, then its length
    /// and checksum filled in.
    fn encode(&mut self, entry: &Entry<'_>, catalog: &Catalog) {
        let readings = entry.readings;
        let buf = &mut self.buf;
        let at = buf.len();
        buf.reserve(HEADER + 40 + readings.len() * READING);
        buf.extend_from_slice(&[0; HEADER]);
        buf.extend_from_slice(&entry.message.to_le_bytes());
        buf.extend_from_slice(&entry.received_ms.to_le_bytes());
        let count_at = buf.len();
        buf.extend_from_slice(&0u32.to_le_bytes());
        let mut new = 0u32;
        for r in readings {
            let slot = r.point as usize;
            if self.named.len() <= slot {
                self.named.resize(slot + 1, UNNAMED);
            }
            if self.named[slot] == UNNAMED {
                let id = self.named_count;
                self.named[slot] = id;
                self.named_count += 1;
                new += 1;
                // Point ids are at most 64 bytes (site validation).
                let name = catalog.meta(r.point).id.as_bytes();
                let name = &name[..name.len().min(usize::from(u16::MAX))];
                buf.extend_from_slice(&id.to_le_bytes());
                buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
                buf.extend_from_slice(name);
            }
        }
        buf[count_at..count_at + 4].copy_from_slice(&new.to_le_bytes());
        buf.extend_from_slice(&(readings.len() as u32).to_le_bytes());
        for r in readings {
            buf.extend_from_slice(&self.named[r.point as usize].to_le_bytes());
            buf.extend_from_slice(&r.ts_ms.to_le_bytes());
            buf.extend_from_slice(&r.value.to_le_bytes());
            buf.push(quality_code(r.quality));
        }
        let payload_len = (buf.len() - at - HEADER) as u32;
        let crc = crc32fast::hash(&buf[at + HEADER..]);
        buf[at..at + 4].copy_from_slice(&payload_len.to_le_bytes());
        buf[at + 4..at + HEADER].copy_from_slice(&crc.to_le_bytes());
    }

    /// Closes the current segment and starts the next; returns its number.
    pub fn roll(&mut self) -> Result<u64> {
        let file = Self::create(&self.dir, self.segment + 1)?;
        self.segment += 1;
        self.file = file;
        self.bytes = 0;
        self.named.clear();
        self.named_count = 0;
        self.broken = false;
        Ok(self.segment)
    }

    /// Bytes in the current segment.
    pub fn segment_len(&self) -> u64 {
        self.bytes
    }
}

/// Deletes every segment in `dir` before `segment` (everything in them is
/// in sealed archive files). Returns how many were deleted. The segment
/// being written is never before a segment number the log has handed out.
///
/// The message ids the deleted segments held are kept first, the newest
/// `keep_ids` of them with those kept before ([`released_ids`]): a message
/// sent again after its segment was deleted (a gateway that never got its
/// acknowledgement resends it after the service restarted) is still
/// recognised. The record is replaced atomically (written aside, synced,
/// renamed, its directory synced) before any segment is deleted, so a crash
/// in between keeps the ids twice, never none.
pub fn release_before(dir: &Path, segment: u64, keep_ids: usize) -> Result<usize> {
    let released: Vec<u64> = segments(dir)?
        .into_iter()
        .filter(|&s| s < segment)
        .collect();
    if released.is_empty() {
        return Ok(0);
    }
    let mut ids = released::ids(dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "write-ahead log: the record of released message ids is damaged; starting it again");
        Vec::new()
    });
    for &s in &released {
        let mut reader = SegmentReader::open(dir, s)?;
        while let Some(id) = reader.next_message()? {
            if id != 0 {
                ids.push(id);
            }
        }
    }
    let keep = &ids[ids.len().saturating_sub(keep_ids)..];
    released::write(dir, keep)?;
    for &s in &released {
        let path = segment_path(dir, s);
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    Ok(released.len())
}

/// The message ids of deleted segments, oldest first (see
/// [`release_before`]); none if no segment was ever released. A damaged
/// record is an error.
pub fn released_ids(dir: &Path) -> Result<Vec<u128>> {
    released::ids(dir)
}

mod released;

#[cfg(test)]
mod tests;
