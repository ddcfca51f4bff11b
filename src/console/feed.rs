//! `GET /api/v1/AlarmService/Subscribe?after=SEQ&filter=JSON`: the alarm
//! feed as Server-Sent Events. Each event is `event: alarm`, `id:` its
//! sequence number and its `AlarmEvent` as JSON; the browser's
//! `EventSource` sends the last id back when it reconnects
//! (`Last-Event-ID`, which wins over `after`), and the feed resumes right
//! after it: no event missed, none twice. `after` absent or 0 starts with
//! the latest event of each active alarm, as Subscribe does.
//!
//! At most [`MAX_FEEDS`] feeds are open at once.
//!
//! When the feed cannot go on (the resume point is older than the journal
//! keeps, or the service stops) it sends `event: failed` with
//! `{code, message}` and ends; the page then starts again from a fresh
//! list.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_server::AlarmService;
use serde::Deserialize;
use tokio_stream::StreamExt;

use super::api::{ApiError, request};
use super::session::caller;
use super::{Console, MAX_FEEDS};

/// A comment is sent when nothing else was for this long, so proxies and
/// the browser keep the connection and a dead one is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query string.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedQuery {
    /// Resume after this sequence number.
    after: Option<u64>,
    /// An `AlarmFilter` as JSON.
    filter: Option<String>,
}

/// The handler.
pub async fn subscribe(
    State(console): State<Console>,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Response {
    match open(&console, &headers, query).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn open(
    console: &Console,
    headers: &HeaderMap,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let c = caller(console, headers)?;
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let slot = console.feeds.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("{MAX_FEEDS} alarm feeds are open; try again later"),
        )
    })?;
    let resume_after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::invalid("Last-Event-ID must be an alarm event's sequence number")
            })?,
        None => q.after.unwrap_or(0),
    };
    let filter: pb::AlarmFilter = match &q.filter {
        Some(f) => {
            serde_json::from_str(f).map_err(|e| ApiError::invalid(format!("filter: {e}")))?
        }
        None => pb::AlarmFilter::default(),
    };
    let body = serde_json::to_vec(&pb::SubscribeRequest {
        filter: Some(filter),
        resume_after,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let events = console
        .services
        .alarms
        .subscribe(request(c, &body)?)
        .await?
        .into_inner();
    // The feed's slot goes with its stream.
    let stream = events.map(move |item| {
        let _slot = &slot;
        Ok::<Event, Infallible>(sse_event(item))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// One feed item as an event: the alarm event, or why the feed ends.
fn sse_event(item: Result<pb::AlarmEvent, tonic::Status>) -> Event {
    let failed = |e: ApiError| Event::default().event("failed").data(e.body().to_string());
    match item {
        Ok(e) => match serde_json::to_string(&e) {
            Ok(json) => Event::default()
                .id(e.seq.to_string())
                .event("alarm")
                .data(json),
            Err(err) => failed(ApiError::internal(format!("event {}: {err}", e.seq))),
        },
        Err(status) => failed(ApiError::from(status)),
    }
}
