//! The quarantine: what was rejected and why, as JSON lines in
//! `DATA/quarantine/quarantine.jsonl`, bounded on disk.
//!
//! - **Per message**: the first [`DETAILED_PER_MESSAGE`] rejections each get
//!   a record (the first with the payload's first [`EXCERPT_BYTES`] bytes);
//!   the rest of the message's rejections are one `summary` record with
//!   their counts by kind. A message of 100,000 bad readings costs a few
//!   kilobytes, not hundreds of megabytes. Every rejection is still counted
//!   in `hazardwatch_quarantined_total{reason}`.
//! - **On disk**: the file is rotated (`quarantine.jsonl` becomes
//!   `quarantine.1.jsonl`, and so on) when it passes its size limit or
//!   has been written to for a day; the oldest beyond `keep` files is
//!   deleted. The disk used is at most about (`keep` + 1) × `max_bytes`,
//!   and `hazardwatch_quarantine_bytes` shows it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hazardwatch_proto::clock::{SharedClock, rfc3339_ms};
use serde::Serialize;

use crate::decode::Rejection;
use crate::error::{Error, Result};

/// Bytes of the payload kept in a quarantine record.
pub const EXCERPT_BYTES: usize = 512;

/// Rejections of one message recorded one by one; the rest are summed up.
pub const DETAILED_PER_MESSAGE: usize = 5;

/// Default size at which the file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Default number of rotated files kept.
pub const DEFAULT_KEEP: usize = 4;

/// A file is rotated after a day of use even if small.
const MAX_AGE_MS: i64 = 86_400_000;

/// One line of the quarantine file.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct QuarantineRecord {
    /// When it was rejected (RFC 3339, UTC).
    pub time: String,
    /// The MQTT topic it came on.
    pub topic: String,
    /// Category (`malformed`, `unknown_point` ..., or `summary` for the
    /// rest of a message's rejections).
    pub kind: String,
    /// What was wrong.
    pub reason: String,
    /// Size of the whole payload.
    pub payload_bytes: usize,
    /// The payload's first bytes, as text (invalid UTF-8 replaced); on the
    /// first record of a message only.
    pub payload_excerpt: String,
}

/// Appends quarantine records to a bounded, rotated file.
pub struct Quarantine {
    dir: PathBuf,
    /// The file's name without `.jsonl` (`quarantine`).
    stem: String,
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the current file.
    bytes: u64,
    /// Bytes in the rotated files.
    rotated_bytes: u64,
    /// When the current file got its first record, ms.
    since_ms: Option<i64>,
    max_bytes: u64,
    keep: usize,
    /// Stamps each record's `time`.
    clock: SharedClock,
}

impl Quarantine {
    /// Opens (creating) `dir/quarantine.jsonl` for appending, with the
    /// default limits; records are stamped with `clock`'s time.
    pub fn open(dir: &Path, clock: SharedClock) -> Result<Quarantine> {
        Self::open_with(dir, clock, DEFAULT_MAX_BYTES, DEFAULT_KEEP)
    }

    /// [`Quarantine::open`] with a rotation size and a number of rotated
    /// files to keep.
    pub fn open_with(
        dir: &Path,
        clock: SharedClock,
        max_bytes: u64,
        keep: usize,
    ) -> Result<Quarantine> {
        Self::open_named(dir, "quarantine", clock, max_bytes, keep)
    }

