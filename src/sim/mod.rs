//! The park simulator: plausible telemetry for every point of a site model,
//! with scheduled incidents, published as a gateway would.
//!
//! Normal operation: each point wanders around a set point inside its
//! limits (a mean-reverting random walk, so no nuisance alarms), quantised
//! to an instrument resolution, one reading per point per second. The
//! points of a unit also move together with the unit's load (a slow
//! mean-reverting process, about half an hour from one operating point to
//! the next, shifting each point by a few percent of its span between its
//! limits, never near them): the relations that learned models of normal
//! operation capture. Gas detectors read near zero and follow no load. Each
//! registered gateway publishes its points in one batch, on its own MQTT
//! connection, as itself (client id and user name its id, its password
//! from [`SimOptions::credentials`]); with no registry, each enterprise has
//! one anonymous gateway for all its points.
//!
//! Incidents (times after the start, shifted by `--incident-start`):
//! - **overfill**: the first level point of the first enterprise rises past
//!   H and HH during a transfer, holds, then is drained back;
//! - **runaway heating**: the first unit with temperature and pressure in the
//!   second enterprise heats up, pressure following;
//! - **gas leak**: the gas detectors of the first gas unit of the third
//!   enterprise rise one after another, the first past both levels.
//!
//! Slow incidents (`--slow-incidents`), hours long, that limits see late
//! and learned models early (issue 17):
//! - **cooling degradation** (from the start, a 2 h ramp): in the first
//!   unit with a temperature limit and three `measurement` points (taken
//!   as cooling water flow, cooling water return temperature and feed
//!   flow, in that order, as on the example park's reactor R201), the
//!   temperature creeps up to past H while the cooling water flow and its
//!   return temperature rise and the feed does not;
//! - **feed-ratio fault** (4 h later, a 3 h ramp): in the same unit the
//!   feed drifts up, the temperature following past H, the pressure and
//!   the cooling water flow part of the way;
//! - **slow leak** (from the start, a 4 h ramp): in the first unit with a
//!   level limit L and a `measurement` point (T201 in the example park),
//!   the level falls to below L while its flows do not change.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hazardwatch_ingest::encode::{self, OutReading};
use hazardwatch_ingest::topic::{self, Format};
use hazardwatch_proto::{PointIdx, PointKind, Quality, Reading};
use hazardwatch_rules::SiteModel;
use hazardwatch_storage::archive::{ArchiveConfig, ArchiveWriter};
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

mod incidents;
pub use incidents::Incident;
use incidents::{limit_of, schedule, schedule_slow};

/// How gateways encode their batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadFormat {
    /// JSON on `.../telemetry`.
    Json,
    /// Protobuf `ReadingBatch` on `.../telemetry/pb`.
    Protobuf,
    /// Alternate by gateway: both encodings in one run.
    Mixed,
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Seed of the noise (same seed, same values).
    pub seed: u64,
    /// Schedule the incidents.
    pub incidents: bool,
    /// Seconds after the start at which the first incident begins.
    pub incident_start_s: f64,
    /// Schedule the slow incidents too.
    pub slow_incidents: bool,
    /// Encoding.
    pub format: PayloadFormat,
    /// MQTT topic prefix.
    pub topic_prefix: String,
    /// Password of each registered gateway, by id.
    pub credentials: Credentials,
}

/// The gateways' passwords, by gateway id: what each gateway device holds.
pub type Credentials = BTreeMap<String, String>;

/// The demo's gateway passwords (public: they match the example park's
/// hashes, for the demo on loopback only).
pub const DEMO_CREDENTIALS: &str = include_str!("../../deploy/config/demo-gateways.toml");

/// Reads gateway passwords from TOML text (`GATEWAY-ID = "password"`).
pub fn parse_credentials(text: &str) -> anyhow::Result<Credentials> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!("gateway credentials: {e}"))
}

/// Reads gateway passwords from a file (see [`parse_credentials`]).
pub fn read_credentials(path: &Path) -> anyhow::Result<Credentials> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    parse_credentials(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 42,
            incidents: true,
            incident_start_s: 10.0,
            slow_incidents: false,
            format: PayloadFormat::Json,
            topic_prefix: "hw/v1".into(),
            credentials: Credentials::new(),
        }
    }
}

