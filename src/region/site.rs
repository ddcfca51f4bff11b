//! `SiteService` on a regional instance: each park's risk colours and
//! gateway online rates as the park's own `Risk` and `Gateways` answer,
//! fetched every [`POLL`] and whenever a park's colour changes on its feed;
//! a park out of reach keeps its last answer, marked unreachable, with the
//! time it was fetched.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hazardwatch_proto::clock::SharedClock;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::site_service_client::SiteServiceClient;
use hazardwatch_proto::pb::site_service_server::SiteService;
use tokio_util::sync::CancellationToken;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::config::Upstream;
use super::upstream::{UpstreamStatus, channel_to};
use crate::grpc::access::caller;

/// How often each park's risk and gateway health are fetched.
pub const POLL: Duration = Duration::from_secs(10);

/// What the region last had from one park.
#[derive(Debug, Clone, Default)]
struct Fetched {
    risk: Option<pb::RiskResponse>,
    gateways: Option<pb::GatewaysResponse>,
    fetched_ms: i64,
}

/// The regional `SiteService`.
pub struct RegionSite {
    id: String,
    name: String,
    /// Each park's status, in configuration order.
    upstreams: Vec<(String, Arc<UpstreamStatus>)>,
    fetched: Mutex<BTreeMap<String, Fetched>>,
}

impl RegionSite {
    /// The service for region `id` over its parks.
    pub fn new(id: String, name: String, upstreams: Vec<(String, Arc<UpstreamStatus>)>) -> Self {
        RegionSite {
            id,
            name,
            upstreams,
            fetched: Mutex::new(BTreeMap::new()),
        }
    }

    fn fetched(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Fetched>> {
        self.fetched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parks `scope` allows, with what the region has of each.
    fn parks(&self, scope: &hazardwatch_alarms::Scope) -> Vec<(String, bool, Fetched)> {
        let fetched = self.fetched();
        self.upstreams
            .iter()
            .filter(|(park, _)| scope.allows(park))
            .map(|(park, status)| {
                (
                    park.clone(),
                    status.connected.load(Ordering::Acquire),
                    fetched.get(park).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// The worst of two colours (red is worst; unspecified is none).
fn worse(a: i32, b: i32) -> i32 {
    use pb::RiskColour::{Blue, Orange, Red, Unspecified, Yellow};
    let rank = |c: i32| match pb::RiskColour::try_from(c).unwrap_or(Unspecified) {
        Red => 4,
        Orange => 3,
        Yellow => 2,
        Blue => 1,
        Unspecified => 0,
    };
    if rank(a) >= rank(b) { a } else { b }
}

#[tonic::async_trait]
impl SiteService for RegionSite {
    async fn risk(
        &self,
        request: Request<pb::RiskRequest>,
    ) -> Result<Response<pb::RiskResponse>, Status> {
        let caller = caller(&request)?;
        let mut out = pb::RiskResponse {
            park: self.id.clone(),
            ..Default::default()
        };
        for (park, reachable, f) in self.parks(&caller.parks) {
            if let Some(r) = &f.risk {
                out.park_colour = worse(out.park_colour, r.park_colour);
            }
            out.parks.push(pb::ParkRisk {
                park,
                risk: f.risk,
                fetched_ms: f.fetched_ms,
                reachable,
            });
        }
        Ok(Response::new(out))
    }

    async fn gateways(
        &self,
        request: Request<pb::GatewaysRequest>,
    ) -> Result<Response<pb::GatewaysResponse>, Status> {
        let caller = caller(&request)?;
        let parks = self
            .parks(&caller.parks)
            .into_iter()
            .map(|(park, reachable, f)| pb::ParkGateways {
                park,
                gateways: f.gateways,
                fetched_ms: f.fetched_ms,
                reachable,
            })
            .collect();
        Ok(Response::new(pb::GatewaysResponse {
            parks,
            ..Default::default()
        }))
    }

    async fn describe(
        &self,
        request: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        caller(&request)?;
        Ok(Response::new(pb::DescribeResponse {
            park_id: self.id.clone(),
            park_name: self.name.clone(),
            ..Default::default()
        }))
    }

    async fn set_unit_state(
        &self,
        request: Request<pb::SetUnitStateRequest>,
    ) -> Result<Response<pb::SetUnitStateResponse>, Status> {
        caller(&request)?;
        Err(Status::failed_precondition(
            "a unit's state is set at its park, not at a regional instance",
        ))
    }
}

/// Fetches `up`'s risk and gateway health into `site` every [`POLL`], and
/// when `status.risk_changed` says a colour changed on its feed, until
/// `stop`.
pub async fn poll(
    up: Upstream,
    site: Arc<RegionSite>,
    status: Arc<UpstreamStatus>,
    clock: SharedClock,
    stop: CancellationToken,
) {
    // One connection, kept while it works.
    let mut client = None;
    loop {
        if client.is_none() {
            match channel_to(&up).await {
                Ok((channel, authorise)) => {
                    client = Some(SiteServiceClient::with_interceptor(channel, authorise));
                }
                Err(e) => tracing::debug!(park = %up.park, error = %e, "reaching the park"),
            }
        }
        let fetched = match client.as_mut() {
            Some(c) => fetch(c).await,
            None => Err("not connected".into()),
        };
        match fetched {
            Ok((risk, gateways)) => {
                site.fetched().insert(
                    up.park.clone(),
                    Fetched {
                        risk: Some(risk),
                        gateways: Some(gateways),
                        fetched_ms: clock.now_ms(),
                    },
                );
            }
            Err(e) => {
                client = None;
                tracing::debug!(park = %up.park, error = %e, "fetching the park's risk and gateways")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = status.risk_changed.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn fetch<F: tonic::service::Interceptor>(
    client: &mut SiteServiceClient<InterceptedService<Channel, F>>,
) -> Result<(pb::RiskResponse, pb::GatewaysResponse), String> {
    let risk = client
        .risk(pb::RiskRequest::default())
        .await
        .map_err(|e| format!("Risk: {e}"))?
        .into_inner();
    let gateways = client
        .gateways(pb::GatewaysRequest::default())
        .await
        .map_err(|e| format!("Gateways: {e}"))?
        .into_inner();
    Ok((risk, gateways))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_colour_wins() {
        use pb::RiskColour::{Blue, Orange, Red, Unspecified};
        assert_eq!(worse(Blue as i32, Red as i32), Red as i32);
        assert_eq!(worse(Orange as i32, Unspecified as i32), Orange as i32);
        assert_eq!(
            worse(Unspecified as i32, Unspecified as i32),
            Unspecified as i32
        );
    }
}
