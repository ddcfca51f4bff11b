//! The MQTT subscriber: QoS 1, manual acks, persistent session.
//!
//! Two tasks. The event loop task only polls rumqttc and forwards publishes
//! into a bounded queue, so keep-alives and acks keep flowing. The ingest
//! task checks each message, quarantines what is bad, and hands a
//! [`Delivery`] to the pipeline (waiting while it is full): the good
//! readings and the [`Ack`] that the pipeline sends once they are durable
//! (in the write-ahead log). A pipeline that is full or cannot write
//! therefore stops the acks, the broker stops sending (its in-flight window
//! is full) and holds the backlog: nothing is dropped.
//!
//! A gateway's `offline` status (its last will) becomes one
//! [`Quality::Offline`] marker per point the gateway has reported since the
//! service started, stamped with the time it arrived, so the stale rule
//! raises communication loss for all of them at once, and the archive keeps
//! the markers for replay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hazardwatch_proto::{Catalog, GatewayIdx, Quality, Reading, Registry};
use rumqttc::{
    AsyncClient, Event, MqttOptions, NetworkOptions, Packet, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::decode::{self, GatewayStatus, Limits};
use crate::error::Result;
use crate::gateways::Gateways;
use crate::health::GatewayHealth;
use crate::quarantine::Quarantine;
use crate::sparkplug;
use crate::topic;
use hazardwatch_proto::clock::SharedClock;

/// Publishes waiting between the event loop and the ingest task.
pub const PUBLISH_QUEUE: usize = 256;

/// Requests (acks, subscribes) waiting for the event loop. Must exceed the
/// broker's in-flight window so an ack never waits on a full queue while the
/// event loop waits on the publish queue.
const REQUEST_QUEUE: usize = 1024;

/// Pause before reconnecting after a connection error.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Validated readings of one MQTT message, on their way to the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestBatch {
    /// The readings, in payload order.
    pub readings: Vec<Reading>,
    /// When the message was received, Unix ms (archived as `ingest_ts`).
    pub received_ms: i64,
    /// Identifies the message, so that a redelivery of it is recognised
    /// ([`message_id`]); 0 for messages that are never deduplicated.
    pub message: u128,
    /// The gateway that sent it ([`source_id`]); 0 when not known (a batch
    /// recovered from the write-ahead log).
    pub source: u64,
}

/// Identifies a gateway (its topic's enterprise and gateway, or Sparkplug
/// group and node) for the live event time, which learns how each one's
/// readings arrive. Never 0.
pub fn source_id(enterprise: &str, gateway: &str) -> u64 {
    let seed = twox_hash::XxHash3_64::oneshot(enterprise.as_bytes());
    twox_hash::XxHash3_64::oneshot_with_seed(seed, gateway.as_bytes()).max(1)
}

/// Identifies a telemetry message by its gateway and sequence number, that
/// is, by its exact bytes: a hash (XXH3, 128 bits) of topic and payload.
/// A redelivery, by the broker after a reconnect or by a gateway that did
/// not get its acknowledgement, is the same message byte for byte; two
/// messages with the same gateway, sequence number and readings are the
/// same message.
pub fn message_id(topic: &str, payload: &[u8]) -> u128 {
    let seed = twox_hash::XxHash3_64::oneshot(topic.as_bytes());
    // 0 means "no id".
    twox_hash::XxHash3_128::oneshot_with_seed(seed, payload).max(1)
}

/// The acknowledgement of one MQTT message, sent by whoever makes its
/// readings durable.
pub struct Ack {
    client: AsyncClient,
    publish: Publish,
    /// The connection the message came on.
    connection: u64,
    /// The connection now.
    current: Arc<AtomicU64>,
}

