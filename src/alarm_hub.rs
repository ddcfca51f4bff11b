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

use hazardwatch_proto::{AlarmKind, AlarmSource, Catalog, PointKind, Priority, RuleEvent, pb};
use hazardwatch_rules::alarms::{
    ActionError, ActiveAlarm, AlarmRecord, AlarmState, AlarmTable, ESCALATION_LEVELS, Transition,
};
use hazardwatch_storage::AlarmJournal;
use tokio::sync::broadcast;
use tonic::Status;

use crate::access::{Caller, Scope};
use crate::escalation::EscalationPolicy;
use crate::risk::{self, Colour, RiskModel};
use crate::stats;

/// Events buffered per live subscriber before it counts as lagging (it then
/// catches up from the journal).
pub const BROADCAST_CAPACITY: usize = 4_096;

/// Which alarms a caller wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Enterprise ids; empty means all.
    pub enterprises: Vec<String>,
    /// Lowest priority to include.
    pub min_priority: Option<Priority>,
    /// Include alarms suppressed by design.
    pub include_suppressed: bool,
    /// Include the condition changes of shelved and out-of-service alarms.
    pub include_shelved: bool,
    /// The enterprises the caller may see at all.
    pub scope: Scope,
    /// Only alarms escalated to at least this level (wire value; 0: all).
    pub min_escalation: i32,
    /// Hazard source ids; empty means all.
    pub hazard_sources: Vec<String>,
    /// Alarm states (wire values); empty means all.
    pub states: Vec<i32>,
}

impl Filter {
    /// From the wire form, limited to what `caller` may see. An unknown
    /// priority is `INVALID_ARGUMENT`; an enterprise outside the caller's
    /// scope, `PERMISSION_DENIED`.
    pub fn for_caller(f: Option<pb::AlarmFilter>, caller: &Caller) -> Result<Filter, Status> {
        let f = f.unwrap_or_default();
        let min = pb::Priority::try_from(f.min_priority).map_err(|_| {
            Status::invalid_argument(format!(
                "filter.min_priority: unknown value {}",
                f.min_priority
            ))
        })?;
        if let Some(s) = f
            .states
            .iter()
            .find(|&&s| pb::AlarmState::try_from(s).is_err())
        {
            return Err(Status::invalid_argument(format!(
                "filter.states: unknown value {s}"
            )));
        }
        if let Some(e) = f.enterprises.iter().find(|e| !caller.scope.allows(e)) {
            return Err(Status::permission_denied(format!(
                "token `{}` may not see enterprise `{e}`",
                caller.name
            )));
        }
        Ok(Filter {
            enterprises: f.enterprises,
            min_priority: min.into(),
            include_suppressed: f.include_suppressed,
            include_shelved: f.include_shelved,
            scope: caller.scope.clone(),
            hazard_sources: f.hazard_sources,
            states: f.states,
            min_escalation: pb::EscalationLevel::try_from(f.min_escalation).map_err(|_| {
                Status::invalid_argument(format!(
                    "filter.min_escalation: unknown value {}",
                    f.min_escalation
                ))
            })? as i32,
        })
    }

    /// True when the event passes. Operators' actions on shelved and
    /// out-of-service alarms pass (a console must see that an alarm was
    /// shelved to take it off its list); their condition changes do not.
    pub fn matches(&self, e: &pb::AlarmEvent) -> bool {
        let action = !matches!(
            pb::Transition::try_from(e.transition),
            Ok(pb::Transition::Raised | pb::Transition::Cleared)
        );
        self.passes(e, action)
    }

    /// True when an alarm whose latest event is `e` belongs in a list.
    pub fn shows(&self, e: &pb::AlarmEvent) -> bool {
        self.passes(e, false)
    }

