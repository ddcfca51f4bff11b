//! `AlarmService`: the live feed with catch-up and resume, lists,
//! operator actions, EEMUA 191 statistics and history, over the alarm hub.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use hazardwatch_alarms::{Action, AlarmHub, Caller, Filter};
use hazardwatch_proto::clock::SharedClock;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_server::AlarmService;
use hazardwatch_storage::HistoryCursor;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::access::caller;
use super::status::{IntoStatus, alarms_status};

/// Events queued for one subscriber's connection; when full, the subscriber
/// task waits, and if the live feed outruns it, it catches up from the
/// journal instead of slowing anyone else.
pub const SUBSCRIBER_QUEUE: usize = 1_024;

/// Journal events looked at per catch-up read.
const CATCH_UP_PAGE: usize = 4_096;

/// History page size when the request leaves it at 0, and the largest
/// accepted.
const HISTORY_PAGE: (u32, u32) = (1_000, 10_000);

/// The `AlarmService` implementation.
pub struct Alarms {
    hub: Arc<AlarmHub>,
    /// Stamps operator actions and ends default ranges.
    clock: SharedClock,
    /// Ends every open Subscribe stream when the server stops, so graceful
    /// shutdown does not wait on subscribers that never hang up.
    shutdown: CancellationToken,
}

impl Alarms {
    /// A service over the hub.
    pub fn new(hub: Arc<AlarmHub>, clock: SharedClock, shutdown: CancellationToken) -> Self {
        Alarms {
            hub,
            clock,
            shutdown,
        }
    }
}

impl Alarms {
    /// Applies an operator action (in a blocking task: it commits to the
    /// journal); the hub checks it and the caller's role and scope.
    async fn act(
        &self,
        caller: Caller,
        action: Action,
        alarm_id: String,
        operator: String,
        comment: String,
    ) -> Result<Response<pb::ActionResponse>, Status> {
        let hub = self.hub.clone();
        let now = self.clock.now_ms();
        let event = tokio::task::spawn_blocking(move || {
            hub.act(&caller, action, &alarm_id, &operator, &comment, now)
        })
        .await
        .map_err(|e| Status::internal(format!("operator action: {e}")))?
        .into_status()?;
        Ok(Response::new(pb::ActionResponse { event: Some(event) }))
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
        let caller = caller(&request)?;
        let req = request.into_inner();
        let filter = Filter::for_caller(req.filter, &caller).into_status()?;
        self.hub.check_resume(req.resume_after).into_status()?;
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
        let caller = caller(&request)?;
        let filter = Filter::for_caller(request.into_inner().filter, &caller).into_status()?;
        let (alarms, as_of_seq) = self.hub.list_active(&filter);
        Ok(Response::new(pb::ListActiveResponse { alarms, as_of_seq }))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        let caller = caller(&request)?;
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
        let caller = caller(&request)?;
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
        let caller = caller(&request)?;
        let req = request.into_inner();
        self.act(
            caller,
            Action::Shelve(req.duration_s),
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
        let caller = caller(&request)?;
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
        let caller = caller(&request)?;
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
        let caller = caller(&request)?;
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
        let caller = caller(&request)?;
        let req = request.into_inner();
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
        let caller = caller(&request)?;
        let req = request.into_inner();
        if !caller.scope.allows(&req.enterprise) {
            return Err(Status::permission_denied(format!(
                "token `{}` may not see enterprise `{}`",
                caller.name, req.enterprise
            )));
        }
        match (self.hub.is_regional(), req.park.is_empty()) {
            (false, true) if !self.hub.has_enterprise(&req.enterprise) => {
                return Err(Status::not_found(format!(
                    "no enterprise `{}` in the site",
                    req.enterprise
                )));
            }
            (false, true) => {}
            (false, false) => {
                return Err(Status::invalid_argument(
                    "park names a park on a regional instance; this is a park's own",
                ));
            }
            (true, true) => {
                return Err(Status::invalid_argument(
                    "park is required on a regional instance (enterprise ids are each park's own)",
                ));
            }
            (true, false) if !caller.parks.allows(&req.park) => {
                return Err(Status::permission_denied(format!(
                    "token `{}` may not see park `{}`",
                    caller.name, req.park
                )));
            }
            (true, false) => {}
        }
        let to_ms = if req.to_ms == 0 {
            self.clock.now_ms()
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
        let stats = tokio::task::spawn_blocking(move || {
            hub.performance(&req.park, &req.enterprise, req.from_ms, to_ms)
        })
        .await
        .map_err(|e| Status::internal(format!("stats: {e}")))?
        .into_status()?;
        Ok(Response::new(stats))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let filter = Filter::for_caller(req.filter, &caller).into_status()?;
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
        .into_status()?;
        Ok(Response::new(pb::HistoryResponse {
            events: page.events,
            next_page_token: page.next.map(|c| c.token()).unwrap_or_default(),
        }))
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
                fail(alarms_status(e)).await;
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
            fail(alarms_status(e)).await;
            return None;
        }
    };
    for e in tail {
        tx.send(Ok(e)).await.ok()?;
    }
    *last = as_of;
    Some(rx)
}
