//! The shared load generator: simulated gateways publishing JSON or
//! protobuf batches at QoS 1 as fast as the broker acknowledges them, a
//! counting subscriber for the bare-broker baseline, and the CPU time of
//! this process's threads by name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};

use crate::Walk;
use hazardwatch_ingest::auth::ServiceIdentity;
use hazardwatch_ingest::broker::{BrokerSettings, EmbeddedBroker};
use hazardwatch_ingest::encode::{self, OutReading};
pub use hazardwatch_ingest::topic::Format;
use hazardwatch_proto::Quality;

/// What the gateways send.
#[derive(Debug, Clone)]
pub struct Load {
    /// Gateways (one MQTT connection each).
    pub gateways: usize,
    /// Readings per message.
    pub batch: usize,
    /// Encoding.
    pub format: Format,
    /// Points `P0..P{points}` of enterprise `E`, split evenly between the
    /// gateways.
    pub points: usize,
    /// Readings per second from all gateways together, evenly paced; `None`:
    /// as fast as the broker acknowledges.
    pub rate: Option<f64>,
    /// Gateways authenticate (client id and user name `GW{g}`, this
    /// password) over TLS (trusting this configuration); `None`: plain,
    /// anonymous.
    pub secure: Option<Secure>,
}

/// How a load's gateways prove who they are.
#[derive(Clone)]
pub struct Secure {
    /// TLS towards the broker.
    pub tls: Arc<rustls::ClientConfig>,
    /// Every gateway's password.
    pub password: String,
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure").finish_non_exhaustive()
    }
}

/// What the gateways got acknowledged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Published {
    /// Messages acknowledged by the broker.
    pub messages: u64,
    /// Readings in them.
    pub readings: u64,
    /// Time from the first publish to the last acknowledgement.
    pub elapsed: Duration,
}

/// A client of `host:port` with the benchmarks' settings: 4 MiB packets, 100
/// in flight, `TCP_NODELAY`.
pub fn options(id: &str, host: &str, port: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(id, host, port);
    o.set_max_packet_size(4 << 20, 4 << 20)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(o, 1000);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    (client, eventloop)
}

/// Where a relay's subscriber reads: a broker's address and, for the
/// embedded broker (where only the service may subscribe to telemetry),
/// the service identity it subscribes as.
#[derive(Debug, Clone)]
pub struct Reader {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// The service's identity at the embedded broker.
    pub identity: Option<ServiceIdentity>,
}

impl Reader {
    /// A reader of a broker without authentication (mosquitto's default).
    pub fn anonymous(host: &str, port: u16) -> Reader {
        Reader {
            host: host.to_owned(),
            port,
            identity: None,
        }
    }
}

/// The embedded broker with an open registry on a free loopback port, as
/// the service runs it; gateways publish to its `addr`, and the returned
/// [`Reader`] subscribes as the service.
pub fn embedded_broker() -> anyhow::Result<(EmbeddedBroker, Reader)> {
    let service = ServiceIdentity::generate("bench-relay");
    let broker = EmbeddedBroker::start(
        BrokerSettings {
            listen: "127.0.0.1:0".parse()?,
            tls: None,
            max_packet_bytes: 4 << 20,
            topic_prefix: "hw/v1".into(),
            service: service.clone(),
        },
        Arc::default(),
    )?;
    let reader = Reader {
        host: broker.service_addr.ip().to_string(),
        port: broker.service_addr.port(),
        identity: Some(service),
    };
    Ok((broker, reader))
}

/// One simulated gateway of a load: its id and its points' random walks.
/// Point names are made per message, as a gateway's firmware would: a
/// table of them here would sit in the memory benchmark's resident figure.
struct GatewaySim {
    id: String,
    first: usize,
    walks: Vec<Walk>,
    /// The current message's point names (reused).
    names: Vec<String>,
}

impl GatewaySim {
    /// Gateway `g` of `load`: points `P{g*per}..` where `per` is its share.
    fn new(load: &Load, g: usize) -> GatewaySim {
        let per = (load.points / load.gateways).max(1);
        let first = g * per;
        GatewaySim {
            id: format!("GW{g}"),
            first,
            walks: (first..first + per)
                .map(|p| Walk::new(p as u64 + 1, 10.0))
                .collect(),
            names: Vec::with_capacity(load.batch),
        }
    }

    /// Message `seq`: `batch` readings of its points in turn, stamped
    /// `ts_ms`.
    fn payload(&mut self, load: &Load, seq: u64, ts_ms: i64) -> Vec<u8> {
        let per = self.walks.len();
        let slot = |i: usize| (seq as usize * load.batch + i) % per;
        self.names.clear();
        let first = self.first;
        self.names
            .extend((0..load.batch).map(|i| format!("P{}", first + slot(i))));
        let (names, walks) = (&self.names, &mut self.walks);
        let readings = names.iter().enumerate().map(|(i, name)| OutReading {
            point: name,
            ts_ms,
            value: walks[slot(i)].next_value(),
            quality: Quality::Good,
        });
        encode::batch(load.format, &self.id, seq, readings)
    }
}

