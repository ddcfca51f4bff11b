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
//! payload = received_ms: i64 | new_names: u32 | { id: u32, len: u16, utf-8 name }*
//!           | readings: u32 | { id: u32, ts_ms: i64, value: f64, quality: u8 }*
//! ```
//!
//! Points are named, not numbered by the running catalog (whose numbering
//! a changed configuration may change across a restart): each segment
//! gives a point a local id the first time it carries one of its readings,
//! with its name. Reading a segment back rebuilds that table.
//!
//! [`Wal::append`] writes any number of batches and syncs once: group
//! commit, so the fsync cost is shared by every message waiting for its
//! acknowledgement. A record cut short by a crash (length past the end, or
//! a checksum that does not match) ends its segment: it was never
//! synced, so never acknowledged; what follows it is ignored and the
//! segment is truncated there.
//!
//! ```
//! use hazardwatch_proto::{Catalog, PointKind, PointMeta, Quality, Reading};
//! use hazardwatch_storage::wal::{Wal, WalConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut catalog = Catalog::default();
//! let p = catalog.insert(PointMeta::new("T101.LT", "E01", "HS1", "T101", PointKind::Level, "m"));
//! let (mut wal, recovered) = Wal::open(dir.path(), WalConfig::default()).unwrap();
//! assert!(recovered.is_empty());
//! let r = Reading { point: p, ts_ms: 1_000, value: 12.5, quality: Quality::Good };
//! wal.append(&[(2_000, &[r][..])], &catalog).unwrap();
//! drop(wal);
//!
//! let (_wal, recovered) = Wal::open(dir.path(), WalConfig::default()).unwrap();
//! assert_eq!(recovered[0].readings[0].point, "T101.LT");
//! assert_eq!(recovered[0].readings[0].value, 12.5);
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hazardwatch_proto::{Catalog, PointIdx, Quality, Reading};

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
    /// The segment it is in (see [`Wal::release_before`]).
    pub segment: u64,
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
    /// Local ids of the points this segment has named.
    named: HashMap<PointIdx, u32>,
    buf: Vec<u8>,
}

const HEADER: usize = 8;
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
    }
}

fn quality_of(code: u8) -> Option<Quality> {
    Some(match code {
        0 => Quality::Good,
        1 => Quality::Uncertain,
        2 => Quality::Bad,
        3 => Quality::Offline,
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
        received_ms,
        readings,
    })
}

/// Reads a segment's whole records; returns them and the length of the
/// valid prefix (where a torn record, if any, begins).
fn read_segment(path: &Path, segment: u64) -> Result<(Vec<LoggedBatch>, u64)> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let mut names = HashMap::new();
    let mut batches = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(batch) = decode(payload, &mut names, segment) else {
            return Err(Error::Wal {
                path: path.to_owned(),
                message: format!("record at byte {at} has a valid checksum but does not decode"),
            });
        };
        batches.push(batch);
        at += HEADER + len;
    }
    Ok((batches, at as u64))
}

