//! The event-time mechanics shared by every rule.
//!
//! Timely's own time is a coarse *epoch* (`ts_ms / epoch_ms`); the exact
//! millisecond stays inside each record. Records (readings keyed by point,
//! or rule events keyed by unit or console) are exchanged by key and stashed
//! per epoch. Once the input frontier has passed an epoch, no more records
//! of it can arrive, so the operator sorts that epoch's records by (key,
//! time) and runs them through the rule's per-key state, firing event-time
//! timers (on-delays, stale and flatline checks, window ends) in their place
//! between records. The result therefore depends only on the records, never
//! on their arrival order or the worker count. Each epoch is judged by the
//! rules the [`RuleBook`] has in force at it.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use super::tables::{DENSE_KEYS, KeyStates, Timers};
use std::rc::Rc;

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Priority, Reading, RuleEvent};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use crate::rule_set::{RuleBook, RuleSet};

/// Converts between event-time milliseconds and timely epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    /// Length of one epoch in milliseconds.
    pub epoch_ms: i64,
}

impl Epochs {
    /// The epoch an event time falls in. Times before 1970 map to epoch 0.
    pub fn of(&self, ts_ms: i64) -> u64 {
        (ts_ms.max(0) / self.epoch_ms) as u64
    }

    /// First millisecond of an epoch.
    pub fn start(&self, epoch: u64) -> i64 {
        epoch as i64 * self.epoch_ms
    }

    /// First millisecond after an epoch.
    pub fn end(&self, epoch: u64) -> i64 {
        (epoch as i64 + 1) * self.epoch_ms
    }
}

/// Set by the worker just before it closes its input, to the event time
/// (Unix ms) before which the input is complete, its last watermark:
/// nothing at or beyond it is judged, neither records nor timers, because
/// the end of the input is the end of what is known, not a silence of the
/// sensors. Exact to the millisecond, so that where the input ends does
/// not depend on the epochs' length.
pub type EndOfInput = Rc<Cell<Option<i64>>>;

/// Timers a rule asks for while handling one point.
#[derive(Debug, Default)]
pub struct Scheduled {
    dues: Vec<i64>,
}

impl Scheduled {
    /// Asks for [`KeyedLogic::on_timer`] at event time `due_ms` for the key
    /// being handled. A rule must ignore a timer it no longer wants or did
    /// not set (compare `due_ms` with what its state expects): timers are
    /// per key, shared by rules composed into one operator.
    pub fn at(&mut self, due_ms: i64) {
        self.dues.push(due_ms);
    }
}

/// The state of a rule that few points configure (flatline, rate of
/// change, predicted limit): allocated when the rule first judges a reading
/// of the point, so a point without it costs one pointer in the state table
/// rather than the whole state (the table is most of a point's memory).
pub type Sparse<S> = Option<Box<S>>;

/// A deadline that moves (stale: last reading + N; flatline: last change +
/// N) with at most one timer pending for it: the timer is set once, and when
/// it fires before the deadline (the deadline moved meanwhile) it is set
/// again for the new one. This keeps timer traffic at one per deadline
/// period instead of one per reading.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The timer pending; [`NO_TIME`]: none (8 bytes, not an
    /// `Option<i64>`'s 16: every point holds one).
    pending: i64,
}

/// "None" for an event time a rule's state keeps (a pending timer or
/// change, a last reading): nothing is stamped at the start of time, and
/// an `Option<i64>` takes twice the 8 bytes that every point pays.
pub const NO_TIME: i64 = i64::MIN;

impl Default for Deadline {
    fn default() -> Self {
        Deadline { pending: NO_TIME }
    }
}

impl Deadline {
    /// Makes sure a timer is pending for `deadline_ms` or earlier.
    pub fn arm(&mut self, deadline_ms: i64, timers: &mut Scheduled) {
        if self.pending == NO_TIME {
            self.pending = deadline_ms;
            timers.at(deadline_ms);
        }
    }

