//! Writing readings and alarm events to sealed, sorted, Hive-partitioned
//! Parquet files.
//!
//! Readings are buffered per partition (event date, enterprise) and sealed
//! together at a [`ArchiveWriter::checkpoint`]: every partition's buffer
//! becomes one file sorted by (point, time), and the alarm events journaled
//! since the last checkpoint become files under `alarms/`, all committed as
//! one [`txn`](crate::txn) with the write-ahead log segment they cover, so
//! that the log can drop exactly what the archive holds. Small files are
//! merged by [`ArchiveWriter::compact`] (size tiers: eight files of one
//! tier become one of the next), and [`ArchiveWriter::expire`] deletes whole
//! days past the retention.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType, UInt64Type};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    UInt32Array, UInt64Array,
};
use arrow_schema::SchemaRef;
use hazardwatch_proto::{Catalog, PointIdx, Reading, pb};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::Deserialize;

use crate::error::{Error, Result, io, parquet};
use crate::schema::{alarms_schema, readings_schema};
use crate::txn::{self, Progress, Txn};
use buffers::{Partitions, SEAL_CHUNK, readings_batch, seal_order};

/// `[archive]` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Checkpoint (seal every partition) once this many readings are
    /// buffered; also the size past which compaction leaves a file alone.
    pub roll_rows: usize,
    /// Checkpoint at least this often, so a quiet park still reaches the
    /// archive (and the write-ahead log is trimmed).
    pub roll_secs: u64,
    /// Rows per Parquet row group (bounds reader memory and sets the
    /// granularity of row-group pruning).
    pub row_group_rows: usize,
    /// zstd level, 1 to 22.
    pub zstd_level: i32,
    /// Delete whole days (partitions) whose event date is more than this
    /// many days before today; 0 keeps everything.
    pub retention_days: u32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            roll_rows: 2_000_000,
            roll_secs: 60,
            row_group_rows: 1_000_000,
            zstd_level: 3,
            retention_days: 0,
        }
    }
}

impl ArchiveConfig {
    /// Checks the settings, naming the field that is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.roll_rows == 0 || self.roll_rows > 100_000_000 {
            return Err(Error::Config(format!(
                "archive.roll_rows: {} must be from 1 to 100000000",
                self.roll_rows
            )));
        }
        if self.roll_secs == 0 || self.roll_secs > 86_400 {
            return Err(Error::Config(format!(
                "archive.roll_secs: {} must be from 1 to 86400",
                self.roll_secs
            )));
        }
        if self.row_group_rows == 0 {
            return Err(Error::Config(
                "archive.row_group_rows: must be at least 1".into(),
            ));
        }
        if ZstdLevel::try_new(self.zstd_level).is_err() {
            return Err(Error::Config(format!(
                "archive.zstd_level: {} must be from 1 to 22",
                self.zstd_level
            )));
        }
        if self.retention_days > 36_500 {
            return Err(Error::Config(format!(
                "archive.retention_days: {} must be at most 36500 (0 keeps everything)",
                self.retention_days
            )));
        }
        Ok(())
    }
}

/// A file the writer sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedFile {
    /// Readings or alarm events.
    pub dataset: Dataset,
    /// Final path of the file.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: usize,
    /// Its size on disk.
    pub bytes: u64,
}

/// One day, ms.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Hive's name for a partition without a value.
const NO_ENTERPRISE: &str = "__HIVE_DEFAULT_PARTITION__";

/// Files of one size tier that compaction merges into one.
pub const COMPACT_FANIN: usize = 8;

/// The two datasets under the archive root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// `readings/`.
    Readings,
    /// `alarms/`.
    Alarms,
}

impl Dataset {
    /// The directory under the root.
    pub fn dir(self) -> &'static str {
        match self {
            Dataset::Readings => "readings",
            Dataset::Alarms => "alarms",
        }
    }
}

/// `date=YYYY-MM-DD` of an event day.
fn date_dir(day: i64) -> Result<String> {
    chrono::DateTime::from_timestamp_millis(day.saturating_mul(DAY_MS))
        .map(|d| format!("date={}", d.date_naive().format("%Y-%m-%d")))
        .ok_or_else(|| Error::Config(format!("event day {day} out of range")))
}

