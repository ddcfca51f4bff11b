//! Wiring: one running hazardwatch service.
//!
//! ```text
//! MQTT --> ingest task --Delivery--> write-ahead stage (log, sync, then ack)
//!      --> feeder thread (+ clock ticks, reloads)
//!            --> rule engine (timely workers) --> alarm hub --> gRPC
//!            \-> archive thread (Parquet, checkpoints, compaction)
//! ```
//!
//! [`start`] brings it up and returns a [`Running`] that knows its bound
//! addresses (ports given as 0 are resolved), so tests and the demo drive
//! the same entry point as `hazardwatch run`. At start, a checkpoint that a
//! crash interrupted is finished, and the readings the write-ahead log holds
//! beyond the archive's last checkpoint are judged and archived again.
//! [`Running::shutdown`] stops in order: stop taking MQTT, log what was
//! received, drain the engine, seal the Parquet files, then stop gRPC.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use hazardwatch_alarms::{AlarmHub, RiskModel};
use hazardwatch_ingest::auth::ServiceIdentity;
use hazardwatch_ingest::broker::{BrokerSettings, EmbeddedBroker, ListenerTls};
use hazardwatch_ingest::config::{MqttConfig, broker_host_port};
use hazardwatch_ingest::health::GatewayHealth;
use hazardwatch_ingest::{Delivery, Quarantine, Subscriber, quarantine};
use hazardwatch_proto::clock::{SharedClock, WallClock};
use hazardwatch_proto::{Catalog, Registry};
use hazardwatch_rules::{Engine, Resume, SiteModel};
use hazardwatch_storage::wal::{self, FileIo, Wal, WalConfig, WalIo};
use hazardwatch_storage::{AlarmJournal, ArchiveWriter};
use hazardwatch_storage::{JournalFaults, NoFaults};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Settings};
use crate::console;
use crate::grpc;
use crate::http;
use crate::live_site::LiveSite;
use crate::pipeline::backfill::{BACKFILL_QUEUE, BackfillConfig, BackfillMsg};
use crate::pipeline::feeder::BackfillLink;
use crate::pipeline::wal_stage::{self, WalStage};
use crate::pipeline::watermark::Watermark;
use crate::pipeline::{
    Counters, FEEDER_QUEUE, FeedMsg, INGEST_QUEUE, Summary, TICK, archive_queue, archiver,
    backfill, feeder, watched_points,
};
use crate::readiness::{self, Readiness};
use crate::telemetry::{Latest, Snapshot, Telemetry};