    /// Handles a timer at `due_ms`: true when the deadline, now
    /// `deadline_ms`, has been reached; re-arms for it when it moved later.
    /// False for a timer that is not this deadline's.
    pub fn fired(&mut self, due_ms: i64, deadline_ms: i64, timers: &mut Scheduled) -> bool {
        if due_ms == NO_TIME || self.pending != due_ms {
            return false;
        }
        self.pending = NO_TIME;
        if deadline_ms > due_ms {
            self.arm(deadline_ms, timers);
            return false;
        }
        true
    }
}

/// A record the event-time mechanics can route and order.
pub trait Timed: timely::ExchangeData {
    /// What per-key state is kept by: a catalog index (point, unit,
    /// console, gateway).
    type Key: Copy + Ord + Into<u32> + From<u32> + 'static;
    /// The record's key.
    fn key(&self) -> Self::Key;
    /// Event time, Unix ms.
    fn ts_ms(&self) -> i64;
    /// The hash the exchange routes a key's records by (the same key, the
    /// same worker).
    fn route_key(key: Self::Key) -> u64;
    /// Sorts records by key, then event time, then a tie-break that makes
    /// the order total.
    fn sort(records: &mut [Self]);
    /// The keys `rules` give records of are below this (0: not known), to
    /// size the tables of states once.
    fn key_space(_rules: &RuleSet) -> usize {
        0
    }
}

impl Timed for Reading {
    type Key = PointIdx;
    fn key(&self) -> PointIdx {
        self.point
    }
    fn ts_ms(&self) -> i64 {
        self.ts_ms
    }
    fn route_key(key: PointIdx) -> u64 {
        point_hash(key)
    }
    fn sort(records: &mut [Self]) {
        hazardwatch_proto::order::sort_by_dense_key(records, |r| r.point, Reading::order_key);
    }
    fn key_space(rules: &RuleSet) -> usize {
        rules.points.len()
    }
}

/// A rule event on its way to the rule that judges a whole unit or console:
/// `key` is the unit or console index.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Routed {
    /// Unit or console index.
    pub key: u32,
    /// The event.
    pub event: RuleEvent,
}

impl Timed for Routed {
    type Key = u32;
    fn key(&self) -> u32 {
        self.key
    }
    fn ts_ms(&self) -> i64 {
        self.event.ts_ms
    }
    fn route_key(key: u32) -> u64 {
        point_hash(key)
    }
    fn sort(records: &mut [Self]) {
        records.sort_unstable_by_key(|r| (r.key, r.event.order_key()));
    }
}

/// A rule over keyed records (a point's readings, a unit's or a console's
/// events), driven in event time.
pub trait KeyedLogic: 'static {
    /// What the rule consumes.
    type Input: Timed;
    /// What the rule remembers about a key between records.
    type State: Default + 'static;

    /// Handles one record, in event-time order, under the rules in force.
    fn on_input(
        &self,
        rules: &RuleSet,
        state: &mut Self::State,
        input: &Self::Input,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    );

    /// Handles a timer the rule scheduled for this key. Rules that set no
    /// timers keep this default, which ignores every timer.
    fn on_timer(
        &self,
        _rules: &RuleSet,
        _state: &mut Self::State,
        _key: <Self::Input as Timed>::Key,
        _due_ms: i64,
        _timers: &mut Scheduled,
        _out: &mut Vec<RuleEvent>,
    ) {
    }

    /// The rules in force changed at `ts_ms` (a reload): ends every
    /// condition of this key that the new rules no longer configure, since
    /// nothing else would ever clear it (a removed point gets no readings,
    /// a removed rule is not evaluated). Called once per key with state,
    /// before the first record or timer under the new rules. Rules whose
    /// conditions all end on their own (flood, chattering: on timers) keep
    /// this default, which does nothing.
    fn on_rules_changed(
        &self,
        _rules: &RuleSet,
        _state: &mut Self::State,
        _key: <Self::Input as Timed>::Key,
        _ts_ms: i64,
        _out: &mut Vec<RuleEvent>,
    ) {
    }

    /// The service restarted with this key's `kind` condition active (the
    /// alarm journal says so): the rule starts from it, so that it clears
    /// the alarm when the condition ends instead of never having known it.
    /// Rules ignore kinds that are not theirs; the default ignores all.
    fn on_restore(&self, _state: &mut Self::State, _kind: AlarmKind) {}
}

