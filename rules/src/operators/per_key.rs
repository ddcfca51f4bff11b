//! The operator that runs a [`KeyedLogic`] over its records in event time
//! (see [`super::event_time`] for the mechanics): records brought to their
//! key's worker, stashed per epoch, and each complete epoch judged in order
//! of key and time, with the key's timers in their place.

use std::collections::{BTreeMap, BTreeSet};

use hazardwatch_proto::{AlarmKind, RuleEvent};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use super::event_time::{EndOfInput, Epochs, KeyedLogic, Scheduled, Timed, worker_of};
use super::tables::{DENSE_KEYS, KeyStates, Timers};
use crate::rule_set::{RuleBook, RuleSet};

/// How a stream's records reach the worker that holds their key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Exchanged by their key's hash ([`Timed::route_key`]).
    ByKey,
    /// Already at the worker their key's exchange would send them to (the
    /// engine's input routes readings so when every worker is in this
    /// process): taken where they are, without the exchange's copy of
    /// every record.
    InPlace,
}

/// Extension trait: run a [`KeyedLogic`] over a stream of its records.
pub trait PerKey<'scope, D: Timed> {
    /// Exchanges records by key and applies `logic` in event-time order,
    /// emitting the rule's events at the epoch they belong to, sorted.
    /// `restore` lists the conditions active when the service last stopped
    /// (see [`KeyedLogic::on_restore`]); `end` is set when the input ends.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Priority, Quality, Reading, RuleEvent};
    /// use hazardwatch_rules::operators::{Epochs, KeyedLogic, PerKey, Routing, Scheduled};
    /// use hazardwatch_rules::rule_set::{RuleBook, RuleSet};
    /// use timely::dataflow::operators::{Inspect, ToStream};
    ///
    /// /// Raises an event at the first reading above 10 of each point.
    /// struct FirstAbove10;
    /// impl KeyedLogic for FirstAbove10 {
    ///     type Input = Reading;
    ///     type State = bool;
    ///     fn on_input(&self, _: &RuleSet, seen: &mut bool, r: &Reading, _: &mut Scheduled, out: &mut Vec<RuleEvent>) {
    ///         if r.value > 10.0 && !*seen {
    ///             *seen = true;
    ///             out.push(RuleEvent::new(AlarmSource::Point(r.point), AlarmKind::High, true,
    ///                 r.ts_ms, r.value, 10.0, Priority::Medium));
    ///         }
    ///     }
    ///     fn on_timer(&self, _: &RuleSet, _: &mut bool, _: PointIdx, _: i64, _: &mut Scheduled, _: &mut Vec<RuleEvent>) {}
    /// }
    /// // Out of order on purpose: the rule still sees 250 ms before 300 ms.
    /// let readings: Vec<Reading> = [(300, 12.0), (100, 5.0), (250, 11.0)]
    ///     .map(|(ts_ms, value)| Reading { point: 7, ts_ms, value, quality: Quality::Good })
    ///     .into();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let out = seen.clone();
    /// timely::example(move |scope| {
    ///     readings.to_stream(scope)
    ///         .per_key(Routing::ByKey, Epochs { epoch_ms: 1000 }, FirstAbove10, RuleBook::new(RuleSet::default()), None, &[])
    ///         .inspect(move |e| out.lock().unwrap().push(e.ts_ms));
    /// });
    /// assert_eq!(*seen.lock().unwrap(), vec![250]);
    /// ```
    fn per_key<L: KeyedLogic<Input = D>>(
        self,
        routing: Routing,
        epochs: Epochs,
        logic: L,
        book: RuleBook,
        end: Option<EndOfInput>,
        restore: &[(D::Key, AlarmKind)],
    ) -> Stream<'scope, u64, Vec<RuleEvent>>;
}

