//! The embedded MQTT broker (rumqttd), for a single-binary deployment and
//! for tests.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::error::{Error, Result};

/// Messages in flight to one subscriber before the broker waits for acks.
const MAX_INFLIGHT: usize = 100;

/// How long to wait for the broker to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts rumqttd on `listen` (port 0: a free port) in its own thread and
/// waits until it accepts connections. Returns the address it listens on.
///
/// `max_payload_bytes` is the broker's own limit; keep it above ingest's
/// limit so oversize messages reach ingest and are quarantined with a reason
/// instead of being refused by the broker.
pub fn start_embedded(listen: SocketAddr, max_payload_bytes: usize) -> Result<SocketAddr> {
    let fail = |reason: String| Error::Broker {
        addr: listen.to_string(),
        reason,
    };
    // rumqttd does not report the port it bound, so pick one here; and
    // fail clearly if the port is taken, rather than inside rumqttd.
    let addr = resolve_port(listen).map_err(|e| fail(e.to_string()))?;
    let server = ServerSettings {
        name: "v4-1".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_payload_bytes,
            max_inflight_count: MAX_INFLIGHT,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|e| fail(e.to_string()))?;
    // Ready once the port is taken. Probing by binding rather than by
    // connecting keeps the broker from logging an aborted connection.
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while TcpListener::bind(addr).is_ok() {
        if Instant::now() > deadline {
            return Err(fail("did not start listening in time".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!(%addr, "embedded MQTT broker listening");
    Ok(addr)
}

/// `addr` with a free port in place of port 0 (probed by binding it, then
/// letting it go), for servers that cannot report the port they bound; a
/// given port is checked to be free. The one free-port probe of the
/// project: the service's servers, the tests' external brokers and the
/// benchmarks all use it.
pub fn resolve_port(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let probe = TcpListener::bind(addr)?;
    if addr.port() != 0 {
        return Ok(addr);
    }
    probe.local_addr()
}