/// The event day of a `date=YYYY-MM-DD` directory name.
pub fn day_of_dir(name: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(name.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    Some(
        date.and_hms_opt(0, 0, 0)?
            .and_utc()
            .timestamp_millis()
            .div_euclid(DAY_MS),
    )
}

/// Writes `batches` of `schema` as one Parquet file at `path`, synced.
/// Returns its rows and its size in bytes.
fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    props: &WriterProperties,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<(usize, u64)> {
    let file = File::create(path).map_err(io(path))?;
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(props.clone())).map_err(parquet(path))?;
    let mut rows = 0;
    for batch in batches {
        let batch = batch?;
        rows += batch.num_rows();
        writer.write(&batch).map_err(parquet(path))?;
    }
    let file = writer.into_inner().map_err(parquet(path))?;
    file.sync_all().map_err(io(path))?;
    Ok((rows, file.metadata().map_err(io(path))?.len()))
}

/// The archive's writer settings (zstd at `config.zstd_level`, page
/// statistics, bounded row groups), for files sorted by `sort`.
fn writer_properties(
    config: &ArchiveConfig,
    sort: Vec<SortingColumn>,
) -> Result<WriterPropertiesBuilder> {
    let level = ZstdLevel::try_new(config.zstd_level)
        .map_err(|e| Error::Config(format!("archive.zstd_level: {e}")))?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(config.row_group_rows))
        .set_sorting_columns(Some(sort))
        .set_created_by(concat!("hazardwatch ", env!("CARGO_PKG_VERSION")).into()))
}

/// Writes `batch` as one Parquet file at `path` with the archive's writer
/// settings, synced: for exports outside the archive (`replay --out`), so
/// that every Parquet file hazardwatch writes is written one way. Returns
/// its size in bytes.
pub fn export_parquet(path: &Path, batch: &RecordBatch, config: &ArchiveConfig) -> Result<u64> {
    let props = writer_properties(config, Vec::new())?.build();
    let (_, bytes) = write_parquet(path, batch.schema(), &props, [Ok(batch.clone())])?;
    Ok(bytes)
}

/// Buffers readings per partition and seals them into Parquet files at
/// checkpoints.
pub struct ArchiveWriter {
    root: PathBuf,
    catalog: Arc<Catalog>,
    config: ArchiveConfig,
    readings_props: WriterProperties,
    alarms_props: WriterProperties,
    partitions: Partitions,
    progress: Progress,
    /// Distinguishes files sealed in one millisecond by one process.
    file_seq: u64,
}

impl ArchiveWriter {
    /// A writer under `root` (created if missing). Finishes a checkpoint or
    /// compaction a crash interrupted, and returns the archive's progress:
    /// write-ahead log segments before `progress.wal_segment` are archived.
    pub fn open(
        root: &Path,
        catalog: Arc<Catalog>,
        config: ArchiveConfig,
    ) -> Result<(Self, Progress)> {
        config.validate()?;
        for d in [Dataset::Readings, Dataset::Alarms] {
            txn::create_dir_durably(&root.join(d.dir()))?;
        }
        let progress = txn::recover(root)?;
        let props = |sort| writer_properties(&config, sort);
        let ascending = |column_idx| SortingColumn {
            column_idx,
            descending: false,
            nulls_first: false,
        };
        let readings_props = props(vec![ascending(0), ascending(4)])?
            // Event times step by about a second within a point's run.
            .set_column_encoding("ts".into(), Encoding::DELTA_BINARY_PACKED)
            .set_column_dictionary_enabled("ts".into(), false)
            .build();
        let alarms_props = props(vec![ascending(0)])?.build();
        Ok((
            ArchiveWriter {
                root: root.to_owned(),
                catalog,
                config,
                readings_props,
                alarms_props,
                partitions: Partitions::default(),
                progress,
                file_seq: 0,
            },
            progress,
        ))
    }

