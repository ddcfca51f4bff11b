//! The gRPC edge: `AlarmService`, with gRPC health and reflection, so
//! grpcurl or any gRPC client works without the `.proto` files in hand.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_server::{AlarmService, AlarmServiceServer};
use hazardwatch_proto::pb::site_service_server::{SiteService, SiteServiceServer};
use hazardwatch_proto::pb::telemetry_service_server::TelemetryServiceServer;
use hazardwatch_rules::alarms::ActionError;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::access::{Access, Caller, Role};
use crate::alarm_hub::{Action, AlarmHub, Filter, Gone};
use crate::service::SiteControl;
use crate::telemetry::Telemetry;
use hazardwatch_rules::site::UnitState;
use hazardwatch_storage::HistoryCursor;

/// Events queued for one subscriber's connection; when full, the subscriber
/// task waits, and if the live feed outruns it, it catches up from the
/// journal instead of slowing anyone else.
pub const SUBSCRIBER_QUEUE: usize = 1_024;

/// Journal events looked at per catch-up read.
const CATCH_UP_PAGE: usize = 4_096;

/// History page size when the request leaves it at 0, and the largest
/// accepted.
const HISTORY_PAGE: (u32, u32) = (1_000, 10_000);

/// Longest operator name or comment accepted, in bytes.
const MAX_TEXT: usize = 1_024;

/// Longest shelf, seconds: one shift. A shelved alarm must come back.
pub const MAX_SHELVE_S: u32 = 8 * 3600;

/// The `AlarmService` implementation.
pub struct Alarms {
    hub: Arc<AlarmHub>,
    /// Ends every open Subscribe stream when the server stops, so graceful
    /// shutdown does not wait on subscribers that never hang up.
    shutdown: CancellationToken,
}

impl Alarms {
    /// A service over the hub.
    pub fn new(hub: Arc<AlarmHub>, shutdown: CancellationToken) -> Self {
        Alarms { hub, shutdown }
    }
}