    fn passes(&self, e: &pb::AlarmEvent, action: bool) -> bool {
        let enterprise_ok = self.enterprises.is_empty() || self.enterprises.contains(&e.enterprise);
        let priority_ok = match self.min_priority {
            None => true,
            Some(min) => e.priority >= pb::Priority::from(min) as i32,
        };
        let held = e.shelved_until_ms != 0 || e.out_of_service;
        // Changes to the site (risk colours, unit states) are for everyone
        // who may see the enterprise.
        let risk = e.transition == pb::Transition::RiskChanged as i32
            || e.transition == pb::Transition::UnitStateChanged as i32;
        let place_ok =
            self.hazard_sources.is_empty() || self.hazard_sources.contains(&e.hazard_source);
        let state_ok = self.states.is_empty() || self.states.contains(&e.state);
        self.scope.allows(&e.enterprise)
            && enterprise_ok
            && place_ok
            && (risk || state_ok)
            && (risk || e.escalation_level >= self.min_escalation && priority_ok)
            && (self.include_suppressed || !e.suppressed)
            && (self.include_shelved || action || !held)
    }
}

/// Why a resume point cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum Gone {
    /// The resume point is ahead of every event this service has numbered
    /// (its journal was replaced since the subscriber's last event). The
    /// subscriber must resynchronise (ListActive, then subscribe from its
    /// `as_of_seq`) rather than be served a stream with a hole in it.
    #[error(
        "resume point {requested} is ahead of the newest event {newest} (was the journal replaced?); call ListActive and resume from its as_of_seq"
    )]
    Ahead {
        /// The resume point asked for.
        requested: u64,
        /// The newest sequence number.
        newest: u64,
    },
    /// The journal could not be read.
    #[error("{0}")]
    Journal(#[from] hazardwatch_storage::Error),
}

/// An operator action on one alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// ISA-18.2 acknowledgement.
    Acknowledge,
    /// Reset of a latched alarm.
    Reset,
    /// Shelve until a wall time, Unix ms.
    Shelve(i64),
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

/// Wire name of a transition.
fn transition_pb(t: Transition) -> pb::Transition {
    match t {
        Transition::Raised => pb::Transition::Raised,
        Transition::Cleared => pb::Transition::Cleared,
        Transition::Acknowledged => pb::Transition::Acknowledged,
        Transition::Reset => pb::Transition::Reset,
        Transition::Shelved => pb::Transition::Shelved,
        Transition::Unshelved => pb::Transition::Unshelved,
        Transition::Commented => pb::Transition::Commented,
        Transition::RemovedFromService => pb::Transition::RemovedFromService,
        Transition::ReturnedToService => pb::Transition::ReturnedToService,
        Transition::Escalated => pb::Transition::Escalated,
        Transition::Disposed => pb::Transition::Disposed,
    }
}

fn transition_from_pb(t: i32) -> Option<Transition> {
    Some(match pb::Transition::try_from(t).ok()? {
        pb::Transition::Raised => Transition::Raised,
        pb::Transition::Cleared => Transition::Cleared,
        pb::Transition::Acknowledged => Transition::Acknowledged,
        pb::Transition::Reset => Transition::Reset,
        pb::Transition::Shelved => Transition::Shelved,
        pb::Transition::Unshelved => Transition::Unshelved,
        pb::Transition::Commented => Transition::Commented,
        pb::Transition::RemovedFromService => Transition::RemovedFromService,
        pb::Transition::ReturnedToService => Transition::ReturnedToService,
        pb::Transition::Escalated => Transition::Escalated,
        pb::Transition::Disposed => Transition::Disposed,
        pb::Transition::Unspecified
        | pb::Transition::RiskChanged
        | pb::Transition::UnitStateChanged => return None,
    })
}

fn state_from_pb(s: i32) -> Option<AlarmState> {
    Some(match pb::AlarmState::try_from(s).ok()? {
        pb::AlarmState::Normal => AlarmState::Normal,
        pb::AlarmState::UnackedActive => AlarmState::UnackedActive,
        pb::AlarmState::AckedActive => AlarmState::AckedActive,
        pb::AlarmState::UnackedRtn => AlarmState::UnackedRtn,
        pb::AlarmState::Unspecified => return None,
    })
}

fn state_pb(s: AlarmState) -> pb::AlarmState {
    match s {
        AlarmState::Normal => pb::AlarmState::Normal,
        AlarmState::UnackedActive => pb::AlarmState::UnackedActive,
        AlarmState::AckedActive => pb::AlarmState::AckedActive,
        AlarmState::UnackedRtn => pb::AlarmState::UnackedRtn,
    }
}

