//! Writing readings to sealed, sorted, Hive-partitioned Parquet files.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use hazardwatch_proto::{Catalog, PointIdx, Quality, Reading};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::Deserialize;

use crate::error::{Error, Result, io};
use crate::schema::readings_schema;

/// `[archive]` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Seal a partition's file once it holds this many readings.
    pub roll_rows: usize,
    /// Seal a partition's file once its first reading is this many seconds
    /// old, so a quiet partition still reaches the archive.
    pub roll_secs: u64,
    /// Rows per Parquet row group (bounds reader memory and sets the
    /// granularity of row-group pruning).
    pub row_group_rows: usize,
    /// zstd level, 1 to 22.
    pub zstd_level: i32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            roll_rows: 2_000_000,
            roll_secs: 60,
            row_group_rows: 1_000_000,
            zstd_level: 3,
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
        Ok(())
    }
}

/// A file the writer sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedFile {
    /// Final path of the file.
    pub path: PathBuf,
    /// Readings in it.
    pub rows: usize,
    /// Its size on disk.
    pub bytes: u64,
}

/// One partition's unsealed readings, column by column.
#[derive(Debug)]
struct Buffer {
    opened: Instant,
    point: Vec<PointIdx>,
    ts: Vec<i64>,
    ingest_ts: Vec<i64>,
    value: Vec<f64>,
    quality: Vec<Quality>,
    late: Vec<bool>,
}

impl Buffer {
    fn new(now: Instant) -> Self {
        Buffer {
            opened: now,
            point: Vec::new(),
            ts: Vec::new(),
            ingest_ts: Vec::new(),
            value: Vec::new(),
            quality: Vec::new(),
            late: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.point.len()
    }
}

/// Partition key: event day (days since 1970-01-01, UTC) and enterprise.
type PartitionKey = (i64, Arc<str>);

const DAY_MS: i64 = 86_400_000;

/// Buffers readings per partition and seals them into Parquet files.
pub struct ArchiveWriter {
    root: PathBuf,
    catalog: Arc<Catalog>,
    config: ArchiveConfig,
    props: WriterProperties,
    buffers: HashMap<PartitionKey, Buffer>,
    /// Distinguishes files sealed in one millisecond by one process.
    file_seq: u64,
}

impl ArchiveWriter {
    /// A writer under `root` (created if missing); files go to
    /// `root/readings/...`.
    pub fn new(root: &Path, catalog: Arc<Catalog>, config: ArchiveConfig) -> Result<Self> {
        config.validate()?;
        let readings = root.join("readings");
        std::fs::create_dir_all(&readings).map_err(io(&readings))?;
        let level = ZstdLevel::try_new(config.zstd_level)
            .map_err(|e| Error::Config(format!("archive.zstd_level: {e}")))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(config.row_group_rows))
            .set_created_by(concat!("hazardwatch ", env!("CARGO_PKG_VERSION")).into())
            .build();
        Ok(ArchiveWriter {
            root: root.to_owned(),
            catalog,
            config,
            props,
            buffers: HashMap::new(),
            file_seq: 0,
        })
    }

