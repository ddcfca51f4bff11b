//! Telemetry queries: the latest value of each point, from memory, and
//! readings over a time range from the archive and the readings not sealed
//! yet, for control-room trend charts. The gRPC `TelemetryService` in
//! [`crate::grpc`] is one edge over [`Telemetry`]; any other edge asks the
//! same methods.
//!
//! A query's snapshot is taken by the archive thread in one step: the
//! sealed files that can hold the range, opened there and then (a later
//! compaction may delete them; an open file stays readable), and a copy of
//! the matching readings still buffered. No checkpoint can fall between the
//! two, so a reading is in exactly one of them: no gap and no repeat at the
//! seal boundary. That step only lists directories and opens files: the
//! archive thread feeds the rule engine's input (through the feeder's
//! checkpoints), so reading footers, decoding and sorting happen on a
//! blocking thread of the query's own.
//!
//! Bounds: at most [`MAX_CONCURRENT_QUERIES`] queries at once (more are
//! refused as busy), each over at most [`MAX_QUERY_FILES`] sealed files and
//! [`MAX_QUERY_READINGS`] readings held compactly (24 bytes each); the
//! answer becomes wire messages one page at a time, as the client takes
//! them.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use hazardwatch_alarms::Caller;
use hazardwatch_proto::{Catalog, PointIdx, Quality, Reading, pb};
use hazardwatch_storage::reader::{self, Range};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

mod decimate;

/// Most points in one `Latest` call.
pub const MAX_LATEST_POINTS: usize = 10_000;
/// Most points in one `Query` call.
pub const MAX_QUERY_POINTS: usize = 1_000;
/// Most readings one `Query` returns; a wider query is refused with a hint
/// to narrow it.
pub const MAX_QUERY_READINGS: usize = 5_000_000;
/// Most `Query` calls answered at once (each may hold up to
/// [`MAX_QUERY_READINGS`] readings, 120 MB, until its client has them).
pub const MAX_CONCURRENT_QUERIES: usize = 4;
/// Most sealed files one query opens (a day and enterprise partition holds
/// one after compaction, a few before).
pub const MAX_QUERY_FILES: usize = 512;
/// Readings per page of an answer.
pub const PAGE: usize = 10_000;

/// Why a telemetry query was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request is malformed (`INVALID_ARGUMENT`).
    #[error("{0}")]
    InvalidArgument(String),
    /// A point that is unknown, or outside the caller's scope (`NOT_FOUND`).
    #[error("no point `{0}` in the site")]
    NoPoint(String),
    /// More readings than one query may return (`RESOURCE_EXHAUSTED`).
    #[error("more than {MAX_QUERY_READINGS} readings: narrow the range or the points")]
    TooMany,
    /// The range spans more sealed files than one query may open
    /// (`RESOURCE_EXHAUSTED`).
    #[error("the range spans {0} archive files, more than {MAX_QUERY_FILES}: narrow it")]
    TooWide(usize),
    /// Too many queries run already (`UNAVAILABLE`).
    #[error("too many queries at once; try again")]
    Busy,
    /// The service is stopping (`UNAVAILABLE`).
    #[error("the service is stopping")]
    Stopping,
    /// A sealed file could not be listed, opened or read (`INTERNAL`).
    #[error("reading the archive: {0}")]
    Archive(String),
}

impl From<hazardwatch_storage::Error> for QueryError {
    fn from(e: hazardwatch_storage::Error) -> Self {
        QueryError::Archive(e.to_string())
    }
}

/// The latest reading of every point, by event time.
#[derive(Debug, Default)]
pub struct Latest {
    by_point: RwLock<LatestTable>,
}

/// [`Latest`]'s columns: (time, value) and quality by point, 17 bytes a
/// point rather than an `Option` of all three's 24.
#[derive(Debug, Default)]
struct LatestTable {
    /// Time and value; time [`NO_READING`]: none yet.
    reading: Vec<(i64, f64)>,
    quality: Vec<Quality>,
}

/// See [`LatestTable::reading`] (no reading is stamped at the start of
/// time).
const NO_READING: i64 = i64::MIN;

impl Latest {
    /// A table sized for `points` points (it grows for points added by a
    /// reload), without the spare capacity of growing reading by reading.
    pub fn for_points(points: usize) -> Latest {
        Latest {
            by_point: RwLock::new(LatestTable {
                reading: vec![(NO_READING, 0.0); points],
                quality: vec![Quality::Good; points],
            }),
        }
    }

