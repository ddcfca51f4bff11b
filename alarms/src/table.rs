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
//!
//! Operators may also take an alarm out of annunciation themselves
//! (ISA-18.2): *shelve* it until a time (a nuisance alarm during a known
//! upset; it comes back on its own when the shelf expires, re-annunciated
//! if its condition is still active) or take it *out of service* until
//! returned (a broken instrument awaiting repair). Either way its condition
//! changes are still recorded, flagged. Every action records who, when and
//! why, and so does a plain comment.
//!
//! Closed loop: an alarm the disposal policy covers (see
//! [`AlarmTable::set_disposal_policy`]) is not closed by returning to
//! normal and being acknowledged; it waits for a *disposal record* (who,
//! cause, action). Until then [`AlarmTable::escalate_due`] moves it up the
//! escalation chain (enterprise, park, county, city, province) as its
//! deadlines pass.

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
    /// An operator shelved the alarm until a time.
    Shelved,
    /// The shelf ended: an operator unshelved it, or it expired.
    Unshelved,
    /// An operator commented; nothing else changed.
    Commented,
    /// An operator took the alarm out of service.
    RemovedFromService,
    /// An operator returned it to service.
    ReturnedToService,
    /// It moved up one level of the escalation chain.
    Escalated,
    /// An operator recorded its disposal (cause, action): the loop is
    /// closed, it escalates no further.
    Disposed,
    /// A notification of it reached a recipient; nothing else changed.
    Notified,
    /// A notification of it failed (an attempt, or for good); nothing else
    /// changed.
    NotificationFailed,
}

/// A record that changes nothing but an alarm's timeline.
#[derive(Debug, Clone, Copy)]
pub struct Note<'a> {
    /// What it records: a comment, a notification's delivery or failure.
    pub transition: Transition,
    /// Who: the operator, or the notification's recipient.
    pub actor: &'a str,
    /// The comment, or why a notification failed.
    pub comment: &'a str,
    /// For notifications, the attempts made; NaN otherwise.
    pub value: f64,
    /// For notification failures, `retrying` or `abandoned`.
    pub action: &'a str,
}

/// True when an alarm stays in the table (and in lists): not normal, or
/// normal but shelved, out of service or waiting for its disposal record.
pub(crate) fn stays_open(
    normal: bool,
    shelved: bool,
    out_of_service: bool,
    awaiting: bool,
) -> bool {
    !normal || shelved || out_of_service || awaiting
}

/// Levels of the escalation chain, from the plant up (index 0 to 4).
pub const ESCALATION_LEVELS: [&str; 5] = ["enterprise", "park", "county", "city", "province"];

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
    /// A condition change judged after the fact, from readings that came
    /// later than the lateness bound.
    pub backfilled: bool,
    /// For a multivariate warning: the points contributing most (for its
    /// message; not kept in the journal beyond the message).
    pub contributors: [Option<hazardwatch_proto::PointIdx>; 2],
    /// Shelved until this wall time (ms): recorded, not annunciated.
    pub shelved_until_ms: Option<i64>,
    /// Out of service: recorded, not annunciated, until returned.
    pub out_of_service: bool,
    /// Escalation level reached, an index into [`ESCALATION_LEVELS`].
    pub escalation: u8,
    /// Waiting for a disposal record to be closed.
    pub awaiting_disposal: bool,
    /// A disposal's action taken (its cause is the comment).
    pub action: String,
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
    /// Since when it has waited for its disposal record (wall or event
    /// time of the raise, ms): escalation deadlines count from here.
    pub awaiting_since_ms: i64,
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
    /// Unshelve of an alarm that is not shelved.
    #[error("not shelved")]
    NotShelved,
    /// Shelve of an alarm that is out of service.
    #[error("out of service: return it to service first")]
    OutOfService,
    /// Out of service (or back) when it already is so.
    #[error("already {0}")]
    Already(&'static str),
    /// Disposal of an alarm that does not wait for one.
    #[error("not awaiting a disposal record")]
    NotAwaitingDisposal,
}

/// Which raised alarms need a disposal record to close: a predicate over
/// the alarm's source, kind and priority.
pub type DisposalPolicy = Box<dyn Fn(AlarmSource, AlarmKind, Priority) -> bool + Send + Sync>;

/// Every alarm that is not in the Normal state, or is shelved or out of
/// service, keyed by source and kind.
#[derive(Default)]
pub struct AlarmTable {
    last_seq: u64,
    alarms: BTreeMap<(AlarmSource, AlarmKind), ActiveAlarm>,
    disposal: Option<DisposalPolicy>,
}