    /// Replaces the catalog (after a site-model reload). Point indices are
    /// stable, so buffered readings keep their meaning.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.catalog = catalog;
    }

    /// Buffers readings received at `ingest_ms`; `late[i]` flags reading `i`
    /// as late. Seals any partition that reaches `roll_rows`.
    pub fn append(
        &mut self,
        readings: &[Reading],
        ingest_ms: i64,
        late: &[bool],
    ) -> Result<Vec<SealedFile>> {
        let now = Instant::now();
        let mut full = Vec::new();
        for (i, r) in readings.iter().enumerate() {
            let Some(meta) = self.catalog.get(r.point) else {
                // Readings are validated against this catalog before they get
                // here; an unknown index is a wiring bug, not bad input.
                debug_assert!(false, "reading of unknown point index {}", r.point);
                continue;
            };
            let key = (r.ts_ms.div_euclid(DAY_MS), meta.enterprise.clone());
            let buf = self
                .buffers
                .entry(key.clone())
                .or_insert_with(|| Buffer::new(now));
            buf.point.push(r.point);
            buf.ts.push(r.ts_ms);
            buf.ingest_ts.push(ingest_ms);
            buf.value.push(r.value);
            buf.quality.push(r.quality);
            buf.late.push(late.get(i).copied().unwrap_or(false));
            if buf.len() >= self.config.roll_rows {
                full.push(key);
            }
        }
        full.sort();
        full.dedup();
        self.seal(full)
    }

    /// Seals the partitions whose first buffered reading is older than
    /// `roll_secs` at `now`.
    pub fn roll_due(&mut self, now: Instant) -> Result<Vec<SealedFile>> {
        let age = Duration::from_secs(self.config.roll_secs);
        let mut due: Vec<PartitionKey> = self
            .buffers
            .iter()
            .filter(|(_, b)| now.saturating_duration_since(b.opened) >= age)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        self.seal(due)
    }

    /// Seals every partition (on shutdown).
    pub fn seal_all(&mut self) -> Result<Vec<SealedFile>> {
        let mut all: Vec<PartitionKey> = self.buffers.keys().cloned().collect();
        all.sort();
        self.seal(all)
    }

    /// Readings buffered and not yet sealed.
    pub fn buffered_rows(&self) -> usize {
        self.buffers.values().map(Buffer::len).sum()
    }

    fn seal(&mut self, keys: Vec<PartitionKey>) -> Result<Vec<SealedFile>> {
        let mut sealed = Vec::new();
        for key in keys {
            let Some(buf) = self.buffers.remove(&key) else {
                continue;
            };
            if buf.len() == 0 {
                continue;
            }
            match self.write_file(&key, &buf) {
                Ok(file) => sealed.push(file),
                Err(e) => {
                    // Keep the readings so a later seal can retry them.
                    self.buffers.insert(key, buf);
                    return Err(e);
                }
            }
        }
        Ok(sealed)
    }

    fn write_file(&mut self, key: &PartitionKey, buf: &Buffer) -> Result<SealedFile> {
        let (day, enterprise) = key;
        let date = chrono::DateTime::from_timestamp_millis(day * DAY_MS)
            .map(|d| d.date_naive().format("%Y-%m-%d").to_string())
            .ok_or_else(|| Error::Config(format!("event day {day} out of range")))?;
        let dir = self
            .root
            .join("readings")
            .join(format!("date={date}"))
            .join(format!("enterprise={enterprise}"));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        self.file_seq += 1;
        let name = format!(
            "part-{}-{}-{:06}.parquet",
            chrono::Utc::now().timestamp_millis(),
            std::process::id(),
            self.file_seq
        );
        let tmp = dir.join(format!(".{name}.tmp"));
        let path = dir.join(&name);

        let batch = self.sorted_batch(buf)?;
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let parquet_err = |source| Error::Parquet {
            path: tmp.clone(),
            source,
        };
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(self.props.clone()))
            .map_err(parquet_err)?;
        writer.write(&batch).map_err(parquet_err)?;
        let file = writer.into_inner().map_err(parquet_err)?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        // Make the rename itself durable.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
        Ok(SealedFile {
            path,
            rows: buf.len(),
            bytes,
        })
    }

    /// The buffer as one Arrow batch sorted by (point name, event time).
    fn sorted_batch(&self, buf: &Buffer) -> Result<RecordBatch> {
        let cat = &self.catalog;
        let mut order: Vec<u32> = (0..buf.len() as u32).collect();
        order.sort_by_key(|&i| {
            let i = i as usize;
            (
                cat.name_rank(buf.point[i]),
                buf.ts[i],
                buf.value[i].to_bits(),
            )
        });
        let metas = || order.iter().map(|&i| cat.meta(buf.point[i as usize]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(metas().map(|m| &*m.id))),
            Arc::new(StringArray::from_iter_values(
                metas().map(|m| &*m.hazard_source),
            )),
            Arc::new(StringArray::from_iter_values(metas().map(|m| &*m.unit))),
            Arc::new(StringArray::from_iter_values(
                metas().map(|m| m.kind.as_str()),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    order.iter().map(|&i| buf.ts[i as usize]),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    order.iter().map(|&i| buf.ingest_ts[i as usize]),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(
                order.iter().map(|&i| buf.value[i as usize]),
            )),
            Arc::new(StringArray::from_iter_values(
                order.iter().map(|&i| buf.quality[i as usize].as_str()),
            )),
            Arc::new(BooleanArray::from_iter(
                order.iter().map(|&i| Some(buf.late[i as usize])),
            )),
        ];
        Ok(RecordBatch::try_new(readings_schema(), columns)?)
    }
}