    /// Takes a batch's readings (one lock per batch).
    pub fn update(&self, readings: &[Reading]) {
        let mut t = self.by_point.write().unwrap_or_else(|p| p.into_inner());
        for r in readings {
            let i = r.point as usize;
            if t.reading.len() <= i {
                t.reading.resize(i + 1, (NO_READING, 0.0));
                t.quality.resize(i + 1, Quality::Good);
            }
            if r.ts_ms >= t.reading[i].0 {
                t.reading[i] = (r.ts_ms, r.value);
                t.quality[i] = r.quality;
            }
        }
    }

    fn get(&self, point: PointIdx) -> Option<(i64, f64, Quality)> {
        let t = self.by_point.read().unwrap_or_else(|p| p.into_inner());
        let i = point as usize;
        let &(ts, value) = t.reading.get(i)?;
        (ts != NO_READING).then(|| (ts, value, t.quality[i]))
    }
}

/// A query for the archive thread.
pub struct Snapshot {
    /// Points asked for.
    pub points: HashSet<PointIdx>,
    /// Their enterprises (partitions to look in).
    pub enterprises: Vec<String>,
    /// Event time from (inclusive).
    pub from_ms: i64,
    /// Event time to (exclusive).
    pub to_ms: i64,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Taken, QueryError>>,
}

/// What the archive thread took for a query.
pub struct Taken {
    /// The sealed files that can hold the range, opened.
    pub files: Vec<(PathBuf, File)>,
    /// Matching readings not sealed yet.
    pub buffered: Vec<Reading>,
}

/// Takes a snapshot (called on the archive thread, between checkpoints):
/// lists the partitions the range can touch and opens their files; no
/// footer is read here.
pub fn take(
    writer: &hazardwatch_storage::ArchiveWriter,
    q: &Snapshot,
) -> Result<Taken, QueryError> {
    let range = Range {
        from_ms: Some(q.from_ms),
        to_ms: Some(q.to_ms),
        enterprises: q.enterprises.clone(),
        points: None,
    };
    let found = reader::candidates(writer.root(), &range)?;
    if found.files.len() > MAX_QUERY_FILES {
        return Err(QueryError::TooWide(found.files.len()));
    }
    let mut files = Vec::with_capacity(found.files.len());
    for path in found.files {
        let file = File::open(&path)
            .map_err(|e| QueryError::Archive(format!("{}: {e}", path.display())))?;
        files.push((path, file));
    }
    Ok(Taken {
        files,
        buffered: writer.buffered(&q.points, q.from_ms, q.to_ms),
    })
}

/// The answer to a query: its readings sorted by (point name, time), held
/// compactly and turned into wire readings one page at a time as it is
/// iterated. It holds one of the [`MAX_CONCURRENT_QUERIES`] slots until it
/// is dropped.
pub struct Answer {
    rows: std::vec::IntoIter<Reading>,
    catalog: Arc<Catalog>,
    _slot: OwnedSemaphorePermit,
}

impl Answer {
    /// Readings not yet taken.
    pub fn remaining(&self) -> usize {
        self.rows.len()
    }
}

impl Iterator for Answer {
    type Item = Vec<pb::Reading>;

    /// The next page of at most [`PAGE`] readings.
    fn next(&mut self) -> Option<Vec<pb::Reading>> {
        let page: Vec<pb::Reading> = self
            .rows
            .by_ref()
            .take(PAGE)
            .map(|r| reading(self.catalog.meta(r.point).id, r.ts_ms, r.value, r.quality))
            .collect();
        (!page.is_empty()).then_some(page)
    }
}

/// Telemetry queries over the latest values and the archive.
pub struct Telemetry {
    latest: Arc<Latest>,
    catalog: watch::Receiver<Arc<Catalog>>,
    snapshots: crossbeam_channel::Sender<Snapshot>,
    slots: Arc<Semaphore>,
}

