//! The timely dataflow that runs the rules, and the handle that feeds it.
//!
//! ```text
//! EngineInput --(one bounded channel per worker)--> unordered input
//!   --exchange by point--> point rules (limits, sensor fault, stale,
//!       flatline, rate of change, predicted limit: one operator)
//!   --exchange by unit--> unit rules (voting, correlation)
//!   point + unit events --> unit state (suppression by design)
//!   --exchange by console--> console rules (flood, chattering)
//!   all events --exchange to worker 0--> gather: the epochs complete,
//!       in order, each sorted --> sink (one call for all of them)
//! ```
//!
//! Every stage judges an epoch by the rules the [`RuleBook`] has in force
//! at it; [`EngineInput::reload`] adds a new rule set at the watermark.
//!
//! The feeder decides lateness: it keeps the watermark (the event time up to
//! which input is complete), routes each reading to its worker, and turns
//! away readings older than the watermark's epoch (they are late: the caller
//! archives them flagged, they never reach the rules). Advancing the
//! watermark downgrades every worker's input capability, which is what
//! lets the rules' timers fire. Live, the caller advances it on a steady tick
//! to wall clock minus lateness; in replay it follows the data.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded};
use hazardwatch_proto::{Reading, RuleEvent};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::{Concatenate, UnorderedInput};
use timely::dataflow::operators::generic::Operator;

use crate::error::{Error, Result};

mod config;
mod resume;
use crate::operators::event_time::{EachEvent, EndOfInput, Epochs, Routed, point_hash, worker_of};
use crate::operators::ordering::SplitRoom;
use crate::operators::per_key::{PerKey, Routing};
use crate::operators::unit_state::mark_suppressed;
use crate::operators::{
    Chattering, Correlation, Deviation, Fault, Flatline, Flood, GatewayOffline, Multivariate,
    Predict, Rare, RateOfChange, Stale, Threshold, Voting,
};
use crate::rule_set::{RuleBook, RuleSet};
use crate::site::SiteModel;
pub use config::{EngineConfig, WatermarkPolicy};
pub use resume::Resume;

/// Messages waiting for one worker. Each carries a batch, so this bounds
/// memory at about `WORKER_QUEUE_BATCHES` x batch size per worker; a full
/// queue blocks the feeder, which stops acknowledging MQTT.
pub const WORKER_QUEUE_BATCHES: usize = 64;

/// The most readings in one message to a worker: a larger send (a replay's
/// minute) goes in several, so the queue holds at most this many times
/// [`WORKER_QUEUE_BATCHES`] readings per worker.
pub const WORKER_BATCH_MAX: usize = 16 * 1024;

/// A worker stops taking messages and runs its dataflow once it has given
/// it this many readings, so what waits inside the dataflow stays bounded
/// too.
const WORKER_TAKE_MAX: usize = 4 * WORKER_BATCH_MAX;

/// How long an idle worker parks before looking at its queue again (the
/// feeder also unparks it after every message).
const IDLE_PARK: Duration = Duration::from_millis(100);

enum WorkerMsg {
    Readings(Vec<Reading>),
    Advance(u64),
    /// The input ends at this watermark (Unix ms).
    Finish(i64),
}

/// Where the engine delivers events: called on worker 0 once per completed
/// epoch that has events, sorted by [`RuleEvent::order_key`].
pub type EventSink = Arc<dyn Fn(Vec<RuleEvent>) + Send + Sync>;

/// A sink that keeps every event in order: for replay, what-if runs and
/// tests.
#[derive(Clone, Default)]
pub struct Collector(Arc<std::sync::Mutex<Vec<RuleEvent>>>);

impl Collector {
    /// A new, empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sink to give [`Engine::start`].
    pub fn sink(&self) -> EventSink {
        let events = self.0.clone();
        Arc::new(move |mut batch: Vec<RuleEvent>| {
            // The data stays consistent event by event even if a holder
            // panicked, so keep collecting.
            events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(&mut batch);
        })
    }