impl Ack {
    /// Acknowledges the message to the broker if the event loop's request
    /// queue has room; otherwise hands the ack back, to be tried again. It
    /// never waits: the queue is drained only while the event loop is
    /// polled, and the poller may itself be waiting for the pipeline that
    /// wants to acknowledge.
    ///
    /// An ack is never carried across connections: packet ids restart
    /// with each one, so an old ack would acknowledge another message. If
    /// the message's connection is gone, the ack is dropped; the broker
    /// sends the message again on the new connection (the session is
    /// persistent) and the write-ahead stage recognises it.
    pub fn try_send(self) -> std::result::Result<(), Ack> {
        if self.current.load(Ordering::SeqCst) != self.connection {
            metrics::counter!("hazardwatch_mqtt_stale_acks_total").increment(1);
            return Ok(());
        }
        match self.client.try_ack(&self.publish) {
            Ok(()) => Ok(()),
            Err(_) => Err(self),
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack")
            .field("pkid", &self.publish.pkid)
            .finish()
    }
}

/// One checked MQTT message: its readings (possibly none: everything was
/// quarantined, or a status message without markers) and its ack, to be
/// sent once they are durable. Deliveries come in the order the broker
/// sent the messages; acks should go back in that order.
#[derive(Debug)]
pub struct Delivery {
    /// The readings.
    pub batch: IngestBatch,
    /// The acknowledgement owed.
    pub ack: Ack,
}

/// Where the subscriber connects and what it accepts.
pub struct Subscriber {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// User name and password at the broker (the embedded broker's service
    /// identity, or `[mqtt] username` and `password_file`).
    pub credentials: Option<(String, String)>,
    /// TLS towards the broker (`[mqtt] broker_tls`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Settings.
    pub config: MqttConfig,
    /// The current site catalog (replaced on reload).
    pub catalog: watch::Receiver<Arc<Catalog>>,
    /// The current gateway registry (replaced on reload).
    pub registry: watch::Receiver<Arc<Registry>>,
    /// The gateways' online time and completeness, fed here.
    pub health: Arc<GatewayHealth>,
    /// Stamps each message's receipt (and so its readings' clock-skew
    /// check and its offline markers).
    pub clock: SharedClock,
    /// Subscribe to these enterprises' topics only (a cluster's process on
    /// a shared external broker takes its share); `None`: every
    /// enterprise's.
    pub enterprises: Option<Vec<String>>,
}

impl Subscriber {
    /// The filters subscribed to: JSON, protobuf and status under the
    /// topic prefix, and Sparkplug B, for every enterprise or each of
    /// [`Subscriber::enterprises`].
    pub fn filters(&self) -> Vec<String> {
        let one = |e: Option<&str>| {
            topic::filters(&self.config.topic_prefix, e)
                .into_iter()
                .chain(sparkplug::filters(e))
        };
        match &self.enterprises {
            None => one(None).collect(),
            Some(list) => list.iter().flat_map(|e| one(Some(e))).collect(),
        }
    }
}

impl Subscriber {
    /// Runs until `shutdown` is cancelled or the pipeline closes. `ready`
    /// turns true each time the broker has confirmed the subscription (so a
    /// caller can wait before telling gateways to publish).
    pub async fn run(
        self,
        mut quarantine: Quarantine,
        pipeline: mpsc::Sender<Delivery>,
        shutdown: CancellationToken,
        ready: watch::Sender<bool>,
    ) -> Result<()> {
        let mut options = MqttOptions::new(&self.config.client_id, &self.host, self.port);
        options
            .set_manual_acks(true)
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(30))
            .set_request_channel_capacity(REQUEST_QUEUE)
            // Let oversize messages in so they are quarantined with a reason.
            .set_max_packet_size(self.config.max_payload_bytes * 4 + 1024, 64 * 1024);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user, password);
        }
        if let Some(tls) = &self.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        let current = Arc::new(AtomicU64::new(0));
        let latest = Arc::new(Mutex::new(None::<AsyncClient>));
        let (tx, mut rx) = mpsc::channel::<Received>(PUBLISH_QUEUE);
        let poller = tokio::spawn(poll(
            options,
            current.clone(),
            latest.clone(),
            self.filters(),
            tx,
            shutdown.clone(),
            ready,
        ));

        let limits = Limits {
            topic_prefix: self.config.topic_prefix.clone(),
            max_payload_bytes: self.config.max_payload_bytes,
            max_clock_skew_ms: self.config.max_clock_skew_s as i64 * 1000,
            min_timestamp_ms: self.config.min_timestamp_s.saturating_mul(1000),
        };
        let mut gateways = Gateways::default();
        let mut sessions = sparkplug::Sessions::default();
        let result = loop {
            let Received {
                connection,
                client,
                publish,
            } = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                p = rx.recv() => match p {
                    Some(p) => p,
                    None => break Ok(()),
                },
            };
            let received_ms = self.clock.now_ms();
            // One registry for the whole message (a reload may swap it).
            let registry = self.registry.borrow().clone();
            // Status messages become offline markers, telemetry readings.
            let mut message = 0;
            let mut source = 0;
            let (readings, rejections) = if let Some(sp) = sparkplug::parse_topic(&publish.topic) {
                source = source_id(sp.group, sp.node);
                let (readings, rejections) = self.sparkplug(
                    &registry,
                    &mut sessions,
                    &mut gateways,
                    &client,
                    &limits,
                    &sp,
                    &publish.payload,
                    received_ms,
                );
                if !readings.is_empty() {
                    message = message_id(&publish.topic, &publish.payload);
                }
                (readings, rejections)
            } else if let Some((enterprise, gateway)) =
                topic::parse_status(&limits.topic_prefix, &publish.topic)
            {
                source = source_id(enterprise, gateway);
                match decode::status(&publish.payload) {
                    Ok(status) => {
                        let g = registered(&registry, enterprise, gateway);
                        if let Some(g) = g {
                            match status {
                                GatewayStatus::Offline => self.health.offline(g, received_ms),
                                GatewayStatus::Online => self.health.message(g, 0, received_ms),
                            }
                        }
                        let points = g.map(|g| registry.gateway(g).points.as_slice());
                        (
                            gateways.status(enterprise, gateway, status, received_ms, points),
                            Vec::new(),
                        )
                    }
                    Err(rejection) => (Vec::new(), vec![rejection]),
                }
            } else {
                let checked = {
                    let catalog = self.catalog.borrow();
                    decode::check(
                        &catalog,
                        &registry,
                        &limits,
                        &publish.topic,
                        &publish.payload,
                        received_ms,
                    )
                };
                if let Some(t) = topic::parse(&limits.topic_prefix, &publish.topic) {
                    source = source_id(t.enterprise, t.gateway);
                    metrics::counter!("hazardwatch_mqtt_messages_total", "format" => t.format.as_str())
                        .increment(1);
                    metrics::counter!("hazardwatch_readings_in_total")
                        .increment(checked.readings.len() as u64);
                    gateways.reported(t.enterprise, t.gateway, &checked.readings);
                    if let Some(g) = registered(&registry, t.enterprise, t.gateway) {
                        self.health.message(g, checked.readings.len(), received_ms);
                    }
                }
                if !checked.readings.is_empty() {
                    message = message_id(&publish.topic, &publish.payload);
                }
                (checked.readings, checked.rejections)
            };
            // Never skip a message (its ack would be missing, and the
            // broker would match the next one to the wrong message): a
            // quarantine that cannot be written stalls ingest until it can.
            let mut failures = 0u64;
            while let Err(e) = quarantine.record(&publish.topic, &publish.payload, &rejections) {
                if failures == 0 {
                    tracing::error!(error = %e, topic = %publish.topic, "cannot write the quarantine; ingest waits and retries every second");
                }
                failures += 1;
                metrics::counter!("hazardwatch_quarantine_errors_total").increment(1);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if let Err(e) = quarantine.reopen() {
                    tracing::debug!(error = %e, "quarantine still not writable");
                }
            }
            if shutdown.is_cancelled() && failures > 0 {
                break Ok(());
            }
            if failures > 0 {
                tracing::info!(failures, "quarantine writable again; ingest resumes");
            }
            // The ack needs only the packet id and QoS: let the payload go.
            let mut publish = publish;
            publish.payload = bytes::Bytes::new();
            let delivery = Delivery {
                batch: IngestBatch {
                    readings,
                    received_ms,
                    message,
                    source,
                },
                ack: Ack {
                    client,
                    publish,
                    connection,
                    current: current.clone(),
                },
            };
            if pipeline.send(delivery).await.is_err() {
                break Ok(());
            }
        };
        let client = latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(client) = client {
            let _ = client.disconnect().await;
        }
        shutdown.cancel();
        let _ = poller.await;
        result
    }
}

