//! Alarm events the journal could not take yet (a full disk): held in
//! order, with the latest state of each alarm they touched, and committed
//! together with the next events, or by the next clock tick, once the
//! journal works again. Nothing is dropped unless more than
//! [`MAX_UNJOURNALED`] events wait; then the oldest go, each counted and
//! logged.

use std::collections::BTreeMap;

use hazardwatch_proto::pb;
use hazardwatch_storage::AlarmJournal;

/// Events held at most while the journal fails.
pub const MAX_UNJOURNALED: usize = 100_000;

/// Events and alarm states waiting for the journal.
#[derive(Debug, Default)]
pub(super) struct Unjournaled {
    events: Vec<pb::AlarmEvent>,
    states: BTreeMap<String, Option<pb::JournalAlarm>>,
    /// The journal failed at the last attempt.
    failing: bool,
}

impl Unjournaled {
    /// Events waiting.
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    /// Adds events and the states they leave, then commits everything
    /// waiting.
    pub(super) fn commit(
        &mut self,
        journal: &AlarmJournal,
        events: &[pb::AlarmEvent],
        states: &[(&str, Option<&pb::JournalAlarm>)],
    ) {
        self.events.extend_from_slice(events);
        for (id, state) in states {
            self.states.insert((*id).to_owned(), state.cloned());
        }
        if self.events.len() > MAX_UNJOURNALED {
            let lost = self.events.len() - MAX_UNJOURNALED;
            self.events.drain(..lost);
            tracing::error!(
                events = lost,
                "alarm journal: failing for too long; the oldest events waiting are lost from history"
            );
            metrics::counter!("hazardwatch_journal_dropped_total").increment(lost as u64);
        }
        self.flush(journal);
    }

    /// Commits everything waiting, if anything is.
    pub(super) fn flush(&mut self, journal: &AlarmJournal) {
        if self.events.is_empty() && self.states.is_empty() {
            return;
        }
        let states: Vec<(&str, Option<&pb::JournalAlarm>)> = self
            .states
            .iter()
            .map(|(id, s)| (id.as_str(), s.as_ref()))
            .collect();
        match journal.commit(&self.events, &states) {
            Ok(()) => {
                if self.failing {
                    tracing::info!(
                        events = self.events.len(),
                        "alarm journal: writable again; the events held meanwhile are journaled"
                    );
                }
                self.events.clear();
                self.states.clear();
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    tracing::error!(error = %e, "alarm journal: cannot write; alarm events are held in memory and retried every second");
                }
                self.failing = true;
                metrics::counter!("hazardwatch_journal_errors_total").increment(1);
            }
        }
        metrics::gauge!("hazardwatch_journal_unjournaled").set(self.events.len() as f64);
    }
}
