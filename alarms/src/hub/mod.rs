//! The alarm hub: applies the rule engine's events and operators' actions
//! to the alarm table, numbers every transition, writes it to the durable
//! journal, and fans it out live.
//!
//! One lock guards the table, the journal append and the broadcast send, in
//! that order: an event is on disk before anyone sees it, and a subscriber
//! that reads the journal's tail and takes its live receiver under that lock
//! sees every event exactly once. Catch-up reads of the journal take no
//! lock, so a subscriber far behind never holds up the rules.
//!
//! At start the table is rebuilt from the journal's record of the alarms
//! that were not normal; see [`AlarmHub::open`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use hazardwatch_proto::{AlarmKind, AlarmSource, Catalog, RuleEvent, pb};
use hazardwatch_storage::AlarmJournal;
use tokio::sync::broadcast;

use crate::access::{Caller, Role, Scope};
use crate::eemua;
use crate::error::{Error, Result};
use crate::escalation::EscalationPolicy;
use crate::rate::ActionLimiter;
use crate::risk::{Colour, RiskModel};
use crate::table::{ActionError, ActiveAlarm, AlarmRecord, AlarmTable};
use crate::text::Text;
use crate::wire::{self, alarm_id, alarm_key, restore_alarm};

mod colours;
mod filter;
mod notified;
mod regional;
mod unjournaled;

pub use unjournaled::MAX_UNJOURNALED;
use unjournaled::Unjournaled;

pub use filter::Filter;
pub use notified::Delivery;

/// Events buffered per live subscriber before it counts as lagging (it then
/// catches up from the journal).
pub const BROADCAST_CAPACITY: usize = 4_096;

/// An operator action on one alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// ISA-18.2 acknowledgement.
    Acknowledge,
    /// Reset of a latched alarm.
    Reset,
    /// Shelve for this many seconds, 1 to [`MAX_SHELVE_S`].
    Shelve(u32),
    /// End a shelf.
    Unshelve,
    /// A comment only.
    Comment,
    /// Out of service (true) or back in service (false).
    OutOfService(bool),
    /// The disposal record: the action taken (the comment is the cause).
    Dispose(String),
}

/// Shared alarm state (see the module docs).
pub struct AlarmHub {
    catalog: Arc<RwLock<Arc<Catalog>>>,
    escalation: EscalationPolicy,
    risk: RwLock<RiskModel>,
    /// Each hazard source's colour as last published; changed under the
    /// table's lock.
    colours: Mutex<BTreeMap<String, Colour>>,
    table: Mutex<AlarmTable>,
    journal: AlarmJournal,
    live: broadcast::Sender<pb::AlarmEvent>,
    /// After a restart, the event time of the last condition change the
    /// journal holds for each alarm the write-ahead log's readings may
    /// touch again (see [`AlarmHub::guard_replay`]).
    replayed: Mutex<HashMap<(AlarmSource, AlarmKind), i64>>,
    /// Operator actions per token (see [`crate::rate`]).
    actions: ActionLimiter,
    /// Events the journal could not take yet; taken under the table's lock.
    unjournaled: Mutex<Unjournaled>,
    /// On a regional instance: the alarms merged from its parks that are
    /// not closed, by (park, alarm id); changed under the table's lock.
    merged: Mutex<BTreeMap<(String, String), pb::JournalAlarm>>,
    /// A regional instance's hub: events merged from parks, no site model.
    regional: bool,
}

/// A subscriber's start: events to send first, the sequence number they
/// are consistent with, and the live receiver that follows them.
pub type Watch = (
    Vec<pb::AlarmEvent>,
    u64,
    broadcast::Receiver<pb::AlarmEvent>,
);

/// What [`AlarmHub::open`] rebuilt from the journal.
#[derive(Debug, Default)]
pub struct Restored {
    /// Alarms brought back (active, latched or unacknowledged).
    pub alarms: usize,
    /// Their conditions that were active when the service stopped: the
    /// rule engine starts from them, so it clears them when they end.
    pub conditions: Vec<(AlarmSource, AlarmKind)>,
    /// Alarms ended at start: their point, unit or enterprise left the site
    /// model while the service was stopped, or they were flood or
    /// chattering conditions, whose counts start again from zero.
    pub ended: usize,
}