    /// Everything collected so far (and empties the collector).
    pub fn take(&self) -> Vec<RuleEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs the rules of `model` over a finite history, to event time
/// `end_ms` (readings and timers before it; nothing at or after it is
/// known), and returns every event in the order the engine delivers them.
/// The batches may hold readings in any order (the rules still see each
/// point's readings in event-time order); they are fed in turn with the
/// watermark held back, so none is late. For what-if runs over a short
/// history, tests and examples; a live feed drives [`Engine::start`]'s
/// [`EngineInput`] instead.
///
/// Readings before 1970 are an error: no epoch holds them.
pub fn evaluate<B: AsRef<[Reading]>>(
    model: &SiteModel,
    config: &EngineConfig,
    batches: impl IntoIterator<Item = B>,
    end_ms: i64,
) -> Result<Vec<RuleEvent>> {
    let batches: Vec<B> = batches.into_iter().collect();
    if let Some(r) = batches
        .iter()
        .flat_map(|b| b.as_ref())
        .find(|r| r.ts_ms < 0)
    {
        return Err(Error::Engine(format!(
            "reading of point {} at {} ms is before 1970",
            r.point, r.ts_ms
        )));
    }
    let events = Collector::new();
    let mut engine = Engine::start(model, config, events.sink())?;
    let mut late = Vec::new();
    for batch in &batches {
        engine.input().send(batch.as_ref(), &mut late);
    }
    engine.input().advance_to(end_ms);
    engine.finish()?;
    Ok(events.take())
}

/// A running rule engine.
pub struct Engine {
    input: EngineInput,
    guards: timely::communication::WorkerGuards<()>,
    progress: Progress,
    replay_from_ms: Option<i64>,
}

/// How far the rules have judged: every event time before
/// [`Progress::judged_before_ms`] has been through every rule and its
/// alarm events handed to the sink. A cheap handle for other threads (a
/// readiness check compares it with the clock).
#[derive(Debug, Clone)]
pub struct Progress {
    /// The output frontier: every epoch before it is complete.
    frontier: Arc<AtomicU64>,
    epochs: Epochs,
}

impl Progress {
    /// Event time before which everything is judged, Unix ms.
    pub fn judged_before_ms(&self) -> i64 {
        self.epochs.start(self.frontier.load(Ordering::Acquire))
    }
}

/// The feeding side of the engine (see the module docs).
pub struct EngineInput {
    book: RuleBook,
    senders: Vec<Sender<WorkerMsg>>,
    threads: Vec<Thread>,
    epochs: Epochs,
    lateness_ms: i64,
    /// Event time up to which input is complete; starts at 0.
    watermark_ms: i64,
    late_total: u64,
    /// Readings waiting for each of this process's workers.
    per_worker: Vec<Vec<Reading>>,
    /// Workers in all processes.
    peers: usize,
}

impl Engine {
    /// Starts the workers on the site model's rules.
    pub fn start(model: &SiteModel, config: &EngineConfig, sink: EventSink) -> Result<Engine> {
        Engine::start_from(model, config, sink, Resume::default())
    }

