//! The Parquet archive of readings and the alarm journal.
//!
//! - [`journal`]: [`AlarmJournal`], every alarm event and the alarms that
//!   are not normal, in a crash-safe embedded database.
//! - [`wal`]: the write-ahead log of readings, durable before an MQTT
//!   acknowledgement.
//! - [`archive`]: [`ArchiveWriter`] buffers readings per partition (event
//!   date and enterprise), and at each checkpoint seals each buffer as one
//!   Parquet file sorted by (point, time), zstd-compressed, statistics and
//!   page index on, with the alarm events journaled since; compacts small
//!   files and deletes days past the retention.
//! - [`txn`]: several files written aside and moved into place as one
//!   atomic change, so a reader never sees half a file and a crash never
//!   archives a reading twice.
//! - [`reader`]: reading the archive back with partition and row-group
//!   pruning, for replay and queries.
//! - [`schema`]: the archive's Arrow schema, documented column by column.
//!
//! Layout (Hive partitions, read as is by DuckDB, pyarrow, Polars, Spark):
//! `ROOT/readings/date=YYYY-MM-DD/enterprise=E/part-*.parquet` and
//! `ROOT/alarms/date=YYYY-MM-DD/enterprise=E/part-*.parquet`.
//!
//! ```
//! use std::sync::Arc;
//! use hazardwatch_proto::{Catalog, PointKind, PointMeta, Quality, Reading};
//! use hazardwatch_storage::{ArchiveConfig, ArchiveWriter};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut catalog = Catalog::default();
//! let p = catalog.insert(PointMeta::new("T101.LT", "E01", "HS1", "T101", PointKind::Level, "m"));
//! let (mut w, progress) = ArchiveWriter::open(dir.path(), Arc::new(catalog), ArchiveConfig::default()).unwrap();
//! assert_eq!(progress.wal_segment, 0);
//! let r = Reading { point: p, ts_ms: 1_732_262_400_123, value: 12.5, quality: Quality::Good };
//! w.append(&[r], 1_732_262_400_200, &[false]);
//! // Everything logged before write-ahead log segment 2 is now archived.
//! let sealed = w.checkpoint(2, &[]).unwrap();
//! assert_eq!(w.progress().wal_segment, 2);
//! assert_eq!(sealed[0].rows, 1);
//! assert!(sealed[0].path.to_string_lossy().contains("date=2024-11-22/enterprise=E01/part-"));
//! ```

pub mod archive;
pub mod error;
pub mod journal;
pub mod reader;
pub mod schema;
pub mod txn;
pub mod wal;

pub use archive::{ArchiveConfig, ArchiveWriter, Dataset, SealedFile};
pub use error::{Error, Result};
pub use journal::{
    AlarmJournal, HistoryCursor, HistoryPage, JournalConfig, JournalFaults, NoFaults,
};
pub use txn::Progress;