impl AlarmHub {
    /// A hub over the site's catalog and the journal, with the alarm table
    /// rebuilt from the journal's record of the alarms that were not
    /// normal. Alarms whose point, unit or enterprise is no longer in the
    /// site model, and flood and chattering conditions (their counts start
    /// again with the service), are ended at `now_ms` with an event saying
    /// why; everything else carries on exactly where it stood.
    pub fn open(
        catalog: Arc<Catalog>,
        journal: AlarmJournal,
        escalation: EscalationPolicy,
        risk: RiskModel,
        now_ms: i64,
    ) -> Result<(Arc<AlarmHub>, Restored)> {
        let mut seq = journal.last_seq()?;
        let merged = journal
            .merged_active()?
            .into_iter()
            .filter_map(|(park, a)| {
                let id = a.last.as_ref()?.alarm_id.clone();
                Some(((park, id), a))
            })
            .collect();
        let mut restored = Restored::default();
        let mut alarms = Vec::new();
        let mut ended: Vec<pb::AlarmEvent> = Vec::new();
        for stored in journal.active()? {
            let Some(last) = stored.last.as_ref() else {
                continue;
            };
            match restore_alarm(&catalog, &stored) {
                Some(alarm) if alarm.last.kind.needs_ack() => {
                    if alarm.condition {
                        restored
                            .conditions
                            .push((alarm.last.source, alarm.last.kind));
                    }
                    alarms.push(alarm);
                }
                restorable => {
                    seq += 1;
                    let why = if restorable.is_some() {
                        "ended_at_restart"
                    } else {
                        "ended_not_in_model"
                    };
                    let mut e = pb::AlarmEvent {
                        seq,
                        transition: pb::Transition::Cleared as i32,
                        state: pb::AlarmState::Normal as i32,
                        event_time_ms: now_ms,
                        value: f64::NAN,
                        actor: String::new(),
                        comment: String::new(),
                        latched: false,
                        ..last.clone()
                    };
                    wire::set_text(&mut e, &Text::new(why).with("id", &last.alarm_id));
                    ended.push(e);
                }
            }
        }
        if !ended.is_empty() {
            let gone: Vec<(&str, Option<&pb::JournalAlarm>)> =
                ended.iter().map(|e| (e.alarm_id.as_str(), None)).collect();
            journal.commit(&ended, &gone)?;
        }
        restored.alarms = alarms.len();
        restored.ended = ended.len();
        let (live, _) = broadcast::channel(BROADCAST_CAPACITY);
        let catalog = Arc::new(RwLock::new(catalog));
        let mut table = AlarmTable::restore(seq, alarms);
        table.set_disposal_policy({
            let (catalog, escalation) = (catalog.clone(), escalation.clone());
            Box::new(move |source, _kind, priority| {
                let catalog = catalog.read().unwrap_or_else(|p| p.into_inner());
                escalation
                    .chain(catalog.source_place(source)[0])
                    .is_some_and(|c| priority >= c.min_priority)
            })
        });
        let hub = Arc::new(AlarmHub {
            catalog,
            escalation,
            risk: RwLock::new(risk),
            colours: Mutex::new(BTreeMap::new()),
            table: Mutex::new(table),
            journal,
            actions: ActionLimiter::default(),
            unjournaled: Mutex::new(Unjournaled::default()),
            live,
            replayed: Mutex::new(HashMap::new()),
            merged: Mutex::new(merged),
            regional: false,
        });
        {
            // The colours the restored alarms give, as the starting point.
            let table = hub.lock();
            let groups = hub.by_hazard_source(&table);
            let risk = hub.risk();
            let mut colours = hub.colours();
            for hs in risk.sources.keys() {
                let alarms = groups.get(hs).map_or(&[][..], Vec::as_slice);
                colours.insert(hs.clone(), hub.colour_of(&risk, hs, alarms).0);
            }
        }
        Ok((hub, restored))
    }

    fn lock(&self) -> MutexGuard<'_, AlarmTable> {
        // A panic while holding the lock leaves plain data behind that is
        // still consistent record by record; keep serving it.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The catalog alarms are named from.
    fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the catalog and the hazard sources after a site-model
    /// reload (indices are kept, so every alarm keeps its name).
    pub fn set_site(&self, catalog: Arc<Catalog>, risk: RiskModel) {
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;
        *self.risk.write().unwrap_or_else(|p| p.into_inner()) = risk;
    }