    /// The archive root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How far the archive has got.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Replaces the catalog (after a site-model reload). Point indices are
    /// stable, so buffered readings keep their meaning.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.catalog = catalog;
    }

    /// Buffers readings received at `ingest_ms`; `late[i]` flags reading `i`
    /// as late. Nothing is written until the next checkpoint.
    pub fn append(&mut self, readings: &[Reading], ingest_ms: i64, late: &[bool]) {
        for (i, r) in readings.iter().enumerate() {
            let Some(enterprise) = self.catalog.enterprise_of(r.point) else {
                // Readings are validated against this catalog before they get
                // here; an unknown index is a wiring bug, not bad input.
                debug_assert!(false, "reading of unknown point index {}", r.point);
                continue;
            };
            let buf = self
                .partitions
                .buffer(r.ts_ms.div_euclid(DAY_MS), enterprise);
            buf.point.push(r.point);
            buf.ts.push(r.ts_ms);
            buf.ingest_ts.push(ingest_ms);
            buf.value.push(r.value);
            buf.quality.push(r.quality);
            buf.late.push(late.get(i).copied().unwrap_or(false));
        }
    }

    /// The buffered (not yet sealed) readings of `points` with event time
    /// in `[from_ms, to_ms)`.
    pub fn buffered(
        &self,
        points: &std::collections::HashSet<PointIdx>,
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<Reading> {
        let mut out = Vec::new();
        for (_, b) in &self.partitions.buffers {
            for i in 0..b.len() {
                if points.contains(&b.point[i]) && (from_ms..to_ms).contains(&b.ts[i]) {
                    out.push(Reading {
                        point: b.point[i],
                        ts_ms: b.ts[i],
                        value: b.value[i],
                        quality: b.quality[i],
                    });
                }
            }
        }
        out
    }

    /// Readings buffered and not yet sealed.
    pub fn buffered_rows(&self) -> usize {
        self.partitions.buffers.iter().map(|(_, b)| b.len()).sum()
    }

    /// Seals every buffered partition and the alarm `events` (those
    /// numbered after `progress().alarms_seq`) as one atomic change that
    /// records `wal_segment`: the caller has appended every reading logged
    /// before that segment. On an error nothing changes: the buffers are
    /// kept for the next checkpoint.
    pub fn checkpoint(
        &mut self,
        wal_segment: u64,
        events: &[pb::AlarmEvent],
    ) -> Result<Vec<SealedFile>> {
        let mut keys: Vec<usize> = (0..self.partitions.buffers.len())
            .filter(|&i| self.partitions.buffers[i].1.len() > 0)
            .collect();
        keys.sort_by(|&a, &b| {
            self.partitions.buffers[a]
                .0
                .cmp(&self.partitions.buffers[b].0)
        });
        let mut staged = Vec::new();
        let committed = self
            .stage_checkpoint(&keys, events, &mut staged)
            .and_then(|alarms_seq| {
                let progress = Progress {
                    wal_segment: self.progress.wal_segment.max(wal_segment),
                    alarms_seq,
                };
                self.commit(progress, &staged, &[])?;
                Ok(progress)
            });
        match committed {
            Ok(progress) => {
                self.progress = progress;
                self.partitions.sealed();
                Ok(staged)
            }
            Err(e) => {
                unstage(&staged);
                Err(e)
            }
        }
    }

    /// Writes the checkpoint's files aside; returns the last alarm event
    /// sequence number they hold.
    fn stage_checkpoint(
        &mut self,
        keys: &[usize],
        events: &[pb::AlarmEvent],
        staged: &mut Vec<SealedFile>,
    ) -> Result<u64> {
        for &i in keys {
            let (day, enterprise) = self.partitions.buffers[i].0.clone();
            let path = self.new_path(Dataset::Readings, day, &enterprise)?;
            let buf = &self.partitions.buffers[i].1;
            let order = seal_order(&self.catalog, buf);
            let batches = order
                .chunks(SEAL_CHUNK)
                .map(|rows| readings_batch(&self.catalog, buf, rows));
            staged.push(self.write_staged(Dataset::Readings, path, readings_schema(), batches)?);
        }
        let after = self.progress.alarms_seq;
        let mut alarms_seq = after;
        let mut by_partition: BTreeMap<(i64, &str), Vec<&pb::AlarmEvent>> = BTreeMap::new();
        for e in events.iter().filter(|e| e.seq > after) {
            alarms_seq = alarms_seq.max(e.seq);
            let enterprise = if e.enterprise.is_empty() {
                NO_ENTERPRISE
            } else {
                &e.enterprise
            };
            by_partition
                .entry((e.event_time_ms.div_euclid(DAY_MS), enterprise))
                .or_default()
                .push(e);
        }
        for ((day, enterprise), mut events) in by_partition {
            events.sort_by_key(|e| e.seq);
            let batch = alarm_batch(&events)?;
            staged.push(self.stage(Dataset::Alarms, day, enterprise, batch)?);
        }
        Ok(alarms_seq)
    }

    /// Writes `batch` aside as a new file of a partition; the returned path
    /// is where it goes at the commit.
    fn stage(
        &mut self,
        dataset: Dataset,
        day: i64,
        enterprise: &str,
        batch: RecordBatch,
    ) -> Result<SealedFile> {
        let path = self.new_path(dataset, day, enterprise)?;
        self.write_staged(dataset, path, batch.schema(), [Ok(batch)])
    }

    /// The path of a new file of a partition (its directory made).
    fn new_path(&mut self, dataset: Dataset, day: i64, enterprise: &str) -> Result<PathBuf> {
        let dir = self
            .root
            .join(dataset.dir())
            .join(date_dir(day)?)
            .join(format!("enterprise={enterprise}"));
        txn::create_dir_durably(&dir)?;
        self.file_seq += 1;
        Ok(dir.join(format!(
            "part-{}-{}-{:06}.parquet",
            chrono::Utc::now().timestamp_millis(),
            std::process::id(),
            self.file_seq
        )))
    }

    /// Writes `batches` aside of `path`, where the file goes at the commit.
    fn write_staged(
        &self,
        dataset: Dataset,
        path: PathBuf,
        schema: SchemaRef,
        batches: impl IntoIterator<Item = Result<RecordBatch>>,
    ) -> Result<SealedFile> {
        let props = match dataset {
            Dataset::Readings => &self.readings_props,
            Dataset::Alarms => &self.alarms_props,
        };
        let (rows, bytes) = write_parquet(&txn::aside(&path), schema, props, batches)?;
        Ok(SealedFile {
            dataset,
            path,
            rows,
            bytes,
        })
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_owned()
    }

    /// Commits staged files (and the removal of `replaced`) with `progress`.
    fn commit(
        &self,
        progress: Progress,
        staged: &[SealedFile],
        replaced: &[PathBuf],
    ) -> Result<()> {
        let txn = Txn {
            progress,
            add: staged
                .iter()
                .map(|f| (self.relative(&txn::aside(&f.path)), self.relative(&f.path)))
                .collect(),
            remove: replaced.iter().map(|p| self.relative(p)).collect(),
        };
        txn::commit(&self.root, &txn)
    }
}

