//! `SiteService`: grades and live risk colours of the hazard sources, and
//! unit operating states set by an admin.

use std::collections::BTreeMap;
use std::sync::Arc;

use hazardwatch_alarms::hub::check_operator_text;
use hazardwatch_alarms::text::Text;
use hazardwatch_alarms::wire::set_text;
use hazardwatch_alarms::{AlarmHub, Filter, Role};
use hazardwatch_ingest::health::{GatewayHealth, GatewayReport, Rollup};
use hazardwatch_proto::clock::SharedClock;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::site_service_server::SiteService;
use hazardwatch_rules::site::UnitState;
use tonic::{Request, Response, Status};

use super::access::caller;
use super::describe::describe;
use super::status::IntoStatus;
use crate::live_site::LiveSite;

/// The `SiteService` implementation: grades and live risk colours, unit
/// states, gateway health.
pub struct SiteApi {
    hub: Arc<AlarmHub>,
    site: LiveSite,
    health: Arc<GatewayHealth>,
    /// Stamps unit-state changes and health figures.
    clock: SharedClock,
}

impl SiteApi {
    /// A service over the hub, the running site model and the gateways'
    /// health.
    pub fn new(
        hub: Arc<AlarmHub>,
        site: LiveSite,
        health: Arc<GatewayHealth>,
        clock: SharedClock,
    ) -> Self {
        SiteApi {
            hub,
            site,
            health,
            clock,
        }
    }
}

impl SiteApi {
    /// The park's site plan, as the running model has it.
    pub fn plan(&self) -> Option<hazardwatch_rules::SitePlan> {
        self.site.snapshot().plan
    }
}

fn health_rollup(enterprise: &str, r: &Rollup) -> pb::HealthRollup {
    pb::HealthRollup {
        enterprise: enterprise.to_owned(),
        gateways: r.gateways,
        online: r.online,
        online_ratio: r.online_ratio,
        completeness: r.completeness,
    }
}

#[tonic::async_trait]
impl SiteService for SiteApi {
    async fn describe(
        &self,
        request: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        let caller = caller(&request)?;
        let site = self.site.snapshot();
        Ok(Response::new(describe(&site, &caller.scope)))
    }

    async fn gateways(
        &self,
        request: Request<pb::GatewaysRequest>,
    ) -> Result<Response<pb::GatewaysResponse>, Status> {
        let caller = caller(&request)?;
        let wanted = request.into_inner().enterprises;
        if let Some(e) = wanted.iter().find(|e| !caller.scope.allows(e)) {
            return Err(Status::permission_denied(format!(
                "enterprise `{e}` is outside this token's scope"
            )));
        }
        let now = self.clock.now_ms();
        let reports: Vec<GatewayReport> = self
            .health
            .report(now)
            .into_iter()
            .filter(|r| caller.scope.allows(&r.enterprise))
            .filter(|r| wanted.is_empty() || wanted.contains(&r.enterprise))
            .collect();
        let mut by_enterprise: BTreeMap<&str, Vec<&GatewayReport>> = BTreeMap::new();
        for r in &reports {
            by_enterprise.entry(&r.enterprise).or_default().push(r);
        }
        let enterprises = by_enterprise
            .iter()
            .map(|(e, rs)| health_rollup(e, &Rollup::of(rs.iter().copied())))
            .collect();
        let total = health_rollup("", &Rollup::of(&reports));
        let gateways = reports
            .iter()
            .map(|r| pb::GatewayHealth {
                gateway: r.id.clone(),
                enterprise: r.enterprise.clone(),
                online: r.online,
                online_ratio: r.online_ratio,
                completeness: r.completeness,
                received: r.received,
                expected: r.expected,
                last_ms: r.last_ms.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::GatewaysResponse {
            as_of_ms: now,
            since_ms: self.health.since_ms(),
            gateways,
            enterprises,
            total: Some(total),
            parks: Vec::new(),
        }))
    }

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
        self.hub
            .admit_action(&caller, self.clock.now_ms())
            .into_status()?;
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
        let text = Text::new("unit_state_changed")
            .with("id", &req.unit)
            .with("state", state.as_str())
            .with("was_state", before.as_str())
            .with("actor", &actor)
            .with("comment", &req.comment);
        let mut event = pb::AlarmEvent {
            alarm_id: format!("{}/STATE", req.unit),
            enterprise,
            hazard_source,
            unit: req.unit.clone(),
            transition: pb::Transition::UnitStateChanged as i32,
            event_time_ms: self.clock.now_ms(),
            value: f64::NAN,
            limit: f64::NAN,
            actor,
            comment: req.comment,
            ..Default::default()
        };
        set_text(&mut event, &text);
        let event = self.hub.record(event);
        Ok(Response::new(pb::SetUnitStateResponse {
            event: Some(event),
        }))
    }
}
