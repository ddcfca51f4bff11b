//! The gRPC edge: one file per service, with gRPC health and reflection,
//! so grpcurl or any gRPC client works without the `.proto` files in hand.
//!
//! - [`alarms`]: `AlarmService` over the alarm hub.
//! - [`site`]: `SiteService` (risk colours, unit states, gateway health,
//!   the site model as a caller sees it).
//! - [`telemetry`]: `TelemetryService` over [`crate::telemetry`].
//! - [`access`]: the bearer-token interceptor and the caller of a request.
//! - [`status`]: the one place errors become gRPC status codes.
//!
//! Only this module knows tonic's `Status`: the alarm service and the
//! telemetry queries return typed errors that [`status`] maps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use hazardwatch_alarms::{Access, AlarmHub};
use hazardwatch_ingest::health::GatewayHealth;
use hazardwatch_proto::clock::SharedClock;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_server::AlarmServiceServer;
use hazardwatch_proto::pb::site_service_server::SiteServiceServer;
use hazardwatch_proto::pb::telemetry_service_server::TelemetryServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

use crate::live_site::LiveSite;
use crate::readiness::Readiness;
use crate::telemetry::Telemetry;

pub mod access;
pub mod alarms;
mod describe;
pub mod site;
pub mod status;
pub mod telemetry;

use access::interceptor;
use alarms::Alarms;
use site::SiteApi;

/// A generated service with the request and response size limits, behind
/// the bearer-token interceptor.
macro_rules! guarded {
    ($server:ident, $service:expr, $access:expr) => {
        InterceptedService::new(
            $server::from_arc($service)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
            interceptor($access),
        )
    };
}

/// Binds the gRPC listener (port 0: a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Largest request message accepted: a `Query` of 1,000 point ids is
/// about 20 KB.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Largest response message sent: a page of 10,000 readings is about
/// 400 KB.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Longest a request may take to be answered (the first message of a
/// stream; a feed then runs as long as its client reads it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests in progress on one connection at once.
pub const REQUESTS_PER_CONNECTION: usize = 64;
/// HTTP/2 streams open on one connection at once (each alarm feed holds
/// one).
pub const STREAMS_PER_CONNECTION: u32 = 256;
/// How often an idle connection is pinged, and how long the answer may
/// take before the connection is closed: a control room that lost power
/// frees its feeds within 40 seconds.
pub const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(10));

/// The server with its limits (above), and TLS when an identity is given:
/// a certificate or key that does not parse is an error here, before
/// anything is served.
pub fn server(
    tls: Option<tonic::transport::Identity>,
) -> Result<tonic::transport::Server, tonic::transport::Error> {
    let server = tonic::transport::Server::builder()
        .timeout(REQUEST_TIMEOUT)
        .concurrency_limit_per_connection(REQUESTS_PER_CONNECTION)
        .max_concurrent_streams(STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE.0))
        .http2_keepalive_timeout(Some(KEEPALIVE.1))
        .tcp_keepalive(Some(KEEPALIVE.0));
    match tls {
        Some(identity) => {
            server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
        }
        None => Ok(server),
    }
}

/// What the gRPC services serve.
pub struct Backends {
    /// Live alarm state.
    pub hub: Arc<AlarmHub>,
    /// Who may call.
    pub access: Arc<Access>,
    /// The running site model (unit states).
    pub site: LiveSite,
    /// Telemetry queries.
    pub telemetry: Telemetry,
    /// The gateways' online rate and completeness.
    pub health: Arc<GatewayHealth>,
    /// Where "now" comes from.
    pub clock: SharedClock,
    /// Whether the instance is ready (gRPC health follows it).
    pub readiness: Arc<Readiness>,
}

/// The service implementations, built once and shared by the gRPC server
/// and the console's HTTP API, so both authorise, scope and answer alike.
#[derive(Clone)]
pub struct Services {
    /// Who may call.
    pub access: Arc<Access>,
    /// `AlarmService`.
    pub alarms: Arc<Alarms>,
    /// `SiteService`.
    pub site: Arc<SiteApi>,
    /// `TelemetryService`.
    pub telemetry: Arc<Telemetry>,
    /// Whether the instance is ready.
    pub readiness: Arc<Readiness>,
}

