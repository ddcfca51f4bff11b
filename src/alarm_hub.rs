//! The alarm hub: applies the rule engine's events to the alarm table,
//! numbers every transition, keeps recent events for resuming subscribers,
//! and fans them out live.
//!
//! One lock guards the table, the journal and the broadcast send, so a
//! subscriber that takes its backlog and its live receiver under that lock
//! sees every event exactly once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use hazardwatch_proto::{AlarmKind, AlarmSource, Catalog, PointKind, Priority, RuleEvent, pb};
use hazardwatch_rules::alarms::{ActionError, AlarmRecord, AlarmState, AlarmTable, Transition};
use tokio::sync::broadcast;

/// Events kept in memory for subscribers that resume after a disconnect.
pub const JOURNAL_CAPACITY: usize = 100_000;

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
}

impl Filter {
    /// From the wire form; an unknown priority value is refused.
    pub fn from_pb(f: Option<pb::AlarmFilter>) -> Result<Filter, String> {
        let f = f.unwrap_or_default();
        let min = pb::Priority::try_from(f.min_priority)
            .map_err(|_| format!("filter.min_priority: unknown value {}", f.min_priority))?;
        Ok(Filter {
            enterprises: f.enterprises,
            min_priority: min.into(),
            include_suppressed: f.include_suppressed,
        })
    }

    /// True when the event passes.
    pub fn matches(&self, e: &pb::AlarmEvent) -> bool {
        let enterprise_ok = self.enterprises.is_empty() || self.enterprises.contains(&e.enterprise);
        let priority_ok = match self.min_priority {
            None => true,
            Some(min) => e.priority >= pb::Priority::from(min) as i32,
        };
        enterprise_ok && priority_ok && (self.include_suppressed || !e.suppressed)
    }
}

/// Why a resume point cannot be served. Either way the subscriber must
/// resynchronise (ListActive, then subscribe from its `as_of_seq`) rather
/// than be served a stream with a hole in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gone {
    /// The events after the resume point have left the in-memory journal.
    #[error(
        "events after {requested} are no longer held (oldest held: {oldest}); call ListActive and resume from its as_of_seq"
    )]
    Evicted {
        /// The resume point asked for.
        requested: u64,
        /// The oldest sequence number still held.
        oldest: u64,
    },
    /// The resume point is ahead of every event this service has numbered
    /// (it restarted since the subscriber's last event).
    #[error(
        "resume point {requested} is ahead of the newest event {newest} (the service restarted?); call ListActive and resume from its as_of_seq"
    )]
    Ahead {
        /// The resume point asked for.
        requested: u64,
        /// The newest sequence number.
        newest: u64,
    },
}

/// An operator action on one alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// ISA-18.2 acknowledgement.
    Acknowledge,
    /// Reset of a latched alarm.
    Reset,
}

struct State {
    table: AlarmTable,
    journal: VecDeque<pb::AlarmEvent>,
}

/// Shared alarm state (see the module docs).
pub struct AlarmHub {
    catalog: RwLock<Arc<Catalog>>,
    state: Mutex<State>,
    live: broadcast::Sender<pb::AlarmEvent>,
}