impl Wal {
    /// Opens the log in `dir` (created if needed): reads back every whole
    /// record of the existing segments, cuts a torn tail off the last one,
    /// and starts a new segment for writing.
    pub fn open(dir: &Path, config: WalConfig) -> Result<(Wal, Vec<LoggedBatch>)> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let existing = segments(dir)?;
        let mut recovered = Vec::new();
        for &segment in &existing {
            let path = segment_path(dir, segment);
            let (mut batches, valid) = read_segment(&path, segment)?;
            let len = std::fs::metadata(&path).map_err(io(&path))?.len();
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
            recovered.append(&mut batches);
        }
        let segment = existing.last().map_or(1, |s| s + 1);
        let file = Self::create(dir, segment)?;
        Ok((
            Wal {
                dir: dir.to_owned(),
                config,
                segment,
                file,
                bytes: 0,
                named: HashMap::new(),
                buf: Vec::new(),
            },
            recovered,
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

    /// Appends batches of `(received_ms, readings)` (points named from
    /// `catalog`) and makes them durable with one sync. Returns the segment
    /// they went to: they may be released once everything up to it is in
    /// sealed archive files. Nothing is acknowledged unless this returned.
    pub fn append(&mut self, batches: &[(i64, &[Reading])], catalog: &Catalog) -> Result<u64> {
        if self.bytes >= self.config.segment_bytes {
            self.roll()?;
        }
        let start = self.bytes;
        for &(received_ms, readings) in batches {
            self.encode(received_ms, readings, catalog);
            let path = segment_path(&self.dir, self.segment);
            self.file.write_all(&self.buf).map_err(io(&path))?;
            self.bytes += self.buf.len() as u64;
        }
        if self.bytes > start {
            let path = segment_path(&self.dir, self.segment);
            self.file.sync_data().map_err(io(&path))?;
        }
        Ok(self.segment)
    }

    /// One record into `self.buf`.
    fn encode(&mut self, received_ms: i64, readings: &[Reading], catalog: &Catalog) {
        let mut payload = Vec::with_capacity(16 + readings.len() * READING);
        payload.extend_from_slice(&received_ms.to_le_bytes());
        let mut new: Vec<(u32, &str)> = Vec::new();
        for r in readings {
            if !self.named.contains_key(&r.point) {
                let id = self.named.len() as u32;
                self.named.insert(r.point, id);
                new.push((id, &catalog.meta(r.point).id));
            }
        }
        payload.extend_from_slice(&(new.len() as u32).to_le_bytes());
        for (id, name) in new {
            // Point ids are at most 64 bytes (site validation).
            let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
            payload.extend_from_slice(&id.to_le_bytes());
            payload.extend_from_slice(&(name.len() as u16).to_le_bytes());
            payload.extend_from_slice(name);
        }
        payload.extend_from_slice(&(readings.len() as u32).to_le_bytes());
        for r in readings {
            payload.extend_from_slice(&self.named[&r.point].to_le_bytes());
            payload.extend_from_slice(&r.ts_ms.to_le_bytes());
            payload.extend_from_slice(&r.value.to_le_bytes());
            payload.push(quality_code(r.quality));
        }
        self.buf.clear();
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        self.buf.extend_from_slice(&payload);
    }

    /// Closes the current segment and starts the next.
    fn roll(&mut self) -> Result<()> {
        self.segment += 1;
        self.file = Self::create(&self.dir, self.segment)?;
        self.bytes = 0;
        self.named.clear();
        Ok(())
    }

    /// Deletes every segment before `segment` (everything in them is in
    /// sealed archive files). Returns how many were deleted.
    pub fn release_before(&mut self, segment: u64) -> Result<usize> {
        let mut n = 0;
        for s in segments(&self.dir)?
            .into_iter()
            .filter(|&s| s < segment.min(self.segment))
        {
            let path = segment_path(&self.dir, s);
            std::fs::remove_file(&path).map_err(io(&path))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn batches_come_back_in_order_across_segments_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(50);
        let config = WalConfig { segment_bytes: 600 };
        let (mut wal, _) = Wal::open(dir.path(), config).unwrap();
        let mut written = Vec::new();
        for s in 0..20 {
            let b = batch((s % 5) * 10..(s % 5) * 10 + 10, i64::from(s) * 1000);
            wal.append(&[(i64::from(s), &b)], &c).unwrap();
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
                b.readings.iter().zip(w).all(|(x, y)| x.value == y.value
                    && x.ts_ms == y.ts_ms
                    && x.quality == y.quality)
            );
        }
        // Released segments are gone, the rest still read back.
        let mut wal = wal;
        let keep_from = back[10].segment;
        assert!(wal.release_before(keep_from).unwrap() > 0);
        drop(wal);
        let (_, back) = Wal::open(dir.path(), config).unwrap();
        assert_eq!(back[0].segment, keep_from);
        assert_eq!(back.last().unwrap().received_ms, 19);
    }

    #[test]
    fn a_torn_tail_is_cut_and_everything_before_it_survives() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(10);
        let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        wal.append(&[(1, &batch(0..5, 1))], &c).unwrap();
        wal.append(&[(2, &batch(5..10, 2))], &c).unwrap();
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
    fn a_group_commit_is_one_sync_for_many_batches() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(20);
        let (mut wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        let a = batch(0..10, 1);
        let b = batch(10..20, 2);
        wal.append(&[(1, &a), (2, &b)], &c).unwrap();
        drop(wal);
        let (_, back) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].readings[0].point, "P10");
    }
}