fn kind_word(k: PointKind) -> &'static str {
    match k {
        PointKind::Temperature => "temperature",
        PointKind::Level => "level",
        PointKind::Pressure => "pressure",
        PointKind::CombustibleGas => "combustible gas",
        PointKind::ToxicGas => "toxic gas",
    }
}

/// The human-readable text of an alarm event.
fn describe(r: &AlarmRecord, catalog: &Catalog) -> String {
    let id = catalog.source_id(r.source);
    let tag = r.kind.tag();
    let mut text = match (r.transition, r.source) {
        (Transition::Acknowledged, _) => format!("{id} {tag} acknowledged by {}", r.actor),
        (Transition::Reset, _) => format!("{id} {tag} reset by {}", r.actor),
        (Transition::Shelved, _) => {
            let until = chrono::DateTime::from_timestamp_millis(r.shelved_until_ms.unwrap_or(0))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            format!("{id} {tag} shelved by {} until {until}", r.actor)
        }
        (Transition::Unshelved, _) if r.actor.is_empty() => {
            format!("{id} {tag} shelf expired")
        }
        (Transition::Unshelved, _) => format!("{id} {tag} unshelved by {}", r.actor),
        (Transition::Commented, _) => format!("{id} {tag} comment by {}", r.actor),
        (Transition::RemovedFromService, _) => {
            format!("{id} {tag} taken out of service by {}", r.actor)
        }
        (Transition::ReturnedToService, _) => {
            format!("{id} {tag} returned to service by {}", r.actor)
        }
        (Transition::Escalated, _) => format!(
            "{id} {tag} escalated to the {} level: no disposal record yet",
            ESCALATION_LEVELS[usize::from(r.escalation).min(ESCALATION_LEVELS.len() - 1)]
        ),
        (Transition::Disposed, _) => format!(
            "{id} {tag} disposed by {}: cause: {}; action: {}",
            r.actor, r.comment, r.action
        ),
        // How a rule ends the conditions of a rule or point that a reload
        // removed (`operators::event_time::withdraw`).
        (Transition::Cleared, _) if r.value.is_nan() && r.limit.is_nan() => {
            format!("{id} {tag} returned to normal: removed from the site model")
        }
        (_, AlarmSource::Point(p)) if r.kind != AlarmKind::Chattering => {
            describe_point(r, catalog.meta(p))
        }
        _ => describe_alarm_system(r, id),
    };
    if r.latched {
        text.push_str(" [latched: reset when checked]");
    }
    if r.suppressed {
        text.push_str(" [suppressed: unit stopped or in overhaul]");
    }
    text
}

/// Text of a condition change of a unit rule (voting, correlation) or of
/// the alarm system (flood, chattering).
fn describe_alarm_system(r: &AlarmRecord, id: &str) -> String {
    let raised = r.transition == Transition::Raised;
    match (raised, r.kind) {
        (true, AlarmKind::Voting) => format!(
            "{id} leak confirmed: {:.0} gas detectors at the first level (voting {:.0} of N)",
            r.value, r.limit
        ),
        (false, AlarmKind::Voting) => format!(
            "{id} fewer than {:.0} gas detectors at the first level ({:.0})",
            r.limit, r.value
        ),
        (true, AlarmKind::Correlation) => format!(
            "{id} runaway heating: temperature and pressure rising together ({:+.3}/min, limit {:.3}/min)",
            r.value, r.limit
        ),
        (false, AlarmKind::Correlation) => {
            format!("{id} temperature and pressure no longer rising together")
        }
        (true, AlarmKind::Flood) => format!(
            "{id} console in alarm flood: {:.0} alarms in 10 min (more than {:.0})",
            r.value, r.limit
        ),
        (false, AlarmKind::Flood) => format!(
            "{id} alarm flood over: {:.0} alarms raised during it",
            r.value
        ),
        (true, AlarmKind::Chattering) => {
            format!("{id} alarms chattering: {:.0} raises in a minute", r.value)
        }
        (false, AlarmKind::Chattering) => {
            format!("{id} chattering over after {:.0} raises", r.value)
        }
        (true, _) => format!("{id} {} raised", r.kind.tag()),
        (false, _) => format!("{id} {} cleared", r.kind.tag()),
    }
}