impl<'scope, D: Timed> PerKey<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn per_key<L: KeyedLogic<Input = D>>(
        self,
        routing: Routing,
        epochs: Epochs,
        logic: L,
        book: RuleBook,
        end: Option<EndOfInput>,
        restore: &[(D::Key, AlarmKind)],
    ) -> Stream<'scope, u64, Vec<RuleEvent>> {
        match routing {
            Routing::ByKey => {
                let pact = Exchange::new(|r: &D| D::route_key(r.key()));
                keyed(self, pact, epochs, logic, book, end, restore)
            }
            Routing::InPlace => keyed(self, Pipeline, epochs, logic, book, end, restore),
        }
    }
}

/// [`PerKey::per_key`] with the records brought to their key's worker by
/// `pact`.
fn keyed<'scope, D, L, P>(
    stream: Stream<'scope, u64, Vec<D>>,
    pact: P,
    epochs: Epochs,
    logic: L,
    book: RuleBook,
    end: Option<EndOfInput>,
    restore: &[(D::Key, AlarmKind)],
) -> Stream<'scope, u64, Vec<RuleEvent>>
where
    D: Timed,
    L: KeyedLogic<Input = D>,
    P: ParallelizationContract<u64, Vec<D>>,
{
    let (index, peers) = (stream.scope().index(), stream.scope().peers());
    let mut states: KeyStates<L::State> = KeyStates::default();
    let space = D::key_space(&book.at(0)).min(DENSE_KEYS as usize) as u32;
    let mine = (0..space)
        .filter(|&k| worker_of(D::route_key(k.into()), peers) == index)
        .count();
    states.reserve(space as usize, mine);
    for &(key, kind) in restore {
        if worker_of(D::route_key(key), peers) == index {
            logic.on_restore(states.get_or_default(key.into()), kind);
        }
    }
    stream.unary_frontier::<CapacityContainerBuilder<Vec<RuleEvent>>, _, _, _>(
        pact,
        "PerKey",
        move |initial, _info| {
            let mut stash: BTreeMap<u64, (Capability<u64>, Vec<D>)> = BTreeMap::new();
            let mut timers: Timers<D::Key> = Timers::new(epochs);
            // A capability at the input frontier (as of the last
            // activation): timers and rule changes need no record to
            // send their events at the epoch they belong to.
            let mut held: Option<Capability<u64>> = Some(initial);
            // The epoch from which the rules last used apply.
            let mut edition_from = 0u64;
            let mut events: Vec<RuleEvent> = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let slot = match stash.entry(time) {
                        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => {
                            let Some(c) = cap.retain_least(output.output_index()) else {
                                return;
                            };
                            v.insert((c, Vec::new()))
                        }
                    };
                    for batch in data {
                        if slot.1.is_empty() {
                            // The first container of an epoch is taken
                            // as it is.
                            std::mem::swap(&mut slot.1, batch);
                        } else {
                            slot.1.append(batch);
                        }
                    }
                });
                let limit = if frontier.is_empty() {
                    end.as_ref().and_then(|e| e.get())
                } else {
                    None
                };
                loop {
                    let next_data = stash.keys().next().copied();
                    let next_timer = timers.next_epoch();
                    let next_rules = book.next_edition(edition_from);
                    let Some(epoch) = [next_data, next_timer, next_rules]
                        .into_iter()
                        .flatten()
                        .min()
                    else {
                        break;
                    };
                    if frontier.less_equal(&epoch) {
                        break;
                    }
                    if limit.is_some_and(|l| epoch > epochs.of(l)) {
                        // Input closed: nothing beyond its last epoch is
                        // known. Records stamped beyond it (a gateway
                        // clock ahead of the watermark) are not judged,
                        // and their capabilities go with them.
                        timers.clear();
                        stash.clear();
                        break;
                    }
                    let (cap, mut records) = match stash.remove(&epoch) {
                        Some((c, r)) => (c, r),
                        None => match &held {
                            Some(h) => (h.delayed(&epoch), Vec::new()),
                            // The input frontier was at or before the
                            // epoch at the last activation.
                            None => unreachable!("no capability held for epoch {epoch}"),
                        },
                    };
                    let (from, rules) = book.edition(epoch);
                    if from != edition_from {
                        // A reload takes effect at this epoch (the first
                        // one of the new rules, handled before any of
                        // their records or timers): every key's
                        // leftovers end where the new rules begin.
                        edition_from = from;
                        states.for_each(|key, state| {
                            logic.on_rules_changed(
                                &rules,
                                state,
                                key.into(),
                                epochs.start(from),
                                &mut events,
                            );
                        });
                    }
                    // The epoch the input ends in is judged up to
                    // where it ends.
                    let last = limit.filter(|&l| epoch == epochs.of(l));
                    let until = match last {
                        Some(l) => {
                            records.retain(|r| r.ts_ms() < l);
                            l.min(epochs.end(epoch))
                        }
                        None => epochs.end(epoch),
                    };
                    run_epoch(
                        &logic,
                        &rules,
                        until,
                        &mut records,
                        &mut states,
                        &mut timers,
                        &mut events,
                    );
                    if !events.is_empty() {
                        events.sort_by_key(RuleEvent::order_key);
                        output.session(&cap).give_container(&mut events);
                        events.clear();
                    }
                    if last.is_some() {
                        // Whatever is left is beyond the end.
                        timers.clear();
                        stash.clear();
                        break;
                    }
                }
                match frontier.frontier().iter().min() {
                    Some(t) => {
                        if let Some(h) = &mut held {
                            h.downgrade(t);
                        }
                    }
                    None => held = None,
                }
            }
        },
    )
}

