//! The notification outbox, in the journal's database: the notifications
//! that wait for their recipients, and how far the journal has been
//! scanned for new ones.
//!
//! Tables:
//! - `outbox`: (recipient, event sequence number) → `OutboxEntry`
//!   (protobuf): the triggering event and how delivery has gone;
//! - `outbox_cursor`: `scanned` → the sequence number of the last journal
//!   event looked at for notifications.
//!
//! Scanning and enqueuing commit together ([`AlarmJournal::outbox_enqueue`]),
//! and an entry leaves only when it is delivered or abandoned, so a restart
//! neither loses a notification nor makes one twice. While a cursor is set,
//! [`AlarmJournal::prune`] keeps every event after it.

use std::collections::BTreeMap;

use hazardwatch_proto::pb;
use prost::Message;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::AlarmJournal;
use crate::error::Result;

pub(super) const OUTBOX: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("outbox");
pub(super) const CURSOR: TableDefinition<&str, u64> = TableDefinition::new("outbox_cursor");
const SCANNED: &str = "scanned";

/// The most notifications that wait for one recipient. When a recipient
/// has been unreachable for this many, each new one pushes out its oldest
/// (which is returned, to be recorded as abandoned).
pub const OUTBOX_CAP: usize = 10_000;

impl AlarmJournal {
    /// The sequence number of the last event scanned for notifications;
    /// `None` when notifications have never been on (or were turned off).
    pub fn outbox_scanned(&self) -> Result<Option<u64>> {
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let cursor = tx.open_table(CURSOR).map_err(|e| self.error(e))?;
        Ok(cursor
            .get(SCANNED)
            .map_err(|e| self.error(e))?
            .map(|v| v.value()))
    }

