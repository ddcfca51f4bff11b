//! The event-time mechanics shared by every per-point rule.
//!
//! Timely's own time is a coarse *epoch* (`ts_ms / epoch_ms`); the exact
//! millisecond stays inside each [`Reading`]. Readings are exchanged by point
//! and stashed per epoch. Once the input frontier has passed an epoch, no
//! more readings of it can arrive, so the operator sorts that epoch's
//! readings by (point, time) and runs them through the rule's per-point
//! state, firing event-time timers (on-delays, later stale and flatline
//! checks) in their place between readings. The result therefore depends
//! only on the readings, never on their arrival order or the worker count.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use hazardwatch_proto::{PointIdx, Reading, RuleEvent};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

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

    /// First millisecond after an epoch.
    pub fn end(&self, epoch: u64) -> i64 {
        (epoch as i64 + 1) * self.epoch_ms
    }
}

/// Set by the worker just before it closes its input, to the last epoch the
/// input reached: timers beyond it must not fire, because the end of the
/// input is the end of what is known, not a silence of the sensors.
pub type EndOfInput = Rc<Cell<Option<u64>>>;

/// Timers a rule asks for while handling one point.
#[derive(Debug, Default)]
pub struct Scheduled {
    dues: Vec<i64>,
}

impl Scheduled {
    /// Asks for [`PointLogic::on_timer`] at event time `due_ms` for the point
    /// being handled. A rule that no longer wants a timer ignores it when it
    /// fires (compare `due_ms` with what the state expects).
    pub fn at(&mut self, due_ms: i64) {
        self.dues.push(due_ms);
    }
}

/// A deadline that moves (stale: last reading + N; flatline: last change +
/// N) with at most one timer pending for it: the timer is set once, and when
/// it fires before the deadline (the deadline moved meanwhile) it is set
/// again for the new one. This keeps timer traffic at one per deadline
/// period instead of one per reading.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deadline {
    pending: Option<i64>,
}

impl Deadline {
    /// Makes sure a timer is pending for `deadline_ms` or earlier.
    pub fn arm(&mut self, deadline_ms: i64, timers: &mut Scheduled) {
        if self.pending.is_none() {
            self.pending = Some(deadline_ms);
            timers.at(deadline_ms);
        }
    }

    /// Handles a timer at `due_ms`: true when the deadline, now
    /// `deadline_ms`, has been reached; re-arms for it when it moved later.
    /// False for a timer that is not this deadline's.
    pub fn fired(&mut self, due_ms: i64, deadline_ms: i64, timers: &mut Scheduled) -> bool {
        if self.pending != Some(due_ms) {
            return false;
        }
        self.pending = None;
        if deadline_ms > due_ms {
            self.arm(deadline_ms, timers);
            return false;
        }
        true
    }
}

/// A rule on one point, driven in event time.
pub trait PointLogic: 'static {
    /// What the rule remembers about a point between readings.
    type State: Default + 'static;

    /// Handles one reading of a point, in event-time order.
    fn on_reading(
        &self,
        state: &mut Self::State,
        reading: &Reading,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    );

    /// Handles a timer the rule scheduled for this point.
    fn on_timer(
        &self,
        state: &mut Self::State,
        point: PointIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    );
}

/// Mixes a point index so that the exchange spreads points evenly over
/// workers whatever their numbering.
pub fn point_hash(point: PointIdx) -> u64 {
    (u64::from(point) ^ 0x5851_f42d_4c95_7f2d).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17
}

/// Extension trait: run a [`PointLogic`] over a stream of readings.
pub trait PerPoint<'scope> {
    /// Exchanges readings by point and applies `logic` in event-time order,
    /// emitting the rule's events at the epoch they belong to, sorted.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use hazardwatch_proto::{AlarmKind, PointIdx, Priority, Quality, Reading, RuleEvent};
    /// use hazardwatch_rules::operators::{Epochs, PerPoint, PointLogic, Scheduled};
    /// use timely::dataflow::operators::{Inspect, ToStream};
    ///
    /// /// Raises an event at the first reading above 10 of each point.
    /// struct FirstAbove10;
    /// impl PointLogic for FirstAbove10 {
    ///     type State = bool;
    ///     fn on_reading(&self, seen: &mut bool, r: &Reading, _: &mut Scheduled, out: &mut Vec<RuleEvent>) {
    ///         if r.value > 10.0 && !*seen {
    ///             *seen = true;
    ///             out.push(RuleEvent { point: r.point, kind: AlarmKind::High, active: true,
    ///                 ts_ms: r.ts_ms, value: r.value, limit: 10.0, priority: Priority::Medium, predicted_ms: None });
    ///         }
    ///     }
    ///     fn on_timer(&self, _: &mut bool, _: PointIdx, _: i64, _: &mut Scheduled, _: &mut Vec<RuleEvent>) {}
    /// }
    /// // Out of order on purpose: the rule still sees 250 ms before 300 ms.
    /// let readings: Vec<Reading> = [(300, 12.0), (100, 5.0), (250, 11.0)]
    ///     .map(|(ts_ms, value)| Reading { point: 7, ts_ms, value, quality: Quality::Good })
    ///     .into();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let out = seen.clone();
    /// timely::example(move |scope| {
    ///     readings.to_stream(scope)
    ///         .per_point(Epochs { epoch_ms: 1000 }, FirstAbove10, None)
    ///         .inspect(move |e| out.lock().unwrap().push(e.ts_ms));
    /// });
    /// assert_eq!(*seen.lock().unwrap(), vec![250]);
    /// ```
    fn per_point<L: PointLogic>(
        self,
        epochs: Epochs,
        logic: L,
        end: Option<EndOfInput>,
    ) -> Stream<'scope, u64, Vec<RuleEvent>>;
}

