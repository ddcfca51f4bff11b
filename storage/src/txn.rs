//! Atomic changes of several archive files at once.
//!
//! A checkpoint seals many partitions, and a compaction replaces several
//! files by one; either must happen entirely or not at all, or a crash
//! would leave readings archived twice (the write-ahead log replays them)
//! or missing. Every file is first written aside (`.NAME.tmp`, synced);
//! then one small record, `ROOT/_txn.json`, is written aside and renamed
//! into place: that rename is the commit. Only then are the files renamed
//! into place and the replaced ones deleted. At start, [`recover`] applies
//! the last record again (every step is idempotent) and deletes the
//! leftovers of a change that never committed.
//!
//! The record also carries the archive's progress: the first write-ahead
//! log segment not yet archived and the last alarm event archived.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io};

/// File name of the record, in the archive root.
const RECORD: &str = "_txn.json";

/// How far the archive has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Every reading logged in write-ahead log segments before this one is
    /// in sealed files.
    pub wal_segment: u64,
    /// Every alarm event up to this sequence number is in sealed files.
    pub alarms_seq: u64,
}

/// One committed change: files to move into place, files to delete, and
/// the progress it records. Paths are relative to the archive root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Progress after the change.
    pub progress: Progress,
    /// `(written aside, final)` pairs.
    pub add: Vec<(PathBuf, PathBuf)>,
    /// Files the change replaces.
    pub remove: Vec<PathBuf>,
}

/// The `.tmp` name a file is written under before it is committed.
pub fn aside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Syncs a directory, so the entries made in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Creates `dir` and its missing parents durably: each new directory's
/// entry is synced in its parent, so that after a power cut the files a
/// committed change moved into it are not lost with it (the record would
/// name files whose directory never reached the disk). Returns the
/// directories it synced, outermost first.
pub fn create_dir_durably(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_owned());
        at = d.parent();
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut synced = Vec::new();
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
            synced.push(parent.to_owned());
        }
    }
    Ok(synced)
}

/// Replaces the file at `path` by `bytes` atomically and durably: written
/// aside ([`aside`]) and synced, renamed over `path`, its directory synced.
/// A crash leaves the old file or the new one, never a part.
pub fn replace_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = aside(path);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()
    };
    write().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Commits `txn` (its added files are written aside and synced) and
/// applies it.
pub fn commit(root: &Path, txn: &Txn) -> Result<()> {
    let path = root.join(RECORD);
    let text = serde_json::to_vec_pretty(txn).map_err(|e| Error::Txn {
        path: path.clone(),
        message: e.to_string(),
    })?;
    replace_durably(&path, &text)?;
    apply(root, txn)
}

/// Moves the added files into place and deletes the removed ones; what is
/// already done is skipped.
fn apply(root: &Path, txn: &Txn) -> Result<()> {
    // Only plain paths inside the archive: a damaged or foreign record must
    // not move or delete anything else.
    let inside = |p: &Path| {
        p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    };
    let named = txn.add.iter().flat_map(|(a, b)| [a, b]).chain(&txn.remove);
    if let Some(bad) = named.into_iter().find(|p| !inside(p)) {
        return Err(Error::Txn {
            path: root.join(RECORD),
            message: format!("{} is not a path inside the archive", bad.display()),
        });
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (tmp, fin) in &txn.add {
        let (tmp, fin) = (root.join(tmp), root.join(fin));
        if tmp.exists() {
            std::fs::rename(&tmp, &fin).map_err(io(&fin))?;
        } else if !fin.exists() {
            return Err(Error::Txn {
                path: root.join(RECORD),
                message: format!(
                    "committed file {} is missing (neither it nor {} exists)",
                    fin.display(),
                    tmp.display()
                ),
            });
        }
        dirs.extend(fin.parent().map(Path::to_owned));
    }
    for r in &txn.remove {
        let r = root.join(r);
        match std::fs::remove_file(&r) {
            Ok(()) => dirs.extend(r.parent().map(Path::to_owned)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&r)(e)),
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        sync_dir(&d)?;
    }
    Ok(())
}

/// Finishes the last committed change, deletes files written aside for a
/// change that never committed, and returns the archive's progress.
pub fn recover(root: &Path) -> Result<Progress> {
    let path = root.join(RECORD);
    let txn: Txn = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Txn {
            path: path.clone(),
            message: format!("does not parse: {e}"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Txn::default(),
        Err(e) => return Err(io(&path)(e)),
    };
    apply(root, &txn)?;
    let mut stray = 0;
    for dir in partition_dirs(root)? {
        for path in list(&dir, |name, _| {
            name.starts_with('.') && name.ends_with(".tmp")
        })? {
            std::fs::remove_file(&path).map_err(io(&path))?;
            stray += 1;
        }
    }
    if stray > 0 {
        tracing::info!(
            files = stray,
            "archive: removed files of a change that never committed"
        );
    }
    Ok(txn.progress)
}

/// Every `ROOT/{dataset}/date=*/enterprise=*` directory.
pub fn partition_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for dataset in ["readings", "alarms"] {
        for date in subdirs(&root.join(dataset))? {
            out.extend(subdirs(&date)?);
        }
    }
    Ok(out)
}

/// The subdirectories of `dir` (none if it does not exist), sorted.
pub fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    list(dir, |_, is_dir| is_dir)
}

