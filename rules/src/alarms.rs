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

use std::collections::BTreeMap;

use hazardwatch_proto::{AlarmKind, PointIdx, Priority, RuleEvent};

/// ISA-18.2 alarm state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    /// Condition clear and acknowledged.
    Normal,
    /// Condition active, not acknowledged.
    UnackedActive,
    /// Condition active, acknowledged.
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
}

/// One transition of one alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRecord {
    /// Sequence number, increasing by one per record.
    pub seq: u64,
    /// The point.
    pub point: PointIdx,
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
    /// Operator, for operator actions.
    pub actor: String,
    /// Operator's comment.
    pub comment: String,
}

/// An alarm that is active or still unacknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlarm {
    /// Its current state (never Normal).
    pub state: AlarmState,
    /// Event time it was raised, ms.
    pub raised_at_ms: i64,
    /// The most recent record of this alarm.
    pub last: AlarmRecord,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No such alarm is active or unacknowledged.
    #[error("no active or unacknowledged alarm")]
    NotFound,
    /// It was acknowledged already.
    #[error("already acknowledged")]
    AlreadyAcknowledged,
}

/// Every alarm that is not in the Normal state, keyed by point and kind.
#[derive(Debug, Default)]
pub struct AlarmTable {
    last_seq: u64,
    alarms: BTreeMap<(PointIdx, AlarmKind), ActiveAlarm>,
}

impl AlarmTable {
    /// A table whose next record gets sequence number `last_seq + 1`.
    pub fn starting_after(last_seq: u64) -> Self {
        AlarmTable {
            last_seq,
            alarms: BTreeMap::new(),
        }
    }

    /// The sequence number of the newest record.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applies a rule event; returns the transition it caused, if any (a
    /// raise of an alarm already active changes nothing).
    pub fn apply(&mut self, ev: &RuleEvent) -> Option<AlarmRecord> {
        let key = (ev.point, ev.kind);
        let current = self.alarms.get(&key).map(|a| a.state);
        let (transition, state) = match (ev.active, current) {
            (true, None | Some(AlarmState::UnackedRtn)) => {
                (Transition::Raised, AlarmState::UnackedActive)
            }
            (false, Some(AlarmState::UnackedActive)) => {
                (Transition::Cleared, AlarmState::UnackedRtn)
            }
            (false, Some(AlarmState::AckedActive)) => (Transition::Cleared, AlarmState::Normal),
            _ => return None,
        };
        self.last_seq += 1;
        let record = AlarmRecord {
            seq: self.last_seq,
            point: ev.point,
            kind: ev.kind,
            priority: ev.priority,
            transition,
            state,
            ts_ms: ev.ts_ms,
            value: ev.value,
            limit: ev.limit,
            predicted_ms: ev.predicted_ms,
            actor: String::new(),
            comment: String::new(),
        };
        self.store(record.clone());
        Some(record)
    }

    /// Records an operator's acknowledgement at wall time `now_ms`.
    pub fn acknowledge(
        &mut self,
        point: PointIdx,
        kind: AlarmKind,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AlarmRecord, AckError> {
        let alarm = self.alarms.get(&(point, kind)).ok_or(AckError::NotFound)?;
        let state = match alarm.state {
            AlarmState::UnackedActive => AlarmState::AckedActive,
            AlarmState::UnackedRtn => AlarmState::Normal,
            AlarmState::AckedActive | AlarmState::Normal => {
                return Err(AckError::AlreadyAcknowledged);
            }
        };
        self.last_seq += 1;
        let record = AlarmRecord {
            seq: self.last_seq,
            transition: Transition::Acknowledged,
            state,
            ts_ms: now_ms,
            value: f64::NAN,
            actor: actor.to_owned(),
            comment: comment.to_owned(),
            ..alarm.last.clone()
        };
        self.store(record.clone());
        Ok(record)
    }

    fn store(&mut self, record: AlarmRecord) {
        let key = (record.point, record.kind);
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
                last: record,
            },
        );
    }

    /// Alarms that are active or unacknowledged, by point and kind.
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

    fn ev(active: bool, ts_ms: i64) -> RuleEvent {
        RuleEvent {
            point: 3,
            kind: AlarmKind::High,
            active,
            ts_ms,
            value: 1.0,
            limit: 0.5,
            priority: Priority::Medium,
            predicted_ms: None,
        }
    }

    #[test]
    fn raise_ack_clear_walks_the_isa_states() {
        let mut t = AlarmTable::default();
        let r = t.apply(&ev(true, 10)).unwrap();
        assert_eq!((r.seq, r.state), (1, AlarmState::UnackedActive));
        assert!(t.apply(&ev(true, 11)).is_none(), "already active");
        let a = t.acknowledge(3, AlarmKind::High, "op", "seen", 12).unwrap();
        assert_eq!((a.seq, a.state), (2, AlarmState::AckedActive));
        assert_eq!(
            t.acknowledge(3, AlarmKind::High, "op", "", 13),
            Err(AckError::AlreadyAcknowledged)
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
        let a = t.acknowledge(3, AlarmKind::High, "op", "", 50).unwrap();
        assert_eq!(a.state, AlarmState::Normal);
        assert!(t.is_empty());
        assert_eq!(
            t.acknowledge(3, AlarmKind::High, "op", "", 60),
            Err(AckError::NotFound)
        );
    }
}
