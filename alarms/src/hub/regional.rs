//! The hub of a regional instance: events merged from its parks' feeds,
//! numbered here and journaled with each park's cursor, and the parks'
//! alarms that are not closed (for lists and new subscribers). No site
//! model and no alarm table of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use hazardwatch_proto::{Catalog, pb};
use hazardwatch_storage::AlarmJournal;

use super::AlarmHub;
use crate::access::Caller;
use crate::error::{Error, Result};
use crate::escalation::EscalationPolicy;
use crate::risk::RiskModel;
use crate::table::stays_open;

impl AlarmHub {
    /// A regional instance's hub over its journal: no site model and no
    /// alarm table of its own; events come merged from its parks
    /// ([`AlarmHub::record_upstream`]).
    pub fn open_regional(journal: AlarmJournal, now_ms: i64) -> Result<Arc<AlarmHub>> {
        let (hub, _) = AlarmHub::open(
            Arc::new(Catalog::default()),
            journal,
            EscalationPolicy::default(),
            RiskModel::default(),
            now_ms,
        )?;
        let mut hub = Arc::into_inner(hub).ok_or(Error::Config {
            field: "region".into(),
            message: "the hub is shared already".into(),
        })?;
        hub.regional = true;
        Ok(Arc::new(hub))
    }

    /// Merges events from park `park`'s feed (a regional instance): each
    /// is numbered here (its park's number kept in `upstream_seq`), tagged
    /// with the park, journaled in one transaction with the park's cursor
    /// moved to `upstream_seq` (`None`: the events are the regional
    /// instance's own, about the park) and the park's merged alarms they
    /// change, then sent live. If the journal fails, nothing is numbered,
    /// changed or sent: the caller resumes the park's feed from the
    /// journaled cursor.
    pub fn record_upstream(
        &self,
        park: &str,
        upstream_seq: Option<u64>,
        mut events: Vec<pb::AlarmEvent>,
    ) -> Result<Vec<pb::AlarmEvent>> {
        let mut table = self.lock();
        let mut held = self.unjournaled.lock().unwrap_or_else(|p| p.into_inner());
        held.flush(&self.journal);
        if held.len() > 0 {
            return Err(Error::JournalBehind(held.len()));
        }
        drop(held);
        let first = table.last_seq() + 1;
        for (e, seq) in events.iter_mut().zip(first..) {
            e.upstream_seq = e.seq;
            e.seq = seq;
            e.park = park.to_owned();
        }
        let mut merged = self.merged.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed: BTreeMap<String, Option<pb::JournalAlarm>> = BTreeMap::new();
        for e in &events {
            if let Some(state) = merged_state(e, |id| match changed.get(id) {
                Some(now) => now.clone(),
                None => merged.get(&(park.to_owned(), id.to_owned())).cloned(),
            }) {
                changed.insert(e.alarm_id.clone(), state);
            }
        }
        let changes: Vec<(&str, Option<&pb::JournalAlarm>)> = changed
            .iter()
            .map(|(id, a)| (id.as_str(), a.as_ref()))
            .collect();
        self.journal
            .commit_upstream(park, upstream_seq, &events, &changes)?;
        for (id, a) in changed {
            let key = (park.to_owned(), id);
            match a {
                Some(a) => merged.insert(key, a),
                None => merged.remove(&key),
            };
        }
        drop(merged);
        for e in &events {
            table.next_seq();
            let _ = self.live.send(e.clone());
        }
        metrics::counter!("hazardwatch_upstream_events_total", "park" => park.to_owned())
            .increment(events.len() as u64);
        Ok(events)
    }

    /// The latest event of a merged alarm that is not closed (a regional
    /// instance), if `park` has one with this id.
    pub fn merged_open(&self, park: &str, alarm_id: &str) -> Option<pb::AlarmEvent> {
        let merged = self.merged.lock().unwrap_or_else(|p| p.into_inner());
        merged
            .get(&(park.to_owned(), alarm_id.to_owned()))
            .and_then(|a| a.last.clone())
    }

    /// True on a regional instance (see [`AlarmHub::open_regional`]).
    pub fn is_regional(&self) -> bool {
        self.regional
    }

    /// Why an operator action on a regional instance is refused: the park
    /// that handles the alarm, when the caller may see it.
    pub(super) fn act_at_park(&self, caller: &Caller, alarm_id: &str) -> Error {
        let merged = self.merged.lock().unwrap_or_else(|p| p.into_inner());
        match merged
            .keys()
            .find(|(park, id)| id == alarm_id && caller.parks.allows(park))
        {
            Some((park, _)) => Error::ActAtPark {
                alarm_id: alarm_id.to_owned(),
                park: park.clone(),
            },
            None => Error::NotFound(format!("no open alarm `{alarm_id}` from a park here")),
        }
    }
}

/// What a merged event `e` leaves its alarm as, given the alarm's state
/// before (`before`): `Some(None)` when it closes, `Some(Some(..))` when
/// it is (still) open, `None` when the event is not about an alarm (a
/// risk colour or a unit state). The table's rule
/// (`table::stays_open`) says which alarms stay open.
fn merged_state(
    e: &pb::AlarmEvent,
    before: impl FnOnce(&str) -> Option<pb::JournalAlarm>,
) -> Option<Option<pb::JournalAlarm>> {
    let site_change = e.transition == pb::Transition::RiskChanged as i32
        || e.transition == pb::Transition::UnitStateChanged as i32;
    if site_change {
        return None;
    }
    let open = stays_open(
        e.state == pb::AlarmState::Normal as i32,
        e.shelved_until_ms != 0,
        e.out_of_service,
        e.awaiting_disposal,
    );
    if !open {
        return Some(None);
    }
    let raised_at_ms = match before(&e.alarm_id) {
        Some(a) if e.transition != pb::Transition::Raised as i32 => a.raised_at_ms,
        _ => e.event_time_ms,
    };
    Some(Some(pb::JournalAlarm {
        last: Some(e.clone()),
        state: e.state,
        raised_at_ms,
        ..Default::default()
    }))
}