/// The project's one seeded random generator (the simulator's noise, the
/// benchmarks' random walks): SplitMix64, small, fast and deterministic;
/// good enough for noise, not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`: the same seed, the same sequence.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[derive(Debug, Clone)]
struct SimPoint {
    name: Arc<str>,
    set_point: f64,
    /// Deviation from the set point (the random walk).
    dev: f64,
    sigma: f64,
    lo: f64,
    hi: f64,
    /// Decimal places of the instrument resolution.
    decimals: i32,
    /// The unit whose load moves it.
    unit: usize,
    /// How far one standard deviation of the unit's load moves it.
    gain: f64,
    /// Its own slow disturbance (a quarter of the load's spread, ten
    /// minutes' time constant), in standard deviations: what the unit's
    /// load does not explain.
    drift: f64,
}

/// The time constant of a point's own slow disturbance, seconds.
const DRIFT_TAU_S: f64 = 600.0;

/// A point's own slow disturbance, as a share of its load gain.
const DRIFT_SHARE: f64 = 0.25;

/// The unit load's time constant, seconds.
const LOAD_TAU_S: f64 = 1800.0;

/// One standard deviation of a unit's load moves a point by this share of
/// the span between its limits (3 standard deviations: 0.12 of it, from a
/// set point at 0.45).
const LOAD_SHARE: f64 = 0.04;

#[derive(Debug, Clone)]
struct Gateway {
    enterprise: String,
    id: String,
    format: Format,
    points: Vec<usize>,
    seq: u64,
}

/// One MQTT message a gateway would publish.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayMessage {
    /// The gateway (its index in [`Simulator::gateways`]).
    pub gateway: usize,
    /// Topic.
    pub topic: String,
    /// Encoded payload.
    pub payload: Vec<u8>,
    /// Readings in it.
    pub readings: usize,
}

/// A simulated park (see the module docs).
pub struct Simulator {
    points: Vec<SimPoint>,
    gateways: Vec<Gateway>,
    incidents: Vec<Incident>,
    rng: Rng,
    /// Each unit's load, in standard deviations.
    loads: Vec<f64>,
    load_rng: Rng,
    start_ms: Option<i64>,
    prefix: String,
}

/// One second of an Ornstein-Uhlenbeck process of unit variance and time
/// constant `tau_s`.
fn ou_step(x: f64, tau_s: f64, rng: &mut Rng) -> f64 {
    let pull = 1.0 / tau_s;
    x - pull * x + (2.0 * pull).sqrt() * rng.normal()
}

fn decimals_for(span: f64) -> i32 {
    // About 1/1000 of the span, as a power of ten (20 m -> 0.01 m).
    (3.0 - span.log10()).round().clamp(0.0, 6.0) as i32
}