impl Telemetry {
    /// A service over the latest values, the running catalog and the
    /// archive thread's snapshot queue.
    pub fn new(
        latest: Arc<Latest>,
        catalog: watch::Receiver<Arc<Catalog>>,
        snapshots: crossbeam_channel::Sender<Snapshot>,
    ) -> Self {
        Telemetry {
            latest,
            catalog,
            snapshots,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_QUERIES)),
        }
    }

    /// The points, looked up and checked against the caller's scope; a
    /// point unknown or out of scope is not found.
    fn points(
        &self,
        caller: &Caller,
        names: &[String],
        max: usize,
    ) -> Result<Vec<(PointIdx, String)>, QueryError> {
        if names.is_empty() || names.len() > max {
            return Err(QueryError::InvalidArgument(format!(
                "points: give 1 to {max} point ids"
            )));
        }
        let catalog = self.catalog.borrow().clone();
        names
            .iter()
            .map(|name| {
                catalog
                    .lookup(name)
                    .filter(|&p| caller.scope.allows(catalog.meta(p).enterprise))
                    .map(|p| (p, catalog.meta(p).enterprise.to_string()))
                    .ok_or_else(|| QueryError::NoPoint(name.clone()))
            })
            .collect()
    }

    /// The latest reading of each named point that has one.
    pub fn latest_values(
        &self,
        caller: &Caller,
        names: &[String],
    ) -> Result<Vec<pb::Reading>, QueryError> {
        let points = self.points(caller, names, MAX_LATEST_POINTS)?;
        Ok(points
            .iter()
            .zip(names)
            .filter_map(|(&(p, _), name)| {
                self.latest.get(p).map(|(ts, v, q)| reading(name, ts, v, q))
            })
            .collect())
    }

    /// The readings of the named points in `[from_ms, to_ms)`, archived or
    /// not sealed yet, sorted by point name then time (see [`Answer`]);
    /// with `max_points` more than 0, at most about that many per point
    /// (the chart reduction of `decimate`).
    pub async fn query(
        &self,
        caller: &Caller,
        names: &[String],
        (from_ms, to_ms): (i64, i64),
        max_points: usize,
    ) -> Result<Answer, QueryError> {
        if from_ms >= to_ms {
            return Err(QueryError::InvalidArgument(
                "from_ms must be before to_ms".into(),
            ));
        }
        let points = self.points(caller, names, MAX_QUERY_POINTS)?;
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| QueryError::Busy)?;
        let mut enterprises: Vec<String> = points.iter().map(|(_, e)| e.clone()).collect();
        enterprises.sort();
        enterprises.dedup();
        let (reply, answer) = oneshot::channel();
        let snapshot = Snapshot {
            points: points.iter().map(|&(p, _)| p).collect(),
            enterprises,
            from_ms,
            to_ms,
            reply,
        };
        self.snapshots.try_send(snapshot).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => QueryError::Busy,
            crossbeam_channel::TrySendError::Disconnected(_) => QueryError::Stopping,
        })?;
        let taken = answer.await.map_err(|_| QueryError::Stopping)??;
        let catalog = self.catalog.borrow().clone();
        let wanted: HashMap<String, PointIdx> = points
            .iter()
            .map(|&(p, _)| (catalog.meta(p).id.to_string(), p))
            .collect();
        let range = Range {
            from_ms: Some(from_ms),
            to_ms: Some(to_ms),
            ..Range::default()
        };
        // Plan, decode and sort by (point name, time) on a blocking thread.
        tokio::task::spawn_blocking(move || {
            let mut out = taken.buffered;
            for (part, file) in reader::plan_opened(taken.files, &range)? {
                let mut too_many = false;
                let point = |name: &str| wanted.get(name).copied();
                reader::read_part_of(file, &part, &range, point, |r| {
                    if out.len() >= MAX_QUERY_READINGS {
                        too_many = true;
                        return;
                    }
                    out.push(Reading {
                        point: r.key,
                        ts_ms: r.ts_ms,
                        value: r.value,
                        quality: r.quality,
                    });
                })?;
                if too_many {
                    return Err(QueryError::TooMany);
                }
            }
            out.sort_by_key(|r| (catalog.name_rank(r.point), r.ts_ms, r.value.to_bits()));
            let out = decimate::decimate(out, from_ms, to_ms, max_points);
            Ok(Answer {
                rows: out.into_iter(),
                catalog,
                _slot: slot,
            })
        })
        .await
        .map_err(|e| QueryError::Archive(e.to_string()))?
    }
}

fn reading(name: &str, ts_ms: i64, value: f64, quality: Quality) -> pb::Reading {
    pb::Reading {
        point: name.to_owned(),
        ts_ms,
        value,
        quality: pb::Quality::from(quality) as i32,
    }
}
