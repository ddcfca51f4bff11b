//! The alarm table: each alarm's ISA-18.2 state, driven by rule events and
//! operator actions, with a sequence number on every transition.
//!
//! ```text
//!            raise               clear
//!  Normal ----------> Unacked ----------> Unacked
//!    ^                Active               RTN
//!    |                  | ack               | ack
//!    |    clear         v        raise      v
//!    +----------- Acked Active <------- (back to Unacked Active)
//! ```
//!
//! Latching alarms (gas detection) do not return to normal when their
//! condition clears: they stay active, *latched*, until an operator resets
//! them (reset needs the condition clear; an unacknowledged alarm is then
//! still owed its acknowledgement). Alarm-system conditions (flood,
//! chattering) need no acknowledgement: they are raised acknowledged.
//! Suppressed events (unit stopped or in overhaul) walk the same states,
//! flagged, so that the record is complete, but are not annunciated.

use std::collections::BTreeMap;

use hazardwatch_proto::{AlarmKind, AlarmSource, Priority, RuleEvent};

/// ISA-18.2 alarm state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    /// Condition clear and acknowledged.
    Normal,
    /// Condition active (or latched), not acknowledged.
    UnackedActive,
    /// Condition active (or latched), acknowledged.
    AckedActive,
    /// Condition cleared, not yet acknowledged.
    UnackedRtn,
}

/// What happened in one transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The condition became active.
    Raised,
    /// The condition returned to normal.
    Cleared,
    /// An operator acknowledged.
    Acknowledged,
    /// An operator reset a latched alarm.
    Reset,
}

/// One transition of one alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRecord {
    /// Sequence number, increasing by one per record.
    pub seq: u64,
    /// What the alarm is about.
    pub source: AlarmSource,
    /// The condition.
    pub kind: AlarmKind,
    /// Priority.
    pub priority: Priority,
    /// What happened.
    pub transition: Transition,
    /// State afterwards.
    pub state: AlarmState,
    /// Event time (condition changes) or wall time (operator actions), ms.
    pub ts_ms: i64,
    /// Value that caused a condition change; NaN for operator actions.
    pub value: f64,
    /// Limit involved.
    pub limit: f64,
    /// For predicted-limit warnings: when the trend reaches the limit (ms).
    pub predicted_ms: Option<i64>,
    /// Afterwards the alarm is latched: its condition cleared and it waits
    /// for a reset.
    pub latched: bool,
    /// Suppressed by design: recorded, not annunciated.
    pub suppressed: bool,
    /// Operator, for operator actions.
    pub actor: String,
    /// Operator's comment.
    pub comment: String,
}

/// An alarm that is active, latched or still unacknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlarm {
    /// Its current state (never Normal).
    pub state: AlarmState,
    /// Event time it was raised, ms.
    pub raised_at_ms: i64,
    /// It latches: clearing leaves it active until reset.
    pub latch: bool,
    /// Its condition is active now (false for a latched or RTN alarm).
    pub condition: bool,
    /// The most recent record of this alarm.
    pub last: AlarmRecord,
}

/// Why an operator action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No such alarm is active or unacknowledged.
    #[error("no active or unacknowledged alarm")]
    NotFound,
    /// It was acknowledged already.
    #[error("already acknowledged")]
    AlreadyAcknowledged,
    /// Reset of an alarm that does not latch or has not latched.
    #[error("not latched: only a latching alarm whose condition has cleared can be reset")]
    NotLatched,
    /// Reset while the condition is still active.
    #[error("the condition is still active; reset once it has cleared")]
    StillActive,
}

/// Every alarm that is not in the Normal state, keyed by source and kind.
#[derive(Debug, Default)]
pub struct AlarmTable {
    last_seq: u64,
    alarms: BTreeMap<(AlarmSource, AlarmKind), ActiveAlarm>,
}

impl AlarmTable {
    /// The table as it stood, rebuilt after a restart: the newest sequence
    /// number and the alarms that were not normal.
    pub fn restore(last_seq: u64, alarms: impl IntoIterator<Item = ActiveAlarm>) -> Self {
        AlarmTable {
            last_seq,
            alarms: alarms
                .into_iter()
                .map(|a| ((a.last.source, a.last.kind), a))
                .collect(),
        }
    }