/// Wire name of a transition.
fn transition_pb(t: Transition) -> pb::Transition {
    match t {
        Transition::Raised => pb::Transition::Raised,
        Transition::Cleared => pb::Transition::Cleared,
        Transition::Acknowledged => pb::Transition::Acknowledged,
        Transition::Reset => pb::Transition::Reset,
    }
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

/// The stable id of an alarm: `{source}/{tag}`, the source being a point,
/// unit or enterprise id.
pub fn alarm_id(source: &str, kind: AlarmKind) -> String {
    format!("{source}/{}", kind.tag())
}

impl AlarmHub {
    /// An empty hub over the site's catalog.
    pub fn new(catalog: Arc<Catalog>) -> Arc<AlarmHub> {
        let (live, _) = broadcast::channel(BROADCAST_CAPACITY);
        Arc::new(AlarmHub {
            catalog: RwLock::new(catalog),
            state: Mutex::new(State {
                table: AlarmTable::default(),
                journal: VecDeque::new(),
            }),
            live,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind that is
        // still consistent record by record; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The catalog alarms are named from.
    fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the catalog after a site-model reload (indices are kept, so
    /// every alarm keeps its name).
    pub fn set_catalog(&self, catalog: Arc<Catalog>) {
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;
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
        }
    }

    fn publish(&self, state: &mut State, record: &AlarmRecord) -> pb::AlarmEvent {
        let event = self.to_pb(record);
        if state.journal.len() == JOURNAL_CAPACITY {
            state.journal.pop_front();
        }
        state.journal.push_back(event.clone());
        // No receivers is fine: nobody is subscribed.
        let _ = self.live.send(event.clone());
        metrics::counter!("hazardwatch_alarm_events_total",
            "transition" => transition_pb(record.transition).as_str_name())
        .increment(1);
        event
    }

    /// Applies rule events (in the engine's order) and returns the alarm
    /// events they caused.
    pub fn apply(&self, events: &[RuleEvent]) -> Vec<pb::AlarmEvent> {
        let mut state = self.lock();
        let mut out = Vec::new();
        for ev in events {
            if let Some(record) = state.table.apply(ev) {
                out.push(self.publish(&mut state, &record));
            }
        }
        out
    }

    /// Applies an operator action (acknowledge, reset) to an alarm by id.
    pub fn act(
        &self,
        action: Action,
        alarm_id: &str,
        actor: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<pb::AlarmEvent, ActionError> {
        let (source, tag) = alarm_id.rsplit_once('/').ok_or(ActionError::NotFound)?;
        let source = self
            .catalog()
            .source_lookup(source)
            .ok_or(ActionError::NotFound)?;
        let kind = AlarmKind::from_tag(tag).ok_or(ActionError::NotFound)?;
        let mut state = self.lock();
        let record = match action {
            Action::Acknowledge => state
                .table
                .acknowledge(source, kind, actor, comment, now_ms)?,
            Action::Reset => state.table.reset(source, kind, actor, comment, now_ms)?,
        };
        Ok(self.publish(&mut state, &record))
    }

    /// Active and unacknowledged alarms matching the filter, and the
    /// sequence number the list is consistent with.
    pub fn list_active(&self, filter: &Filter) -> (Vec<pb::ActiveAlarm>, u64) {
        let state = self.lock();
        let alarms = state
            .table
            .active()
            .map(|a| (a, self.to_pb(&a.last)))
            .filter(|(_, e)| filter.matches(e))
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
            })
            .collect();
        (alarms, state.table.last_seq())
    }

    /// What a new subscriber gets: the backlog (the latest event of every
    /// active alarm when `resume_after` is 0, else every held event after
    /// it) and a live receiver that starts right after the backlog.
    pub fn subscribe(
        &self,
        filter: &Filter,
        resume_after: u64,
    ) -> Result<(Vec<pb::AlarmEvent>, broadcast::Receiver<pb::AlarmEvent>), Gone> {
        let state = self.lock();
        let backlog = if resume_after == 0 {
            let mut latest: Vec<pb::AlarmEvent> = state
                .table
                .active()
                .map(|a| self.to_pb(&a.last))
                .filter(|e| filter.matches(e))
                .collect();
            latest.sort_by_key(|e| e.seq);
            latest
        } else {
            Self::held_after(&state, filter, resume_after)?
        };
        Ok((backlog, self.live.subscribe()))
    }

    /// Held events after `seq` matching the filter (for a lagging subscriber).
    pub fn since(&self, filter: &Filter, seq: u64) -> Result<Vec<pb::AlarmEvent>, Gone> {
        Self::held_after(&self.lock(), filter, seq)
    }

    fn held_after(state: &State, filter: &Filter, seq: u64) -> Result<Vec<pb::AlarmEvent>, Gone> {
        let newest = state.table.last_seq();
        if seq > newest {
            return Err(Gone::Ahead {
                requested: seq,
                newest,
            });
        }
        let oldest = state.journal.front().map_or(newest + 1, |e| e.seq);
        if seq + 1 < oldest {
            return Err(Gone::Evicted {
                requested: seq,
                oldest,
            });
        }
        Ok(state
            .journal
            .iter()
            .filter(|e| e.seq > seq && filter.matches(e))
            .cloned()
            .collect())
    }

    /// A live receiver of every event from now on (for the demo's screen).
    pub fn watch(&self) -> broadcast::Receiver<pb::AlarmEvent> {
        self.live.subscribe()
    }

    /// Sequence number of the newest event.
    pub fn last_seq(&self) -> u64 {
        self.lock().table.last_seq()
    }
}