    /// Starts the workers where the service stopped (see [`Resume`]): each
    /// rule starts from the conditions active then and clears them when
    /// they end.
    pub fn start_from(
        model: &SiteModel,
        config: &EngineConfig,
        sink: EventSink,
        resume: Resume,
    ) -> Result<Engine> {
        let brought = Arc::new(resume.brought());
        let replay_from = Arc::new(std::sync::Mutex::new(None));
        config.validate()?;
        let workers = config.worker_count();
        let epochs = Epochs {
            epoch_ms: config.epoch_ms as i64,
        };
        let book = RuleBook::new(RuleSet::from_model(model));
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| bounded(WORKER_QUEUE_BATCHES)).unzip();
        let receivers: Arc<Vec<Receiver<WorkerMsg>>> = Arc::new(receivers);
        let (thread_tx, thread_rx) = std::sync::mpsc::channel::<(usize, Thread)>();
        let thread_tx = std::sync::Mutex::new(thread_tx);
        let timely_config = config.timely();
        // Worker indices are global across a cluster; this process's are
        // `first..first + workers`.
        let first = config.process * workers;
        let worker_book = book.clone();
        let frontier = Arc::new(AtomicU64::new(0));
        let progress = Progress {
            frontier: frontier.clone(),
            epochs,
        };
        let gathered_from = replay_from.clone();
        // Every worker is in this process: `EngineInput::send` gives each
        // reading to the worker its point belongs to, so the points' rules
        // take them where they are.
        let points_routing = if config.cluster.len() <= 1 {
            Routing::InPlace
        } else {
            Routing::ByKey
        };
        let guards = timely::execute(timely_config, move |worker| {
            let index = worker.index();
            let local = index - first;
            let rx = receivers[local].clone();
            let (restore, from) = resume::sorted(resume::bootstrap(
                worker,
                if local == 0 {
                    brought.to_vec()
                } else {
                    Vec::new()
                },
            ));
            if index == 0 {
                *gathered_from.lock().unwrap_or_else(|p| p.into_inner()) = from;
            }
            let end: EndOfInput = Rc::new(Cell::new(None));
            let sink = sink.clone();
            let book = worker_book.clone();
            let judged = frontier.clone();
            let (mut handle, cap) = worker.dataflow::<u64, _, _>(|scope| {
                let ((handle, cap), readings) =
                    scope.new_unordered_input::<CapacityContainerBuilder<Vec<Reading>>>();
                // Every rule runs, whether or not the current model uses it,
                // so that a reloaded model can: a rule with nothing
                // configured for a key returns at once.
                let point_rules: PointLogic = (
                    Threshold,
                    (
                        Fault,
                        (
                            Stale,
                            Rare {
                                logic: (Flatline, (RateOfChange, (Predict, Deviation))),
                                configured: |rules, point| {
                                    rules.point(point).is_some_and(|r| {
                                        r.flatline.is_some()
                                            || r.roc.is_some()
                                            || r.predict.is_some()
                                            || r.deviation.is_some()
                                    })
                                },
                            },
                        ),
                    ),
                );
                let gateway_events =
                    crate::operators::gateway::beats(readings.clone(), book.clone()).per_key(
                        Routing::ByKey,
                        epochs,
                        GatewayOffline,
                        book.clone(),
                        Some(end.clone()),
                        &restore[3],
                    );
                let point_events = readings.clone().per_key(
                    points_routing,
                    epochs,
                    point_rules,
                    book.clone(),
                    Some(end.clone()),
                    &restore[0],
                );
                let unit_events = point_events
                    .clone()
                    .each_event("ToUnit", book.clone(), |rules, e| {
                        let unit = rules.unit_of(e.source)?;
                        let u = rules.unit(unit)?;
                        (u.voting.is_some() || u.correlation.is_some()).then_some(Routed {
                            key: unit,
                            event: *e,
                        })
                    })
                    .per_key(
                        Routing::ByKey,
                        epochs,
                        (Voting, Correlation),
                        book.clone(),
                        Some(end.clone()),
                        &restore[1],
                    );
                let model_events = readings
                    .clone()
                    .each_event(
                        "ToUnitModel",
                        book.clone(),
                        crate::operators::multivariate::routed,
                    )
                    .per_key(
                        Routing::ByKey,
                        epochs,
                        Multivariate,
                        book.clone(),
                        Some(end.clone()),
                        &restore[1],
                    );
                let marked = scope.concatenate([
                    mark_suppressed(
                        scope.concatenate([point_events, unit_events, model_events]),
                        book.clone(),
                    ),
                    gateway_events,
                ]);
                let console_events = marked
                    .clone()
                    .each_event("ToConsole", book.clone(), |rules, e| {
                        Some(Routed {
                            key: rules.console_of(e.source)?,
                            event: *e,
                        })
                    })
                    .per_key(
                        Routing::ByKey,
                        epochs,
                        (Flood, Chattering),
                        book.clone(),
                        Some(end.clone()),
                        &restore[2],
                    );
                let events = vec![marked, console_events];
                scope
                    .concatenate(events)
                    .sink(Exchange::new(|_: &RuleEvent| 0), "Gather", {
                        let mut stash: BTreeMap<u64, Vec<RuleEvent>> = BTreeMap::new();
                        move |(input, frontier)| {
                            input.for_each(|cap, data| {
                                if let Some(&time) = cap.least() {
                                    stash.entry(time).or_default().append(data);
                                }
                            });
                            // Every epoch complete by now, in order, each
                            // sorted: one call, so one journal commit (a
                            // group commit) however small the epochs.
                            let mut done: Vec<RuleEvent> = Vec::new();
                            while let Some(entry) = stash.first_entry() {
                                if frontier.less_equal(entry.key()) {
                                    break;
                                }
                                let mut events = entry.remove();
                                events.sort_by_key(RuleEvent::order_key);
                                done.append(&mut events);
                            }
                            if !done.is_empty() {
                                sink(done);
                            }
                            // Worker 0 gathers the events; every worker's
                            // frontier here is the cluster's progress, and
                            // each process's first worker reports it for its
                            // process (a member's readiness follows it too).
                            if index == first
                                && let Some(&done) = frontier.frontier().first()
                            {
                                judged.fetch_max(done, Ordering::Release);
                            }
                        }
                    });
                (handle, cap)
            });
            if let Ok(tx) = thread_tx.lock() {
                // The engine waits for every worker's thread handle; a send
                // can only fail if it gave up already.
                let _ = tx.send((local, std::thread::current()));
            }
            let mut cap = Some(cap);
            let (mut room, mut runs) = (SplitRoom::default(), Vec::new());
            loop {
                let mut taken = 0;
                while taken < WORKER_TAKE_MAX {
                    match rx.try_recv() {
                        Ok(WorkerMsg::Readings(batch)) => {
                            let Some(c) = cap.as_ref() else { continue };
                            taken += batch.len();
                            // Each epoch's run under its capability, as a
                            // container: not copied again.
                            epochs.split(batch, &mut room, &mut runs);
                            for (e, mut run) in runs.drain(..) {
                                let at = c.delayed(&e.max(*c.time()));
                                handle.activate().session(&at).give_container(&mut run);
                            }
                        }
                        Ok(WorkerMsg::Advance(e)) => {
                            if let Some(c) = cap.as_mut()
                                && e > *c.time()
                            {
                                c.downgrade(&e);
                            }
                        }
                        Ok(WorkerMsg::Finish(last)) => {
                            end.set(Some(last));
                            cap = None;
                            break;
                        }
                        Err(TryRecvError::Disconnected) => {
                            // The feeder went away without finishing: end at
                            // what the input had reached.
                            end.set(cap.as_ref().map(|c| epochs.end(*c.time())));
                            cap = None;
                            break;
                        }
                        Err(TryRecvError::Empty) => break,
                    }
                }
                if cap.is_none() {
                    while worker.step_or_park(None) {}
                    return;
                }
                worker.step_or_park(Some(IDLE_PARK));
            }
        })
        .map_err(Error::Engine)?;
        let mut threads: Vec<Option<Thread>> = vec![None; workers];
        for _ in 0..workers {
            let (i, t) = thread_rx
                .recv()
                .map_err(|_| Error::Engine("a worker died while starting".into()))?;
            threads[i] = Some(t);
        }
        let threads = threads.into_iter().flatten().collect();
        Ok(Engine {
            input: EngineInput {
                book,
                senders,
                threads,
                epochs,
                lateness_ms: config.lateness_ms as i64,
                watermark_ms: 0,
                late_total: 0,
                per_worker: vec![Vec::new(); workers],
                peers: workers * config.cluster.len().max(1),
            },
            guards,
            progress,
            replay_from_ms: *replay_from.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }

    /// On process 0: the earliest event time from which any process of the
    /// cluster (this one alone if it is not in one) judges its write-ahead
    /// log again, as [`Resume::replay_from_ms`] brought it. The alarm hub
    /// guards its alarms from there (`AlarmHub::guard_replay`).
    pub fn replay_from_ms(&self) -> Option<i64> {
        self.replay_from_ms
    }

    /// True once a worker of this process has stopped while the input goes
    /// on: it panicked, or lost its link to another process of the cluster
    /// (timely does not reconnect). The rules judge nothing more; the
    /// caller stops, and a cluster starts again together.
    pub fn failed(&self) -> bool {
        self.guards.guards().iter().any(|g| g.is_finished())
    }

    /// A handle on how far the rules have judged.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// The feeding handle.
    pub fn input(&mut self) -> &mut EngineInput {
        &mut self.input
    }

    /// Ends the input at the current watermark and waits until every event
    /// up to it has reached the sink. Timers beyond the watermark do not
    /// fire.
    pub fn finish(mut self) -> Result<u64> {
        self.input.finish();
        let late = self.input.late_total;
        drop(self.input);
        for r in self.guards.join() {
            r.map_err(Error::Engine)?;
        }
        Ok(late)
    }
}

impl EngineInput {
    /// The configured lateness, ms.
    pub fn lateness_ms(&self) -> i64 {
        self.lateness_ms
    }