impl Services {
    /// The services over `backends`; their alarm feeds end when `shutdown`
    /// is cancelled.
    pub fn new(backends: Backends, shutdown: CancellationToken) -> Services {
        let Backends {
            hub,
            access,
            site,
            telemetry,
            health,
            clock,
            readiness,
        } = backends;
        Services {
            access,
            alarms: Arc::new(Alarms::new(hub.clone(), clock.clone(), shutdown)),
            site: Arc::new(SiteApi::new(hub, site, health, clock)),
            telemetry: Arc::new(telemetry),
            readiness,
        }
    }
}

/// Serves the alarm, site and telemetry services, health and reflection on
/// `listener` with `server` (see [`server`]) until `shutdown` is cancelled;
/// a member of a cluster (not `lead`) serves its telemetry and health only.
pub async fn serve(
    mut server: tonic::transport::Server,
    listener: TcpListener,
    services: Services,
    lead: bool,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let Services {
        access,
        alarms,
        site,
        telemetry,
        readiness,
    } = services;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(follow_readiness(
        readiness,
        health_reporter,
        lead,
        shutdown.clone(),
    ));
    with_reflection(&mut server)
        .add_service(health)
        .add_service(guarded!(TelemetryServiceServer, telemetry, access.clone()))
        // Alarms and the site's risk come from the hub, which only the
        // lead of a cluster holds.
        .add_optional_service(lead.then(|| guarded!(SiteServiceServer, site, access.clone())))
        .add_optional_service(lead.then(|| guarded!(AlarmServiceServer, alarms, access)))
        .serve_with_incoming_shutdown(no_delay(listener), shutdown.cancelled())
        .await
}

/// Serves a regional instance: its merged `AlarmService`, its
/// `SiteService` over the parks, health and reflection, on `listener`
/// until `shutdown` is cancelled.
pub async fn serve_region(
    mut server: tonic::transport::Server,
    listener: TcpListener,
    access: Arc<Access>,
    alarms: Arc<Alarms>,
    site: Arc<crate::region::site::RegionSite>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    use tonic::server::NamedService;
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in [
        "",
        <AlarmServiceServer<Alarms> as NamedService>::NAME,
        <SiteServiceServer<crate::region::site::RegionSite> as NamedService>::NAME,
    ] {
        reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    with_reflection(&mut server)
        .add_service(health)
        .add_service(guarded!(SiteServiceServer, site, access.clone()))
        .add_service(guarded!(AlarmServiceServer, alarms, access))
        .serve_with_incoming_shutdown(no_delay(listener), shutdown.cancelled())
        .await
}

/// The server's router with reflection in both protocol versions: grpcurl
/// speaks v1, older clients (Python's grpcio-reflection among them) only
/// v1alpha.
fn with_reflection(server: &mut tonic::transport::Server) -> tonic::transport::server::Router {
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
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
}

/// Keeps gRPC health (the whole server, `""`, and each service) in step
/// with the instance's readiness until `stop`.
async fn follow_readiness(
    readiness: Arc<Readiness>,
    reporter: tonic_health::server::HealthReporter,
    lead: bool,
    stop: CancellationToken,
) {
    use tonic::server::NamedService;
    use tonic_health::ServingStatus;
    let served = [
        ("", true),
        (
            <TelemetryServiceServer<Telemetry> as NamedService>::NAME,
            true,
        ),
        (<AlarmServiceServer<Alarms> as NamedService>::NAME, lead),
        (<SiteServiceServer<SiteApi> as NamedService>::NAME, lead),
    ];
    let names: Vec<&str> = served.iter().filter(|s| s.1).map(|s| s.0).collect();
    let mut changes = readiness.subscribe();
    loop {
        let status = if changes.borrow_and_update().is_empty() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for &name in &names {
            reporter.set_service_status(name, status).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
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
