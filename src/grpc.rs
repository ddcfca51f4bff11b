//! The gRPC edge: `AlarmService`, with gRPC health and reflection, so
//! grpcurl or any gRPC client works without the `.proto` files in hand.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_server::{AlarmService, AlarmServiceServer};
use hazardwatch_rules::alarms::ActionError;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::alarm_hub::{Action, AlarmHub, Filter};

/// Events queued for one subscriber's connection; when full, the subscriber
/// task waits, and if the live feed outruns it, it catches up from the
/// journal instead of slowing anyone else.
pub const SUBSCRIBER_QUEUE: usize = 1_024;

/// Longest operator name or comment accepted, in bytes.
const MAX_TEXT: usize = 1_024;

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
    /// Validates and applies an operator action, mapping refusals to gRPC
    /// status codes.
    fn act(
        &self,
        action: Action,
        alarm_id: &str,
        operator: &str,
        comment: &str,
    ) -> Result<pb::AlarmEvent, Status> {
        if operator.trim().is_empty() {
            return Err(Status::invalid_argument(
                "operator is required: operator actions record who acted",
            ));
        }
        if operator.len() > MAX_TEXT || comment.len() > MAX_TEXT {
            return Err(Status::invalid_argument(format!(
                "operator and comment are limited to {MAX_TEXT} bytes"
            )));
        }
        let now = chrono::Utc::now().timestamp_millis();
        self.hub
            .act(action, alarm_id, operator.trim(), comment, now)
            .map_err(|e| match e {
                ActionError::NotFound => {
                    Status::not_found(format!("no active or unacknowledged alarm `{alarm_id}`"))
                }
                other => Status::failed_precondition(format!("alarm `{alarm_id}`: {other}")),
            })
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
        let req = request.into_inner();
        let filter = Filter::from_pb(req.filter).map_err(Status::invalid_argument)?;
        let (backlog, live) = self
            .hub
            .subscribe(&filter, req.resume_after)
            .map_err(|e| Status::out_of_range(e.to_string()))?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let feed = forward(
            self.hub.clone(),
            filter,
            req.resume_after,
            backlog,
            live,
            tx,
        );
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
        let filter =
            Filter::from_pb(request.into_inner().filter).map_err(Status::invalid_argument)?;
        let (alarms, as_of_seq) = self.hub.list_active(&filter);
        Ok(Response::new(pb::ListActiveResponse { alarms, as_of_seq }))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        let req = request.into_inner();
        let event = self.act(
            Action::Acknowledge,
            &req.alarm_id,
            &req.operator,
            &req.comment,
        )?;
        Ok(Response::new(pb::AcknowledgeResponse {
            event: Some(event),
        }))
    }

    async fn reset(
        &self,
        request: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let req = request.into_inner();
        let event = self.act(Action::Reset, &req.alarm_id, &req.operator, &req.comment)?;
        Ok(Response::new(pb::ResetResponse { event: Some(event) }))
    }
}

/// Feeds one subscriber: backlog, then live events; on lag, catches up from
/// the journal so nothing is skipped and nothing repeats.
async fn forward(
    hub: Arc<AlarmHub>,
    filter: Filter,
    resume_after: u64,
    backlog: Vec<pb::AlarmEvent>,
    mut live: broadcast::Receiver<pb::AlarmEvent>,
    tx: mpsc::Sender<Result<pb::AlarmEvent, Status>>,
) {
    let mut last = resume_after;
    for e in backlog {
        last = last.max(e.seq);
        if tx.send(Ok(e)).await.is_err() {
            return;
        }
    }
    loop {
        match live.recv().await {
            Ok(e) => {
                if e.seq <= last || !filter.matches(&e) {
                    last = last.max(e.seq);
                    continue;
                }
                last = e.seq;
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => match hub.since(&filter, last) {
                Ok(missed) => {
                    for e in missed {
                        last = last.max(e.seq);
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(gone) => {
                    let _ = tx.send(Err(Status::data_loss(gone.to_string()))).await;
                    return;
                }
            },
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Binds the gRPC listener (port 0: a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the alarm service, health and reflection on `listener` until
/// `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<AlarmHub>,
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
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AlarmServiceServer::new(Alarms::new(hub, shutdown.clone())))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled())
        .await
}
