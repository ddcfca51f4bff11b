//! Where a service left off, and how every process of a cluster learns it
//! before the rules start: process 0 holds the alarm journal and brings the
//! conditions active when the service stopped; every process brings where
//! its write-ahead log starts.

use std::rc::Rc;

use hazardwatch_proto::{AlarmKind, AlarmSource};
use serde::{Deserialize, Serialize};

/// Where a service left off, for [`Engine::start_from`].
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The alarm conditions active when the service stopped, as its alarm
    /// journal left them. In a cluster, process 0 holds the journal and
    /// brings them; the engine gives each to the worker that owns it,
    /// whichever process that is in.
    pub active: Vec<(AlarmSource, AlarmKind)>,
    /// The event time of the oldest reading this process's write-ahead log
    /// will feed again (none: it holds nothing to judge again).
    pub replay_from_ms: Option<i64>,
}

/// What the processes tell every worker before the rules start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Boot {
    Active(AlarmSource, AlarmKind),
    ReplayFrom(i64),
}

/// Runs a dataflow of its own, to completion, that gives every worker of
/// every process what each worker brought: so process 0's conditions reach
/// the workers that own them in other processes, and process 0 learns
/// where every process's write-ahead log starts. On one process it costs
/// one empty exchange.
pub(super) fn bootstrap(worker: &mut timely::worker::Worker, mut brought: Vec<Boot>) -> Vec<Boot> {
    use timely::dataflow::operators::core::{Input, Inspect, Probe};
    use timely::dataflow::operators::vec::Broadcast;
    let told = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<Vec<Boot>>();
        let told = told.clone();
        let (probe, _) = stream
            .broadcast()
            .inspect(move |b: &Boot| told.borrow_mut().push(b.clone()))
            .probe();
        (input, probe)
    });
    input.send_batch(&mut brought);
    input.close();
    while !probe.done() {
        worker.step();
    }
    told.take()
}

impl Resume {
    /// What this process brings to the start.
    pub(super) fn brought(&self) -> Vec<Boot> {
        self.active
            .iter()
            .map(|&(source, kind)| Boot::Active(source, kind))
            .chain(self.replay_from_ms.map(Boot::ReplayFrom))
            .collect()
    }
}

/// What every worker was told, sorted: the conditions to restore by the
/// stage that judges them (points, units, consoles, gateways), and the
/// earliest point from which any process judges its log again.
pub(super) fn sorted(told: Vec<Boot>) -> ([Vec<(u32, AlarmKind)>; 4], Option<i64>) {
    let mut restore: [Vec<(u32, AlarmKind)>; 4] = Default::default();
    let mut from: Option<i64> = None;
    for b in told {
        match b {
            Boot::Active(source, kind) => {
                let (stage, key) = match source {
                    AlarmSource::Point(p) => (0, p),
                    AlarmSource::Unit(u) => (1, u),
                    AlarmSource::Console(c) => (2, c),
                    AlarmSource::Gateway(g) => (3, g),
                };
                restore[stage].push((key, kind));
            }
            Boot::ReplayFrom(ms) => from = Some(from.map_or(ms, |f| f.min(ms))),
        }
    }
    (restore, from)
}
