//! A regional instance's record of its upstream parks: how far it has
//! merged each park's feed (the park's sequence number of the last event
//! merged, committed in the same transaction as the events, so a restart of
//! either side resumes the feed with no gap and no duplicate), and the
//! merged alarms that are not closed, by park and alarm id.

use hazardwatch_proto::pb;
use prost::Message;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::AlarmJournal;
use crate::error::Result;

pub(super) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("upstream_cursor");
pub(super) const MERGED: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("merged_active");

/// A change to the merged alarms: an alarm id and its state now (`None`:
/// closed, forgotten).
pub type MergedChange<'a> = (&'a str, Option<&'a pb::JournalAlarm>);

impl AlarmJournal {
    /// The park's sequence number of the last of its events merged here;
    /// 0 when none has been.
    pub fn upstream_cursor(&self, park: &str) -> Result<u64> {
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let cursors = tx.open_table(CURSORS).map_err(|e| self.error(e))?;
        Ok(cursors
            .get(park)
            .map_err(|e| self.error(e))?
            .map_or(0, |v| v.value()))
    }

    /// Appends events merged from `park` (numbered here, after every event
    /// held), moves its cursor to `upstream_seq` (`None`: the events are
    /// the regional instance's own, about the park), and sets the park's
    /// merged alarms they changed, in one durable transaction.
    pub fn commit_upstream(
        &self,
        park: &str,
        upstream_seq: Option<u64>,
        events: &[pb::AlarmEvent],
        changes: &[MergedChange<'_>],
    ) -> Result<()> {
        let tx = self.db()?.begin_write().map_err(|e| self.error(e))?;
        self.append(&tx, events, &[])?;
        {
            if let Some(seq) = upstream_seq {
                let mut cursors = tx.open_table(CURSORS).map_err(|e| self.error(e))?;
                cursors.insert(park, seq).map_err(|e| self.error(e))?;
            }
            let mut merged = tx.open_table(MERGED).map_err(|e| self.error(e))?;
            for (id, state) in changes {
                match state {
                    Some(s) => {
                        merged
                            .insert((park, *id), s.encode_to_vec().as_slice())
                            .map_err(|e| self.error(e))?;
                    }
                    None => {
                        merged.remove((park, *id)).map_err(|e| self.error(e))?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| self.error(e))
    }

    /// Every merged alarm that is not closed, with its park.
    pub fn merged_active(&self) -> Result<Vec<(String, pb::JournalAlarm)>> {
        let tx = self.db()?.begin_read().map_err(|e| self.error(e))?;
        let merged = tx.open_table(MERGED).map_err(|e| self.error(e))?;
        let mut all = Vec::new();
        for row in merged.iter().map_err(|e| self.error(e))? {
            let (key, value) = row.map_err(|e| self.error(e))?;
            let alarm = pb::JournalAlarm::decode(value.value())
                .map_err(|e| self.corrupt("a merged alarm", e))?;
            all.push((key.value().0.to_owned(), alarm));
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_events_and_their_cursor_commit_together() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("region.redb");
        let journal = AlarmJournal::open(&path).expect("a journal");
        assert_eq!(journal.upstream_cursor("P1").expect("read"), 0);
        let ev = |seq, upstream_seq| pb::AlarmEvent {
            seq,
            upstream_seq,
            park: "P1".into(),
            ..Default::default()
        };
        let raised = pb::JournalAlarm {
            last: Some(ev(2, 41)),
            state: pb::AlarmState::UnackedActive as i32,
            ..Default::default()
        };
        journal
            .commit_upstream(
                "P1",
                Some(41),
                &[ev(1, 40), ev(2, 41)],
                &[("T101.LT/HH", Some(&raised))],
            )
            .expect("committed");
        // Out of order: refused, and nothing of it is kept.
        assert!(
            journal
                .commit_upstream("P1", Some(99), &[ev(2, 99)], &[("T101.LT/HH", None)])
                .is_err()
        );
        // The region's own event about the park leaves the cursor alone.
        journal
            .commit_upstream("P1", None, &[ev(3, 0)], &[])
            .expect("committed");
        drop(journal);
        let journal = AlarmJournal::open(&path).expect("reopened");
        assert_eq!(journal.upstream_cursor("P1").expect("read"), 41);
        assert_eq!(journal.upstream_cursor("P2").expect("read"), 0);
        assert_eq!(journal.last_seq().expect("read"), 3);
        assert_eq!(
            journal.merged_active().expect("read"),
            vec![("P1".to_owned(), raised)]
        );
    }
}