impl std::fmt::Debug for AlarmTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmTable")
            .field("last_seq", &self.last_seq)
            .field("alarms", &self.alarms)
            .finish_non_exhaustive()
    }
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
            disposal: None,
        }
    }

    /// Sets which alarms, when raised, need a disposal record to close.
    pub fn set_disposal_policy(&mut self, policy: DisposalPolicy) {
        self.disposal = Some(policy);
    }

    /// Takes the next sequence number for an event that is not an alarm
    /// transition (a risk colour change) but is numbered with them.
    pub fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
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
                    // Shelved or out of service: the clear is recorded, and
                    // the entry keeps its shelf.
                    AlarmState::Normal | AlarmState::AckedActive | AlarmState::UnackedRtn => {
                        AlarmState::Normal
                    }
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
            backfilled: ev.backfilled,
            contributors: ev.contributors,
            shelved_until_ms: current.and_then(|a| a.last.shelved_until_ms),
            out_of_service: current.is_some_and(|a| a.last.out_of_service),
            escalation: current.map_or(0, |a| a.last.escalation),
            awaiting_disposal: current.is_some_and(|a| a.last.awaiting_disposal)
                || (ev.active
                    && self
                        .disposal
                        .as_ref()
                        .is_some_and(|p| p(ev.source, ev.kind, ev.priority))),
            action: String::new(),
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
            0,
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
            0,
        ))
    }

    /// Shelves an alarm until wall time `until_ms` (a later shelve moves
    /// the expiry). It stays in the table, recorded but not annunciated,
    /// until [`AlarmTable::unshelve`] or [`AlarmTable::expire_shelves`].
    pub fn shelve(
        &mut self,
        source: AlarmSource,
        kind: AlarmKind,
        until_ms: i64,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AlarmRecord, ActionError> {
        let alarm = self.find(source, kind)?;
        if alarm.last.out_of_service {
            return Err(ActionError::OutOfService);
        }
        let state = alarm.state;
        Ok(self.operator_record(
            source,
            kind,
            Transition::Shelved,
            state,
            actor,
            comment,
            now_ms,
            until_ms,
        ))
    }

    /// Ends a shelf. An alarm whose condition is still active is
    /// annunciated again, owed a new acknowledgement (ISA-18.2); one that
    /// is normal leaves the table.
    pub fn unshelve(
        &mut self,
        source: AlarmSource,
        kind: AlarmKind,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AlarmRecord, ActionError> {
        let alarm = self.find(source, kind)?;
        if alarm.last.shelved_until_ms.is_none() {
            return Err(ActionError::NotShelved);
        }
        let state = match alarm.state {
            _ if alarm.condition && kind.needs_ack() => AlarmState::UnackedActive,
            s => s,
        };
        Ok(self.operator_record(
            source,
            kind,
            Transition::Unshelved,
            state,
            actor,
            comment,
            now_ms,
            0,
        ))
    }

    /// Ends every shelf whose expiry is at or before wall time `now_ms`, as
    /// [`AlarmTable::unshelve`] by nobody ("shelf expired").
    pub fn expire_shelves(&mut self, now_ms: i64) -> Vec<AlarmRecord> {
        let due: Vec<(AlarmSource, AlarmKind)> = self
            .alarms
            .iter()
            .filter(|(_, a)| a.last.shelved_until_ms.is_some_and(|t| t <= now_ms))
            .map(|(&k, _)| k)
            .collect();
        due.into_iter()
            .filter_map(|(source, kind)| {
                self.unshelve(source, kind, "", "shelf expired", now_ms)
                    .ok()
            })
            .collect()
    }

    /// Takes an alarm out of service (`out = true`: recorded, not
    /// annunciated, until returned) or returns it to service, where it
    /// is annunciated again as [`AlarmTable::unshelve`] does.
    pub fn set_out_of_service(
        &mut self,
        source: AlarmSource,
        kind: AlarmKind,
        out: bool,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AlarmRecord, ActionError> {
        let alarm = self.find(source, kind)?;
        if alarm.last.out_of_service == out {
            return Err(ActionError::Already(if out {
                "out of service"
            } else {
                "in service"
            }));
        }
        let (transition, state) = if out {
            (Transition::RemovedFromService, alarm.state)
        } else if alarm.condition && kind.needs_ack() {
            (Transition::ReturnedToService, AlarmState::UnackedActive)
        } else {
            (Transition::ReturnedToService, alarm.state)
        };
        Ok(self.operator_record(source, kind, transition, state, actor, comment, now_ms, 0))
    }

    /// Moves every alarm still waiting for its disposal record up the
    /// escalation chain when its deadline has passed at wall time
    /// `now_ms`: `after_ms(source, level)` is how long after the alarm began
    /// waiting it leaves `level` (None: it stays there). One record per
    /// level climbed.
    pub fn escalate_due(
        &mut self,
        now_ms: i64,
        after_ms: impl Fn(AlarmSource, u8) -> Option<i64>,
    ) -> Vec<AlarmRecord> {
        let top = (ESCALATION_LEVELS.len() - 1) as u8;
        let mut out = Vec::new();
        loop {
            let due: Vec<(AlarmSource, AlarmKind)> = self
                .alarms
                .iter()
                .filter(|(_, a)| {
                    let l = a.last.escalation;
                    a.last.awaiting_disposal
                        && l < top
                        && after_ms(a.last.source, l)
                            .is_some_and(|after| now_ms >= a.awaiting_since_ms + after)
                })
                .map(|(&k, _)| k)
                .collect();
            if due.is_empty() {
                return out;
            }
            for (source, kind) in due {
                let state = self.alarms[&(source, kind)].state;
                out.push(self.operator_record(
                    source,
                    kind,
                    Transition::Escalated,
                    state,
                    "",
                    "",
                    now_ms,
                    0,
                ));
            }
        }
    }

    /// Records an alarm's disposal: who, the cause (as the comment) and the
    /// action taken. It escalates no further and, once normal, is closed.
    #[allow(clippy::too_many_arguments)]
    pub fn dispose(
        &mut self,
        source: AlarmSource,
        kind: AlarmKind,
        actor: &str,
        cause: &str,
        action: &str,
        now_ms: i64,
    ) -> Result<AlarmRecord, ActionError> {
        let alarm = self.find(source, kind)?;
        if !alarm.last.awaiting_disposal {
            return Err(ActionError::NotAwaitingDisposal);
        }
        let state = alarm.state;
        let mut record = self.operator_record(
            source,
            kind,
            Transition::Disposed,
            state,
            actor,
            cause,
            now_ms,
            0,
        );
        record.action = action.to_owned();
        if let Some(a) = self.alarms.get_mut(&(source, kind)) {
            a.last.action = record.action.clone();
        }
        Ok(record)
    }

    /// Records an operator's comment on an alarm; nothing else changes.
    pub fn comment(
        &mut self,
        source: AlarmSource,
        kind: AlarmKind,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<AlarmRecord, ActionError> {
        let note = Note {
            transition: Transition::Commented,
            actor,
            comment,
            value: f64::NAN,
            action: "",
        };
        self.note(source, kind, &note, now_ms)
    }

    /// Records a transition that changes nothing but the alarm's timeline
    /// (a comment, a notification's delivery or failure).
    pub fn note(
        &mut self,
        source: AlarmSource,
        kind: AlarmKind,
        note: &Note<'_>,
        now_ms: i64,
    ) -> Result<AlarmRecord, ActionError> {
        let state = self.find(source, kind)?.state;
        let mut record = self.operator_record(
            source,
            kind,
            note.transition,
            state,
            note.actor,
            note.comment,
            now_ms,
            0,
        );
        record.value = note.value;
        record.action = note.action.to_owned();
        if let Some(a) = self.alarms.get_mut(&(source, kind)) {
            a.last.value = record.value;
            a.last.action = record.action.clone();
        }
        Ok(record)
    }

    /// The alarm an operator acts on.
    fn find(&self, source: AlarmSource, kind: AlarmKind) -> Result<&ActiveAlarm, ActionError> {
        self.alarms
            .get(&(source, kind))
            .ok_or(ActionError::NotFound)
    }

    /// Appends an operator's record for an alarm in the table
    /// (`shelved_until` is used by [`Transition::Shelved`] only).
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
        shelved_until: i64,
    ) -> AlarmRecord {
        let alarm = &self.alarms[&(source, kind)];
        let (latch, condition) = (alarm.latch, alarm.condition);
        let last = &alarm.last;
        let shelved_until_ms = match transition {
            Transition::Shelved => Some(shelved_until),
            Transition::Unshelved => None,
            _ => last.shelved_until_ms,
        };
        let out_of_service = match transition {
            Transition::RemovedFromService => true,
            Transition::ReturnedToService => false,
            _ => last.out_of_service,
        };
        let escalation = last.escalation + u8::from(transition == Transition::Escalated);
        self.last_seq += 1;
        let record = AlarmRecord {
            seq: self.last_seq,
            transition,
            state,
            ts_ms: now_ms,
            value: f64::NAN,
            latched: last.latched && transition != Transition::Reset,
            shelved_until_ms,
            out_of_service,
            escalation,
            awaiting_disposal: last.awaiting_disposal && transition != Transition::Disposed,
            action: String::new(),
            actor: actor.to_owned(),
            comment: comment.to_owned(),
            backfilled: false,
            ..last.clone()
        };
        self.store(record.clone(), latch, condition);
        record
    }

    fn store(&mut self, record: AlarmRecord, latch: bool, condition: bool) {
        let key = (record.source, record.kind);
        let open = stays_open(
            record.state == AlarmState::Normal,
            record.shelved_until_ms.is_some(),
            record.out_of_service,
            record.awaiting_disposal,
        );
        if !open {
            self.alarms.remove(&key);
            return;
        }
        let current = self.alarms.get(&key);
        let raised_at_ms = match (record.transition, current) {
            (Transition::Raised, _) | (_, None) => record.ts_ms,
            (_, Some(a)) => a.raised_at_ms,
        };
        let awaiting_since_ms = match current {
            Some(a) if a.last.awaiting_disposal => a.awaiting_since_ms,
            _ => record.ts_ms,
        };
        self.alarms.insert(
            key,
            ActiveAlarm {
                state: record.state,
                raised_at_ms,
                latch,
                condition,
                awaiting_since_ms,
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
mod tests;