/// Text of a condition change on a point.
fn describe_point(r: &AlarmRecord, m: &hazardwatch_proto::PointMeta) -> String {
    let (id, what, unit, tag) = (&m.id, kind_word(m.kind), &m.eng_unit, r.kind.tag());
    // Operator actions are described by `describe`.
    match (r.transition == Transition::Raised, r.kind) {
        (true, AlarmKind::RateOfChange) => format!(
            "{id} {what} changing at {:+.3} {unit}/min (limit {:.3} {unit}/min)",
            r.value, r.limit
        ),
        (false, AlarmKind::RateOfChange) => {
            format!(
                "{id} {what} rate back under the limit: {:+.3} {unit}/min",
                r.value
            )
        }
        (true, AlarmKind::PredictedHighHigh | AlarmKind::PredictedLowLow) => {
            let limit_tag = if r.kind == AlarmKind::PredictedHighHigh {
                "HH"
            } else {
                "LL"
            };
            let eta = r.predicted_ms.map_or(String::from("soon"), |at| {
                let mins = (at - r.ts_ms) as f64 / 60_000.0;
                let clock = chrono::DateTime::from_timestamp_millis(at)
                    .map(|t| t.format("%H:%M:%S").to_string())
                    .unwrap_or_default();
                format!("at {clock} UTC, in {mins:.1} min")
            });
            format!(
                "{id} {what} trend reaches {limit_tag} {:.3} {unit} {eta} (now {:.3} {unit})",
                r.limit, r.value
            )
        }
        (false, AlarmKind::PredictedHighHigh | AlarmKind::PredictedLowLow) => {
            format!(
                "{id} {what} trend no longer heading for the limit: {:.3} {unit}",
                r.value
            )
        }
        (true, AlarmKind::Fault) if r.limit.is_nan() => {
            format!(
                "{id} sensor fault: reading of bad quality ({:.3} {unit})",
                r.value
            )
        }
        (true, AlarmKind::Fault) => format!(
            "{id} sensor fault: {:.3} {unit} is outside the instrument range (bound {:.3})",
            r.value, r.limit
        ),
        (false, AlarmKind::Fault) => {
            format!("{id} sensor healthy again: {:.3} {unit}", r.value)
        }
        (true, AlarmKind::Stale) => format!(
            "{id} no reading for {:.0} s: communication loss (last {:.3} {unit})",
            r.limit, r.value
        ),
        (false, AlarmKind::Stale) => {
            format!("{id} readings again: {:.3} {unit}", r.value)
        }
        (true, AlarmKind::Flatline) => format!(
            "{id} {what} stuck at {:.3} {unit} for {:.0} s: frozen sensor?",
            r.value, r.limit
        ),
        (false, AlarmKind::Flatline) => {
            format!("{id} {what} moving again: {:.3} {unit}", r.value)
        }
        (true, _) => format!(
            "{id} {what} {tag} {:.3} {unit} (limit {:.3})",
            r.value, r.limit
        ),
        (false, _) => {
            format!("{id} {what} back inside {tag} limit: {:.3} {unit}", r.value)
        }
    }
}

/// An alarm as the journal stored it, back in the table's terms; `None`
/// when its source is no longer in the site model (or the record is not
/// one this service wrote).
fn restore_alarm(catalog: &Catalog, stored: &pb::JournalAlarm) -> Option<ActiveAlarm> {
    let e = stored.last.as_ref()?;
    let (source, kind) = alarm_key(catalog, &e.alarm_id)?;
    if let AlarmSource::Point(p) = source
        && !catalog.is_live(p)
    {
        return None;
    }
    let priority: Option<Priority> = pb::Priority::try_from(e.priority).ok()?.into();
    let record = AlarmRecord {
        seq: e.seq,
        source,
        kind,
        priority: priority?,
        transition: transition_from_pb(e.transition)?,
        state: state_from_pb(e.state)?,
        ts_ms: e.event_time_ms,
        value: e.value,
        limit: e.limit,
        predicted_ms: (e.predicted_time_ms != 0).then_some(e.predicted_time_ms),
        latched: e.latched,
        suppressed: e.suppressed,
        shelved_until_ms: (e.shelved_until_ms != 0).then_some(e.shelved_until_ms),
        out_of_service: e.out_of_service,
        // Unspecified (0) is the first level.
        escalation: u8::try_from(e.escalation_level - 1).unwrap_or(0),
        awaiting_disposal: e.awaiting_disposal,
        action: e.action.clone(),
        actor: e.actor.clone(),
        comment: e.comment.clone(),
    };
    Some(ActiveAlarm {
        state: state_from_pb(stored.state)?,
        raised_at_ms: stored.raised_at_ms,
        latch: stored.latch,
        condition: stored.condition,
        awaiting_since_ms: stored.awaiting_since_ms,
        last: record,
    })
}

