//! A regional instance's record of how far it has merged each upstream
//! park's feed: the park's sequence number of the last event merged,
//! committed in the same transaction as the events, so a restart of either
//! side resumes the feed with no gap and no duplicate.

use hazardwatch_proto::pb;
use redb::{ReadableDatabase, TableDefinition};

use super::AlarmJournal;
use crate::error::Result;

pub(super) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("upstream_cursor");

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
    /// held) and moves its cursor to `upstream_seq`, in one durable
    /// transaction.
    pub fn commit_upstream(
        &self,
        park: &str,
        upstream_seq: u64,
        events: &[pb::AlarmEvent],
    ) -> Result<()> {
        let tx = self.db()?.begin_write().map_err(|e| self.error(e))?;
        self.append(&tx, events, &[])?;
        {
            let mut cursors = tx.open_table(CURSORS).map_err(|e| self.error(e))?;
            cursors
                .insert(park, upstream_seq)
                .map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))
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
        journal
            .commit_upstream("P1", 41, &[ev(1, 40), ev(2, 41)])
            .expect("committed");
        // Out of order: refused, and the cursor stays.
        assert!(journal.commit_upstream("P1", 99, &[ev(2, 99)]).is_err());
        drop(journal);
        let journal = AlarmJournal::open(&path).expect("reopened");
        assert_eq!(journal.upstream_cursor("P1").expect("read"), 41);
        assert_eq!(journal.upstream_cursor("P2").expect("read"), 0);
        assert_eq!(journal.last_seq().expect("read"), 2);
    }
}
