//! The event-time mechanics shared by every rule.
//!
//! Timely's own time is a coarse *epoch* (`ts_ms / epoch_ms`); the exact
//! millisecond stays inside each record. Records (readings keyed by point,
//! or rule events keyed by unit or console) are exchanged by key and stashed
//! per epoch. Once the input frontier has passed an epoch, no more records
//! of it can arrive, so the operator ([`super::per_key`]) sorts that epoch's
//! records by (key, time) and runs them through the rule's per-key state,
//! firing event-time timers (on-delays, stale and flatline checks, window
//! ends) in their place between records. The result therefore depends only
//! on the records, never on their arrival order, the worker count or the
//! epochs' length. Each epoch is judged by the rules the [`RuleBook`] has in
//! force at it.

use std::cell::Cell;
use std::rc::Rc;

use hazardwatch_proto::{AlarmKind, AlarmSource, PointIdx, Priority, Reading, RuleEvent};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
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
    /// Taken by the operator after each record or timer.
    pub(super) dues: Vec<i64>,
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