    /// A quarantine-style record of its own, `dir/{stem}.jsonl`, bounded
    /// and rotated the same way (the backfill's `not_judged`).
    pub fn open_named(
        dir: &Path,
        stem: &str,
        clock: SharedClock,
        max_bytes: u64,
        keep: usize,
    ) -> Result<Quarantine> {
        let path = dir.join(format!("{stem}.jsonl"));
        let err = |source| Error::Quarantine {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        let bytes = file.metadata().map_err(err)?.len();
        let rotated_bytes = (1..=keep)
            .filter_map(|i| std::fs::metadata(rotated(dir, stem, i)).ok())
            .map(|m| m.len())
            .sum();
        let q = Quarantine {
            dir: dir.to_owned(),
            stem: stem.to_owned(),
            path,
            out: BufWriter::new(file),
            bytes,
            rotated_bytes,
            since_ms: (bytes > 0).then(|| clock.now_ms()),
            max_bytes: max_bytes.max(1024),
            keep,
            clock,
        };
        q.gauge();
        Ok(q)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the quarantine takes on disk (current and rotated files).
    pub fn disk_bytes(&self) -> u64 {
        self.bytes + self.rotated_bytes
    }

    fn gauge(&self) {
        metrics::gauge!("hazardwatch_quarantine_bytes").set(self.disk_bytes() as f64);
    }

    fn err(&self, source: std::io::Error) -> Error {
        Error::Quarantine {
            path: self.path.clone(),
            source,
        }
    }

    /// Records the rejections of one message (see the module docs) and
    /// flushes them to the file.
    pub fn record(&mut self, topic: &str, payload: &[u8], rejections: &[Rejection]) -> Result<()> {
        if rejections.is_empty() {
            return Ok(());
        }
        for r in rejections {
            metrics::counter!("hazardwatch_quarantined_total", "reason" => r.kind.as_str())
                .increment(1);
        }
        let now = self.clock.now_ms();
        self.rotate_if_due(now)?;
        let time = rfc3339_ms(now);
        let record = |kind: &str, reason: String, excerpt: String| QuarantineRecord {
            time: time.clone(),
            topic: topic.to_owned(),
            kind: kind.to_owned(),
            reason,
            payload_bytes: payload.len(),
            payload_excerpt: excerpt,
        };
        let excerpt =
            String::from_utf8_lossy(&payload[..payload.len().min(EXCERPT_BYTES)]).into_owned();
        let mut lines = Vec::with_capacity(DETAILED_PER_MESSAGE + 1);
        for (i, r) in rejections.iter().take(DETAILED_PER_MESSAGE).enumerate() {
            let excerpt = if i == 0 {
                excerpt.clone()
            } else {
                String::new()
            };
            lines.push(record(r.kind.as_str(), r.reason.clone(), excerpt));
        }
        let rest = &rejections[rejections.len().min(DETAILED_PER_MESSAGE)..];
        if !rest.is_empty() {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for r in rest {
                *counts.entry(r.kind.as_str()).or_default() += 1;
            }
            let by_kind: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            lines.push(record(
                "summary",
                format!(
                    "{} more rejections of this message not recorded one by one: {}",
                    rest.len(),
                    by_kind.join(", ")
                ),
                String::new(),
            ));
        }
        for rec in lines {
            let line =
                serde_json::to_string(&rec).map_err(|e| self.err(std::io::Error::other(e)))?;
            self.out
                .write_all(line.as_bytes())
                .and_then(|()| self.out.write_all(b"\n"))
                .map_err(|e| self.err(e))?;
            self.bytes += line.len() as u64 + 1;
        }
        self.since_ms.get_or_insert(now);
        self.out.flush().map_err(|e| self.err(e))?;
        self.gauge();
        Ok(())
    }

    /// Opens the file again (after a failed write: it may have been
    /// replaced, or its disk freed).
    pub fn reopen(&mut self) -> Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        self.bytes = file.metadata().map_err(|e| self.err(e))?.len();
        self.out = BufWriter::new(file);
        Ok(())
    }

    /// Rotates when the file is over its size or a day old.
    fn rotate_if_due(&mut self, now_ms: i64) -> Result<()> {
        let old = self.since_ms.is_some_and(|s| now_ms - s >= MAX_AGE_MS);
        if self.bytes < self.max_bytes && !old {
            return Ok(());
        }
        self.out.flush().map_err(|e| self.err(e))?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path).map_err(|e| self.err(e))?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for i in (1..self.keep).rev() {
                let from = self.rotated(i);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(i + 1)).map_err(|e| self.err(e))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1)).map_err(|e| self.err(e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        self.out = BufWriter::new(file);
        self.bytes = 0;
        self.since_ms = None;
        self.rotated_bytes = (1..=self.keep)
            .filter_map(|i| std::fs::metadata(self.rotated(i)).ok())
            .map(|m| m.len())
            .sum();
        metrics::counter!("hazardwatch_quarantine_rotations_total").increment(1);
        Ok(())
    }
}

/// The `i`th rotated file of `stem` in `dir`.
fn rotated(dir: &Path, stem: &str, i: usize) -> PathBuf {
    dir.join(format!("{stem}.{i}.jsonl"))
}

impl Quarantine {
    /// Its `i`th rotated file.
    fn rotated(&self, i: usize) -> PathBuf {
        rotated(&self.dir, &self.stem, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::RejectKind;
    use hazardwatch_proto::clock::SettableClock;
    use std::sync::Arc;

    fn rejections(n: usize) -> Vec<Rejection> {
        (0..n)
            .map(|i| Rejection {
                kind: if i % 3 == 0 {
                    RejectKind::BadValue
                } else {
                    RejectKind::UnknownPoint
                },
                reason: format!("reading {i}: wrong"),
            })
            .collect()
    }

    fn lines(path: &Path) -> Vec<QuarantineRecord> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_message_of_many_bad_readings_is_a_few_records() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(SettableClock::new(0));
        let mut q = Quarantine::open(dir.path(), clock).unwrap();
        let payload = vec![b'x'; 256 * 1024];
        q.record("hw/v1/E/G/telemetry", &payload, &rejections(100_000))
            .unwrap();
        let recs = lines(q.path());
        assert_eq!(recs.len(), DETAILED_PER_MESSAGE + 1);
        assert_eq!(recs[0].payload_excerpt.len(), EXCERPT_BYTES);
        assert!(recs[1].payload_excerpt.is_empty());
        let summary = &recs[DETAILED_PER_MESSAGE];
        assert_eq!(summary.kind, "summary");
        assert!(
            summary
                .reason
                .contains("99995 more rejections of this message not recorded one by one: bad_value 33332, unknown_point 66663"),
            "{}",
            summary.reason
        );
        assert!(q.disk_bytes() < 8 * 1024, "{}", q.disk_bytes());
    }

    #[test]
    fn the_file_is_rotated_by_size_and_age_and_its_disk_use_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(SettableClock::new(0));
        let mut q = Quarantine::open_with(dir.path(), clock.clone(), 4096, 2).unwrap();
        let payload = vec![b'y'; 2048];
        for _ in 0..200 {
            q.record("t", &payload, &rejections(3)).unwrap();
        }
        assert!(
            rotated(dir.path(), "quarantine", 1).exists()
                && rotated(dir.path(), "quarantine", 2).exists()
        );
        assert!(
            !rotated(dir.path(), "quarantine", 3).exists(),
            "only two kept"
        );
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, q.disk_bytes());
        assert!(on_disk < 3 * 4096 + 4096, "{on_disk}");
        // A day later, a small file is rotated too.
        let before = std::fs::read_to_string(rotated(dir.path(), "quarantine", 1)).unwrap();
        q.record("t", b"z", &rejections(1)).unwrap();
        let small = std::fs::metadata(q.path()).unwrap().len();
        clock.set(MAX_AGE_MS + 1);
        q.record("t", b"z", &rejections(1)).unwrap();
        assert_ne!(
            std::fs::read_to_string(rotated(dir.path(), "quarantine", 1)).unwrap(),
            before
        );
        assert!(std::fs::metadata(q.path()).unwrap().len() <= small);
    }
}
