//! The embedded MQTT broker (rmqtt), for a single-binary deployment and
//! for tests, with the gateway registry enforced inside it.
//!
//! rmqtt runs on its own thread and runtime, so a flood of gateway traffic
//! cannot starve the service's tasks. It has two listeners:
//! - the **gateway listener** on `[mqtt] listen`: plain TCP on loopback,
//!   TLS (rustls) anywhere else, mutual TLS when a client CA is given;
//! - the **service listener**, plain TCP on a free loopback port, for the
//!   service's own client only: it authenticates with a secret drawn at
//!   start that never leaves the process.
//!
//! The broker's hooks ask [`crate::auth`] who a CONNECT is (password,
//! certificate, client id), whether each PUBLISH (and the last will, which
//! rmqtt publishes without asking) is on the principal's own topics, and
//! whether each SUBSCRIBE stays inside them. A refused publish disconnects
//! the client; a refused subscription is answered with a failure code.
//! [`EmbeddedBroker::set_registry`] applies a reloaded registry and
//! disconnects every gateway whose credential changed or was revoked.

use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use hazardwatch_proto::Registry;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::{
    AuthResult, ClientId, Id, LastWill, MessageQueueType, PublishAclResult, SubscribeAclResult,
};
use tokio::sync::{Semaphore, oneshot};

use crate::auth::{self, Connect, Principal, Refusal, ServiceIdentity};
use crate::error::{Error, Result};

/// Messages in flight to one subscriber before the broker waits for acks.
const MAX_INFLIGHT: u16 = 100;

/// Messages queued for one subscriber behind its in-flight window. Beyond
/// this the broker drops (counted in `hazardwatch_mqtt_broker_dropped_total`);
/// backpressure keeps the service's queue far below it.
const MAX_QUEUED: usize = 100_000;

/// Fail closed instead of dropping: once this many messages wait for the
/// service (it is behind, or disconnected), each gateway's next publish is
/// held, unacknowledged, until the queue is back under [`RESUME_AT`]. The
/// gateways' in-flight windows fill and they keep their data (store and
/// forward) instead of the broker losing what it acknowledged. The gap to
/// [`MAX_QUEUED`] absorbs one held publish per connection.
const HOLD_AT: usize = 20_000;

/// See [`HOLD_AT`].
const RESUME_AT: usize = 10_000;

/// How often a held publish looks at the service's queue again.
const HOLD_POLL: Duration = Duration::from_millis(5);

/// How long a queued message may wait for the service (a day: the
/// backpressure, not expiry, bounds the queue).
const MESSAGE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Password checks (argon2id: about 19 MiB and tens of milliseconds each)
/// run at once at most; a storm of CONNECTs queues here instead of taking
/// every core and all memory.
const CONCURRENT_VERIFIES: usize = 2;

/// TLS of the gateway listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM.
    pub key: PathBuf,
    /// CA of the gateways' client certificates, PEM: when set, every client
    /// must present a certificate it signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// What the embedded broker needs.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The gateway listener's address (port 0: any free port).
    pub listen: SocketAddr,
    /// TLS of the gateway listener.
    pub tls: Option<ListenerTls>,
    /// Largest MQTT packet, bytes.
    pub max_packet_bytes: usize,
    /// Telemetry topic prefix.
    pub topic_prefix: String,
    /// The service's own identity: its client connects to the service
    /// listener with it.
    pub service: ServiceIdentity,
}

/// What the broker refused since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Denied {
    /// CONNECTs refused.
    pub connect: u64,
    /// PUBLISHes refused (each also disconnected its client).
    pub publish: u64,
    /// Subscriptions refused.
    pub subscribe: u64,
}

/// The gatekeeper behind the broker's hooks.
struct Gate {
    registry: RwLock<Arc<Registry>>,
    service: ServiceIdentity,
    prefix: String,
    verifies: Arc<Semaphore>,
    denied: [AtomicU64; 3],
    /// The queue of messages waiting for the service's session.
    service_queue: RwLock<Option<MessageQueueType>>,
    /// Publishes being held now (see [`HOLD_AT`]).
    held: AtomicU64,
    /// Messages the broker dropped (a queue over [`MAX_QUEUED`], expiry).
    dropped: AtomicU64,
}