/// Queries waiting for the archive thread's snapshot.
pub const SNAPSHOT_QUEUE: usize = 64;
/// How long [`start`] waits for the telemetry subscription to be confirmed.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running service.
pub struct Running {
    /// Where gateways reach the MQTT broker: the embedded broker's gateway
    /// listener, or the external broker.
    pub mqtt_addr: String,
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` listens, when enabled and installed.
    pub metrics_addr: Option<SocketAddr>,
    /// The console's address, when it is on.
    pub console_addr: Option<SocketAddr>,
    /// The archive root (`DATA/archive`).
    pub archive_dir: PathBuf,
    /// The quarantine file.
    pub quarantine_file: PathBuf,
    /// Live alarm state.
    pub hub: Arc<AlarmHub>,
    /// The running site model, for changes through the API.
    pub site: LiveSite,
    /// The pipeline's counters.
    pub counters: Arc<Counters>,
    /// The site catalog ingest validates against (replaced on reload).
    catalog: watch::Sender<Arc<Catalog>>,
    /// The gateway registry ingest checks readings against (replaced on
    /// reload).
    registry: watch::Sender<Arc<Registry>>,
    /// Reloads into the feeder, in order with the readings.
    reload: mpsc::Sender<FeedMsg>,
    ingest_stop: CancellationToken,
    grpc_stop: CancellationToken,
    /// Stops the readiness check and the HTTP endpoints.
    ops_stop: CancellationToken,
    ingest: JoinHandle<hazardwatch_ingest::Result<()>>,
    wal_stage: JoinHandle<anyhow::Result<()>>,
    ticker: JoinHandle<()>,
    feeder: std::thread::JoinHandle<anyhow::Result<()>>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    clock: JoinHandle<()>,
    /// The embedded broker (none with an external one); stops when dropped.
    broker: Option<EmbeddedBroker>,
    /// Where "now" comes from.
    wall: SharedClock,
    /// The gateways' online rate and completeness.
    pub health: Arc<GatewayHealth>,
    /// Webhook notifications, when recipients are configured.
    notifier: Option<crate::notify::Notifier>,
    /// One process of several (`engine.cluster`).
    cluster: bool,
    /// Cancelled when the feeder stops on an error.
    fatal: CancellationToken,
}

/// How ingest reaches the broker.
struct BrokerLink {
    host: String,
    port: u16,
    /// Where gateways connect.
    gateways: String,
    credentials: Option<(String, String)>,
    tls: Option<Arc<rustls::ClientConfig>>,
    embedded: Option<EmbeddedBroker>,
}

/// Starts the embedded broker, or prepares the link to the external one.
async fn connect_broker(mqtt: &MqttConfig, registry: Arc<Registry>) -> anyhow::Result<BrokerLink> {
    if let Some(b) = &mqtt.broker {
        let (host, port) = broker_host_port(b)?;
        let credentials = match (&mqtt.username, mqtt.password()?) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            _ => None,
        };
        let tls = match &mqtt.broker_tls {
            Some(t) => Some(
                hazardwatch_ingest::tls::client_config(
                    &t.ca,
                    t.cert.as_deref().zip(t.key.as_deref()),
                )
                .context("mqtt.broker_tls")?,
            ),
            None => None,
        };
        return Ok(BrokerLink {
            host,
            port,
            gateways: b.clone(),
            credentials,
            tls,
            embedded: None,
        });
    }
    let service = ServiceIdentity::generate(&mqtt.client_id);
    let credentials = Some((
        service.username.clone(),
        String::from_utf8_lossy(&service.secret).into_owned(),
    ));
    let settings = BrokerSettings {
        listen: mqtt.listen,
        tls: mqtt.tls.as_ref().map(|t| ListenerTls {
            cert: t.cert.clone(),
            key: t.key.clone(),
            client_ca: t.client_ca.clone(),
        }),
        max_packet_bytes: mqtt.max_payload_bytes * 4 + 1024,
        topic_prefix: mqtt.topic_prefix.clone(),
        service,
    };
    let broker =
        tokio::task::spawn_blocking(move || EmbeddedBroker::start(settings, registry)).await??;
    Ok(BrokerLink {
        host: broker.service_addr.ip().to_string(),
        port: broker.service_addr.port(),
        gateways: broker.addr.to_string(),
        credentials,
        tls: None,
        embedded: Some(broker),
    })
}

/// What this process ingests. Alone, or with a broker of its own (each
/// process of a cluster embeds one, and a gateway connects to its
/// process), everything that reaches its broker. On an external broker
/// that every process of a cluster shares, the enterprises are dealt out,
/// the `k`-th in the file to process `k mod n`, so that each message is
/// taken by one process and each gateway's state (sequence numbers,
/// Sparkplug sessions, deduplication) lives in one; each process has its
/// own persistent session (`client_id-k`).
fn ingest_share(settings: &Settings, site: &SiteModel) -> (MqttConfig, Option<Vec<String>>) {
    let mut mqtt = settings.mqtt.clone();
    let n = settings.engine.cluster.len();
    if n < 2 || mqtt.broker.is_none() {
        return (mqtt, None);
    }
    let process = settings.engine.process;
    mqtt.client_id = format!("{}-{process}", mqtt.client_id);
    let mine = site
        .enterprises
        .iter()
        .enumerate()
        .filter(|(k, _)| k % n == process)
        .map(|(_, e)| e.id.clone())
        .collect();
    (mqtt, Some(mine))
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Points new in the site model.
    pub added: Vec<String>,
    /// Points no longer in it (their readings are now quarantined).
    pub removed: Vec<String>,
}

/// Makes ring the process's rustls provider. The process links two
/// (rmqtt brings aws-lc-rs, tonic ring), and rustls then picks neither on
/// its own: a TLS client or server built without an explicit provider
/// would panic. Installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Raises the soft limit on open files to the hard one, as Go's runtime
/// does for every program: gateways' connections, alarm feeds and the
/// archive files a query holds open (up to
/// [`crate::telemetry::MAX_CONCURRENT_QUERIES`] times
/// [`crate::telemetry::MAX_QUERY_FILES`]) pass the common soft default of
/// 1,024. Returns the limit in force.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => raised.current.unwrap_or(u64::MAX),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            limit.current.unwrap_or(u64::MAX)
        }
    }
}

/// Drives the wall-clock work once a second until `stop`: the alarm hub's
/// (shelves expiring) and, every ten seconds, the gateways' health gauges.
async fn clock_loop(
    hub: Arc<AlarmHub>,
    health: Arc<GatewayHealth>,
    clock: SharedClock,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {
                let (hub, now) = (hub.clone(), clock.now_ms());
                // The hub commits to the journal: not on the async threads.
                let _ = tokio::task::spawn_blocking(move || hub.tick(now)).await;
                if ticks.is_multiple_of(10) {
                    gateway_gauges(&health, now);
                }
                ticks += 1;
            }
        }
    }
}

/// The gateways' online state, online ratio and completeness as
/// Prometheus gauges (labelled by gateway and enterprise).
fn gateway_gauges(health: &GatewayHealth, now_ms: i64) {
    for r in health.report(now_ms) {
        let labels = [
            ("gateway", r.id.clone()),
            ("enterprise", r.enterprise.clone()),
        ];
        metrics::gauge!("hazardwatch_gateway_online", &labels).set(f64::from(u8::from(r.online)));
        metrics::gauge!("hazardwatch_gateway_online_ratio", &labels).set(r.online_ratio);
        metrics::gauge!("hazardwatch_gateway_completeness_ratio", &labels).set(r.completeness);
    }
}

/// What a service runs on besides its configuration: the parts a test
/// replaces.
#[derive(Clone)]
pub struct Environment {
    /// Where "now" comes from.
    pub clock: SharedClock,
    /// How the write-ahead log reaches the disk (tests make it fail).
    pub wal_io: Arc<dyn WalIo>,
    /// What the alarm journal's writes pass through (tests make them fail).
    pub journal_faults: Arc<dyn JournalFaults>,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            clock: WallClock::shared(),
            wal_io: Arc::new(FileIo),
            journal_faults: Arc::new(NoFaults),
        }
    }
}

/// Starts every part of the service.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with(config, Environment::default()).await
}

/// [`start`] in an [`Environment`] of the caller's.
pub async fn start_with(config: Config, env: Environment) -> anyhow::Result<Running> {
    install_crypto_provider();
    let Environment {
        clock,
        wal_io,
        journal_faults,
    } = env;
    let Config { settings, site } = config;
    let data_dir = settings.data_dir.clone();
    // The lead: the only process, or process 0 of a cluster. It holds the
    // alarm hub and its journal, serves alarms and the console and sends
    // notifications; the others ingest, log, archive and run their share
    // of the rules, whose events all reach the lead (README, "A big park
    // across processes").
    let lead = settings.engine.process == 0;
    let cluster = settings.engine.cluster.len() > 1;
    if !lead {
        tracing::info!(
            process = settings.engine.process,
            lead = %settings.engine.cluster[0],
            "a member of the cluster: its alarms are served by process 0"
        );
    }
    // Every directory the service writes is created durably (synced into
    // its parent): a power cut must not take the log or the journal with
    // the directory that holds it.
    hazardwatch_storage::txn::create_dir_durably(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let counters = Arc::new(Counters::default());
    let catalog = site.catalog.clone();

    // MQTT broker (embedded unless an external one is configured).
    let link = connect_broker(&settings.mqtt, site.registry.clone()).await?;
    let mqtt_addr = link.gateways.clone();

    // Readiness: "starting" until the first check, once the engine runs.
    let readiness = Arc::new(Readiness::default());
    let ops_stop = CancellationToken::new();
    let metrics_addr = if settings.metrics.enabled {
        let listen = settings.metrics.listen;
        let listener = http::bind(listen)
            .await
            .with_context(|| format!("binding metrics and health on {listen}"))?;
        let addr = listener.local_addr()?;
        tokio::spawn(http::serve(listener, readiness.clone(), ops_stop.clone()));
        tracing::info!(%addr, "metrics at http://{addr}/metrics, readiness at /readyz");
        Some(addr)
    } else {
        None
    };

    // gRPC first, so a taken port fails before anything else runs.
    let listener = grpc::bind(settings.grpc.listen)
        .await
        .with_context(|| format!("binding gRPC on {}", settings.grpc.listen))?;
    let grpc_addr = listener.local_addr()?;
    let journal_path = data_dir.join("journal").join("alarms.redb");
    let journal = AlarmJournal::open_with(&journal_path, journal_faults)?;
    let (hub, restored) = AlarmHub::open(
        catalog.clone(),
        journal,
        settings.escalation.clone(),
        RiskModel::from_site(&site),
        clock.now_ms(),
    )?;
    tracing::info!(
        journal = %journal_path.display(),
        last_seq = hub.last_seq(),
        alarms = restored.alarms,
        ended = restored.ended,
        "alarm table restored from the journal"
    );
    let grpc_stop = CancellationToken::new();
    let latest = Arc::new(Latest::for_points(catalog.len()));
    let (snapshot_tx, snapshot_rx) = crossbeam_channel::bounded::<Snapshot>(SNAPSHOT_QUEUE);
    let (catalog_tx, catalog_rx) = watch::channel(catalog.clone());
    let (registry_tx, registry_rx) = watch::channel(site.registry.clone());
    let health = Arc::new(GatewayHealth::new(site.registry.clone(), clock.now_ms()));
    let telemetry = Telemetry::new(latest.clone(), catalog_rx.clone(), snapshot_tx);
    let tls = settings.grpc.identity().map_err(anyhow::Error::msg)?;
    let server = grpc::server(tls).context("grpc.tls: certificate or key")?;
    let (feed_tx, feed_rx) = mpsc::channel::<FeedMsg>(FEEDER_QUEUE);
    let live_site = LiveSite::new(site.clone(), &feed_tx);
    let backends = grpc::Backends {
        hub: hub.clone(),
        access: Arc::new(settings.access.clone()),
        site: live_site.clone(),
        telemetry,
        health: health.clone(),
        clock: clock.clone(),
        readiness: readiness.clone(),
    };
    let services = grpc::Services::new(backends, grpc_stop.clone());
    let console_addr = if lead {
        console::start(&settings.console, services.clone(), grpc_stop.clone())
            .await
            .context("starting the console")?
    } else {
        None
    };
    let grpc = tokio::spawn(grpc::serve(
        server,
        listener,
        services,
        lead,
        grpc_stop.clone(),
    ));
    let clock_task = tokio::spawn(clock_loop(
        hub.clone(),
        health.clone(),
        clock.clone(),
        grpc_stop.clone(),
    ));
    tracing::info!(%grpc_addr, "gRPC listening");
    let notifier = if lead {
        crate::notify::start(
            settings.notify.clone(),
            site.park_id.clone(),
            hub.clone(),
            clock.clone(),
        )
        .await
        .context("starting notifications")?
    } else {
        None
    };

    // The archive first: finish a checkpoint a crash interrupted, then
    // drop the log segments it covers and read back the rest.
    let archive_dir = data_dir.join("archive");
    let (writer, progress) =
        ArchiveWriter::open(&archive_dir, catalog.clone(), settings.archive.clone())?;
    let wal_dir = data_dir.join("wal");
    hazardwatch_storage::txn::create_dir_durably(&wal_dir)
        .with_context(|| format!("creating {}", wal_dir.display()))?;
    wal::release_before(&wal_dir, progress.wal_segment, settings.mqtt.dedup_window)?;
    let wal_config = WalConfig {
        // About `roll_rows` readings per segment, so per checkpoint.
        segment_bytes: (settings.archive.roll_rows as u64).saturating_mul(24),
    };
    // The log is checked through once here; its records are read back
    // one at a time below, once the engine runs.
    let (wal, recovery) = Wal::open_with(&wal_dir, wal_config, wal_io)?;
    let quarantine_dir = data_dir.join("quarantine");
    let mut quarantine = Quarantine::open(&quarantine_dir, clock.clone())?;
    let quarantine_file = quarantine.path().to_owned();
    let mut dedup = wal_stage::starting_window(&wal_dir, settings.mqtt.dedup_window);
    let scanned = recovery.scanned();

    // Rule engine; its events go straight into the hub.
    let sink = {
        let hub = hub.clone();
        let counters = counters.clone();
        Arc::new(move |events: Vec<hazardwatch_proto::RuleEvent>| {
            let out = hub.apply(&events);
            let raised = out
                .iter()
                .filter(|e| e.transition == hazardwatch_proto::pb::Transition::Raised as i32)
                .count();
            counters
                .alarms_raised
                .fetch_add(raised as u64, Ordering::Relaxed);
        })
    };
    let resume = Resume {
        active: restored.conditions,
        replay_from_ms: scanned.oldest_ms,
    };
    // In a cluster this waits until every process has come up and
    // connected: not on the async threads.
    let engine = tokio::task::spawn_blocking({
        let (site, config) = (site.clone(), settings.engine.clone());
        move || Engine::start_from(&site, &config, sink, resume)
    })
    .await??;
    // Before any reading is fed: the alarms that judging the log again
    // (this process's, or in a cluster any process's) must not touch twice.
    if let Some(oldest) = engine.replay_from_ms() {
        let guarded = hub.guard_replay(oldest)?;
        tracing::info!(
            segments = scanned.segments,
            messages = scanned.batches,
            readings = scanned.readings,
            replay_from_ms = oldest,
            alarms_guarded = guarded,
            "write-ahead log: judging and archiving again what the archive does not hold yet"
        );
    }
    let engine_progress = engine.progress();

    // Archive thread.
    let (archive_tx, archive_rx) = archive_queue::archive_queue(settings.archive.roll_rows);
    let archive = std::thread::Builder::new().name("archive".into()).spawn({
        let (counters, hub, clock) = (counters.clone(), hub.clone(), clock.clone());
        let trim = archiver::Trim {
            wal_dir: wal_dir.clone(),
            keep_ids: settings.mqtt.dedup_window,
            journal_keep_ms: settings.journal.keep_ms(),
        };
        move || {
            archiver::archive_loop(
                archive_rx,
                snapshot_rx,
                writer,
                &hub,
                &trim,
                &counters,
                &*clock,
            )
        }
    })?;

    // Backfill thread: judges the late readings the feeder sends it; ends
    // when the feeder does.
    let (backfill_tx, backfill_rx) = crossbeam_channel::bounded::<BackfillMsg>(BACKFILL_QUEUE);
    let backfill_thread = std::thread::Builder::new().name("backfill".into()).spawn({
        let (site, hub, counters) = (live_site.clone(), hub.clone(), counters.clone());
        let config = settings.backfill.clone();
        let epoch_ms = settings.engine.epoch_ms;
        let not_judged = Quarantine::open_named(
            &quarantine_dir,
            "not_judged",
            clock.clone(),
            quarantine::DEFAULT_MAX_BYTES,
            quarantine::DEFAULT_KEEP,
        )?;
        move || {
            backfill::backfill_loop(
                backfill_rx,
                site,
                hub,
                epoch_ms,
                config,
                not_judged,
                counters,
            )
        }
    })?;
    let backfill_link = BackfillLink {
        tx: backfill_tx,
        config: if lead {
            settings.backfill.clone()
        } else {
            // The backfill judges late readings into the hub, which is the
            // lead's: a member archives its late readings, flagged, not
            // judged (counted as such).
            BackfillConfig {
                horizon_s: 0,
                ..settings.backfill.clone()
            }
        },
    };

    // Feeder thread: owns the engine input and the archive sender. When it
    // fails (the rule engine lost a worker or a process of its cluster),
    // the service stops.
    let fatal = CancellationToken::new();
    let watermark = Watermark::new(
        settings.engine.watermark,
        settings.engine.lateness_ms as i64,
    );
    let feeder = std::thread::Builder::new().name("feeder".into()).spawn({
        let (counters, clock, fatal) = (counters.clone(), clock.clone(), fatal.clone());
        move || {
            let drained = feeder::feeder_loop(
                feed_rx,
                engine,
                watermark,
                feeder::Downstream {
                    archive_tx,
                    archive,
                    backfill: backfill_link,
                },
                &latest,
                &counters,
                &*clock,
            );
            if let Err(e) = &drained {
                tracing::error!(error = %format!("{e:#}"), "the feeder stopped");
                fatal.cancel();
            }
            // The last episode is judged before the feeder reports done.
            if backfill_thread.join().is_err() {
                tracing::error!("the backfill thread panicked");
            }
            drained
        }
    })?;
    let (mut replayed, mut unknown) = (0u64, 0u64);
    for logged in recovery {
        let logged = logged.context("reading the write-ahead log back")?;
        let Some(b) = wal_stage::recovered(logged, &catalog, &mut quarantine, &mut unknown)? else {
            continue;
        };
        dedup.insert(b.message);
        replayed += b.readings.len() as u64;
        feed_tx
            .send(FeedMsg::Batch(b))
            .await
            .map_err(|_| anyhow::anyhow!("the feeder stopped while the log was replayed"))?;
    }
    counters
        .readings_recovered
        .store(replayed, Ordering::Relaxed);
    if unknown > 0 {
        tracing::warn!(
            readings = unknown,
            quarantine = %quarantine_file.display(),
            "write-ahead log: readings of points no longer in the site model quarantined"
        );
    }
    // From now on every watched point is expected: one never heard from
    // goes stale like one that fell silent. The lead says so for the
    // whole cluster (the engine takes each point to its owner).
    if lead {
        feed_tx
            .send(FeedMsg::Expect {
                points: watched_points(&site),
                at_ms: clock.now_ms(),
            })
            .await
            .map_err(|_| anyhow::anyhow!("the feeder stopped at start"))?;
    }

    // The clock, the write-ahead stage, and ingest.
    let ingest_stop = CancellationToken::new();
    // Event time advances every epoch (at most every TICK), so a short
    // epoch also means a short wait for a quiet park's last readings.
    let period = TICK.min(Duration::from_millis(settings.engine.epoch_ms));
    let ticker = tokio::spawn(feeder::ticker(
        feed_tx.clone(),
        period,
        clock.clone(),
        ingest_stop.clone(),
    ));
    let (ingest_tx, ingest_rx) = mpsc::channel::<Delivery>(INGEST_QUEUE);
    let stage = WalStage::new(
        wal,
        dedup,
        catalog_rx.clone(),
        feed_tx.clone(),
        Duration::from_secs(settings.archive.roll_secs),
        counters.clone(),
    );
    let wal_stage = tokio::spawn(stage.run(ingest_rx, ingest_stop.clone()));
    let reload = feed_tx;
    let (mqtt_config, enterprises) = ingest_share(&settings, &site);
    let subscriber = Subscriber {
        host: link.host,
        port: link.port,
        credentials: link.credentials,
        tls: link.tls,
        config: mqtt_config,
        catalog: catalog_rx,
        registry: registry_rx,
        health: health.clone(),
        clock: clock.clone(),
        enterprises,
    };
    let (ready_tx, mut ready_rx) = watch::channel(false);
    let ingest = tokio::spawn(subscriber.run(quarantine, ingest_tx, ingest_stop.clone(), ready_tx));
    tokio::spawn(readiness::run(
        readiness::Probe {
            counters: counters.clone(),
            hub: hub.clone(),
            subscribed: ready_rx.clone(),
            engine: engine_progress,
            lateness_ms: settings.engine.lateness_ms as i64,
            data_dir: data_dir.clone(),
            config: settings.health,
            clock: clock.clone(),
        },
        readiness,
        ops_stop.clone(),
    ));
    // Ready means subscribed: what gateways publish from now on is ours.
    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, ready_rx.wait_for(|&r| r)).await {
        Ok(Ok(_)) => tracing::info!("subscribed to telemetry"),
        _ => tracing::warn!(
            broker = %mqtt_addr,
            "not subscribed to the broker yet; ingest keeps retrying in the background"
        ),
    }

    Ok(Running {
        mqtt_addr,
        grpc_addr,
        metrics_addr,
        console_addr,
        archive_dir,
        quarantine_file,
        hub,
        site: live_site,
        counters,
        catalog: catalog_tx,
        registry: registry_tx,
        reload,
        ingest_stop,
        grpc_stop,
        ops_stop,
        ingest,
        wal_stage,
        ticker,
        feeder,
        grpc,
        clock: clock_task,
        broker: link.embedded,
        wall: clock,
        health,
        notifier,
        cluster,
        fatal,
    })
}

impl Running {
    /// Completes when the service cannot go on (the rule engine stopped):
    /// the caller shuts it down, and [`Running::shutdown`] returns the
    /// error.
    pub async fn failed(&self) {
        self.fatal.cancelled().await
    }

    /// The embedded broker, unless an external one is configured.
    pub fn broker(&self) -> Option<&EmbeddedBroker> {
        self.broker.as_ref()
    }

    /// Applies a changed site model without a restart. Points and units
    /// keep their indices (see [`SiteModel::rebase`]); the new rules apply
    /// from the current watermark on; alarm state and the rule state of
    /// every point carry over, so unchanged points keep their alarms. The
    /// engine and the archive learn the new catalog before ingest starts
    /// accepting new points.
    pub async fn reload(&self, mut site: SiteModel) -> anyhow::Result<Reloaded> {
        if self.cluster {
            // Every process would have to switch rules at the same epoch;
            // the cluster restarts instead.
            anyhow::bail!(
                "this park runs as a cluster (engine.cluster): change the configuration of every process and restart them"
            );
        }
        let running = self.catalog.borrow().clone();
        let (added, removed) = site.rebase(&running);
        let catalog = site.catalog.clone();
        let risk = RiskModel::from_site(&site);
        let site_registry = site.registry.clone();
        let expect: Vec<_> = added
            .iter()
            .filter_map(|name| site.catalog.lookup(name))
            .filter(|&p| site.point_rules(p).stale_ms.is_some())
            .collect();
        self.site.replace(site.clone());
        self.reload
            .send(FeedMsg::Reload(Box::new(site)))
            .await
            .map_err(|_| anyhow::anyhow!("the service is stopping"))?;
        if !expect.is_empty() {
            self.reload
                .send(FeedMsg::Expect {
                    points: expect,
                    at_ms: self.wall.now_ms(),
                })
                .await
                .map_err(|_| anyhow::anyhow!("the service is stopping"))?;
        }
        self.hub.set_site(catalog.clone(), risk);
        if let Some(b) = &self.broker {
            b.set_registry(site_registry.clone());
        }
        // The registry first: it already knows the new points' gateways.
        self.health.set_registry(site_registry.clone());
        self.registry.send_replace(site_registry);
        self.catalog.send_replace(catalog);
        metrics::counter!("hazardwatch_config_reloads_total", "result" => "applied").increment(1);
        Ok(Reloaded { added, removed })
    }

    /// Stops in order (MQTT, engine drain, archive seal, gRPC) and returns
    /// the final counters.
    pub async fn shutdown(self) -> anyhow::Result<Summary> {
        // The feeder ends when every sender of its queue is gone.
        drop(self.reload);
        self.ingest_stop.cancel();
        let ingest = self.ingest.await.context("ingest task")?;
        let logged = self.wal_stage.await.context("write-ahead stage")?;
        self.ticker.await.context("ticker task")?;
        let feeder = self.feeder;
        let drained = tokio::task::spawn_blocking(move || feeder.join())
            .await
            .context("joining the feeder")?
            .map_err(|_| anyhow::anyhow!("feeder thread panicked"))?;
        self.grpc_stop.cancel();
        self.ops_stop.cancel();
        let served = self.grpc.await.context("gRPC task")?;
        self.clock.await.context("clock task")?;
        if let Some(n) = self.notifier {
            n.stop().await;
        }
        if let Some(b) = self.broker {
            tokio::task::spawn_blocking(move || drop(b))
                .await
                .context("stopping the embedded broker")?;
        }
        ingest.context("ingest")?;
        logged.context("write-ahead log")?;
        drained.context("draining the engine and archive")?;
        served.context("gRPC server")?;
        Ok(self.counters.summary())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cluster_on_a_shared_broker_deals_out_the_enterprises() {
        let mut config = crate::config::Config::example();
        let share = |c: &crate::config::Config| super::ingest_share(&c.settings, &c.site);
        // Alone: everything, under the configured session.
        let (mqtt, enterprises) = share(&config);
        assert_eq!(
            (mqtt.client_id.as_str(), enterprises),
            ("hazardwatch", None)
        );
        config.settings.engine.cluster = vec!["127.0.0.1:2101".into(), "127.0.0.1:2102".into()];
        // Each process on its own embedded broker: everything that reaches it.
        config.settings.engine.process = 1;
        assert_eq!(share(&config).1, None);
        // A shared external broker: E01 and E03 to process 0, E02 to 1,
        // each under a session of its own.
        config.settings.mqtt.broker = Some("127.0.0.1:1883".into());
        let (mqtt, enterprises) = share(&config);
        assert_eq!(mqtt.client_id, "hazardwatch-1");
        assert_eq!(enterprises, Some(vec!["E02".to_owned()]));
        config.settings.engine.process = 0;
        assert_eq!(
            share(&config).1,
            Some(vec!["E01".to_owned(), "E03".to_owned()])
        );
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        use rustix::process::{Resource, getrlimit};
        let before = getrlimit(Resource::Nofile);
        let now = super::raise_open_files_limit();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(after.current, after.maximum);
        assert_eq!(after.maximum, before.maximum);
        assert_eq!(Some(now), after.current.or(Some(u64::MAX)));
    }
}