    /// The current watermark, ms.
    pub fn watermark_ms(&self) -> i64 {
        self.watermark_ms
    }

    /// Readings turned away as late so far.
    pub fn late_total(&self) -> u64 {
        self.late_total
    }

    /// True when a reading is too late for the rules: its epoch is complete.
    pub fn is_late(&self, r: &Reading) -> bool {
        Self::late_before(r, self.open_from())
    }

    /// The first millisecond of the watermark's epoch, the first one still
    /// open.
    fn open_from(&self) -> i64 {
        self.epochs.start(self.epochs.of(self.watermark_ms))
    }

    /// Whether `r` falls in an epoch before the one starting at
    /// `open_from` (times before 1970 are in epoch 0).
    fn late_before(r: &Reading, open_from: i64) -> bool {
        r.ts_ms.max(0) < open_from
    }

    /// Sends the readings that are not late to their workers and sets
    /// `late[i]` for each reading (cleared first). Blocks while a worker's
    /// queue is full.
    pub fn send(&mut self, readings: &[Reading], late: &mut Vec<bool>) {
        late.clear();
        late.reserve(readings.len());
        let local = self.senders.len();
        // `is_late` for every reading, without a division per reading.
        let open_from = self.open_from();
        for r in readings {
            let is_late = Self::late_before(r, open_from);
            late.push(is_late);
            if is_late {
                self.late_total += 1;
                continue;
            }
            // The same choice as the exchange after the input, which then
            // moves nothing; in a cluster, a point of another process's goes
            // to a worker here, and the exchange takes it there.
            let owner = worker_of(point_hash(r.point), self.peers) % local;
            let batch = &mut self.per_worker[owner];
            if batch.capacity() == 0 {
                batch.reserve(readings.len().min(WORKER_BATCH_MAX));
            }
            batch.push(*r);
            if batch.len() >= WORKER_BATCH_MAX {
                let batch = std::mem::take(batch);
                self.deliver(owner, WorkerMsg::Readings(batch));
            }
        }
        for w in 0..local {
            if !self.per_worker[w].is_empty() {
                let batch = std::mem::take(&mut self.per_worker[w]);
                self.deliver(w, WorkerMsg::Readings(batch));
            }
        }
    }