fn quantise(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl Simulator {
    /// A simulator for every point of the model.
    pub fn new(model: &SiteModel, options: &SimOptions) -> Simulator {
        let mut points = Vec::with_capacity(model.point_count());
        for (idx, meta) in model.catalog.iter() {
            let rules = model.point_rules(idx);
            let (lo, hi) = rules.range;
            let span = hi - lo;
            let limit = |tag: &str| limit_of(model, idx, tag);
            let gas = matches!(meta.kind, PointKind::CombustibleGas | PointKind::ToxicGas);
            let top = limit("H").or(limit("HH")).unwrap_or(hi);
            let bottom = limit("L").or(limit("LL")).unwrap_or(lo);
            let set_point = if gas {
                lo + 0.01 * span
            } else {
                bottom + 0.45 * (top - bottom)
            };
            // Points of a unit respond to its load by different amounts
            // (0.6 to 1.4 times the share), fixed by their index.
            let spread = 0.6 + 0.8 * ((f64::from(idx) * 0.618_034).fract());
            let gain = if gas {
                0.0
            } else {
                LOAD_SHARE * spread * (top - bottom)
            };
            points.push(SimPoint {
                name: meta.id.into(),
                set_point,
                dev: 0.0,
                sigma: if gas { 0.002 } else { 0.001 } * span,
                lo,
                hi,
                decimals: decimals_for(span),
                unit: model.catalog.unit_of(idx) as usize,
                gain,
                drift: 0.0,
            });
        }
        let format = |i: usize| match options.format {
            PayloadFormat::Json => Format::Json,
            PayloadFormat::Protobuf => Format::Protobuf,
            PayloadFormat::Mixed if i.is_multiple_of(2) => Format::Json,
            PayloadFormat::Mixed => Format::Protobuf,
        };
        let mut gateways = Vec::new();
        if model.registry.is_open() {
            for (i, e) in model.enterprises.iter().enumerate() {
                let pts = e
                    .hazard_sources
                    .iter()
                    .flat_map(|h| h.units.iter())
                    .flat_map(|u| u.points.iter().map(|&p| p as usize))
                    .collect();
                gateways.push(Gateway {
                    enterprise: e.id.clone(),
                    id: format!("GW-{}", e.id),
                    format: format(i),
                    points: pts,
                    seq: 0,
                });
            }
        } else {
            for (i, g) in model.registry.gateways().iter().enumerate() {
                gateways.push(Gateway {
                    enterprise: g.enterprise.clone(),
                    id: g.id.clone(),
                    format: format(i),
                    points: g.points.iter().map(|&p| p as usize).collect(),
                    seq: 0,
                });
            }
        }
        let mut incidents = if options.incidents {
            schedule(model, &points, options.incident_start_s)
        } else {
            Vec::new()
        };
        if options.slow_incidents {
            incidents.extend(schedule_slow(model, &points, options.incident_start_s));
        }
        let units = points.iter().map(|p| p.unit + 1).max().unwrap_or(0);
        Simulator {
            points,
            gateways,
            incidents,
            rng: Rng::new(options.seed),
            loads: vec![0.0; units],
            load_rng: Rng::new(options.seed ^ 0x10ad_10ad_10ad_10ad),
            start_ms: None,
            prefix: options.topic_prefix.clone(),
        }
    }

    /// The simulated gateways' ids, in message order.
    pub fn gateways(&self) -> impl Iterator<Item = &str> {
        self.gateways.iter().map(|g| g.id.as_str())
    }

    /// The scheduled incidents.
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    /// Values of every point at `now_ms` (advancing the noise one step),
    /// indexed by point.
    pub fn step(&mut self, now_ms: i64) -> Vec<f64> {
        let start = *self.start_ms.get_or_insert(now_ms);
        let t_s = (now_ms - start) as f64 / 1000.0;
        let mut values = Vec::with_capacity(self.points.len());
        for load in &mut self.loads {
            *load = ou_step(*load, LOAD_TAU_S, &mut self.load_rng);
        }
        for p in &mut self.points {
            p.dev += -0.1 * p.dev + p.sigma * self.rng.normal();
            p.drift = ou_step(p.drift, DRIFT_TAU_S, &mut self.load_rng);
            let slow = self.loads[p.unit] + DRIFT_SHARE * p.drift;
            values.push(p.set_point + p.gain * slow + p.dev);
        }
        for inc in &self.incidents {
            let p = &self.points[inc.index];
            let f = inc.envelope(t_s);
            values[inc.index] += f * (inc.peak - p.set_point);
        }
        for (v, p) in values.iter_mut().zip(&self.points) {
            *v = quantise(v.clamp(p.lo, p.hi), p.decimals);
        }
        values
    }

    /// Every point's reading at `now_ms`, as the service would decode them
    /// (for driving the rule engine without MQTT).
    pub fn readings(&mut self, now_ms: i64) -> Vec<Reading> {
        self.step(now_ms)
            .into_iter()
            .enumerate()
            .map(|(i, value)| Reading {
                point: i as PointIdx,
                ts_ms: now_ms,
                value,
                quality: Quality::Good,
            })
            .collect()
    }

    /// The messages every gateway publishes at `now_ms`.
    pub fn messages(&mut self, now_ms: i64) -> Vec<GatewayMessage> {
        let values = self.step(now_ms);
        let mut out = Vec::with_capacity(self.gateways.len());
        for (gateway, g) in self.gateways.iter_mut().enumerate() {
            g.seq += 1;
            let points = &self.points;
            let readings = g.points.iter().map(|&i| OutReading {
                point: &points[i].name,
                ts_ms: now_ms,
                value: values[i],
                quality: Quality::Good,
            });
            let payload = encode::batch(g.format, &g.id, g.seq, readings);
            out.push(GatewayMessage {
                gateway,
                topic: topic::telemetry(&self.prefix, &g.enterprise, &g.id, g.format),
                payload,
                readings: g.points.len(),
            });
        }
        out
    }
}

/// Writes `duration_s` seconds of the simulated park, from `start_ms`,
/// straight into a new archive at `out` ([`crate::new_archive`]) in
/// simulated time, as fast as the disk takes it (a day of the example park
/// in seconds): history to learn from and to replay, as the service would
/// have archived it. Returns the readings written.
pub fn write_archive(
    model: &SiteModel,
    options: &SimOptions,
    out: &Path,
    start_ms: i64,
    duration_s: u64,
    archive: &ArchiveConfig,
    progress: bool,
) -> anyhow::Result<u64> {
    crate::new_archive::write("--archive", out, |root| {
        let (mut writer, _) = ArchiveWriter::open(root, model.catalog.clone(), archive.clone())?;
        let mut sim = Simulator::new(model, options);
        let points = model.point_count() as u64;
        let bar = crate::replay::progress_bar(duration_s.saturating_mul(points), progress);
        let mut written = 0u64;
        for s in 0..duration_s {
            let ts = start_ms.saturating_add((s as i64).saturating_mul(1000));
            let readings = sim.readings(ts);
            writer.append(&readings, ts, &[]);
            written += readings.len() as u64;
            if writer.buffered_rows() >= archive.roll_rows {
                writer.checkpoint(0, &[])?;
            }
            bar.inc(readings.len() as u64);
        }
        writer.checkpoint(0, &[])?;
        writer.compact(None)?;
        bar.finish_and_clear();
        Ok(written)
    })
}

/// One simulated gateway's MQTT connection: its client and the task that
/// polls it (reconnecting after errors, as a gateway does).
struct Link {
    client: AsyncClient,
    poller: tokio::task::JoinHandle<()>,
}

/// Connects gateway `id` (registered: as itself, with its password from
/// `credentials`; open mode: anonymously).
fn connect(
    id: &str,
    registered: bool,
    credentials: &Credentials,
    host: &str,
    port: u16,
    stop: CancellationToken,
) -> anyhow::Result<Link> {
    let client_id = if registered {
        id.to_owned()
    } else {
        format!("hazardwatch-sim-{}-{id}", std::process::id())
    };
    let mut mqtt = MqttOptions::new(client_id, host, port);
    mqtt.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    if registered {
        let password = credentials.get(id).ok_or_else(|| {
            anyhow::anyhow!("no password for gateway {id} in the simulator's credentials")
        })?;
        mqtt.set_credentials(id, password);
    }
    let (client, mut eventloop) = AsyncClient::new(mqtt, 1024);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let id = id.to_owned();
    let poller = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => tracing::info!(gateway = %id, "simulated gateway connected"),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(gateway = %id, error = %e, "simulated gateway: MQTT connection error");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    });
    Ok(Link { client, poller })
}

