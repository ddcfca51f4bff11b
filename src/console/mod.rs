//! The control-room console: a web front end served by the binary itself
//! (every asset is embedded: control-room networks are often offline) and
//! the JSON API it runs on.
//!
//! The API is the gRPC services' own implementations
//! ([`crate::grpc::Services`]) with their requests and responses in the
//! protobuf JSON mapping, so a token sees, may do and is refused exactly
//! what it would be over gRPC.
//!
//! - [`session`]: logging in with a token, the session cookie, who calls.
//! - [`api`]: `POST /api/v1/{Service}/{Method}`: one gRPC method, JSON in
//!   and out; errors as `{code, message}` with the matching HTTP status.
//! - [`feed`]: `GET /api/v1/AlarmService/Subscribe`: the alarm feed as
//!   Server-Sent Events, resumed after the last event id it sent.
//! - [`assets`]: the page, its script, styles and texts.
//! - [`tls`]: serving over TLS (required off loopback).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ConsoleConfig;
use crate::grpc::Services;

pub mod api;
pub mod assets;
pub mod feed;
pub mod session;
pub mod tls;

use session::Sessions;

/// Largest request body accepted (an action's comment, a query's points).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Alarm feeds open at once (each holds a subscriber and its queue); past
/// it a new feed is refused as unavailable.
pub const MAX_FEEDS: usize = 256;

/// What every handler shares.
#[derive(Clone)]
pub struct Console {
    services: Services,
    sessions: Arc<Sessions>,
    /// One permit per open alarm feed.
    feeds: Arc<tokio::sync::Semaphore>,
    /// Served over TLS: session cookies are marked `Secure`.
    tls: bool,
}

/// Binds `config.listen` and serves the console until `stop`; returns the
/// bound address (port 0 resolved), or `None` when the console is off. A
/// TLS certificate or key that does not load is an error here, before
/// anything is served.
pub async fn start(
    config: &ConsoleConfig,
    services: Services,
    stop: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(listen) = config.listen else {
        return Ok(None);
    };
    let acceptor = match &config.tls {
        Some(t) => Some(tls::acceptor(t).context("console.tls")?),
        None => None,
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let console = Console {
        services,
        sessions: Arc::new(Sessions::default()),
        feeds: Arc::new(tokio::sync::Semaphore::new(MAX_FEEDS)),
        tls: acceptor.is_some(),
    };
    let app = router(console);
    tokio::spawn(async move {
        let served = match acceptor {
            Some(acceptor) => tls::serve(listener, acceptor, app, stop).await,
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "the console stopped serving");
        }
    });
    tracing::info!(%addr, "console listening");
    Ok(Some(addr))
}

/// Every route of the console.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file))
        .route("/api/text", get(assets::texts))
        .route("/api/login", post(session::login))
        .route("/api/logout", post(session::logout))
        .route("/api/whoami", get(session::whoami))
        .route("/api/plan", get(assets::plan))
        .route("/api/v1/AlarmService/Subscribe", get(feed::subscribe))
        .route("/api/v1/{service}/{method}", post(api::call))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(protect))
        .with_state(console)
}

/// Headers on every response: the page runs only its own scripts and
/// styles, talks only to this server, is never framed, and API answers are
/// never cached.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // A response may carry a stricter policy of its own (the site plan).
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ));
    let set = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