    /// In one transaction: puts `entries` (each for a recipient) in the
    /// outbox and moves the scan cursor to `scanned`. A recipient already
    /// holding [`OUTBOX_CAP`] entries loses its oldest for each new one;
    /// those are returned with their recipient.
    pub fn outbox_enqueue(
        &self,
        scanned: u64,
        entries: &[(&str, pb::OutboxEntry)],
    ) -> Result<Vec<(String, pb::OutboxEntry)>> {
        let mut pushed_out = Vec::new();
        let tx = self.db()?.begin_write().map_err(|e| self.error(e))?;
        {
            let mut outbox = tx.open_table(OUTBOX).map_err(|e| self.error(e))?;
            let mut recipients: Vec<&str> = entries.iter().map(|(r, _)| *r).collect();
            recipients.sort_unstable();
            recipients.dedup();
            for (recipient, entry) in entries {
                let seq = entry.event.as_ref().map_or(0, |e| e.seq);
                outbox
                    .insert((*recipient, seq), entry.encode_to_vec().as_slice())
                    .map_err(|e| self.error(e))?;
            }
            for recipient in recipients {
                let all = (recipient, 0)..=(recipient, u64::MAX);
                let held = outbox
                    .range(all.clone())
                    .map_err(|e| self.error(e))?
                    .count();
                let mut oldest = Vec::new();
                for row in outbox
                    .range(all)
                    .map_err(|e| self.error(e))?
                    .take(held.saturating_sub(OUTBOX_CAP))
                {
                    let (key, value) = row.map_err(|e| self.error(e))?;
                    let entry = pb::OutboxEntry::decode(value.value())
                        .map_err(|e| self.corrupt("an outbox entry", e))?;
                    oldest.push((key.value().1, entry));
                }
                for (seq, entry) in oldest {
                    outbox.remove((recipient, seq)).map_err(|e| self.error(e))?;
                    pushed_out.push((recipient.to_owned(), entry));
                }
            }
            let mut cursor = tx.open_table(CURSOR).map_err(|e| self.error(e))?;
            cursor.insert(SCANNED, scanned).map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))?;
        Ok(pushed_out)
    }

    /// The oldest notification waiting for `recipient`.
    pub fn outbox_head(&self, recipient: &str) -> Result<Option<pb::OutboxEntry>> {
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let outbox = tx.open_table(OUTBOX).map_err(|e| self.error(e))?;
        let mut range = outbox
            .range((recipient, 0)..=(recipient, u64::MAX))
            .map_err(|e| self.error(e))?;
        match range.next() {
            None => Ok(None),
            Some(row) => {
                let (_, value) = row.map_err(|e| self.error(e))?;
                let entry = pb::OutboxEntry::decode(value.value())
                    .map_err(|e| self.corrupt("an outbox entry", e))?;
                Ok(Some(entry))
            }
        }
    }

    /// Replaces a waiting entry (its attempts and last error), unless it
    /// has left the outbox meanwhile.
    pub fn outbox_update(&self, recipient: &str, entry: &pb::OutboxEntry) -> Result<()> {
        let seq = entry.event.as_ref().map_or(0, |e| e.seq);
        let tx = self.db()?.begin_write().map_err(|e| self.error(e))?;
        {
            let mut outbox = tx.open_table(OUTBOX).map_err(|e| self.error(e))?;
            let held = outbox
                .get((recipient, seq))
                .map_err(|e| self.error(e))?
                .is_some();
            if held {
                outbox
                    .insert((recipient, seq), entry.encode_to_vec().as_slice())
                    .map_err(|e| self.error(e))?;
            }
        }
        tx.commit().map_err(|e| self.error(e))
    }

    /// Takes a notification out of the outbox (delivered or abandoned);
    /// true if it was there.
    pub fn outbox_remove(&self, recipient: &str, seq: u64) -> Result<bool> {
        let tx = self.db()?.begin_write().map_err(|e| self.error(e))?;
        let removed = {
            let mut outbox = tx.open_table(OUTBOX).map_err(|e| self.error(e))?;
            outbox
                .remove((recipient, seq))
                .map_err(|e| self.error(e))?
                .is_some()
        };
        tx.commit().map_err(|e| self.error(e))?;
        Ok(removed)
    }

    /// How many notifications wait, by recipient.
    pub fn outbox_waiting(&self) -> Result<BTreeMap<String, usize>> {
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let outbox = tx.open_table(OUTBOX).map_err(|e| self.error(e))?;
        let mut waiting = BTreeMap::new();
        for row in outbox.iter().map_err(|e| self.error(e))? {
            let (key, _) = row.map_err(|e| self.error(e))?;
            *waiting.entry(key.value().0.to_owned()).or_insert(0) += 1;
        }
        Ok(waiting)
    }

    /// Takes every notification waiting for `recipient` out of the outbox
    /// (it is no longer configured) and returns them.
    pub fn outbox_take_all(&self, recipient: &str) -> Result<Vec<pb::OutboxEntry>> {
        let tx = self.db()?.begin_write().map_err(|e| self.error(e))?;
        let mut taken = Vec::new();
        {
            let mut outbox = tx.open_table(OUTBOX).map_err(|e| self.error(e))?;
            let mut seqs = Vec::new();
            for row in outbox
                .range((recipient, 0)..=(recipient, u64::MAX))
                .map_err(|e| self.error(e))?
            {
                let (key, value) = row.map_err(|e| self.error(e))?;
                seqs.push(key.value().1);
                taken.push(
                    pb::OutboxEntry::decode(value.value())
                        .map_err(|e| self.corrupt("an outbox entry", e))?,
                );
            }
            for seq in seqs {
                outbox.remove((recipient, seq)).map_err(|e| self.error(e))?;
            }
        }
        tx.commit().map_err(|e| self.error(e))?;
        Ok(taken)
    }

    /// Turns the scan cursor off (no recipients are configured), so that
    /// pruning no longer waits for it.
    pub fn outbox_close(&self) -> Result<()> {
        let tx = self.db()?.begin_write().map_err(|e| self.error(e))?;
        {
            let mut cursor = tx.open_table(CURSOR).map_err(|e| self.error(e))?;
            cursor.remove(SCANNED).map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> pb::OutboxEntry {
        pb::OutboxEntry {
            event: Some(pb::AlarmEvent {
                seq,
                alarm_id: "T101.LT/HH".into(),
                ..Default::default()
            }),
            enqueued_ms: 1_000,
            ..Default::default()
        }
    }

    fn seq(e: &pb::OutboxEntry) -> u64 {
        e.event.as_ref().map_or(0, |e| e.seq)
    }

    #[test]
    fn entries_wait_per_recipient_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("alarms.redb");
        let journal = AlarmJournal::open(&path).expect("a journal");
        assert_eq!(journal.outbox_scanned().expect("read"), None);
        let out = journal
            .outbox_enqueue(
                7,
                &[("duty", entry(5)), ("duty", entry(3)), ("county", entry(5))],
            )
            .expect("enqueued");
        assert!(out.is_empty());
        drop(journal);
        let journal = AlarmJournal::open(&path).expect("reopened");
        assert_eq!(journal.outbox_scanned().expect("read"), Some(7));
        let head = journal
            .outbox_head("duty")
            .expect("read")
            .expect("an entry");
        assert_eq!(seq(&head), 3, "the oldest first");
        let mut tried = head.clone();
        tried.attempts = 2;
        tried.last_error = "HTTP 503".into();
        journal.outbox_update("duty", &tried).expect("updated");
        assert_eq!(journal.outbox_head("duty").expect("read"), Some(tried));
        assert!(journal.outbox_remove("duty", 3).expect("removed"));
        assert!(!journal.outbox_remove("duty", 3).expect("gone already"));
        assert_eq!(
            journal.outbox_head("duty").expect("read").map(|e| seq(&e)),
            Some(5)
        );
        let waiting = journal.outbox_waiting().expect("read");
        assert_eq!(waiting.get("duty"), Some(&1));
        assert_eq!(waiting.get("county"), Some(&1));
        let taken = journal.outbox_take_all("county").expect("taken");
        assert_eq!(taken.len(), 1);
        assert_eq!(journal.outbox_head("county").expect("read"), None);
        journal.outbox_close().expect("closed");
        assert_eq!(journal.outbox_scanned().expect("read"), None);
    }

    #[test]
    fn a_full_outbox_pushes_out_its_oldest() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let journal = AlarmJournal::open(&dir.path().join("alarms.redb")).expect("a journal");
        let many: Vec<_> = (1..=OUTBOX_CAP as u64)
            .map(|s| ("duty", entry(s)))
            .collect();
        assert!(
            journal
                .outbox_enqueue(1, &many)
                .expect("enqueued")
                .is_empty()
        );
        let out = journal
            .outbox_enqueue(2, &[("duty", entry(20_000)), ("other", entry(1))])
            .expect("enqueued");
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.as_str(), seq(&out[0].1)), ("duty", 1));
        assert_eq!(journal.outbox_waiting().expect("read")["duty"], OUTBOX_CAP);
        assert_eq!(
            journal.outbox_head("duty").expect("read").map(|e| seq(&e)),
            Some(2)
        );
    }
}