/// Publishes the simulated park to an MQTT broker once a second (event time
/// = wall clock), each gateway on its own connection, until `duration` has
/// passed or `stop` is cancelled. Returns the readings published.
pub async fn publish(
    model: &SiteModel,
    options: &SimOptions,
    host: &str,
    port: u16,
    duration: Option<Duration>,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let mut sim = Simulator::new(model, options);
    for inc in sim.incidents() {
        tracing::info!(incident = inc.name, point = %inc.point, start_s = inc.start_s, peak = inc.peak, "scheduled");
    }
    let poll_stop = stop.child_token();
    let registered = !model.registry.is_open();
    let links = sim
        .gateways()
        .map(|id| {
            connect(
                id,
                registered,
                &options.credentials,
                host,
                port,
                poll_stop.clone(),
            )
        })
        .collect::<anyhow::Result<Vec<Link>>>()?;
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut published = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let now = chrono::Utc::now().timestamp_millis();
        for m in sim.messages(now) {
            links[m.gateway]
                .client
                .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
                .await?;
            published += m.readings as u64;
        }
    }
    // Give the last publishes a moment to be acknowledged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for l in &links {
        let _ = l.client.disconnect().await;
    }
    poll_stop.cancel();
    for l in links {
        let _ = l.poller.await;
    }
    Ok(published)
}

/// [`publish`] until `duration` passes or Ctrl-C/SIGTERM arrives
/// (`hazardwatch simulate`); returns the readings published.
pub async fn publish_until_signal(
    model: &SiteModel,
    options: &SimOptions,
    host: &str,
    port: u16,
    duration: Option<Duration>,
) -> anyhow::Result<u64> {
    let stop = CancellationToken::new();
    let signal = tokio::spawn({
        let stop = stop.clone();
        async move {
            crate::shutdown::shutdown_signal().await;
            stop.cancel();
        }
    });
    let published = publish(model, options, host, port, duration, stop).await;
    signal.abort();
    published
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn example_park_schedules_all_three_incidents_and_stays_in_range() {
        let model = Config::example().site;
        let mut sim = Simulator::new(&model, &SimOptions::default());
        let names: std::collections::BTreeSet<_> = sim.incidents().iter().map(|i| i.name).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        for t in 0..120 {
            for m in sim.messages(1_700_000_000_000 + t * 1000) {
                assert!(m.readings > 0);
            }
        }
    }

    #[test]
    fn quantise_gives_short_decimals() {
        assert_eq!(quantise(9.2000001, 2), 9.2);
        assert_eq!(decimals_for(20.0), 2);
        assert_eq!(decimals_for(220.0), 1);
    }
}
