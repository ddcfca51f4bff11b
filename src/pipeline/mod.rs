//! The pipeline between MQTT and the rules: its stages and the messages
//! they share.
//!
//! ```text
//! ingest --Delivery--> wal_stage (log, sync, then ack)
//!          --FeedMsg--> feeder thread (event time, the engine's input)
//!                         \--ArchiveMsg--> archiver thread (Parquet)
//! ```
//!
//! - [`wal_stage`]: every checked MQTT message is logged and synced
//!   before it is sent on and acknowledged.
//! - [`feeder`]: owns the rule engine's input; advances event time with
//!   the clock; hands every reading to the archiver.
//! - [`archiver`]: appends, seals at checkpoints, compacts, expires, and
//!   answers telemetry queries from what it buffers; fed through an
//!   [`archive_queue`] that holds a checkpoint's worth of readings, so a
//!   checkpoint never holds the rules back.
//! - [`backfill`]: judges the readings that came later than the lateness
//!   bound, by the same rules, as episodes.
//! - [`watermark`]: how far live event time may advance, learned from how
//!   each gateway's readings arrive.
//!
//! The stages know the rule engine, the storage and the alarm hub (the
//! archiver archives journaled alarm events); nothing here knows the gRPC
//! edge or the service that wires them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hazardwatch_ingest::IngestBatch;
use hazardwatch_proto::{Catalog, PointIdx, Reading};
use hazardwatch_rules::SiteModel;

pub mod archive_queue;
pub mod archiver;
pub mod backfill;
pub mod feeder;
pub mod wal_stage;
pub mod watermark;

/// Deliveries between ingest and the write-ahead stage.
pub const INGEST_QUEUE: usize = 256;
/// Messages into the feeder thread.
pub const FEEDER_QUEUE: usize = 256;
/// How often live event time advances.
pub const TICK: Duration = Duration::from_millis(100);

/// Counters of one service instance's pipeline (also exported as
/// Prometheus metrics), shared by its stages.
#[derive(Debug, Default)]
pub struct Counters {
    /// Readings accepted from MQTT.
    pub readings_in: AtomicU64,
    /// Readings that arrived too late for the rules (archived, flagged).
    pub readings_late: AtomicU64,
    /// Alarm raise transitions.
    pub alarms_raised: AtomicU64,
    /// Readings in sealed Parquet files.
    pub archive_rows: AtomicU64,
    /// Alarm events in sealed Parquet files.
    pub archive_alarm_events: AtomicU64,
    /// Bytes of sealed Parquet files of readings.
    pub archive_bytes: AtomicU64,
    /// Sealed Parquet files of readings.
    pub archive_files: AtomicU64,
    /// Readings of redelivered messages, recognised and not taken twice.
    pub readings_duplicate: AtomicU64,
    /// Readings recovered from the write-ahead log at start.
    pub readings_recovered: AtomicU64,
    /// `expected` markers written (archived rows that are not readings).
    pub markers_expected: AtomicU64,
    /// Late readings judged by the backfill.
    pub readings_backfilled: AtomicU64,
    /// Late readings beyond the backfill horizon: archived, not judged.
    pub readings_not_judged: AtomicU64,
    /// Failed write-ahead log appends.
    pub wal_errors: AtomicU64,
    /// The write-ahead log cannot be written now: nothing is acknowledged.
    pub wal_stalled: AtomicBool,
    /// Failed archive checkpoints (the readings stay in the log).
    pub archive_errors: AtomicU64,
    /// The last archive checkpoint failed (cleared by the next that works).
    pub checkpoint_failing: AtomicBool,
    /// Alarm events deleted from the journal past its retention (the
    /// archive holds them).
    pub journal_pruned: AtomicU64,
}

/// A snapshot of [`Counters`] at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Readings accepted from MQTT.
    pub readings_in: u64,
    /// Late readings.
    pub readings_late: u64,
    /// Alarms raised.
    pub alarms_raised: u64,
    /// Archived rows.
    pub archive_rows: u64,
    /// Archived bytes.
    pub archive_bytes: u64,
    /// Archive files.
    pub archive_files: u64,
    /// Readings of redelivered messages.
    pub readings_duplicate: u64,
    /// Readings recovered from the write-ahead log at start.
    pub readings_recovered: u64,
    /// `expected` markers written.
    pub markers_expected: u64,
}

impl Counters {
    /// The counters now.
    pub fn summary(&self) -> Summary {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Summary {
            readings_in: g(&self.readings_in),
            readings_late: g(&self.readings_late),
            alarms_raised: g(&self.alarms_raised),
            archive_rows: g(&self.archive_rows),
            archive_bytes: g(&self.archive_bytes),
            archive_files: g(&self.archive_files),
            readings_duplicate: g(&self.readings_duplicate),
            readings_recovered: g(&self.readings_recovered),
            markers_expected: g(&self.markers_expected),
        }
    }
}

/// What the feeder thread takes, in order.
pub enum FeedMsg {
    /// Durable readings.
    Batch(IngestBatch),
    /// The wall clock, Unix ms: event time advances to it less the lateness.
    Tick(i64),
    /// A changed site model.
    Reload(Box<SiteModel>),
    /// The write-ahead log started this segment: every reading logged
    /// before it has been sent. The archive checkpoints here.
    Segment(u64),
    /// The service expects these points from `at_ms` on (it started, or a
    /// reload added them): each gets a [`hazardwatch_proto::Quality::Expected`]
    /// marker, judged and archived like a reading but not counted as one,
    /// so a point never heard from goes stale.
    Expect {
        /// The points.
        points: Vec<PointIdx>,
        /// When, Unix ms.
        at_ms: i64,
    },
}

/// The points of `site` that a stale rule watches: the ones to expect.
pub fn watched_points(site: &SiteModel) -> Vec<PointIdx> {
    site.catalog
        .iter()
        .map(|(p, _)| p)
        .filter(|&p| site.catalog.is_live(p) && site.point_rules(p).stale_ms.is_some())
        .collect()
}

/// What the archiver takes, in order with the readings.
pub enum ArchiveMsg {
    /// Readings to archive, with whether each came too late for the rules.
    Rows {
        /// The readings.
        readings: Vec<Reading>,
        /// When their message was received, Unix ms.
        received_ms: i64,
        /// One flag per reading.
        late: Vec<bool>,
    },
    /// Seal what is buffered as covering the log before this segment.
    Checkpoint(u64),
    /// The site catalog changed (a reload).
    Catalog(Arc<Catalog>),
}