    /// The sequence number of the newest record.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applies a rule event; returns the transition it caused, if any (a
    /// raise of an alarm already active changes nothing).
    pub fn apply(&mut self, ev: &RuleEvent) -> Option<AlarmRecord> {
        let key = (ev.source, ev.kind);
        let current = self.alarms.get(&key);
        let latch = current.map_or(ev.latch, |a| a.latch);
        let (transition, state, latched) = match (ev.active, current) {
            (true, None) if !ev.kind.needs_ack() => {
                (Transition::Raised, AlarmState::AckedActive, false)
            }
            (true, None) => (Transition::Raised, AlarmState::UnackedActive, false),
            (true, Some(a)) if !a.condition => {
                // Back again: from RTN, or while latched (a new occurrence,
                // owed a new acknowledgement).
                let state = if ev.kind.needs_ack() {
                    AlarmState::UnackedActive
                } else {
                    a.state
                };
                (Transition::Raised, state, false)
            }
            (false, Some(a)) if a.condition && latch => (Transition::Cleared, a.state, true),
            (false, Some(a)) if a.condition => {
                let state = match a.state {
                    AlarmState::UnackedActive => AlarmState::UnackedRtn,
                    _ => AlarmState::Normal,
                };
                (Transition::Cleared, state, false)
            }
            _ => return None,
        };
        // A clear belongs to the occurrence it ends: it keeps its priority
        // even if a reload changed (or removed) the rule since.
        let priority = match (ev.active, current) {
            (false, Some(a)) => a.last.priority,
            _ => ev.priority,
        };
        self.last_seq += 1;
        let record = AlarmRecord {
            seq: self.last_seq,
            source: ev.source,
            kind: ev.kind,
            priority,
            transition,
            state,
            ts_ms: ev.ts_ms,
            value: ev.value,
            limit: ev.limit,
            predicted_ms: ev.predicted_ms,
            latched,
            suppressed: ev.suppressed,
            actor: String::new(),
            comment: String::new(),
        };
        self.store(record.clone(), latch, ev.active);
        Some(record)
    }

