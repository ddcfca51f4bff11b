//! Gateway offline: a registered gateway silent beyond its
//! `offline_after_s` of event time, or announcing `offline` (its last will),
//! raises `{gateway}/OFFLINE`; its next reading clears it. Like the stale
//! rule, it runs on event-time timers (live, event time follows the wall
//! clock) and starts from the service's `expected` markers, so a gateway
//! never heard from goes offline too; replay gives the same alarms at the
//! same times.
//!
//! Readings reach the rule as [`Beat`]s: per batch and gateway, its
//! earliest and latest reading, and every marker. That is all the rule
//! needs (the earliest clears, the latest sets the deadline, which is
//! always past the batch's epoch: `offline_after_s` is at least a second),
//! whatever the batches, so the outcome does not depend on how readings were
//! split between them.

use std::collections::BTreeMap;

use hazardwatch_proto::{
    AlarmKind, AlarmSource, GatewayIdx, Priority, Quality, Reading, RuleEvent,
};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::operators::generic::Operator;

use crate::operators::event_time::{Deadline, KeyedLogic, Scheduled, Timed, point_hash, withdraw};
use crate::rule_set::{RuleBook, RuleSet};

/// A sign of life (or of death) of a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    /// The gateway (catalog index).
    pub gateway: GatewayIdx,
    /// Event time, Unix ms.
    pub ts_ms: i64,
    /// A reading's quality, or the service's marker.
    pub quality: Quality,
}

impl Timed for Beat {
    type Key = GatewayIdx;
    fn key(&self) -> GatewayIdx {
        self.gateway
    }
    fn ts_ms(&self) -> i64 {
        self.ts_ms
    }
    fn route_key(key: GatewayIdx) -> u64 {
        point_hash(key)
    }
    fn sort(records: &mut [Self]) {
        records.sort_unstable_by_key(|b| (b.gateway, b.ts_ms, b.quality as u8));
    }
}

/// The beats of `readings`: per stamp and gateway its earliest and latest
/// reading, and every marker, under the rules in force at the stamp.
pub fn beats<'scope>(
    readings: Stream<'scope, u64, Vec<Reading>>,
    book: RuleBook,
) -> Stream<'scope, u64, Vec<Beat>> {
    readings.unary::<CapacityContainerBuilder<Vec<Beat>>, _, _, _>(
        timely::dataflow::channels::pact::Pipeline,
        "ToGateway",
        move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let Some(cap) = cap.retain_least(output.output_index()) else {
                        return;
                    };
                    let rules = book.at(time);
                    let mut span: BTreeMap<GatewayIdx, (i64, i64)> = BTreeMap::new();
                    let mut session = output.session(&cap);
                    for batch in data {
                        for r in batch.iter() {
                            let Some(gateway) = rules.gateway_of(r.point) else {
                                continue;
                            };
                            if r.quality.is_marker() {
                                session.give(Beat {
                                    gateway,
                                    ts_ms: r.ts_ms,
                                    quality: r.quality,
                                });
                            } else {
                                let s = span.entry(gateway).or_insert((r.ts_ms, r.ts_ms));
                                *s = (s.0.min(r.ts_ms), s.1.max(r.ts_ms));
                            }
                        }
                    }
                    for (gateway, (first, last)) in span {
                        for ts_ms in [first, last] {
                            session.give(Beat {
                                gateway,
                                ts_ms,
                                quality: Quality::Good,
                            });
                        }
                    }
                });
            }
        },
    )
}

/// The gateway-offline rule.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayOffline;

/// Per-gateway state.
#[derive(Debug, Default)]
pub struct GatewayState {
    last_ts: Option<i64>,
    /// A reading (not only a marker) was seen.
    heard: bool,
    deadline: Deadline,
    active: bool,
}

impl GatewayState {
    fn change(
        &mut self,
        active: bool,
        gateway: GatewayIdx,
        ts_ms: i64,
        after_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        if self.active == active {
            return;
        }
        self.active = active;
        // Value: seconds of silence (NaN: never heard from).
        let silent = match (self.heard, self.last_ts) {
            (true, Some(last)) if active => (ts_ms - last) as f64 / 1000.0,
            (true, _) => 0.0,
            (false, _) => f64::NAN,
        };
        out.push(RuleEvent::new(
            AlarmSource::Gateway(gateway),
            AlarmKind::Offline,
            active,
            ts_ms,
            silent,
            after_ms as f64 / 1000.0,
            Priority::High,
        ));
    }
}

impl KeyedLogic for GatewayOffline {
    type Input = Beat;
    type State = GatewayState;

    fn on_input(
        &self,
        rules: &RuleSet,
        st: &mut GatewayState,
        b: &Beat,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let Some(after) = rules.offline_after(b.gateway) else {
            return;
        };
        match b.quality {
            Quality::Offline => st.change(true, b.gateway, b.ts_ms, after, out),
            Quality::Expected => {
                let since = st.last_ts.map_or(b.ts_ms, |t| t.max(b.ts_ms));
                st.last_ts = Some(since);
                st.deadline.arm(since + after, timers);
            }
            _ => {
                st.heard = true;
                st.change(false, b.gateway, b.ts_ms, after, out);
                let last = st.last_ts.map_or(b.ts_ms, |t| t.max(b.ts_ms));
                st.last_ts = Some(last);
                st.deadline.arm(last + after, timers);
            }
        }
    }

    fn on_timer(
        &self,
        rules: &RuleSet,
        st: &mut GatewayState,
        gateway: GatewayIdx,
        due_ms: i64,
        timers: &mut Scheduled,
        out: &mut Vec<RuleEvent>,
    ) {
        let (Some(after), Some(last)) = (rules.offline_after(gateway), st.last_ts) else {
            return;
        };
        if st.deadline.fired(due_ms, last + after, timers) {
            st.change(true, gateway, due_ms, after, out);
        }
    }

    /// The gateway left the registry: its alarm ends.
    fn on_rules_changed(
        &self,
        rules: &RuleSet,
        st: &mut GatewayState,
        gateway: GatewayIdx,
        ts_ms: i64,
        out: &mut Vec<RuleEvent>,
    ) {
        let registered = rules.offline_after(gateway).is_some();
        withdraw(
            &mut st.active,
            registered,
            rules,
            AlarmSource::Gateway(gateway),
            AlarmKind::Offline,
            ts_ms,
            out,
        );
    }

    fn on_restore(&self, st: &mut GatewayState, kind: AlarmKind) {
        if kind == AlarmKind::Offline {
            st.active = true;
        }
    }
}
