//! A notification's fate on its alarm's timeline: delivered, retrying,
//! abandoned (the notifier in the binary sends them; see `src/notify/`).

use hazardwatch_proto::pb;

use super::AlarmHub;
use crate::table::{AlarmState, Note, Transition};
use crate::wire::{self, alarm_key};

/// How a notification of an alarm went, as its timeline records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The recipient took it.
    Delivered,
    /// An attempt failed; it will be retried.
    Retrying,
    /// No more attempts: the recipient refused it, or it grew too old.
    Abandoned,
}

impl AlarmHub {
    /// Records on the timeline of `trigger`'s alarm how its notification
    /// to `recipient` went, after `attempts` attempts (`reason`: why it
    /// failed). The alarm's state is unchanged; an alarm that has closed
    /// since gets the record as a normal one. `None` when the alarm's
    /// source has left the site model.
    pub fn record_notification(
        &self,
        trigger: &pb::AlarmEvent,
        recipient: &str,
        delivery: Delivery,
        attempts: u32,
        reason: &str,
        now_ms: i64,
    ) -> Option<pb::AlarmEvent> {
        let (transition, action) = match delivery {
            Delivery::Delivered => (Transition::Notified, ""),
            Delivery::Retrying => (Transition::NotificationFailed, wire::RETRYING),
            Delivery::Abandoned => (Transition::NotificationFailed, wire::ABANDONED),
        };
        let note = Note {
            transition,
            actor: recipient,
            comment: reason,
            value: f64::from(attempts),
            action,
        };
        let catalog = self.catalog();
        let (source, kind) = alarm_key(&catalog, &trigger.alarm_id)?;
        let mut table = self.lock();
        if let Ok(record) = table.note(source, kind, &note, now_ms) {
            return self.publish(&mut table, &[record]).pop();
        }
        // Closed since: its timeline goes on from the trigger.
        let mut record = wire::record(&catalog, trigger)?;
        record.seq = table.next_seq();
        record.transition = transition;
        record.state = AlarmState::Normal;
        record.ts_ms = now_ms;
        record.value = note.value;
        record.action = action.to_owned();
        record.actor = recipient.to_owned();
        record.comment = reason.to_owned();
        record.awaiting_disposal = false;
        record.shelved_until_ms = None;
        record.backfilled = false;
        let event = self.to_pb(&record);
        self.send(std::slice::from_ref(&event), &[]);
        Some(event)
    }
}