impl Gate {
    fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Who a connected client is, from its client id (authentication bound
    /// the id to the principal).
    fn principal(&self, registry: &Registry, client_id: &str) -> Option<Principal> {
        if client_id == self.service.client_id {
            Some(Principal::Service)
        } else if let Some(g) = registry.lookup(client_id) {
            Some(Principal::Gateway(g))
        } else if registry.is_open() {
            Some(Principal::Anonymous)
        } else {
            None
        }
    }

    async fn authenticate(
        &self,
        ci: &rmqtt::types::ConnectInfo,
    ) -> std::result::Result<(), Refusal> {
        let registry = self.registry();
        let cert_cn = ci.cert().and_then(|c| c.common_name.clone());
        let client_id = ci.client_id().to_string();
        let username = ci.username().map(|u| u.to_string());
        let password = ci.password().map(|p| p.to_vec());
        // argon2 is slow on purpose: off the broker's threads, a few at a time.
        let permit = self.verifies.clone().acquire_owned().await;
        let (shared, service) = (registry.clone(), self.service.clone());
        let decided = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            auth::authenticate(
                &shared,
                &service,
                &Connect {
                    client_id: &client_id,
                    username: username.as_deref(),
                    password: password.as_deref(),
                    cert_cn: cert_cn.as_deref(),
                },
            )
        })
        .await
        .unwrap_or(Err(Refusal::BadCredential))?;
        // rmqtt publishes the last will without a publish check: check it here.
        if let Some(will) = ci.last_will() {
            let topic = match will {
                LastWill::V3(w) => &w.topic,
                LastWill::V5(w) => &w.topic,
            };
            if !auth::may_publish(&registry, &self.prefix, decided, topic) {
                return Err(Refusal::ForeignLastWill);
            }
        }
        Ok(())
    }
}

impl Gate {
    /// Holds a gateway's publish while the service is too far behind
    /// (see [`HOLD_AT`]).
    async fn wait_for_room(&self) {
        let depth = || {
            self.service_queue
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map_or(0, |q| q.len())
        };
        if depth() < HOLD_AT {
            return;
        }
        if self.held.fetch_add(1, Ordering::Relaxed) == 0 {
            metrics::gauge!("hazardwatch_mqtt_backpressure").set(1.0);
            tracing::warn!(
                queued = depth(),
                "the service is behind: holding gateway publishes (unacknowledged) until it catches up"
            );
        }
        while depth() >= RESUME_AT {
            tokio::time::sleep(HOLD_POLL).await;
        }
        if self.held.fetch_sub(1, Ordering::Relaxed) == 1 {
            metrics::gauge!("hazardwatch_mqtt_backpressure").set(0.0);
            tracing::info!("the service caught up: gateway publishes flow again");
        }
    }

    /// Counts a refusal (`action`: 0 connect, 1 publish, 2 subscribe).
    fn deny(&self, action: usize, reason: &'static str) {
        self.denied[action].fetch_add(1, Ordering::Relaxed);
        let label = ["connect", "publish", "subscribe"][action];
        metrics::counter!("hazardwatch_mqtt_denied_total", "action" => label, "reason" => reason)
            .increment(1);
    }
}