/// Runs one complete epoch: each key's records in time order, with its
/// timers due before `epoch_end` (the epoch's end, or where the input
/// ended in it) fired in their place (a timer fires before a record of the
/// same millisecond).
fn run_epoch<L: KeyedLogic>(
    logic: &L,
    rules: &RuleSet,
    epoch_end: i64,
    records: &mut [L::Input],
    states: &mut KeyStates<L::State>,
    timers: &mut Timers<<L::Input as Timed>::Key>,
    events: &mut Vec<RuleEvent>,
) {
    Timed::sort(records);
    // Timers due in this epoch, per key.
    let mut due: BTreeMap<<L::Input as Timed>::Key, BTreeSet<i64>> = BTreeMap::new();
    // (Timers of the input's last epoch at or after its end are beyond
    // what is known: they do not fire.)
    timers.take_before(epoch_end, |t, p| {
        if t < epoch_end {
            due.entry(p).or_default().insert(t);
        }
    });
    let mut scheduled = Scheduled::default();
    let mut i = 0;
    while i < records.len() || !due.is_empty() {
        // The next key to handle: the smaller of the next record's key and
        // the first key with a due timer.
        let p_read = records.get(i).map(|r| r.key());
        let p_due = due.keys().next().copied();
        let point = match (p_read, p_due) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let mut mine = due.remove(&point).unwrap_or_default();
        let state = states.get_or_default(point.into());
        loop {
            let next_record = records.get(i).filter(|r| r.key() == point);
            let next_due = mine.first().copied();
            match (next_record, next_due) {
                (Some(r), Some(t)) if t <= r.ts_ms() => {
                    mine.pop_first();
                    logic.on_timer(rules, state, point, t, &mut scheduled, events);
                }
                (Some(r), _) => {
                    i += 1;
                    logic.on_input(rules, state, r, &mut scheduled, events);
                }
                (None, Some(t)) => {
                    mine.pop_first();
                    logic.on_timer(rules, state, point, t, &mut scheduled, events);
                }
                (None, None) => break,
            }
            for t in scheduled.dues.drain(..) {
                if t < epoch_end {
                    mine.insert(t);
                } else {
                    timers.insert(t, point);
                }
            }
        }
    }
}