impl Subscriber {
    /// A Sparkplug B message: its readings validated like any payload's,
    /// offline markers for a dead node or device, a rebirth requested when
    /// the session is out of step.
    #[allow(clippy::too_many_arguments)]
    fn sparkplug(
        &self,
        registry: &Registry,
        sessions: &mut sparkplug::Sessions,
        gateways: &mut Gateways,
        client: &AsyncClient,
        limits: &Limits,
        t: &sparkplug::Topic<'_>,
        payload: &[u8],
        now_ms: i64,
    ) -> (Vec<Reading>, Vec<decode::Rejection>) {
        let outcome = if payload.len() > limits.max_payload_bytes {
            sparkplug::Outcome {
                rejections: vec![decode::Rejection {
                    kind: decode::RejectKind::TooLarge,
                    reason: format!(
                        "payload of {} bytes is over the limit of {} bytes",
                        payload.len(),
                        limits.max_payload_bytes
                    ),
                }],
                ..Default::default()
            }
        } else {
            sessions.handle(t, payload)
        };
        let g = registered(registry, t.group, t.node);
        let mut checked = decode::Checked::default();
        {
            let catalog = self.catalog.borrow();
            decode::validate(
                &catalog,
                registry,
                limits,
                (t.group, t.node),
                &outcome.readings,
                now_ms,
                &mut checked,
            );
            // A device's death: its points, if they are this gateway's.
            for name in &outcome.offline_points {
                let Some(p) = catalog.lookup(name) else {
                    continue;
                };
                let ours = if registry.is_open() {
                    *catalog.meta(p).enterprise == *t.group
                } else {
                    g.is_some_and(|g| registry.owner(p) == g)
                };
                if ours {
                    checked.readings.push(Reading {
                        point: p,
                        ts_ms: now_ms,
                        value: f64::NAN,
                        quality: Quality::Offline,
                    });
                }
            }
        }
        let mut rejections = outcome.rejections;
        rejections.append(&mut checked.rejections);
        let mut readings = checked.readings;
        metrics::counter!("hazardwatch_mqtt_messages_total", "format" => "sparkplug").increment(1);
        metrics::counter!("hazardwatch_readings_in_total").increment(readings.len() as u64);
        gateways.reported(t.group, t.node, &readings);
        if let Some(g) = g {
            if outcome.node_offline {
                self.health.offline(g, now_ms);
            } else {
                self.health.message(g, readings.len(), now_ms);
            }
        }
        if outcome.node_offline {
            let points = g.map(|g| registry.gateway(g).points.as_slice());
            readings.extend(gateways.status(
                t.group,
                t.node,
                GatewayStatus::Offline,
                now_ms,
                points,
            ));
        }
        if outcome.rebirth {
            let (topic, body) = sparkplug::rebirth_request(t.group, t.node, now_ms);
            metrics::counter!("hazardwatch_sparkplug_rebirths_total").increment(1);
            tracing::warn!(
                group = t.group,
                node = t.node,
                "Sparkplug session out of step: rebirth requested"
            );
            if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, body) {
                tracing::warn!(error = %e, "cannot request a Sparkplug rebirth");
            }
        }
        (readings, rejections)
    }
}