/// Deletes files written aside for a change that did not commit.
fn unstage(staged: &[SealedFile]) {
    for f in staged {
        let _ = std::fs::remove_file(txn::aside(&f.path));
    }
}

/// The sealed `part-*.parquet` files of a partition directory, by name
/// (so by sealing time).
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    txn::list(dir, |name, is_dir| {
        !is_dir && name.starts_with("part-") && name.ends_with(".parquet")
    })
}

/// The (event day, enterprise) of a `.../date=D/enterprise=E` directory.
pub fn partition_of(dir: &Path) -> Option<(i64, String)> {
    let enterprise = dir
        .file_name()?
        .to_string_lossy()
        .strip_prefix("enterprise=")?
        .to_owned();
    let day = day_of_dir(&dir.parent()?.file_name()?.to_string_lossy())?;
    Some((day, enterprise))
}

/// Rows in a Parquet file, from its footer.
fn file_rows(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(io(path))?;
    crate::reader::check_footer(&file, path)?;
    let reader = SerializedFileReader::new(file).map_err(parquet(path))?;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}

/// Every row of a Parquet file.
fn read_all(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(io(path))?;
    let mut reader = crate::reader::open_checked(&file, path)?
        .build()
        .map_err(parquet(path))?;
    let mut batches = Vec::new();
    while let Some(batch) = crate::reader::next_batch(&mut reader, path)? {
        batches.push(batch);
    }
    Ok(batches)
}

