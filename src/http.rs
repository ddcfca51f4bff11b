//! The HTTP edge for operations, on `[metrics] listen` (loopback by
//! default): `/metrics` in Prometheus' text format, `/readyz` (200 when the
//! instance is ready, else 503 with the causes, one per line; see
//! [`crate::readiness`]) and `/livez` (200 while the process serves).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;

/// How often histograms are folded for `/metrics`.
const UPKEEP: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed by the first caller (one
/// recorder per process: services started side by side in one test
/// process share it); `None` if another recorder was installed first.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics will say so");
                None
            }
        })
        .clone()
}

#[derive(Clone)]
struct Ops {
    readiness: Arc<Readiness>,
    metrics: Option<PrometheusHandle>,
}

/// Binds the listener (port 0: a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the endpoints on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let metrics = prometheus();
    if let Some(handle) = metrics.clone() {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => handle.run_upkeep(),
                }
            }
        });
    }
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/readyz", get(ready))
        .route("/livez", get(|| async { "live\n" }))
        .with_state(Ops { readiness, metrics });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

async fn metrics_text(State(ops): State<Ops>) -> (StatusCode, String) {
    match &ops.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed in this process\n".into(),
        ),
    }
}

async fn ready(State(ops): State<Ops>) -> (StatusCode, String) {
    let causes = ops.readiness.causes();
    if causes.is_empty() {
        return (StatusCode::OK, "ready\n".into());
    }
    let mut text = String::from("not ready:\n");
    for c in causes {
        text.push_str(&format!("{}: {c}\n", c.label()));
    }
    (StatusCode::SERVICE_UNAVAILABLE, text)
}

/// GETs `path` (`/readyz`, `/livez`) from the endpoints at `addr` on this
/// machine, as a container's health check or a unit's probe would:
/// returns the status code and the body (at most 64 KiB). An
/// unspecified address (`0.0.0.0`, `::`) is asked on loopback.
pub fn ask(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    const MAX_ANSWER: u64 = 64 * 1024;
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}