impl<'scope> PerPoint<'scope> for Stream<'scope, u64, Vec<Reading>> {
    fn per_point<L: PointLogic>(
        self,
        epochs: Epochs,
        logic: L,
        end: Option<EndOfInput>,
    ) -> Stream<'scope, u64, Vec<RuleEvent>> {
        let pact = Exchange::new(|r: &Reading| point_hash(r.point));
        self.unary_frontier::<CapacityContainerBuilder<Vec<RuleEvent>>, _, _, _>(
            pact,
            "PerPoint",
            move |_initial, _info| {
                let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Reading>)> = BTreeMap::new();
                let mut states: HashMap<PointIdx, L::State> = HashMap::new();
                // Pending timers as (due, point), and one capability at the
                // epoch of the earliest, so their events can still be sent.
                let mut timers: BTreeSet<(i64, PointIdx)> = BTreeSet::new();
                let mut timer_cap: Option<Capability<u64>> = None;
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
                            slot.1.append(batch);
                        }
                    });
                    let limit = if frontier.is_empty() {
                        end.as_ref().and_then(|e| e.get())
                    } else {
                        None
                    };
                    loop {
                        let next_data = stash.keys().next().copied();
                        let next_timer = timers.first().map(|(due, _)| epochs.of(*due));
                        let epoch = match (next_data, next_timer) {
                            (Some(a), Some(b)) => a.min(b),
                            (Some(a), None) | (None, Some(a)) => a,
                            (None, None) => break,
                        };
                        if frontier.less_equal(&epoch) {
                            break;
                        }
                        if limit.is_some_and(|l| epoch > l) {
                            // Input closed: nothing beyond its last epoch is known.
                            timers.clear();
                            break;
                        }
                        let (cap, mut readings) = match stash.remove(&epoch) {
                            Some((c, r)) => (c, r),
                            None => match &timer_cap {
                                Some(tc) => (tc.delayed(&epoch), Vec::new()),
                                None => unreachable!("timers pending without a capability"),
                            },
                        };
                        run_epoch(
                            &logic,
                            epochs.end(epoch),
                            &mut readings,
                            &mut states,
                            &mut timers,
                            &mut events,
                        );
                        if !events.is_empty() {
                            events.sort_by_key(RuleEvent::order_key);
                            output.session(&cap).give_container(&mut events);
                            events.clear();
                        }
                        timer_cap = timers.first().map(|(due, _)| cap.delayed(&epochs.of(*due)));
                    }
                    if timers.is_empty() {
                        timer_cap = None;
                    }
                }
            },
        )
    }
}

/// Runs one complete epoch: each point's readings in time order, with its
/// timers due before the epoch's end fired in their place (a timer fires
/// before a reading of the same millisecond).
fn run_epoch<L: PointLogic>(
    logic: &L,
    epoch_end: i64,
    readings: &mut [Reading],
    states: &mut HashMap<PointIdx, L::State>,
    timers: &mut BTreeSet<(i64, PointIdx)>,
    events: &mut Vec<RuleEvent>,
) {
    readings.sort_unstable_by_key(Reading::order_key);
    // Timers due in this epoch, per point.
    let mut due: BTreeMap<PointIdx, BTreeSet<i64>> = BTreeMap::new();
    while let Some(&(t, p)) = timers.first() {
        if t >= epoch_end {
            break;
        }
        timers.pop_first();
        due.entry(p).or_default().insert(t);
    }
    let mut scheduled = Scheduled::default();
    let mut i = 0;
    while i < readings.len() || !due.is_empty() {
        // The next point to handle: the smaller of the next reading's point
        // and the first point with a due timer.
        let p_read = readings.get(i).map(|r| r.point);
        let p_due = due.keys().next().copied();
        let point = match (p_read, p_due) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let mut mine = due.remove(&point).unwrap_or_default();
        let state = states.entry(point).or_default();
        loop {
            let next_reading = readings.get(i).filter(|r| r.point == point);
            let next_due = mine.first().copied();
            match (next_reading, next_due) {
                (Some(r), Some(t)) if t <= r.ts_ms => {
                    mine.pop_first();
                    logic.on_timer(state, point, t, &mut scheduled, events);
                }
                (Some(r), _) => {
                    i += 1;
                    logic.on_reading(state, r, &mut scheduled, events);
                }
                (None, Some(t)) => {
                    mine.pop_first();
                    logic.on_timer(state, point, t, &mut scheduled, events);
                }
                (None, None) => break,
            }
            for t in scheduled.dues.drain(..) {
                if t < epoch_end {
                    mine.insert(t);
                } else {
                    timers.insert((t, point));
                }
            }
        }
    }
}