    fn risk(&self) -> std::sync::RwLockReadGuard<'_, RiskModel> {
        self.risk.read().unwrap_or_else(|p| p.into_inner())
    }

    fn colours(&self) -> MutexGuard<'_, BTreeMap<String, Colour>> {
        self.colours.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The wire form of a table record.
    fn to_pb(&self, r: &AlarmRecord) -> pb::AlarmEvent {
        wire::event(r, &self.catalog())
    }

    /// The journal's form of an alarm that is not normal.
    fn stored(&self, a: &ActiveAlarm) -> pb::JournalAlarm {
        wire::stored(a, &self.catalog())
    }

    /// Writes records to the journal, with the state they leave their
    /// alarms in, then sends them live. Called with the table locked, so
    /// the journal's order is the sequence order and a subscriber taking
    /// the lock sees each event once. A journal that cannot be written is
    /// logged and counted, and the events still go out live: the control
    /// room must see alarms even when the disk fails.
    fn publish(&self, table: &mut AlarmTable, records: &[AlarmRecord]) -> Vec<pb::AlarmEvent> {
        if records.is_empty() {
            return Vec::new();
        }
        let mut events: Vec<pb::AlarmEvent> = records.iter().map(|r| self.to_pb(r)).collect();
        let risk = self.risk_events(table, records);
        let touched: BTreeSet<(AlarmSource, AlarmKind)> =
            records.iter().map(|r| (r.source, r.kind)).collect();
        let catalog = self.catalog();
        let states: Vec<(String, Option<pb::JournalAlarm>)> = touched
            .into_iter()
            .map(|(source, kind)| {
                let id = alarm_id(catalog.source_id(source), kind);
                (id, table.get(source, kind).map(|a| self.stored(a)))
            })
            .collect();
        let states: Vec<(&str, Option<&pb::JournalAlarm>)> = states
            .iter()
            .map(|(id, a)| (id.as_str(), a.as_ref()))
            .collect();
        let alarm_events = events.len();
        events.extend(risk);
        self.send(&events, &states);
        events.truncate(alarm_events);
        events
    }

    /// Journals numbered events (with the alarm states they leave) and
    /// sends them live. Called with the table locked.
    /// Events the journal could not take are held and retried (see
    /// [`unjournaled`]).
    fn send(&self, events: &[pb::AlarmEvent], states: &[(&str, Option<&pb::JournalAlarm>)]) {
        self.unjournaled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .commit(&self.journal, events, states);
        for event in events {
            // No receivers is fine: nobody is subscribed.
            let _ = self.live.send(event.clone());
            let transition = pb::Transition::try_from(event.transition)
                .unwrap_or(pb::Transition::Unspecified)
                .as_str_name();
            metrics::counter!("hazardwatch_alarm_events_total", "transition" => transition)
                .increment(1);
        }
    }

    /// Records a change to the site on the alarm feed: `event` gets the
    /// next sequence number, is journaled and sent like an alarm event.
    pub fn record(&self, mut event: pb::AlarmEvent) -> pb::AlarmEvent {
        let mut table = self.lock();
        event.seq = table.next_seq();
        self.send(std::slice::from_ref(&event), &[]);
        event
    }

    /// events they caused.
    pub fn apply(&self, events: &[RuleEvent]) -> Vec<pb::AlarmEvent> {
        let mut table = self.lock();
        let mut replayed = self.replayed.lock().unwrap_or_else(|p| p.into_inner());
        let records: Vec<AlarmRecord> = events
            .iter()
            .filter(|ev| {
                // Rules emit each alarm's changes in event-time order: one
                // no later than the last the journal holds was journaled
                // before the restart.
                replayed.is_empty()
                    || match replayed.get(&(ev.source, ev.kind)) {
                        Some(&last) if ev.ts_ms <= last => false,
                        Some(_) => {
                            replayed.remove(&(ev.source, ev.kind));
                            true
                        }
                        None => true,
                    }
            })
            .filter_map(|ev| table.apply(ev))
            .collect();
        drop(replayed);
        self.publish(&mut table, &records)
    }

    /// Every journaled event after `after`, at most `limit` of them, for the
    /// archive (no filter, no access scope).
    pub fn journal_after(&self, after: u64, limit: usize) -> Result<Vec<pb::AlarmEvent>> {
        Ok(self.journal.page_after(after, limit, |_| true)?.0)
    }

    /// Prepares for the readings the write-ahead log replays after a
    /// restart, the oldest stamped `from_ms`: the rules judge them again,
    /// and the condition changes they find that the journal already holds
    /// (raised, or raised and cleared, before the restart) are dropped, so
    /// each is recorded once. Returns how many alarms are guarded.
    pub fn guard_replay(&self, from_ms: i64) -> Result<usize> {
        let catalog = self.catalog();
        let changes = [
            pb::Transition::Raised as i32,
            pb::Transition::Cleared as i32,
        ];
        let mut guard = HashMap::new();
        let mut after = None;
        loop {
            let page = self
                .journal
                .history(from_ms, i64::MAX, after, 10_000, |e| {
                    changes.contains(&e.transition)
                })?;
            for e in &page.events {
                if let Some(key) = alarm_key(&catalog, &e.alarm_id) {
                    let last = guard.entry(key).or_insert(e.event_time_ms);
                    *last = (*last).max(e.event_time_ms);
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let n = guard.len();
        *self.replayed.lock().unwrap_or_else(|p| p.into_inner()) = guard;
        Ok(n)
    }

    /// Counts one operator action of `caller` against its rate (see
    /// [`crate::rate`]): an error when it acts too fast.
    pub fn admit_action(&self, caller: &Caller, now_ms: i64) -> Result<()> {
        self.actions.admit(&caller.name, now_ms)
    }

    /// Applies an operator action to an alarm by id, for `caller` (who
    /// must be an operator; an alarm outside its scope is not found).
    /// `operator` names the person acting; actions that hide an alarm, and
    /// comments, need a `comment`: the why. Both are recorded.
    pub fn act(
        &self,
        caller: &Caller,
        action: Action,
        alarm_id: &str,
        operator: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<pb::AlarmEvent> {
        caller.require(Role::Operator)?;
        let operator = check_operator_text(operator, comment)?;
        self.admit_action(caller, now_ms)?;
        let needs_why = matches!(
            action,
            Action::Shelve(_) | Action::Comment | Action::OutOfService(true) | Action::Dispose(_)
        );
        match &action {
            Action::Shelve(s) if !(1..=MAX_SHELVE_S).contains(s) => {
                return Err(Error::InvalidArgument(format!(
                    "duration_s {s} must be from 1 to {MAX_SHELVE_S} (one shift)"
                )));
            }
            Action::Dispose(done) if done.trim().is_empty() || done.len() > MAX_TEXT => {
                return Err(Error::InvalidArgument(format!(
                    "action is required (what was done), at most {MAX_TEXT} bytes"
                )));
            }
            _ => {}
        }
        if needs_why && comment.trim().is_empty() {
            let field = if matches!(action, Action::Dispose(_)) {
                "cause"
            } else {
                "comment"
            };
            return Err(Error::InvalidArgument(format!(
                "{field} is required: say why (it is recorded with the action)"
            )));
        }
        if self.regional {
            return Err(self.act_at_park(caller, alarm_id));
        }
        let actor = caller.actor(operator);
        self.apply_action(action, alarm_id, &caller.scope, &actor, comment, now_ms)
            .map_err(|source| match source {
                ActionError::NotFound => Error::NotFound(format!(
                    "no active, unacknowledged or shelved alarm `{alarm_id}`"
                )),
                source => Error::Action {
                    alarm_id: alarm_id.to_owned(),
                    source,
                },
            })
    }

    fn apply_action(
        &self,
        action: Action,
        alarm_id: &str,
        scope: &Scope,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<pb::AlarmEvent, ActionError> {
        let catalog = self.catalog();
        let (source, kind) = alarm_key(&catalog, alarm_id)
            .filter(|&(s, _)| scope.allows(catalog.source_place(s)[0]))
            .ok_or(ActionError::NotFound)?;
        let mut table = self.lock();
        let record = match action {
            Action::Acknowledge => table.acknowledge(source, kind, actor, comment, now_ms)?,
            Action::Reset => table.reset(source, kind, actor, comment, now_ms)?,
            Action::Shelve(s) => {
                let until = now_ms + i64::from(s) * 1000;
                table.shelve(source, kind, until, actor, comment, now_ms)?
            }
            Action::Unshelve => table.unshelve(source, kind, actor, comment, now_ms)?,
            Action::Comment => table.comment(source, kind, actor, comment, now_ms)?,
            Action::OutOfService(out) => {
                table.set_out_of_service(source, kind, out, actor, comment, now_ms)?
            }
            Action::Dispose(action) => {
                table.dispose(source, kind, actor, comment, &action, now_ms)?
            }
        };
        let mut events = self.publish(&mut table, &[record]);
        Ok(events.remove(0))
    }

    /// Work that falls due on the wall clock at `now_ms`: shelves that
    /// expire, and alarms still waiting for their disposal record whose
    /// escalation deadline has passed. The service calls this every second;
    /// tests call it with the time they want (an injected clock).
    pub fn tick(&self, now_ms: i64) -> Vec<pb::AlarmEvent> {
        let catalog = self.catalog();
        let mut table = self.lock();
        let mut records = table.expire_shelves(now_ms);
        records.extend(table.escalate_due(now_ms, |source, level| {
            let chain = self.escalation.chain(catalog.source_place(source)[0])?;
            chain.after_ms.get(level as usize).copied()
        }));
        let events = self.publish(&mut table, &records);
        // Events held while the journal failed: try again.
        self.unjournaled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush(&self.journal);
        events
    }

    /// Alarm events waiting for the journal (it failed to write them).
    pub fn unjournaled(&self) -> usize {
        self.unjournaled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Active and unacknowledged alarms matching the filter, and the
    /// sequence number the list is consistent with.
    pub fn list_active(&self, filter: &Filter) -> (Vec<pb::ActiveAlarm>, u64) {
        let table = self.lock();
        let alarms = table
            .active()
            .map(|a| (a, self.to_pb(&a.last)))
            .filter(|(_, e)| filter.shows(e))
            .map(|(a, e)| active_pb(e, wire::state_pb(a.state) as i32, a.raised_at_ms));
        let merged = self.merged.lock().unwrap_or_else(|p| p.into_inner());
        let merged = merged.values().filter_map(|a| {
            let e = a.last.as_ref().filter(|e| filter.shows(e))?;
            Some(active_pb(e.clone(), a.state, a.raised_at_ms))
        });
        let alarms = alarms.chain(merged).collect();
        (alarms, table.last_seq())
    }

    /// A new subscriber's start: the latest event of every active alarm
    /// matching the filter, the sequence number they are consistent with,
    /// and a live receiver that starts right after it.
    pub fn snapshot(&self, filter: &Filter) -> Watch {
        let table = self.lock();
        let merged = self.merged.lock().unwrap_or_else(|p| p.into_inner());
        let mut latest: Vec<pb::AlarmEvent> = table
            .active()
            .map(|a| self.to_pb(&a.last))
            .chain(merged.values().filter_map(|a| a.last.clone()))
            .filter(|e| filter.shows(e))
            .collect();
        drop(merged);
        latest.sort_by_key(|e| e.seq);
        (latest, table.last_seq(), self.live.subscribe())
    }

    /// Catch-up from the journal without holding anything up: the events
    /// after `after` matching the filter, at most `scan` looked at, and the
    /// sequence number scanned up to.
    pub fn page_after(
        &self,
        filter: &Filter,
        after: u64,
        scan: usize,
    ) -> Result<(Vec<pb::AlarmEvent>, u64)> {
        let newest = self.last_seq();
        if after > newest {
            return Err(Error::ResumeAhead {
                requested: after,
                newest,
            });
        }
        Ok(self
            .journal
            .page_after(after, scan, |e| filter.matches(e))?)
    }

    /// The end of a catch-up: every journaled event after `after` matching
    /// the filter, the sequence number they run to, and a live receiver
    /// that starts right after it, taken together under the lock so nothing
    /// falls between. Call it once [`AlarmHub::page_after`] has come close
    /// to the newest event.
    pub fn tail_and_watch(&self, filter: &Filter, after: u64) -> Result<Watch> {
        let table = self.lock();
        let mut tail = Vec::new();
        let mut upto = after;
        while upto < table.last_seq() {
            let (mut events, next) = self
                .journal
                .page_after(upto, 4_096, |e| filter.matches(e))?;
            tail.append(&mut events);
            if next == upto {
                break;
            }
            upto = next;
        }
        Ok((tail, table.last_seq(), self.live.subscribe()))
    }

    /// True when the site has this enterprise.
    pub fn has_enterprise(&self, id: &str) -> bool {
        self.risk().enterprises.iter().any(|(e, _)| e == id)
    }

    /// EEMUA 191 statistics of one enterprise console over `[from_ms,
    /// to_ms)`, from the journal (see [`crate::eemua`]).
    pub fn performance(
        &self,
        park: &str,
        enterprise: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<pb::StatsResponse> {
        // Page by page: a long range never sits in memory at once.
        let mut report = eemua::Report::new(from_ms, to_ms);
        let mut after = None;
        loop {
            let page = self.journal.history(
                from_ms.saturating_sub(eemua::LOOKBACK_MS),
                to_ms,
                after,
                10_000,
                |e| e.enterprise == enterprise && e.park == park,
            )?;
            if !page.events.iter().all(|e| report.add(e)) {
                break;
            }
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        Ok(report.finish(enterprise))
    }

    /// One page of alarm history (see [`AlarmJournal::history`]).
    pub fn history(
        &self,
        filter: &Filter,
        from_ms: i64,
        to_ms: i64,
        after: Option<hazardwatch_storage::HistoryCursor>,
        limit: usize,
    ) -> Result<hazardwatch_storage::HistoryPage> {
        Ok(self
            .journal
            .history(from_ms, to_ms, after, limit, |e| filter.matches(e))?)
    }

    /// A live receiver of every event from now on (for the demo's screen).
    pub fn watch(&self) -> broadcast::Receiver<pb::AlarmEvent> {
        self.live.subscribe()
    }

    /// Deletes journal events older than `before_ms` that the archive holds
    /// (sequence numbers up to `archived`), a batch at a time, at most
    /// `batches` of them; returns how many went. Each batch is one journal
    /// transaction, which alarm commits wait for: batches stay small.
    pub fn prune_journal(&self, before_ms: i64, archived: u64, batches: usize) -> Result<usize> {
        let mut pruned = 0;
        for _ in 0..batches {
            let n = self.journal.prune(
                before_ms,
                archived,
                hazardwatch_storage::journal::PRUNE_BATCH,
            )?;
            pruned += n;
            if n < hazardwatch_storage::journal::PRUNE_BATCH {
                break;
            }
        }
        Ok(pruned)
    }

    /// Checks a subscriber's resume point against the events the journal
    /// holds: ahead of the newest, or before the oldest kept, the feed
    /// would have a hole in it.
    pub fn check_resume(&self, resume_after: u64) -> Result<()> {
        let newest = self.last_seq();
        if resume_after > newest {
            return Err(Error::ResumeAhead {
                requested: resume_after,
                newest,
            });
        }
        let first = self.journal.first_seq()?;
        if resume_after > 0 && resume_after.saturating_add(1) < first {
            return Err(Error::ResumePruned {
                requested: resume_after,
                first,
            });
        }
        Ok(())
    }

    /// The journal (for the notification outbox it also holds).
    pub fn journal(&self) -> &AlarmJournal {
        &self.journal
    }

    /// Sequence number of the newest event.
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq()
    }
}

/// A list entry from an alarm's latest event, its state and when it was
/// raised.
fn active_pb(e: pb::AlarmEvent, state: i32, raised_at_ms: i64) -> pb::ActiveAlarm {
    pb::ActiveAlarm {
        alarm_id: e.alarm_id,
        enterprise: e.enterprise,
        hazard_source: e.hazard_source,
        unit: e.unit,
        point: e.point,
        kind: e.kind,
        priority: e.priority,
        state,
        raised_at_ms,
        value: e.value,
        limit: e.limit,
        eng_unit: e.eng_unit,
        message: e.message,
        last_seq: e.seq,
        predicted_time_ms: e.predicted_time_ms,
        suppressed: e.suppressed,
        latched: e.latched,
        shelved_until_ms: e.shelved_until_ms,
        out_of_service: e.out_of_service,
        escalation_level: e.escalation_level,
        awaiting_disposal: e.awaiting_disposal,
        text_key: e.text_key,
        text_params: e.text_params,
        park: e.park,
    }
}

/// Longest operator name or comment accepted, in bytes.
pub const MAX_TEXT: usize = 1_024;

/// Longest shelf, seconds: one shift. A shelved alarm must come back.
pub const MAX_SHELVE_S: u32 = 8 * 3600;

/// Checks the person and the why of an operator action or a change to the
/// site: the person is required, both are bounded. Returns the trimmed
/// operator name.
pub fn check_operator_text<'a>(operator: &'a str, comment: &str) -> Result<&'a str> {
    let operator = operator.trim();
    if operator.is_empty() {
        return Err(Error::InvalidArgument(
            "operator is required: operator actions record who acted".into(),
        ));
    }
    if operator.len() > MAX_TEXT || comment.len() > MAX_TEXT {
        return Err(Error::InvalidArgument(format!(
            "operator and comment are limited to {MAX_TEXT} bytes"
        )));
    }
    Ok(operator)
}

#[cfg(test)]
mod tests;
