//! `SiteService`: grades and live risk colours of the hazard sources, and
//! unit operating states set by an admin.

use std::sync::Arc;

use hazardwatch_alarms::hub::check_operator_text;
use hazardwatch_alarms::{AlarmHub, Filter, Role};
use hazardwatch_proto::clock::SharedClock;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::site_service_server::SiteService;
use hazardwatch_rules::site::UnitState;
use tonic::{Request, Response, Status};

use super::access::caller;
use super::status::IntoStatus;
use crate::live_site::LiveSite;

/// The `SiteService` implementation: grades and live risk colours.
pub struct SiteApi {
    hub: Arc<AlarmHub>,
    site: LiveSite,
    /// Stamps unit-state changes.
    clock: SharedClock,
}

impl SiteApi {
    /// A service over the hub and the running site model.
    pub fn new(hub: Arc<AlarmHub>, site: LiveSite, clock: SharedClock) -> Self {
        SiteApi { hub, site, clock }
    }
}

#[tonic::async_trait]
impl SiteService for SiteApi {
    async fn risk(
        &self,
        request: Request<pb::RiskRequest>,
    ) -> Result<Response<pb::RiskResponse>, Status> {
        let caller = caller(&request)?;
        let enterprises = request.into_inner().enterprises;
        let filter = Filter::for_caller(
            Some(pb::AlarmFilter {
                enterprises,
                ..Default::default()
            }),
            &caller,
        )
        .into_status()?;
        Ok(Response::new(self.hub.risk_report(&filter)))
    }

    async fn set_unit_state(
        &self,
        request: Request<pb::SetUnitStateRequest>,
    ) -> Result<Response<pb::SetUnitStateResponse>, Status> {
        let caller = caller(&request)?;
        caller.require(Role::Admin).into_status()?;
        let req = request.into_inner();
        let state = match pb::UnitState::try_from(req.state) {
            Ok(pb::UnitState::Running) => UnitState::Running,
            Ok(pb::UnitState::Stopped) => UnitState::Stopped,
            Ok(pb::UnitState::Overhaul) => UnitState::Overhaul,
            Ok(pb::UnitState::Trial) => UnitState::Trial,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "state {} is not running, stopped, overhaul or trial",
                    req.state
                )));
            }
        };
        let operator = check_operator_text(&req.operator, &req.comment).into_status()?;
        if req.comment.trim().is_empty() {
            return Err(Status::invalid_argument(
                "comment is required: say why (it is recorded with the change)",
            ));
        }
        let not_found = || Status::not_found(format!("no unit `{}` in the site", req.unit));
        let (before, [enterprise, hazard_source]) = self
            .site
            .set_unit_state(&req.unit, state, |e| caller.scope.allows(e))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .ok_or_else(not_found)?;
        let actor = caller.actor(operator);
        let event = self.hub.record(pb::AlarmEvent {
            alarm_id: format!("{}/STATE", req.unit),
            enterprise,
            hazard_source,
            unit: req.unit.clone(),
            transition: pb::Transition::UnitStateChanged as i32,
            event_time_ms: self.clock.now_ms(),
            value: f64::NAN,
            limit: f64::NAN,
            message: format!(
                "{} state {} (was {}) by {actor}: {}",
                req.unit,
                state.as_str(),
                before.as_str(),
                req.comment
            ),
            actor,
            comment: req.comment,
            ..Default::default()
        });
        Ok(Response::new(pb::SetUnitStateResponse {
            event: Some(event),
        }))
    }
}