impl Alarms {
    /// Validates and applies an operator action (in a blocking task: it
    /// commits to the journal), mapping refusals to gRPC status codes.
    /// Actions that hide an alarm, and comments, need a comment: the why.
    async fn act(
        &self,
        caller: Caller,
        action: Action,
        alarm_id: String,
        operator: String,
        comment: String,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        caller.require(Role::Operator)?;
        let operator = operator.trim().to_owned();
        if operator.is_empty() {
            return Err(Status::invalid_argument(
                "operator is required: operator actions record who acted",
            ));
        }
        if operator.len() > MAX_TEXT || comment.len() > MAX_TEXT {
            return Err(Status::invalid_argument(format!(
                "operator and comment are limited to {MAX_TEXT} bytes"
            )));
        }
        let needs_why = matches!(
            action,
            Action::Shelve(_) | Action::Comment | Action::OutOfService(true) | Action::Dispose(_)
        );
        if needs_why && comment.trim().is_empty() {
            let field = if matches!(action, Action::Dispose(_)) {
                "cause"
            } else {
                "comment"
            };
            return Err(Status::invalid_argument(format!(
                "{field} is required: say why (it is recorded with the action)"
            )));
        }
        let hub = self.hub.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let done = tokio::task::spawn_blocking(move || {
            let actor = caller.actor(&operator);
            hub.act(action, &alarm_id, &caller.scope, &actor, &comment, now)
                .map_err(|e| match e {
                    ActionError::NotFound => Status::not_found(format!(
                        "no active, unacknowledged or shelved alarm `{alarm_id}`"
                    )),
                    other => Status::failed_precondition(format!("alarm `{alarm_id}`: {other}")),
                })
        })
        .await
        .map_err(|e| Status::internal(format!("operator action: {e}")))?;
        Ok(Response::new(pb::ActionResponse { event: Some(done?) }))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::AlarmEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AlarmService for Alarms {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        let filter = Filter::for_caller(req.filter, &caller)?;
        let newest = self.hub.last_seq();
        if req.resume_after > newest {
            return Err(gone_status(Gone::Ahead {
                requested: req.resume_after,
                newest,
            }));
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let feed = forward(self.hub.clone(), filter, req.resume_after, tx);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = feed => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_active(
        &self,
        request: Request<pb::ListActiveRequest>,
    ) -> Result<Response<pb::ListActiveResponse>, Status> {
        let caller = Caller::of(&request)?;
        let filter = Filter::for_caller(request.into_inner().filter, &caller)?;
        let (alarms, as_of_seq) = self.hub.list_active(&filter);
        Ok(Response::new(pb::ListActiveResponse { alarms, as_of_seq }))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        let done = self
            .act(
                caller,
                Action::Acknowledge,
                req.alarm_id,
                req.operator,
                req.comment,
            )
            .await?;
        Ok(Response::new(pb::AcknowledgeResponse {
            event: done.into_inner().event,
        }))
    }

    async fn reset(
        &self,
        request: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        let done = self
            .act(
                caller,
                Action::Reset,
                req.alarm_id,
                req.operator,
                req.comment,
            )
            .await?;
        Ok(Response::new(pb::ResetResponse {
            event: done.into_inner().event,
        }))
    }

    async fn shelve(
        &self,
        request: Request<pb::ShelveRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        if !(1..=MAX_SHELVE_S).contains(&req.duration_s) {
            return Err(Status::invalid_argument(format!(
                "duration_s {} must be from 1 to {MAX_SHELVE_S} (one shift)",
                req.duration_s
            )));
        }
        let until = chrono::Utc::now().timestamp_millis() + i64::from(req.duration_s) * 1000;
        self.act(
            caller,
            Action::Shelve(until),
            req.alarm_id,
            req.operator,
            req.comment,
        )
        .await
    }

    async fn unshelve(
        &self,
        request: Request<pb::ActionRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        self.act(
            caller,
            Action::Unshelve,
            req.alarm_id,
            req.operator,
            req.comment,
        )
        .await
    }

    async fn comment(
        &self,
        request: Request<pb::ActionRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        self.act(
            caller,
            Action::Comment,
            req.alarm_id,
            req.operator,
            req.comment,
        )
        .await
    }

    async fn set_out_of_service(
        &self,
        request: Request<pb::SetOutOfServiceRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        self.act(
            caller,
            Action::OutOfService(req.out_of_service),
            req.alarm_id,
            req.operator,
            req.comment,
        )
        .await
    }

    async fn dispose(
        &self,
        request: Request<pb::DisposeRequest>,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        if req.action.trim().is_empty() || req.action.len() > MAX_TEXT {
            return Err(Status::invalid_argument(format!(
                "action is required (what was done), at most {MAX_TEXT} bytes"
            )));
        }
        self.act(
            caller,
            Action::Dispose(req.action),
            req.alarm_id,
            req.operator,
            req.cause,
        )
        .await
    }

    async fn stats(
        &self,
        request: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        if !caller.scope.allows(&req.enterprise) {
            return Err(Status::permission_denied(format!(
                "token `{}` may not see enterprise `{}`",
                caller.name, req.enterprise
            )));
        }
        if !self.hub.has_enterprise(&req.enterprise) {
            return Err(Status::not_found(format!(
                "no enterprise `{}` in the site",
                req.enterprise
            )));
        }
        let to_ms = if req.to_ms == 0 {
            chrono::Utc::now().timestamp_millis()
        } else {
            req.to_ms
        };
        if req.from_ms >= to_ms {
            return Err(Status::invalid_argument(format!(
                "from_ms {} must be before to_ms {to_ms}",
                req.from_ms
            )));
        }
        let hub = self.hub.clone();
        let stats =
            tokio::task::spawn_blocking(move || hub.stats(&req.enterprise, req.from_ms, to_ms))
                .await
                .map_err(|e| Status::internal(format!("stats: {e}")))?
                .map_err(gone_status)?;
        Ok(Response::new(stats))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        let filter = Filter::for_caller(req.filter, &caller)?;
        let to_ms = if req.to_ms == 0 { i64::MAX } else { req.to_ms };
        if req.from_ms >= to_ms {
            return Err(Status::invalid_argument(format!(
                "from_ms {} must be before to_ms {}",
                req.from_ms, req.to_ms
            )));
        }
        let limit = match req.page_size {
            0 => HISTORY_PAGE.0,
            n if n <= HISTORY_PAGE.1 => n,
            n => {
                return Err(Status::invalid_argument(format!(
                    "page_size {n} is more than {}",
                    HISTORY_PAGE.1
                )));
            }
        };
        let after = match req.page_token.as_str() {
            "" => None,
            t => Some(HistoryCursor::parse(t).ok_or_else(|| {
                Status::invalid_argument(format!("page_token `{t}` is not one this service gave"))
            })?),
        };
        let hub = self.hub.clone();
        let page = tokio::task::spawn_blocking(move || {
            hub.history(&filter, req.from_ms, to_ms, after, limit as usize)
        })
        .await
        .map_err(|e| Status::internal(format!("history read: {e}")))?
        .map_err(gone_status)?;
        Ok(Response::new(pb::HistoryResponse {
            events: page.events,
            next_page_token: page.next.map(|c| c.token()).unwrap_or_default(),
        }))
    }
}

/// The `SiteService` implementation: grades and live risk colours.
pub struct Site {
    hub: Arc<AlarmHub>,
    control: SiteControl,
}

#[tonic::async_trait]
impl SiteService for Site {
    async fn risk(
        &self,
        request: Request<pb::RiskRequest>,
    ) -> Result<Response<pb::RiskResponse>, Status> {
        let caller = Caller::of(&request)?;
        let enterprises = request.into_inner().enterprises;
        let filter = Filter::for_caller(
            Some(pb::AlarmFilter {
                enterprises,
                ..Default::default()
            }),
            &caller,
        )?;
        Ok(Response::new(self.hub.risk_report(&filter)))
    }

    async fn set_unit_state(
        &self,
        request: Request<pb::SetUnitStateRequest>,
    ) -> Result<Response<pb::SetUnitStateResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Role::Admin)?;
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
        let operator = req.operator.trim();
        if operator.is_empty() || req.comment.trim().is_empty() {
            return Err(Status::invalid_argument(
                "operator and comment (why) are required",
            ));
        }
        if operator.len() > MAX_TEXT || req.comment.len() > MAX_TEXT {
            return Err(Status::invalid_argument(format!(
                "operator and comment are limited to {MAX_TEXT} bytes"
            )));
        }
        let not_found = || Status::not_found(format!("no unit `{}` in the site", req.unit));
        let (before, [enterprise, hazard_source]) = self
            .control
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
            event_time_ms: chrono::Utc::now().timestamp_millis(),
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

fn gone_status(e: Gone) -> Status {
    match e {
        Gone::Ahead { .. } => Status::out_of_range(e.to_string()),
        Gone::Journal(_) => Status::unavailable(e.to_string()),
    }
}

/// Feeds one subscriber: from `resume_after`, the journal's events, read a
/// page at a time with no lock held; when caught up, the tail and a live
/// receiver taken together; then live events. When it lags behind the live
/// feed it goes back to the journal from its last event. With
/// `resume_after` 0 it starts from a snapshot of the active alarms. Every
/// event matching the filter is sent once, in sequence order.
async fn forward(
    hub: Arc<AlarmHub>,
    filter: Filter,
    resume_after: u64,
    tx: mpsc::Sender<Result<pb::AlarmEvent, Status>>,
) {
    let send = |e: pb::AlarmEvent| tx.send(Ok(e));
    let mut last = resume_after;
    let mut live = None;
    if resume_after == 0 {
        let (snapshot, as_of, rx) = hub.snapshot(&filter);
        for e in snapshot {
            if send(e).await.is_err() {
                return;
            }
        }
        last = as_of;
        live = Some(rx);
    }
    loop {
        let mut rx = match live.take() {
            Some(rx) => rx,
            None => match catch_up(&hub, &filter, &mut last, &tx).await {
                Some(rx) => rx,
                None => return,
            },
        };
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if e.seq <= last {
                        continue;
                    }
                    last = e.seq;
                    if filter.matches(&e) && send(e).await.is_err() {
                        return;
                    }
                }
                // Fallen behind the live feed: back to the journal.
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Sends the journal's events after `last` until close to the newest, then
/// the tail, returning the live receiver that follows it (`None` when the
/// subscriber hung up or the journal failed, which it is told).
async fn catch_up(
    hub: &Arc<AlarmHub>,
    filter: &Filter,
    last: &mut u64,
    tx: &mpsc::Sender<Result<pb::AlarmEvent, Status>>,
) -> Option<broadcast::Receiver<pb::AlarmEvent>> {
    let fail = |status: Status| async move {
        let _ = tx.send(Err(status)).await;
    };
    while hub.last_seq().saturating_sub(*last) > CATCH_UP_PAGE as u64 {
        let (h, f, after) = (hub.clone(), filter.clone(), *last);
        let page = tokio::task::spawn_blocking(move || h.page_after(&f, after, CATCH_UP_PAGE));
        let (events, upto) = match page.await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                fail(gone_status(e)).await;
                return None;
            }
            Err(e) => {
                fail(Status::internal(format!("journal read: {e}"))).await;
                return None;
            }
        };
        *last = upto;
        for e in events {
            tx.send(Ok(e)).await.ok()?;
        }
    }
    let (tail, as_of, rx) = match hub.tail_and_watch(filter, *last) {
        Ok(t) => t,
        Err(e) => {
            fail(gone_status(e)).await;
            return None;
        }
    };
    for e in tail {
        tx.send(Ok(e)).await.ok()?;
    }
    *last = as_of;
    Some(rx)
}

/// Binds the gRPC listener (port 0: a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The server, with TLS when an identity is given: a certificate or key
/// that does not parse is an error here, before anything is served.
pub fn server(
    tls: Option<tonic::transport::Identity>,
) -> Result<tonic::transport::Server, tonic::transport::Error> {
    let server = tonic::transport::Server::builder();
    match tls {
        Some(identity) => {
            server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
        }
        None => Ok(server),
    }
}

/// Serves the alarm and site services, health and reflection on
/// `listener` with `server` (see [`server`]) until `shutdown` is cancelled.
pub async fn serve(
    mut server: tonic::transport::Server,
    listener: TcpListener,
    hub: Arc<AlarmHub>,
    access: Arc<Access>,
    control: SiteControl,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AlarmServiceServer<Alarms>>()
        .await;
    // Reflection in both protocol versions: grpcurl speaks v1, older
    // clients (Python's grpcio-reflection among them) only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the embedded descriptor sets are valid (built by protox)");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid (built by protox)");
    server
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(SiteServiceServer::with_interceptor(
            Site {
                hub: hub.clone(),
                control,
            },
            access.clone().interceptor(),
        ))
        .add_service(TelemetryServiceServer::with_interceptor(
            telemetry,
            access.clone().interceptor(),
        ))
        .add_service(AlarmServiceServer::with_interceptor(
            Alarms::new(hub, shutdown.clone()),
            access.interceptor(),
        ))
        .serve_with_incoming_shutdown(no_delay(listener), shutdown.cancelled())
        .await
}

/// The listener's connections with `TCP_NODELAY` set (the builder's own
/// setting is not applied to an incoming stream): an alarm event is one
/// small frame, and Nagle's algorithm would hold it back for the peer's
/// delayed acknowledgement.
fn no_delay(listener: TcpListener) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}
