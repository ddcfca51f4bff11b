//! `TelemetryService`: the latest value of each point, from memory, and
//! readings over a time range from the archive and the readings not sealed
//! yet, for control-room trend charts.
//!
//! A query's snapshot is taken by the archive thread in one step: the
//! sealed files that can hold the range, opened there and then (a later
//! compaction may delete them; an open file stays readable), and a copy of
//! the matching readings still buffered. No checkpoint can fall between the
//! two, so a reading is in exactly one of them: no gap and no repeat at the
//! seal boundary.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use hazardwatch_proto::pb::telemetry_service_server::TelemetryService;
use hazardwatch_proto::{Catalog, PointIdx, Quality, Reading, pb};
use hazardwatch_storage::reader::{self, Part, Range};
use tokio::sync::{oneshot, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::access::Caller;

/// Most points in one `Latest` call.
pub const MAX_LATEST_POINTS: usize = 10_000;
/// Most points in one `Query` call.
pub const MAX_QUERY_POINTS: usize = 1_000;
/// Most readings one `Query` returns; a wider query is refused with a hint
/// to narrow it.
pub const MAX_QUERY_READINGS: usize = 5_000_000;
/// Readings per streamed page.
const PAGE: usize = 10_000;

/// The latest reading of every point, by event time.
#[derive(Debug, Default)]
pub struct Latest {
    by_point: RwLock<Vec<Option<(i64, f64, Quality)>>>,
}

impl Latest {
    /// Takes a batch's readings (one lock per batch).
    pub fn update(&self, readings: &[Reading]) {
        let mut v = self.by_point.write().unwrap_or_else(|p| p.into_inner());
        for r in readings {
            let i = r.point as usize;
            if v.len() <= i {
                v.resize(i + 1, None);
            }
            if v[i].is_none_or(|(ts, _, _)| r.ts_ms >= ts) {
                v[i] = Some((r.ts_ms, r.value, r.quality));
            }
        }
    }

    fn get(&self, point: PointIdx) -> Option<(i64, f64, Quality)> {
        let v = self.by_point.read().unwrap_or_else(|p| p.into_inner());
        v.get(point as usize).copied().flatten()
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
    pub reply: oneshot::Sender<Result<Taken, String>>,
}

/// What the archive thread took for a query.
pub struct Taken {
    /// Row groups that can hold the range, with their files opened.
    pub parts: Vec<(Part, File)>,
    /// Matching readings not sealed yet.
    pub buffered: Vec<Reading>,
}

/// Takes a snapshot (called on the archive thread, between checkpoints).
pub fn take(writer: &hazardwatch_storage::ArchiveWriter, q: &Snapshot) -> Result<Taken, String> {
    let range = Range {
        from_ms: Some(q.from_ms),
        to_ms: Some(q.to_ms),
        enterprises: q.enterprises.clone(),
        points: None,
    };
    let plan = reader::plan(writer.root(), &range).map_err(|e| e.to_string())?;
    let mut parts = Vec::with_capacity(plan.parts.len());
    for part in plan.parts {
        let file = File::open(&part.path).map_err(|e| format!("{}: {e}", part.path.display()))?;
        parts.push((part, file));
    }
    Ok(Taken {
        parts,
        buffered: writer.buffered(&q.points, q.from_ms, q.to_ms),
    })
}

/// The gRPC service.
pub struct Telemetry {
    latest: Arc<Latest>,
    catalog: watch::Receiver<Arc<Catalog>>,
    snapshots: crossbeam_channel::Sender<Snapshot>,
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
        }
    }

    /// The points, looked up and checked against the caller's scope; a
    /// point unknown or out of scope is NOT_FOUND.
    fn points(
        &self,
        caller: &Caller,
        names: &[String],
        max: usize,
    ) -> Result<Vec<(PointIdx, String)>, Status> {
        if names.is_empty() || names.len() > max {
            return Err(Status::invalid_argument(format!(
                "points: give 1 to {max} point ids"
            )));
        }
        let catalog = self.catalog.borrow().clone();
        names
            .iter()
            .map(|name| {
                catalog
                    .lookup(name)
                    .filter(|&p| caller.scope.allows(&catalog.meta(p).enterprise))
                    .map(|p| (p, catalog.meta(p).enterprise.to_string()))
                    .ok_or_else(|| Status::not_found(format!("no point `{name}` in the site")))
            })
            .collect()
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

type QueryStream = Pin<Box<dyn Stream<Item = Result<pb::QueryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TelemetryService for Telemetry {
    async fn latest(
        &self,
        request: Request<pb::LatestRequest>,
    ) -> Result<Response<pb::LatestResponse>, Status> {
        let caller = Caller::of(&request)?;
        let names = request.into_inner().points;
        let points = self.points(&caller, &names, MAX_LATEST_POINTS)?;
        let readings = points
            .iter()
            .zip(&names)
            .filter_map(|(&(p, _), name)| {
                self.latest.get(p).map(|(ts, v, q)| reading(name, ts, v, q))
            })
            .collect();
        Ok(Response::new(pb::LatestResponse { readings }))
    }

    type QueryStream = QueryStream;

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<QueryStream>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        if req.from_ms >= req.to_ms {
            return Err(Status::invalid_argument("from_ms must be before to_ms"));
        }
        let points = self.points(&caller, &req.points, MAX_QUERY_POINTS)?;
        let mut enterprises: Vec<String> = points.iter().map(|(_, e)| e.clone()).collect();
        enterprises.sort();
        enterprises.dedup();
        let (reply, answer) = oneshot::channel();
        let snapshot = Snapshot {
            points: points.iter().map(|&(p, _)| p).collect(),
            enterprises,
            from_ms: req.from_ms,
            to_ms: req.to_ms,
            reply,
        };
        let stopping = || Status::unavailable("the service is stopping");
        self.snapshots.try_send(snapshot).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => {
                Status::unavailable("too many queries waiting; try again")
            }
            crossbeam_channel::TrySendError::Disconnected(_) => stopping(),
        })?;
        let taken = answer
            .await
            .map_err(|_| stopping())?
            .map_err(|e| Status::internal(format!("reading the archive: {e}")))?;
        let catalog = self.catalog.borrow().clone();
        let wanted: HashMap<String, PointIdx> = points
            .iter()
            .map(|&(p, _)| (catalog.meta(p).id.to_string(), p))
            .collect();
        let range = Range {
            from_ms: Some(req.from_ms),
            to_ms: Some(req.to_ms),
            ..Range::default()
        };
        // Decode on a blocking thread; sort by (point name, time).
        let readings = tokio::task::spawn_blocking({
            let catalog = catalog.clone();
            move || -> Result<Vec<Reading>, Status> {
                let mut out = taken.buffered;
                for (part, file) in taken.parts {
                    let mut too_many = false;
                    reader::read_part_of(file, &part, &range, |name, ts_ms, value, quality, _| {
                        if let Some(&point) = wanted.get(name) {
                            if out.len() >= MAX_QUERY_READINGS {
                                too_many = true;
                                return;
                            }
                            out.push(Reading { point, ts_ms, value, quality });
                        }
                    })
                    .map_err(|e| Status::internal(format!("reading the archive: {e}")))?;
                    if too_many {
                        return Err(Status::resource_exhausted(format!(
                            "more than {MAX_QUERY_READINGS} readings: narrow the range or the points"
                        )));
                    }
                }
                out.sort_by_key(|r| (catalog.name_rank(r.point), r.ts_ms, r.value.to_bits()));
                Ok(out)
            }
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let pages: Vec<Result<pb::QueryResponse, Status>> = readings
            .chunks(PAGE)
            .map(|page| {
                Ok(pb::QueryResponse {
                    readings: page
                        .iter()
                        .map(|r| reading(&catalog.meta(r.point).id, r.ts_ms, r.value, r.quality))
                        .collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(pages))))
    }
}