/// The registered gateway `gateway` of `enterprise`, if there is one.
fn registered(registry: &Registry, enterprise: &str, gateway: &str) -> Option<GatewayIdx> {
    registry
        .lookup(gateway)
        .filter(|&g| registry.gateway(g).enterprise == enterprise)
}

/// A publish from the broker, with the connection it came on.
struct Received {
    /// The connection's number (see [`Ack`]).
    connection: u64,
    /// That connection's client: its ack goes back through it.
    client: AsyncClient,
    publish: Publish,
}

/// Keeps a connection to the broker, one client and event loop per
/// connection: when a connection ends, its event loop (and any request
/// still queued in it) is dropped with it, and the next connection gets a
/// new number, so no ack crosses from one connection to the next. The
/// event loop only forwards publishes, so keep-alives and acks keep flowing.
async fn poll(
    options: MqttOptions,
    current: Arc<AtomicU64>,
    latest: Arc<Mutex<Option<AsyncClient>>>,
    filters: Vec<String>,
    tx: mpsc::Sender<Received>,
    shutdown: CancellationToken,
    ready: watch::Sender<bool>,
) {
    loop {
        let connection = current.fetch_add(1, Ordering::SeqCst) + 1;
        let (client, mut eventloop) = AsyncClient::new(options.clone(), REQUEST_QUEUE);
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        *latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let received = Received {
                        connection,
                        client: client.clone(),
                        publish,
                    };
                    let sent = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        s = tx.send(received) => s,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!("connected to MQTT broker; subscribing");
                    let filters = filters
                        .iter()
                        .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::error!(error = %e, "cannot subscribe");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure));
                    if refused {
                        tracing::error!("broker refused the telemetry subscription");
                    } else {
                        ready.send_replace(true);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    ready.send_replace(false);
                    tracing::warn!(error = %e, "MQTT connection error; reconnecting");
                    metrics::counter!("hazardwatch_mqtt_reconnects_total").increment(1);
                    break;
                }
            }
        }
        // This connection is over: acks owed on it are dropped (see
        // [`Ack::try_send`]) and its messages come again on the next.
        current.fetch_add(1, Ordering::SeqCst);
        drop(eventloop);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}