/// The stable id of an alarm: `{source}/{tag}`, the source being a point,
/// unit or enterprise id.
pub fn alarm_id(source: &str, kind: AlarmKind) -> String {
    format!("{source}/{}", kind.tag())
}

/// The source and kind an [`alarm_id`] names in `catalog`, if any.
pub fn alarm_key(catalog: &Catalog, id: &str) -> Option<(AlarmSource, AlarmKind)> {
    let (source, tag) = id.rsplit_once('/')?;
    Some((catalog.source_lookup(source)?, AlarmKind::from_tag(tag)?))
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
    ) -> Result<(Arc<AlarmHub>, Restored), hazardwatch_storage::Error> {
        let mut seq = journal.last_seq()?;
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
                        "ended at restart: its count starts again"
                    } else {
                        "ended at restart: no longer in the site model"
                    };
                    ended.push(pb::AlarmEvent {
                        seq,
                        transition: pb::Transition::Cleared as i32,
                        state: pb::AlarmState::Normal as i32,
                        event_time_ms: now_ms,
                        value: f64::NAN,
                        actor: String::new(),
                        comment: String::new(),
                        message: format!("{} {why}", last.alarm_id),
                        latched: false,
                        ..last.clone()
                    });
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
            live,
            replayed: Mutex::new(HashMap::new()),
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

    /// The table's alarms grouped by hazard source, in one pass.
    fn by_hazard_source<'t>(
        &self,
        table: &'t AlarmTable,
    ) -> BTreeMap<String, Vec<&'t ActiveAlarm>> {
        let catalog = self.catalog();
        let mut groups: BTreeMap<String, Vec<&ActiveAlarm>> = BTreeMap::new();
        for a in table.active() {
            let hs = catalog.source_place(a.last.source)[1];
            match groups.get_mut(hs) {
                Some(g) => g.push(a),
                None => {
                    groups.insert(hs.to_owned(), vec![a]);
                }
            }
        }
        groups
    }

    /// A hazard source's colour and its reasons, from its alarms.
    fn colour_of(
        &self,
        risk: &RiskModel,
        hs: &str,
        alarms: &[&ActiveAlarm],
    ) -> (Colour, Vec<String>) {
        let catalog = self.catalog();
        let grade = risk.sources.get(hs).map_or(4, |s| s.grade);
        risk::colour(grade, alarms.iter().copied(), |a| {
            alarm_id(catalog.source_id(a.last.source), a.last.kind)
        })
    }

    /// Risk events for the hazard sources whose colour `records` changed.
    fn risk_events(&self, table: &mut AlarmTable, records: &[AlarmRecord]) -> Vec<pb::AlarmEvent> {
        let catalog = self.catalog();
        let touched: BTreeSet<&str> = records
            .iter()
            .map(|r| catalog.source_place(r.source)[1])
            .collect();
        let at = records.iter().map(|r| r.ts_ms).max().unwrap_or(0);
        let risk = self.risk();
        let mut colours = self.colours();
        let groups = self.by_hazard_source(table);
        let mut changed = Vec::new();
        for hs in touched {
            let Some(source) = risk.sources.get(hs) else {
                continue;
            };
            let alarms = groups.get(hs).map_or(&[][..], Vec::as_slice);
            let (now, reasons) = self.colour_of(&risk, hs, alarms);
            let before = colours.insert(hs.to_owned(), now);
            if before != Some(now) {
                let was = before.map_or("-", Colour::as_str);
                changed.push(pb::AlarmEvent {
                    alarm_id: format!("{hs}/RISK"),
                    enterprise: source.enterprise.clone(),
                    hazard_source: hs.to_owned(),
                    transition: pb::Transition::RiskChanged as i32,
                    event_time_ms: at,
                    value: f64::NAN,
                    limit: f64::NAN,
                    risk_colour: now.pb() as i32,
                    message: format!(
                        "{hs} risk {} (was {was}): {}",
                        now.as_str(),
                        reasons.join("; ")
                    ),
                    ..Default::default()
                });
            }
        }
        drop(groups);
        for e in &mut changed {
            e.seq = table.next_seq();
        }
        changed
    }

    /// Grades and live colours of the hazard sources `filter` lets through
    /// (its scope and enterprises).
    pub fn risk_report(&self, filter: &Filter) -> pb::RiskResponse {
        let table = self.lock();
        let groups = self.by_hazard_source(&table);
        let risk = self.risk();
        let mut out = pb::RiskResponse {
            park: risk.park.clone(),
            as_of_seq: table.last_seq(),
            ..Default::default()
        };
        let mut park = None;
        for (id, name) in &risk.enterprises {
            let wanted = filter.scope.allows(id)
                && (filter.enterprises.is_empty() || filter.enterprises.contains(id));
            if !wanted {
                continue;
            }
            let mut e = pb::EnterpriseRisk {
                id: id.clone(),
                name: name.clone(),
                ..Default::default()
            };
            let mut worst = Colour::Blue;
            for hs in risk.sources.values().filter(|s| &s.enterprise == id) {
                let alarms = groups.get(&hs.id).map_or(&[][..], Vec::as_slice);
                let (colour, reasons) = self.colour_of(&risk, &hs.id, alarms);
                worst = worst.max(colour);
                e.hazard_sources.push(pb::HazardSourceRisk {
                    id: hs.id.clone(),
                    name: hs.name.clone(),
                    enterprise: id.clone(),
                    grade: u32::from(hs.grade),
                    r_value: hs.r_value.unwrap_or(0.0),
                    colour: colour.pb() as i32,
                    reasons,
                });
            }
            e.colour = worst.pb() as i32;
            park = park.max(Some(worst));
            out.enterprises.push(e);
        }
        out.park_colour = park.unwrap_or(Colour::Blue).pb() as i32;
        out
    }

    fn to_pb(&self, r: &AlarmRecord) -> pb::AlarmEvent {
        let catalog = self.catalog();
        let [enterprise, hazard_source, unit, point] = catalog.source_place(r.source);
        let eng_unit = match r.source {
            AlarmSource::Point(p) => catalog.meta(p).eng_unit.to_string(),
            _ => String::new(),
        };
        pb::AlarmEvent {
            seq: r.seq,
            alarm_id: alarm_id(catalog.source_id(r.source), r.kind),
            enterprise: enterprise.to_owned(),
            hazard_source: hazard_source.to_owned(),
            unit: unit.to_owned(),
            point: point.to_owned(),
            kind: pb::AlarmKind::from(r.kind) as i32,
            priority: pb::Priority::from(r.priority) as i32,
            transition: transition_pb(r.transition) as i32,
            state: state_pb(r.state) as i32,
            event_time_ms: r.ts_ms,
            value: r.value,
            limit: r.limit,
            eng_unit,
            message: describe(r, &catalog),
            actor: r.actor.clone(),
            comment: r.comment.clone(),
            predicted_time_ms: r.predicted_ms.unwrap_or(0),
            suppressed: r.suppressed,
            latched: r.latched,
            shelved_until_ms: r.shelved_until_ms.unwrap_or(0),
            out_of_service: r.out_of_service,
            escalation_level: i32::from(r.escalation) + 1,
            awaiting_disposal: r.awaiting_disposal,
            action: r.action.clone(),
            risk_colour: pb::RiskColour::Unspecified as i32,
        }
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
    fn send(&self, events: &[pb::AlarmEvent], states: &[(&str, Option<&pb::JournalAlarm>)]) {
        if let Err(e) = self.journal.commit(events, states) {
            tracing::error!(error = %e, events = events.len(), "alarm events not journaled");
            metrics::counter!("hazardwatch_journal_errors_total").increment(1);
        }
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

    /// The journal's form of an alarm that is not normal.
    fn stored(&self, a: &ActiveAlarm) -> pb::JournalAlarm {
        pb::JournalAlarm {
            last: Some(self.to_pb(&a.last)),
            state: state_pb(a.state) as i32,
            raised_at_ms: a.raised_at_ms,
            latch: a.latch,
            condition: a.condition,
            awaiting_since_ms: a.awaiting_since_ms,
        }
    }

    /// Applies rule events (in the engine's order) and returns the alarm
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
    pub fn journal_after(&self, after: u64, limit: usize) -> anyhow::Result<Vec<pb::AlarmEvent>> {
        Ok(self.journal.page_after(after, limit, |_| true)?.0)
    }

    /// Prepares for the readings the write-ahead log replays after a
    /// restart, the oldest stamped `from_ms`: the rules judge them again,
    /// and the condition changes they find that the journal already holds
    /// (raised, or raised and cleared, before the restart) are dropped, so
    /// each is recorded once. Returns how many alarms are guarded.
    pub fn guard_replay(&self, from_ms: i64) -> anyhow::Result<usize> {
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

    /// Applies an operator action to an alarm by id; an alarm outside
    /// `scope` is not found.
    pub fn act(
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
            Action::Shelve(until) => table.shelve(source, kind, until, actor, comment, now_ms)?,
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
        self.publish(&mut table, &records)
    }

    /// Active and unacknowledged alarms matching the filter, and the
    /// sequence number the list is consistent with.
    pub fn list_active(&self, filter: &Filter) -> (Vec<pb::ActiveAlarm>, u64) {
        let table = self.lock();
        let alarms = table
            .active()
            .map(|a| (a, self.to_pb(&a.last)))
            .filter(|(_, e)| filter.shows(e))
            .map(|(a, e)| pb::ActiveAlarm {
                alarm_id: e.alarm_id,
                enterprise: e.enterprise,
                hazard_source: e.hazard_source,
                unit: e.unit,
                point: e.point,
                kind: e.kind,
                priority: e.priority,
                state: state_pb(a.state) as i32,
                raised_at_ms: a.raised_at_ms,
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
            })
            .collect();
        (alarms, table.last_seq())
    }

    /// A new subscriber's start: the latest event of every active alarm
    /// matching the filter, the sequence number they are consistent with,
    /// and a live receiver that starts right after it.
    pub fn snapshot(&self, filter: &Filter) -> Watch {
        let table = self.lock();
        let mut latest: Vec<pb::AlarmEvent> = table
            .active()
            .map(|a| self.to_pb(&a.last))
            .filter(|e| filter.shows(e))
            .collect();
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
    ) -> Result<(Vec<pb::AlarmEvent>, u64), Gone> {
        let newest = self.last_seq();
        if after > newest {
            return Err(Gone::Ahead {
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
    pub fn tail_and_watch(&self, filter: &Filter, after: u64) -> Result<Watch, Gone> {
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
    /// to_ms)`, from the journal (see [`crate::stats`]).
    pub fn stats(
        &self,
        enterprise: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<pb::StatsResponse, Gone> {
        let mut events = Vec::new();
        let mut after = None;
        loop {
            let page = self.journal.history(
                from_ms.saturating_sub(stats::LOOKBACK_MS),
                to_ms,
                after,
                10_000,
                |e| e.enterprise == enterprise,
            )?;
            events.extend(page.events);
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        Ok(stats::stats(enterprise, from_ms, to_ms, events))
    }

    /// One page of alarm history (see [`AlarmJournal::history`]).
    pub fn history(
        &self,
        filter: &Filter,
        from_ms: i64,
        to_ms: i64,
        after: Option<hazardwatch_storage::HistoryCursor>,
        limit: usize,
    ) -> Result<hazardwatch_storage::HistoryPage, Gone> {
        Ok(self
            .journal
            .history(from_ms, to_ms, after, limit, |e| filter.matches(e))?)
    }

    /// A live receiver of every event from now on (for the demo's screen).
    pub fn watch(&self) -> broadcast::Receiver<pb::AlarmEvent> {
        self.live.subscribe()
    }

    /// Sequence number of the newest event.
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq()
    }
}