/// The entries of `dir` (none if it does not exist) that `keep` (given the
/// name and whether it is a directory) keeps, sorted.
pub fn list(dir: &Path, keep: impl Fn(&str, bool) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let is_dir = entry.file_type().map_err(io(entry.path()))?.is_dir();
        if keep(&entry.file_name().to_string_lossy(), is_dir) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn new_partition_directories_are_synced_into_their_parents() {
        let root = tempfile::tempdir().unwrap();
        let readings = root.path().join("readings");
        std::fs::create_dir_all(&readings).unwrap();
        let dir = readings.join("date=2026-11-27").join("enterprise=E01");
        let synced = super::create_dir_durably(&dir).unwrap();
        assert!(dir.is_dir());
        assert_eq!(synced, [readings.clone(), readings.join("date=2026-11-27")]);
        // Existing: nothing to create, nothing to sync.
        assert!(super::create_dir_durably(&dir).unwrap().is_empty());
    }

    #[test]
    fn a_committed_change_is_finished_at_recovery_and_an_uncommitted_one_undone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let part = root.join("readings/date=2026-01-01/enterprise=E");
        std::fs::create_dir_all(&part).unwrap();
        let old = part.join("part-old.parquet");
        std::fs::write(&old, b"old").unwrap();
        let new = part.join("part-new.parquet");
        std::fs::write(aside(&new), b"new").unwrap();
        let txn = Txn {
            progress: Progress {
                wal_segment: 7,
                alarms_seq: 3,
            },
            add: vec![(
                aside(&new).strip_prefix(root).unwrap().to_owned(),
                new.strip_prefix(root).unwrap().to_owned(),
            )],
            remove: vec![old.strip_prefix(root).unwrap().to_owned()],
        };
        // Committed, then a crash before anything was moved.
        std::fs::write(root.join(RECORD), serde_json::to_vec(&txn).unwrap()).unwrap();
        // And a file of a later change that never committed.
        let stray = aside(&part.join("part-later.parquet"));
        std::fs::write(&stray, b"later").unwrap();

        assert_eq!(recover(root).unwrap(), txn.progress);
        assert_eq!(std::fs::read(&new).unwrap(), b"new");
        assert!(!old.exists() && !stray.exists() && !aside(&new).exists());
        // Recovering again changes nothing.
        assert_eq!(recover(root).unwrap(), txn.progress);
        assert_eq!(std::fs::read(&new).unwrap(), b"new");
    }

    #[test]
    fn a_record_naming_paths_outside_the_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("precious");
        std::fs::write(&outside, b"keep").unwrap();
        let root = dir.path().join("archive");
        std::fs::create_dir_all(&root).unwrap();
        let txn = Txn {
            remove: vec![PathBuf::from("../precious")],
            ..Txn::default()
        };
        std::fs::write(root.join(RECORD), serde_json::to_vec(&txn).unwrap()).unwrap();
        let err = recover(&root).unwrap_err();
        assert!(
            err.to_string().contains("not a path inside the archive"),
            "{err}"
        );
        assert!(outside.exists());
    }

    #[test]
    fn an_empty_archive_has_made_no_progress() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recover(dir.path()).unwrap(), Progress::default());
    }
}