/// For [`KeyedLogic::on_rules_changed`]: ends a condition (`active`) of a
/// point or unit when its rule is no longer `configured`, emitting its
/// return to normal at `ts_ms`, with value and limit unknown (NaN).
pub fn withdraw(
    active: &mut bool,
    configured: bool,
    rules: &RuleSet,
    source: AlarmSource,
    kind: AlarmKind,
    ts_ms: i64,
    out: &mut Vec<RuleEvent>,
) {
    if *active && !configured {
        *active = false;
        out.push(match source {
            AlarmSource::Point(p) => rules.event(p, kind, false, ts_ms, f64::NAN, f64::NAN),
            // A unit rule's priority was configured with the rule, which is
            // gone; the alarm table keeps the raise's priority for its clear.
            other => RuleEvent::new(
                other,
                kind,
                false,
                ts_ms,
                f64::NAN,
                f64::NAN,
                Priority::High,
            ),
        });
    }
}

/// The worker timely's exchange sends a record with this routing hash to.
pub fn worker_of(hash: u64, peers: usize) -> usize {
    if peers.is_power_of_two() {
        (hash & (peers as u64 - 1)) as usize
    } else {
        (hash % peers as u64) as usize
    }
}

/// Mixes a point (or unit, console) index so that the exchange spreads keys
/// evenly over workers whatever their numbering.
pub fn point_hash(point: PointIdx) -> u64 {
    (u64::from(point) ^ 0x5851_f42d_4c95_7f2d).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17
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
    /// use hazardwatch_rules::operators::{Epochs, KeyedLogic, PerKey, Scheduled};
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
    ///         .per_key(Epochs { epoch_ms: 1000 }, FirstAbove10, RuleBook::new(RuleSet::default()), None, &[])
    ///         .inspect(move |e| out.lock().unwrap().push(e.ts_ms));
    /// });
    /// assert_eq!(*seen.lock().unwrap(), vec![250]);
    /// ```
    fn per_key<L: KeyedLogic<Input = D>>(
        self,
        epochs: Epochs,
        logic: L,
        book: RuleBook,
        end: Option<EndOfInput>,
        restore: &[(D::Key, AlarmKind)],
    ) -> Stream<'scope, u64, Vec<RuleEvent>>;

    /// [`PerKey::per_key`] over records that are already at the worker
    /// their key's exchange would send them to (the engine's input routes
    /// readings so, when every worker is in this process): the same
    /// result, without the exchange's copy of every record.
    fn per_key_in_place<L: KeyedLogic<Input = D>>(
        self,
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
        epochs: Epochs,
        logic: L,
        book: RuleBook,
        end: Option<EndOfInput>,
        restore: &[(D::Key, AlarmKind)],
    ) -> Stream<'scope, u64, Vec<RuleEvent>> {
        let pact = Exchange::new(|r: &D| D::route_key(r.key()));
        keyed(self, pact, epochs, logic, book, end, restore)
    }

    fn per_key_in_place<L: KeyedLogic<Input = D>>(
        self,
        epochs: Epochs,
        logic: L,
        book: RuleBook,
        end: Option<EndOfInput>,
        restore: &[(D::Key, AlarmKind)],
    ) -> Stream<'scope, u64, Vec<RuleEvent>> {
        keyed(self, Pipeline, epochs, logic, book, end, restore)
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
                        let Some(epoch) = [next_data, next_timer, next_rules].into_iter().flatten().min()
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
                                None => unreachable!("the input frontier was at or before the epoch at the last activation"),
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

