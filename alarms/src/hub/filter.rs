//! Which alarms a caller wants, and may see: the filter of a feed, a list
//! or a history query, checked against the caller's scope.

use hazardwatch_proto::{Priority, pb};

use crate::access::{Caller, Scope};
use crate::error::{Error, Result};

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
    /// The parks the caller may see at all (on a regional instance).
    pub park_scope: Scope,
    /// Only alarms escalated to at least this level (wire value; 0: all).
    pub min_escalation: i32,
    /// Hazard source ids; empty means all.
    pub hazard_sources: Vec<String>,
    /// Alarm states (wire values); empty means all.
    pub states: Vec<i32>,
    /// Park ids (on a regional instance); empty means all.
    pub parks: Vec<String>,
}

impl Filter {
    /// From the wire form, limited to what `caller` may see. An unknown
    /// priority is `INVALID_ARGUMENT`; an enterprise outside the caller's
    /// scope, `PERMISSION_DENIED`.
    pub fn for_caller(f: Option<pb::AlarmFilter>, caller: &Caller) -> Result<Filter> {
        let f = f.unwrap_or_default();
        let min = pb::Priority::try_from(f.min_priority).map_err(|_| {
            Error::InvalidArgument(format!(
                "filter.min_priority: unknown value {}",
                f.min_priority
            ))
        })?;
        if let Some(s) = f
            .states
            .iter()
            .find(|&&s| pb::AlarmState::try_from(s).is_err())
        {
            return Err(Error::InvalidArgument(format!(
                "filter.states: unknown value {s}"
            )));
        }
        if let Some(p) = f.parks.iter().find(|p| !caller.parks.allows(p)) {
            return Err(Error::PermissionDenied(format!(
                "token `{}` may not see park `{p}`",
                caller.name
            )));
        }
        if let Some(e) = f.enterprises.iter().find(|e| !caller.scope.allows(e)) {
            return Err(Error::PermissionDenied(format!(
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
            park_scope: caller.parks.clone(),
            hazard_sources: f.hazard_sources,
            states: f.states,
            parks: f.parks,
            min_escalation: pb::EscalationLevel::try_from(f.min_escalation).map_err(|_| {
                Error::InvalidArgument(format!(
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
        let park_ok = (self.parks.is_empty() || self.parks.contains(&e.park))
            && (e.park.is_empty() || self.park_scope.allows(&e.park));
        self.scope.allows(&e.enterprise)
            && enterprise_ok
            && place_ok
            && park_ok
            && (risk || state_ok)
            && (risk || e.escalation_level >= self.min_escalation && priority_ok)
            && (self.include_suppressed || !e.suppressed)
            && (self.include_shelved || action || !held)
    }
}