#[async_trait]
impl Handler for GateHandler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let gate = &self.0;
        match param {
            Parameter::ClientAuthenticate(ci) => match gate.authenticate(ci).await {
                Ok(()) => (
                    false,
                    Some(HookResult::AuthResult(AuthResult::Allow(false, None))),
                ),
                Err(refusal) => {
                    gate.deny(0, refusal.as_str());
                    tracing::warn!(
                        client_id = %ci.client_id(),
                        username = ?ci.username().map(|u| u.to_string()),
                        remote = ?ci.ipaddress(),
                        reason = refusal.as_str(),
                        "MQTT connection refused"
                    );
                    let result = match refusal {
                        Refusal::BadCredential | Refusal::UnknownGateway => {
                            AuthResult::BadUsernameOrPassword
                        }
                        _ => AuthResult::NotAuthorized,
                    };
                    (false, Some(HookResult::AuthResult(result)))
                }
            },
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let registry = gate.registry();
                let client_id = &session.id.client_id;
                let principal = gate.principal(&registry, client_id);
                let allowed = principal
                    .is_some_and(|p| auth::may_publish(&registry, &gate.prefix, p, &publish.topic));
                if allowed {
                    if principal != Some(Principal::Service) {
                        gate.wait_for_room().await;
                    }
                    (
                        false,
                        Some(HookResult::PublishAclResult(PublishAclResult::allow())),
                    )
                } else {
                    gate.deny(1, "foreign_topic");
                    tracing::warn!(client_id = %client_id, topic = %publish.topic, "MQTT publish refused: not the client's own topic; disconnecting it");
                    (
                        false,
                        Some(HookResult::PublishAclResult(PublishAclResult::rejected(
                            true,
                            Some("not your topic".into()),
                        ))),
                    )
                }
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let registry = gate.registry();
                let client_id = &session.id.client_id;
                let filter = &subscribe.topic_filter;
                let allowed = gate
                    .principal(&registry, client_id)
                    .is_some_and(|p| auth::may_subscribe(&registry, &gate.prefix, p, filter));
                let result = if allowed {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    gate.deny(2, "foreign_filter");
                    tracing::warn!(client_id = %client_id, filter = %filter, "MQTT subscription refused");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::ClientConnected(session) => {
                if session.id.client_id == gate.service.client_id {
                    *gate
                        .service_queue
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = Some(session.deliver_queue().clone());
                }
                (true, acc)
            }
            Parameter::MessageDropped(_, _, publish, reason) => {
                gate.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("hazardwatch_mqtt_broker_dropped_total").increment(1);
                tracing::debug!(topic = %publish.topic, reason = ?reason, "broker dropped a message");
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

struct GateHandler(Arc<Gate>);

/// A running embedded broker. Dropping it stops the broker.
pub struct EmbeddedBroker {
    /// Where gateways connect.
    pub addr: SocketAddr,
    /// Where the service's own client connects (loopback, plain).
    pub service_addr: SocketAddr,
    gate: Arc<Gate>,
    scx: ServerContext,
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr)
            .field("service_addr", &self.service_addr)
            .finish_non_exhaustive()
    }
}

/// A listener's common settings.
fn listener(name: &str, addr: SocketAddr, max_packet_bytes: usize) -> Builder {
    Builder::new()
        .name(name)
        .laddr(addr)
        .reuseaddr(Some(true))
        .allow_anonymous(false)
        .max_packet_size(max_packet_bytes.min(u32::MAX as usize) as u32)
        .max_inflight(NonZeroU16::new(MAX_INFLIGHT).unwrap_or(NonZeroU16::MIN))
        .max_mqueue_len(MAX_QUEUED)
        .message_expiry_interval(MESSAGE_EXPIRY)
}

impl EmbeddedBroker {
    /// Starts the broker and waits until both listeners are bound.
    pub fn start(settings: BrokerSettings, registry: Arc<Registry>) -> Result<EmbeddedBroker> {
        let listen = settings.listen.to_string();
        let fail = |reason: String| Error::Broker {
            addr: listen.clone(),
            reason,
        };
        let gate = Arc::new(Gate {
            registry: RwLock::new(registry),
            service: settings.service.clone(),
            prefix: settings.topic_prefix.clone(),
            verifies: Arc::new(Semaphore::new(CONCURRENT_VERIFIES)),
            denied: Default::default(),
            service_queue: RwLock::new(None),
            held: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mqtt-broker")
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let handle = runtime.handle().clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn({
                let gate = gate.clone();
                move || {
                    runtime.block_on(async move {
                        let started = Self::serve(&settings, gate).await;
                        let server = match started {
                            Ok((server, scx, addrs)) => {
                                let _ = ready_tx.send(Ok((scx, addrs)));
                                server
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                        tokio::select! {
                            r = server.run() => if let Err(e) = r {
                                tracing::error!(error = %e, "embedded MQTT broker stopped");
                            },
                            _ = stop_rx => {}
                        }
                    });
                    runtime.shutdown_background();
                }
            })
            .map_err(|e| fail(e.to_string()))?;
        let (scx, (addr, service_addr)) = ready_rx
            .recv()
            .map_err(|_| fail("the broker thread ended before listening".into()))??;
        tracing::info!(%addr, %service_addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker {
            addr,
            service_addr,
            gate,
            scx,
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    async fn serve(
        settings: &BrokerSettings,
        gate: Arc<Gate>,
    ) -> Result<(MqttServer, ServerContext, (SocketAddr, SocketAddr))> {
        let fail = |what: &str, e: String| Error::Broker {
            addr: settings.listen.to_string(),
            reason: format!("{what}: {e}"),
        };
        let scx = ServerContext::new().busy_check_enable(false).build().await;
        let register = scx.extends.hook_mgr().register();
        for typ in [
            Type::ClientAuthenticate,
            Type::ClientConnected,
            Type::MessagePublishCheckAcl,
            Type::ClientSubscribeCheckAcl,
            Type::MessageDropped,
        ] {
            register.add(typ, Box::new(GateHandler(gate.clone()))).await;
        }
        register.start().await;
        let max = settings.max_packet_bytes;
        let mut gateways = listener("gateways", settings.listen, max);
        if let Some(tls) = &settings.tls {
            let path = |p: &PathBuf| p.to_string_lossy().into_owned();
            gateways = gateways
                .tls_cert(Some(path(&tls.cert)))
                .tls_key(Some(path(&tls.key)))
                .collect_cert_info(true);
            if let Some(ca) = &tls.client_ca {
                gateways = gateways
                    .tls_cross_certificate(true)
                    .tls_client_ca_certs(Some(path(ca)));
            }
        }
        let gateways = gateways
            .bind()
            .map_err(|e| fail("binding", e.to_string()))?;
        let addr = gateways
            .local_addr()
            .map_err(|e| fail("binding", e.to_string()))?;
        let gateways = if settings.tls.is_some() {
            gateways.tls().map_err(|e| fail("TLS", format!("{e:#}")))?
        } else {
            gateways
                .tcp()
                .map_err(|e| fail("listening", e.to_string()))?
        };
        let service = listener("service", SocketAddr::from(([127, 0, 0, 1], 0)), max)
            .bind()
            .map_err(|e| fail("binding the service listener", e.to_string()))?;
        let service_addr = service
            .local_addr()
            .map_err(|e| fail("binding the service listener", e.to_string()))?;
        let service = service
            .tcp()
            .map_err(|e| fail("listening", e.to_string()))?;
        let server = MqttServer::new(scx.clone())
            .listener_by_id(gateways, 1)
            .listener_by_id(service, 2)
            .build();
        Ok((server, scx, (addr, service_addr)))
    }

    /// What the broker refused since it started.
    pub fn denied(&self) -> Denied {
        let n = |i: usize| self.gate.denied[i].load(Ordering::Relaxed);
        Denied {
            connect: n(0),
            publish: n(1),
            subscribe: n(2),
        }
    }

    /// Messages the broker dropped since it started: a refused publish,
    /// or a message it could not deliver (a queue over its limit, expiry).
    pub fn dropped(&self) -> u64 {
        self.gate.dropped.load(Ordering::Relaxed)
    }

    /// Gateway publishes held now because the service is behind.
    pub fn held(&self) -> u64 {
        self.gate.held.load(Ordering::Relaxed)
    }

    /// Applies a reloaded registry: new credentials take effect for new
    /// connections at once, and every gateway whose credential or
    /// enterprise changed, or that was removed, is disconnected (so it
    /// must authenticate again). Going from the open mode to a registry
    /// disconnects every client but the service.
    pub fn set_registry(&self, new: Arc<Registry>) {
        let old = std::mem::replace(
            &mut *self
                .gate
                .registry
                .write()
                .unwrap_or_else(|e| e.into_inner()),
            new.clone(),
        );
        let same = |a: &hazardwatch_proto::GatewayInfo, b: &hazardwatch_proto::GatewayInfo| {
            a.enterprise == b.enterprise && a.credential == b.credential
        };
        let mut kick: Vec<String> = Vec::new();
        for g in old.gateways() {
            match new.lookup(&g.id) {
                Some(n) if same(g, new.gateway(n)) => {}
                _ => kick.push(g.id.clone()),
            }
        }
        for g in new.gateways() {
            if old.lookup(&g.id).is_none() {
                kick.push(g.id.clone());
            }
        }
        let everyone = old.is_open() && !new.is_open();
        if kick.is_empty() && !everyone {
            return;
        }
        let scx = self.scx.clone();
        let service = self.gate.service.client_id.clone();
        self.handle.spawn(async move {
            let node = scx.node.id();
            if everyone {
                let ids: Vec<String> = scx
                    .extends
                    .shared()
                    .await
                    .iter()
                    .map(|e| e.id().client_id.to_string())
                    .filter(|c| *c != service)
                    .collect();
                kick.extend(ids);
            }
            for client_id in kick {
                let mut entry = scx
                    .extends
                    .shared()
                    .await
                    .entry(Id::from(node, ClientId::from(client_id.clone())));
                if entry.session().is_none() {
                    continue;
                }
                match entry.kick(true, true, true).await {
                    Ok(_) => {
                        metrics::counter!("hazardwatch_mqtt_revoked_total").increment(1);
                        tracing::info!(
                            client_id,
                            "gateway credential changed or revoked: disconnected"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(client_id, error = %e, "cannot disconnect a revoked gateway")
                    }
                }
            }
        });
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `addr` with a free port in place of port 0 (probed by binding it, then
/// letting it go), for servers that cannot report the port they bound; a
/// given port is checked to be free. The one free-port probe of the
/// project: the tests' external brokers and the benchmarks use it.
pub fn resolve_port(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let probe = TcpListener::bind(addr)?;
    if addr.port() != 0 {
        return Ok(addr);
    }
    probe.local_addr()
}