/// Two rules over the same records run as one operator: one exchange, one
/// state per key holding both rules' states. Each rule sees every record;
/// a timer goes to both, and each ignores timers it did not set (the
/// [`Scheduled`] contract), so composing changes no rule's result.
impl<A, B> KeyedLogic for (A, B)
where
    A: KeyedLogic,
    B: KeyedLogic<Input = A::Input>,
{
    type Input = A::Input;
    type State = (A::State, B::State);

    fn on_input(
        &self,
        rules: &RuleSet,
        state: &mut Self::State,
        input: &Self::Input,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        self.0.on_input(rules, &mut state.0, input, timers, out);
        self.1.on_input(rules, &mut state.1, input, timers, out);
    }

    fn on_timer(
        &self,
        rules: &RuleSet,
        state: &mut Self::State,
        key: <Self::Input as Timed>::Key,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        self.0
            .on_timer(rules, &mut state.0, key, due_ms, timers, out);
        self.1
            .on_timer(rules, &mut state.1, key, due_ms, timers, out);
    }

    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        state: &mut Self::State,
        key: <Self::Input as Timed>::Key,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        self.0
            .on_rules_changed(rules, &mut state.0, key, ts_ms, out);
        self.1
            .on_rules_changed(rules, &mut state.1, key, ts_ms, out);
    }

    fn on_restore(&self, state: &mut Self::State, kind: AlarmKind) {
        self.0.on_restore(&mut state.0, kind);
        self.1.on_restore(&mut state.1, kind);
    }
}

/// Rules that few keys configure (flatline, rate of change, predicted
/// limits, deviation), run with one pointer of state per key: their states
/// are allocated for a key when a record finds any of them `configured`
/// for it, or a condition of the key is restored. A key without them costs
/// 8 bytes, not a pointer per rule.
pub struct Rare<L> {
    /// The rules.
    pub logic: L,
    /// True when the rules in force configure any of them for the key.
    pub configured: fn(&RuleSet, u32) -> bool,
}

impl<L> KeyedLogic for Rare<L>
where
    L: KeyedLogic,
{
    type Input = L::Input;
    type State = Option<Box<L::State>>;

    fn on_input(
        &self,
        rules: &RuleSet,
        state: &mut Self::State,
        input: &Self::Input,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        if state.is_none() && !(self.configured)(rules, input.key().into()) {
            return;
        }
        let state = state.get_or_insert_with(Box::default);
        self.logic.on_input(rules, state, input, timers, out);
    }

    fn on_timer(
        &self,
        rules: &RuleSet,
        state: &mut Self::State,
        key: <Self::Input as Timed>::Key,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        if let Some(state) = state {
            self.logic.on_timer(rules, state, key, due_ms, timers, out);
        }
    }

    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        state: &mut Self::State,
        key: <Self::Input as Timed>::Key,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        if let Some(state) = state {
            self.logic.on_rules_changed(rules, state, key, ts_ms, out);
        }
    }

    fn on_restore(&self, state: &mut Self::State, kind: AlarmKind) {
        // Conditions active at a restart are few: each key with one gets
        // the states, whether or not the condition is theirs.
        let state = state.get_or_insert_with(Box::default);
        self.logic.on_restore(state, kind);
    }
}

/// Extension trait: a stateless step over rule events that may look at the
/// rules in force at each event's epoch.
pub trait EachEvent<'scope, T> {
    /// Applies `f` to every record (an event, a reading) with the rules of
    /// its epoch, keeping what it returns (no exchange: records stay on
    /// their worker).
    fn each_event<D: Clone + 'static, F>(
        self,
        name: &str,
        book: RuleBook,
        f: F,
    ) -> Stream<'scope, u64, Vec<D>>
    where
        F: Fn(&RuleSet, &T) -> Option<D> + 'static;
}

impl<'scope, T: Clone + 'static> EachEvent<'scope, T> for Stream<'scope, u64, Vec<T>> {
    fn each_event<D: Clone + 'static, F>(
        self,
        name: &str,
        book: RuleBook,
        f: F,
    ) -> Stream<'scope, u64, Vec<D>>
    where
        F: Fn(&RuleSet, &T) -> Option<D> + 'static,
    {
        self.unary::<CapacityContainerBuilder<Vec<D>>, _, _, _>(
            timely::dataflow::channels::pact::Pipeline,
            name,
            move |_, _| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let Some(&time) = cap.least() else { return };
                        let Some(cap) = cap.retain_least(output.output_index()) else {
                            return;
                        };
                        let rules = book.at(time);
                        let mut session = output.session(&cap);
                        for batch in data {
                            for e in batch.iter() {
                                if let Some(d) = f(&rules, e) {
                                    session.give(d);
                                }
                            }
                        }
                    });
                }
            },
        )
    }
}