/// `batch` in its dataset's order: readings by (point, ts, value), alarm
/// events by seq.
fn sort_rows(dataset: Dataset, batch: &RecordBatch) -> Result<RecordBatch> {
    let column = |name: &str| {
        batch.column_by_name(name).ok_or_else(|| {
            Error::Arrow(arrow_schema::ArrowError::SchemaError(format!(
                "no column {name}"
            )))
        })
    };
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    match dataset {
        Dataset::Readings => {
            let point = column("point")?.as_string::<i32>();
            let ts = column("ts")?.as_primitive::<TimestampMillisecondType>();
            let value = column("value")?.as_primitive::<Float64Type>();
            order.sort_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                (point.value(a), ts.value(a), value.value(a).to_bits()).cmp(&(
                    point.value(b),
                    ts.value(b),
                    value.value(b).to_bits(),
                ))
            });
        }
        Dataset::Alarms => {
            let seq = column("seq")?.as_primitive::<UInt64Type>();
            order.sort_by_key(|&i| seq.value(i as usize));
        }
    }
    let indices = UInt32Array::from(order);
    Ok(arrow_select::take::take_record_batch(batch, &indices)?)
}

/// Alarm events as one batch of the alarms schema.
fn alarm_batch(events: &[&pb::AlarmEvent]) -> Result<RecordBatch> {
    fn text<'a>(
        events: &'a [&pb::AlarmEvent],
        f: impl Fn(&'a pb::AlarmEvent) -> &'a str,
    ) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| f(e))))
    }
    fn flag(events: &[&pb::AlarmEvent], f: impl Fn(&pb::AlarmEvent) -> bool) -> ArrayRef {
        Arc::new(BooleanArray::from_iter(events.iter().map(|e| Some(f(e)))))
    }
    fn time(events: &[&pb::AlarmEvent], f: impl Fn(&pb::AlarmEvent) -> i64) -> ArrayRef {
        Arc::new(
            TimestampMillisecondArray::from_iter(
                events.iter().map(|e| Some(f(e)).filter(|&t| t != 0)),
            )
            .with_timezone("UTC"),
        )
    }
    fn name<E: TryFrom<i32>>(v: i32, f: impl Fn(&E) -> &'static str) -> &'static str {
        E::try_from(v).map(|e| f(&e)).unwrap_or("UNKNOWN")
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(events.iter().map(|e| e.seq))),
        text(events, |e| &e.alarm_id),
        text(events, |e| &e.hazard_source),
        text(events, |e| &e.unit),
        text(events, |e| &e.point),
        text(events, |e| name(e.kind, pb::AlarmKind::as_str_name)),
        text(events, |e| name(e.priority, pb::Priority::as_str_name)),
        text(events, |e| name(e.transition, pb::Transition::as_str_name)),
        text(events, |e| name(e.state, pb::AlarmState::as_str_name)),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(events.iter().map(|e| e.event_time_ms))
                .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from_iter_values(
            events.iter().map(|e| e.value),
        )),
        Arc::new(Float64Array::from_iter_values(
            events.iter().map(|e| e.limit),
        )),
        text(events, |e| &e.eng_unit),
        text(events, |e| &e.message),
        text(events, |e| &e.actor),
        text(events, |e| &e.comment),
        text(events, |e| &e.action),
        time(events, |e| e.predicted_time_ms),
        flag(events, |e| e.suppressed),
        flag(events, |e| e.latched),
        flag(events, |e| e.out_of_service),
        flag(events, |e| e.awaiting_disposal),
        time(events, |e| e.shelved_until_ms),
        text(events, |e| {
            name(e.escalation_level, pb::EscalationLevel::as_str_name)
        }),
        text(events, |e| {
            if e.transition == pb::Transition::RiskChanged as i32 {
                name(e.risk_colour, pb::RiskColour::as_str_name)
            } else {
                ""
            }
        }),
    ];
    Ok(RecordBatch::try_new(alarms_schema(), columns)?)
}

mod buffers;
mod maintenance;

#[cfg(test)]
mod tests;
