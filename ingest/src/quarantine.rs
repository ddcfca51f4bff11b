//! The quarantine: every rejected message or reading, with its reason, as
//! JSON lines in `DATA/quarantine/quarantine.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hazardwatch_proto::clock::{SharedClock, rfc3339_ms};
use serde::Serialize;

use crate::decode::Rejection;
use crate::error::{Error, Result};

/// Bytes of the payload kept in a quarantine record.
pub const EXCERPT_BYTES: usize = 512;

/// One line of the quarantine file.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct QuarantineRecord {
    /// When it was rejected (RFC 3339, UTC).
    pub time: String,
    /// The MQTT topic it came on.
    pub topic: String,
    /// Category (`malformed`, `unknown_point` ...).
    pub kind: String,
    /// What was wrong.
    pub reason: String,
    /// Size of the whole payload.
    pub payload_bytes: usize,
    /// The payload's first bytes, as text (invalid UTF-8 replaced).
    pub payload_excerpt: String,
}

/// Appends quarantine records to a file and counts them.
pub struct Quarantine {
    path: PathBuf,
    out: BufWriter<File>,
    /// Stamps each record's `time`.
    clock: SharedClock,
}

impl Quarantine {
    /// Opens (creating) `dir/quarantine.jsonl` for appending; records are
    /// stamped with `clock`'s time.
    pub fn open(dir: &Path, clock: SharedClock) -> Result<Quarantine> {
        let path = dir.join("quarantine.jsonl");
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
        Ok(Quarantine {
            path,
            out: BufWriter::new(file),
            clock,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the rejections of one message and flushes them to the file.
    pub fn record(&mut self, topic: &str, payload: &[u8], rejections: &[Rejection]) -> Result<()> {
        if rejections.is_empty() {
            return Ok(());
        }
        let excerpt = String::from_utf8_lossy(&payload[..payload.len().min(EXCERPT_BYTES)]);
        let time = rfc3339_ms(self.clock.now_ms());
        for r in rejections {
            metrics::counter!("hazardwatch_quarantined_total", "reason" => r.kind.as_str())
                .increment(1);
            let rec = QuarantineRecord {
                time: time.clone(),
                topic: topic.to_owned(),
                kind: r.kind.as_str().to_owned(),
                reason: r.reason.clone(),
                payload_bytes: payload.len(),
                payload_excerpt: excerpt.clone().into_owned(),
            };
            let line = serde_json::to_string(&rec).map_err(|e| Error::Quarantine {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
            self.write_line(&line)?;
        }
        self.out.flush().map_err(|source| Error::Quarantine {
            path: self.path.clone(),
            source,
        })
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| Error::Quarantine {
                path: self.path.clone(),
                source,
            })
    }
}