    /// Records an operator's acknowledgement at wall time `now_ms`.
    pub fn acknowledge(
        &mut self,
        source: AlarmSource,
        kind: AlarmKind,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AlarmRecord, ActionError> {
        let alarm = self.find(source, kind)?;
        let state = match alarm.state {
            AlarmState::UnackedActive => AlarmState::AckedActive,
            AlarmState::UnackedRtn => AlarmState::Normal,
            AlarmState::AckedActive | AlarmState::Normal => {
                return Err(ActionError::AlreadyAcknowledged);
            }
        };
        Ok(self.operator_record(
            source,
            kind,
            Transition::Acknowledged,
            state,
            actor,
            comment,
            now_ms,
        ))
    }

    /// Resets a latched alarm whose condition has cleared, at wall time
    /// `now_ms`: it returns to normal, or to unacknowledged RTN if it was
    /// never acknowledged.
    pub fn reset(
        &mut self,
        source: AlarmSource,
        kind: AlarmKind,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AlarmRecord, ActionError> {
        let alarm = self.find(source, kind)?;
        if !alarm.latch {
            return Err(ActionError::NotLatched);
        }
        if alarm.condition {
            return Err(ActionError::StillActive);
        }
        let state = match alarm.state {
            AlarmState::UnackedActive | AlarmState::UnackedRtn => AlarmState::UnackedRtn,
            AlarmState::AckedActive | AlarmState::Normal => AlarmState::Normal,
        };
        Ok(self.operator_record(
            source,
            kind,
            Transition::Reset,
            state,
            actor,
            comment,
            now_ms,
        ))
    }

    /// The alarm an operator acts on.
    fn find(&self, source: AlarmSource, kind: AlarmKind) -> Result<&ActiveAlarm, ActionError> {
        self.alarms
            .get(&(source, kind))
            .ok_or(ActionError::NotFound)
    }

    /// Appends an operator's record for an alarm in the table.
    #[allow(clippy::too_many_arguments)]
    fn operator_record(
        &mut self,
        source: AlarmSource,
        kind: AlarmKind,
        transition: Transition,
        state: AlarmState,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> AlarmRecord {
        let alarm = &self.alarms[&(source, kind)];
        let (latch, condition) = (alarm.latch, alarm.condition);
        self.last_seq += 1;
        let record = AlarmRecord {
            seq: self.last_seq,
            transition,
            state,
            ts_ms: now_ms,
            value: f64::NAN,
            latched: alarm.last.latched && transition != Transition::Reset,
            actor: actor.to_owned(),
            comment: comment.to_owned(),
            ..alarm.last.clone()
        };
        self.store(record.clone(), latch, condition);
        record
    }

    fn store(&mut self, record: AlarmRecord, latch: bool, condition: bool) {
        let key = (record.source, record.kind);
        if record.state == AlarmState::Normal {
            self.alarms.remove(&key);
            return;
        }
        let raised_at_ms = match (record.transition, self.alarms.get(&key)) {
            (Transition::Raised, _) | (_, None) => record.ts_ms,
            (_, Some(a)) => a.raised_at_ms,
        };
        self.alarms.insert(
            key,
            ActiveAlarm {
                state: record.state,
                raised_at_ms,
                latch,
                condition,
                last: record,
            },
        );
    }

    /// The alarm of a source and kind, if it is not Normal.
    pub fn get(&self, source: AlarmSource, kind: AlarmKind) -> Option<&ActiveAlarm> {
        self.alarms.get(&(source, kind))
    }

    /// Alarms that are active, latched or unacknowledged, by source and kind.
    pub fn active(&self) -> impl Iterator<Item = &ActiveAlarm> {
        self.alarms.values()
    }

    /// Number of alarms not in the Normal state.
    pub fn len(&self) -> usize {
        self.alarms.len()
    }

    /// True when every alarm is Normal.
    pub fn is_empty(&self) -> bool {
        self.alarms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P3: AlarmSource = AlarmSource::Point(3);

    fn ev(active: bool, ts_ms: i64) -> RuleEvent {
        RuleEvent::new(
            P3,
            AlarmKind::High,
            active,
            ts_ms,
            1.0,
            0.5,
            Priority::Medium,
        )
    }

    #[test]
    fn raise_ack_clear_walks_the_isa_states() {
        let mut t = AlarmTable::default();
        let r = t.apply(&ev(true, 10)).unwrap();
        assert_eq!((r.seq, r.state), (1, AlarmState::UnackedActive));
        assert!(t.apply(&ev(true, 11)).is_none(), "already active");
        let a = t
            .acknowledge(P3, AlarmKind::High, "op", "seen", 12)
            .unwrap();
        assert_eq!((a.seq, a.state), (2, AlarmState::AckedActive));
        assert_eq!(
            t.acknowledge(P3, AlarmKind::High, "op", "", 13),
            Err(ActionError::AlreadyAcknowledged)
        );
        let c = t.apply(&ev(false, 20)).unwrap();
        assert_eq!(c.state, AlarmState::Normal);
        assert!(t.is_empty());
    }

    #[test]
    fn clear_before_ack_leaves_unacked_rtn_until_acknowledged() {
        let mut t = AlarmTable::default();
        t.apply(&ev(true, 10));
        let c = t.apply(&ev(false, 20)).unwrap();
        assert_eq!(c.state, AlarmState::UnackedRtn);
        assert_eq!(t.len(), 1);
        let again = t.apply(&ev(true, 30)).unwrap();
        assert_eq!(again.state, AlarmState::UnackedActive);
        assert_eq!(t.active().next().unwrap().raised_at_ms, 30);
        t.apply(&ev(false, 40));
        let a = t.acknowledge(P3, AlarmKind::High, "op", "", 50).unwrap();
        assert_eq!(a.state, AlarmState::Normal);
        assert!(t.is_empty());
        assert_eq!(
            t.acknowledge(P3, AlarmKind::High, "op", "", 60),
            Err(ActionError::NotFound)
        );
    }

    #[test]
    fn a_latched_alarm_stays_after_clearing_until_reset() {
        let mut t = AlarmTable::default();
        let latching = |active, ts| RuleEvent {
            latch: true,
            ..ev(active, ts)
        };
        t.apply(&latching(true, 10)).unwrap();
        assert_eq!(
            t.reset(P3, AlarmKind::High, "op", "", 11),
            Err(ActionError::StillActive)
        );
        let c = t.apply(&latching(false, 20)).unwrap();
        assert_eq!(
            (c.transition, c.state, c.latched),
            (Transition::Cleared, AlarmState::UnackedActive, true)
        );
        t.acknowledge(P3, AlarmKind::High, "op", "", 21).unwrap();
        assert_eq!(
            t.get(P3, AlarmKind::High).unwrap().state,
            AlarmState::AckedActive
        );
        let r = t
            .reset(P3, AlarmKind::High, "op", "checked, no leak", 30)
            .unwrap();
        assert_eq!(
            (r.transition, r.state, r.latched),
            (Transition::Reset, AlarmState::Normal, false)
        );
        assert!(t.is_empty());
        assert_eq!(
            t.reset(P3, AlarmKind::High, "op", "", 31),
            Err(ActionError::NotFound)
        );
    }

    #[test]
    fn reset_is_refused_on_alarms_that_do_not_latch_and_unacked_reset_leaves_rtn() {
        let mut t = AlarmTable::default();
        t.apply(&ev(true, 10));
        assert_eq!(
            t.reset(P3, AlarmKind::High, "op", "", 11),
            Err(ActionError::NotLatched)
        );
        let p4 = AlarmSource::Point(4);
        let latching = RuleEvent {
            source: p4,
            latch: true,
            ..ev(true, 12)
        };
        t.apply(&latching);
        t.apply(&RuleEvent {
            active: false,
            ..latching
        });
        let r = t.reset(p4, AlarmKind::High, "op", "", 13).unwrap();
        assert_eq!(
            r.state,
            AlarmState::UnackedRtn,
            "still owed an acknowledgement"
        );
    }

    #[test]
    fn flood_and_chattering_are_raised_acknowledged() {
        let mut t = AlarmTable::default();
        let flood = RuleEvent::new(
            AlarmSource::Console(0),
            AlarmKind::Flood,
            true,
            5,
            11.0,
            10.0,
            Priority::Medium,
        );
        assert_eq!(t.apply(&flood).unwrap().state, AlarmState::AckedActive);
        let end = t
            .apply(&RuleEvent {
                active: false,
                ..flood
            })
            .unwrap();
        assert_eq!(end.state, AlarmState::Normal);
    }
}