/// Publishes from every gateway for `duration`, at the load's rate or as
/// fast as the broker acknowledges (QoS 1, 100 in flight per gateway), then
/// waits up to 10 s for the last acknowledgements.
pub async fn publish(
    host: &str,
    port: u16,
    load: &Load,
    duration: Duration,
) -> anyhow::Result<Published> {
    if let Some(rate) = load.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "a paced load needs a rate above 0 readings/s, not {rate}"
        );
    }
    let acked = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for g in 0..load.gateways {
        let (client, mut eventloop) = match &load.secure {
            None => options(&format!("bench-gw-{g}"), host, port),
            Some(secure) => {
                let id = format!("GW{g}");
                let mut o = MqttOptions::new(&id, host, port);
                o.set_max_packet_size(4 << 20, 4 << 20)
                    .set_keep_alive(Duration::from_secs(30))
                    .set_inflight(100)
                    .set_credentials(&id, &secure.password)
                    .set_transport(rumqttc::Transport::tls_with_config(
                        rumqttc::TlsConfiguration::Rustls(secure.tls.clone()),
                    ));
                let (client, mut eventloop) = AsyncClient::new(o, 1000);
                let mut net = NetworkOptions::new();
                net.set_tcp_nodelay(true);
                eventloop.set_network_options(net);
                (client, eventloop)
            }
        };
        let acked = acked.clone();
        let poller = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        let load = load.clone();
        let sent = sent.clone();
        let topic =
            hazardwatch_ingest::topic::telemetry("hw/v1", "E", &format!("GW{g}"), load.format);
        tasks.push(tokio::spawn(async move {
            let mut gateway = GatewaySim::new(&load, g);
            // Messages per second of this gateway, when paced.
            let pace = load
                .rate
                .map(|r| r / load.batch as f64 / load.gateways as f64);
            let mut seq = 0u64;
            while start.elapsed() < duration {
                if let Some(pace) = pace {
                    let due = start + Duration::from_secs_f64(seq as f64 / pace);
                    tokio::time::sleep_until(due.into()).await;
                }
                let ts = chrono::Utc::now().timestamp_millis();
                let body = gateway.payload(&load, seq, ts);
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, body)
                    .await
                    .is_err()
                {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                seq += 1;
            }
            (client, poller)
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await?);
    }
    let want = sent.load(Ordering::Relaxed);
    let until = Instant::now() + Duration::from_secs(10);
    while acked.load(Ordering::Relaxed) < want && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    for (client, poller) in clients {
        let _ = client.disconnect().await;
        poller.abort();
    }
    let messages = acked.load(Ordering::Relaxed).min(want);
    Ok(Published {
        messages,
        readings: messages * load.batch as u64,
        elapsed,
    })
}

/// Runs `future` to its end on a runtime of its own (`threads` threads
/// named `name`), so that its work neither waits for nor is counted as the
/// service's.
pub async fn apart<F, T>(name: &str, threads: usize, future: F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let name = name.to_owned();
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(name)
                .enable_all()
                .build()?
                .block_on(future)
        })?;
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))?
}

/// [`publish`] on a runtime of its own (two threads named `loadgen`), so
/// the CPU split tells the gateways' work from the service's.
pub async fn publish_apart(
    host: &str,
    port: u16,
    load: &Load,
    duration: Duration,
) -> anyhow::Result<Published> {
    let (host, load) = (host.to_owned(), load.clone());
    apart("loadgen", 2, async move {
        publish(&host, port, &load, duration).await
    })
    .await
}

/// A subscriber to every gateway topic (QoS 1, acknowledged at once) that
/// hands each message it receives to `on_message`: the bare relay. Returns
/// once subscribed.
pub async fn relay_subscriber(
    reader: &Reader,
    mut on_message: impl FnMut(&rumqttc::Publish) + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (client, mut eventloop) = match &reader.identity {
        None => options("bench-relay", &reader.host, reader.port),
        Some(id) => {
            let mut o = MqttOptions::new(&id.client_id, &reader.host, reader.port);
            o.set_max_packet_size(4 << 20, 4 << 20)
                .set_keep_alive(Duration::from_secs(30))
                .set_inflight(100)
                .set_credentials(&id.username, String::from_utf8_lossy(&id.secret));
            let (client, mut eventloop) = AsyncClient::new(o, 1000);
            let mut net = NetworkOptions::new();
            net.set_tcp_nodelay(true);
            eventloop.set_network_options(net);
            (client, eventloop)
        }
    };
    client
        .subscribe("hw/v1/+/+/telemetry/#", QoS::AtLeastOnce)
        .await?;
    client
        .subscribe("hw/v1/+/+/telemetry", QoS::AtLeastOnce)
        .await?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut subacks = 0;
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => on_message(&p),
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subacks += 1;
                    if subacks == 2
                        && let Some(r) = ready.take()
                    {
                        let _ = r.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx).await??;
    Ok(task)
}

/// A [`relay_subscriber`] that counts the messages it receives.
pub async fn count_received(
    reader: &Reader,
) -> anyhow::Result<(Arc<AtomicU64>, tokio::task::JoinHandle<()>)> {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let task = relay_subscriber(reader, move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    })
    .await?;
    Ok((received, task))
}

/// CPU seconds used so far by this process's threads, by thread name
/// (digits dropped, so `timely:work-0` and `-1` add up), from `/proc`.
pub fn cpu_by_thread() -> BTreeMap<String, f64> {
    // USER_HZ is 100 on every Linux this runs on.
    const TICKS: f64 = 100.0;
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(t.path().join("comm")),
            std::fs::read_to_string(t.path().join("stat")),
        ) else {
            continue;
        };
        // Fields after the parenthesised name: state is field 3, utime 14,
        // stime 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let name: String = comm
            .trim()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / TICKS;
    }
    out
}

/// The CPU split between two [`cpu_by_thread`] samples, largest first, as
/// "name 1.23 s (45 %)" parts.
pub fn cpu_split(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<String> {
    let mut used: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.005)
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = used.iter().map(|(_, v)| v).sum();
    used.into_iter()
        .map(|(k, v)| format!("{k} {v:.2} s ({:.0} %)", v / total.max(1e-9) * 100.0))
        .collect()
}
