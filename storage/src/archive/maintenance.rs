//! Keeping the archive small and bounded: merging small files
//! ([`ArchiveWriter::compact`]) and deleting days past the retention
//! ([`ArchiveWriter::expire`]).

use std::path::PathBuf;

use super::*;

impl ArchiveWriter {
    /// Merges small files: in each partition of either dataset, files with
    /// fewer than `roll_rows / 2` rows are put in size tiers (powers of
    /// eight), and [`COMPACT_FANIN`] files of one tier become one file,
    /// repeatedly, so every row is rewritten about log8(rows) times. A
    /// merge holds at most `roll_rows` rows, as a checkpoint does (it reads
    /// them into memory and sorts them): files of the top tier merge by
    /// two or three, never eight (the soak saw eight files of just under a
    /// million rows merged at once, 1.7 GB for a moment).
    /// `partitions` limits the work to those directories (the ones the
    /// last checkpoint wrote); `None` looks at every partition. Returns the
    /// files written.
    pub fn compact(&mut self, partitions: Option<&[PathBuf]>) -> Result<Vec<SealedFile>> {
        let dirs = match partitions {
            Some(p) => p.to_vec(),
            None => txn::partition_dirs(&self.root)?,
        };
        let mut written = Vec::new();
        for dir in dirs {
            while let Some(group) = self.compaction_group(&dir)? {
                written.push(self.merge(&dir, &group)?);
            }
        }
        Ok(written)
    }

    /// The oldest small files of the lowest full tier: [`COMPACT_FANIN`]
    /// of them, or as many (two at least) as `roll_rows` holds when the
    /// next would not fit.
    fn compaction_group(&self, dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        let big = (self.config.roll_rows / 2).max(1) as u64;
        let most = self.config.roll_rows.max(1) as u64;
        let mut tiers: BTreeMap<u32, Vec<(PathBuf, u64)>> = BTreeMap::new();
        for path in parquet_files(dir)? {
            let rows = file_rows(&path)?;
            if rows < big {
                tiers
                    .entry(rows.max(1).ilog(8))
                    .or_default()
                    .push((path, rows));
            }
        }
        Ok(tiers
            .into_values()
            .find_map(|files| merge_group(files, most)))
    }

    /// Replaces `files` of the partition `dir` by one file holding their
    /// rows in the dataset's order.
    fn merge(&mut self, dir: &Path, files: &[PathBuf]) -> Result<SealedFile> {
        let dataset = if dir.starts_with(self.root.join(Dataset::Alarms.dir())) {
            Dataset::Alarms
        } else {
            Dataset::Readings
        };
        let mut batches = Vec::new();
        for f in files {
            batches.extend(read_all(f)?);
        }
        let schema = match dataset {
            Dataset::Readings => crate::schema::readings_schema(),
            Dataset::Alarms => crate::schema::alarms_schema(),
        };
        let all = arrow_select::concat::concat_batches(&schema, &batches)?;
        let sorted = sort_rows(dataset, &all)?;
        let (day, enterprise) = partition_of(dir).ok_or_else(|| Error::Archive {
            path: dir.to_owned(),
            message: "not a date=/enterprise= partition directory".into(),
        })?;
        let file = self.stage(dataset, day, &enterprise, sorted)?;
        let committed = self.commit(self.progress, std::slice::from_ref(&file), files);
        if let Err(e) = committed {
            unstage(std::slice::from_ref(&file));
            return Err(e);
        }
        Ok(file)
    }

    /// Deletes the days whose event date is more than `retention_days`
    /// before the day of `now_ms`, in both datasets. Returns the partitions
    /// (date directories) deleted.
    pub fn expire(&mut self, now_ms: i64) -> Result<Vec<PathBuf>> {
        if self.config.retention_days == 0 {
            return Ok(Vec::new());
        }
        let oldest_kept = now_ms.div_euclid(DAY_MS) - i64::from(self.config.retention_days);
        let mut gone = Vec::new();
        for dataset in [Dataset::Readings, Dataset::Alarms] {
            for date in txn::subdirs(&self.root.join(dataset.dir()))? {
                let day = date
                    .file_name()
                    .and_then(|n| day_of_dir(&n.to_string_lossy()));
                if day.is_some_and(|d| d < oldest_kept) {
                    std::fs::remove_dir_all(&date).map_err(io(&date))?;
                    gone.push(date);
                }
            }
        }
        Ok(gone)
    }
}

/// The group [`ArchiveWriter::compaction_group`] takes from one tier's
/// files (oldest first, with their rows): full at [`COMPACT_FANIN`] files,
/// or at two or more when the next would take it past `most` rows.
pub(super) fn merge_group(files: Vec<(PathBuf, u64)>, most: u64) -> Option<Vec<PathBuf>> {
    let mut group = Vec::new();
    let mut rows = 0;
    for (path, n) in files {
        if rows + n > most {
            return (group.len() >= 2).then_some(group);
        }
        rows += n;
        group.push(path);
        if group.len() == COMPACT_FANIN {
            return Some(group);
        }
    }
    None
}