    /// Makes a new site model's rules apply from the watermark's epoch on:
    /// readings before it were judged by the old rules, readings from it on
    /// are judged by the new. Per-point and per-unit state carries over (a
    /// point whose limit moved is judged against the new limit at its next
    /// reading; a limit that was removed returns to normal then), so
    /// unchanged points keep their alarms exactly.
    ///
    /// The model must extend the one the engine started with: points and
    /// units keep their indices (a [`hazardwatch_proto::Catalog`] never
    /// reuses one), new ones are appended.
    pub fn reload(&mut self, model: &SiteModel) {
        self.book.publish(
            self.epochs.of(self.watermark_ms),
            RuleSet::from_model(model),
        );
    }

    /// Moves the watermark forward to `watermark_ms` (never back); workers'
    /// timers up to it fire.
    pub fn advance_to(&mut self, watermark_ms: i64) {
        if watermark_ms <= self.watermark_ms {
            return;
        }
        let before = self.epochs.of(self.watermark_ms);
        self.watermark_ms = watermark_ms;
        let now = self.epochs.of(watermark_ms);
        if now > before {
            for w in 0..self.senders.len() {
                self.deliver(w, WorkerMsg::Advance(now));
            }
        }
    }

    fn finish(&mut self) {
        for w in 0..self.senders.len() {
            self.deliver(w, WorkerMsg::Finish(self.watermark_ms));
        }
    }

    fn deliver(&self, worker: usize, msg: WorkerMsg) {
        // A send fails only if the worker has exited, which happens after
        // Finish or a panic; either way there is nobody left to give it to.
        let _ = self.senders[worker].send(msg);
        self.threads[worker].unpark();
    }
}

/// Every rule over a point's readings, as one operator with one state per
/// point.
type PointLogic = (
    Threshold,
    (
        Fault,
        (
            Stale,
            Rare<(Flatline, (RateOfChange, (Predict, Deviation)))>,
        ),
    ),
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::KeyedLogic;

    #[test]
    fn a_points_rule_state_is_small() {
        // Held for every point on its worker: the largest part of a point's
        // memory (the limits' 48 bytes, the stale rule's 32, the fault
        // rule's flag, a pointer for the rules few points configure).
        let size = std::mem::size_of::<<PointLogic as KeyedLogic>::State>();
        assert!(size <= 96, "{size} bytes");
    }

    #[test]
    fn a_cluster_names_its_processes_and_this_one() {
        let config = |cluster: &[&str], process| EngineConfig {
            cluster: cluster.iter().map(|a| a.to_string()).collect(),
            process,
            workers: 2,
            ..EngineConfig::default()
        };
        let private = |c: EngineConfig| EngineConfig {
            cluster_private_network: true,
            ..c
        };
        let wide = ["10.0.0.1:2101", "10.0.0.2:2101"];
        let local = ["127.0.0.1:2101", "[::1]:2102", "localhost:2103"];
        assert!(config(&[], 0).validate().is_ok());
        assert!(config(&local, 2).validate().is_ok());
        assert!(private(config(&wide, 1)).validate().is_ok());
        let err = |c: EngineConfig| c.validate().map_err(|e| e.to_string()).unwrap_err();
        assert!(err(config(&wide, 1)).contains("`10.0.0.1:2101` is not loopback"));
        assert!(err(private(config(&wide, 2))).contains("engine.process"));
        assert!(err(private(config(&["10.0.0.1"], 0))).contains("`10.0.0.1` is not host:port"));
        assert!(err(config(&[], 1)).contains("engine.process"));
        let cores = EngineConfig {
            workers: 0,
            ..config(&local, 0)
        };
        assert!(err(cores).contains("engine.workers"));
    }
}
