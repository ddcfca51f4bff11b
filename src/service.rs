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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hazardwatch_ingest::client::now_ms;
use hazardwatch_ingest::config::broker_host_port;
use hazardwatch_ingest::{Dedup, Delivery, IngestBatch, Quarantine, Subscriber, broker};
use hazardwatch_proto::{Catalog, Reading};
use hazardwatch_rules::site::UnitState;
use hazardwatch_rules::{Engine, EngineInput, SiteModel};
use hazardwatch_storage::wal::{self, FileIo, Wal, WalConfig, WalIo};
use hazardwatch_storage::{AlarmJournal, ArchiveWriter};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alarm_hub::AlarmHub;
use crate::config::Config;
use crate::durable::{self, WalStage};
use crate::grpc;
use crate::risk::RiskModel;
use crate::telemetry::{self, Latest, Snapshot, Telemetry};

/// Deliveries between ingest and the write-ahead stage.
pub const INGEST_QUEUE: usize = 256;
/// Messages into the feeder thread.
pub const FEEDER_QUEUE: usize = 256;
/// Alarm events archived per checkpoint at most (the rest go with the next).
pub const ALARMS_PER_CHECKPOINT: usize = 200_000;
/// Queries waiting for the archive thread's snapshot.
pub const SNAPSHOT_QUEUE: usize = 64;
/// Batches between the feeder and the archive thread.
pub const ARCHIVE_QUEUE: usize = 256;
/// How long [`start`] waits for the telemetry subscription to be confirmed.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a failed archive checkpoint is tried again.
pub const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);
/// How often live event time advances.
pub const TICK: Duration = Duration::from_millis(100);

/// Counters of one service instance (also exported as Prometheus metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Readings accepted from MQTT.
    pub readings_in: AtomicU64,
    /// Readings that arrived too late for the rules (archived, flagged).
    pub readings_late: AtomicU64,
    /// Alarm raise transitions.
    pub alarms_raised: AtomicU64,
    /// Readings in sealed Parquet files.
    pub archive_rows: AtomicU64,
    /// Alarm events in sealed Parquet files.
    pub archive_alarm_events: AtomicU64,
    /// Bytes of sealed Parquet files of readings.
    pub archive_bytes: AtomicU64,
    /// Sealed Parquet files of readings.
    pub archive_files: AtomicU64,
    /// Readings of redelivered messages, recognised and not taken twice.
    pub readings_duplicate: AtomicU64,
    /// Readings recovered from the write-ahead log at start.
    pub readings_recovered: AtomicU64,
    /// Failed write-ahead log appends.
    pub wal_errors: AtomicU64,
    /// The write-ahead log cannot be written now: nothing is acknowledged.
    pub wal_stalled: AtomicBool,
    /// Failed archive checkpoints (the readings stay in the log).
    pub archive_errors: AtomicU64,
}

/// A snapshot of [`Stats`] at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Readings accepted from MQTT.
    pub readings_in: u64,
    /// Late readings.
    pub readings_late: u64,
    /// Alarms raised.
    pub alarms_raised: u64,
    /// Archived rows.
    pub archive_rows: u64,
    /// Archived bytes.
    pub archive_bytes: u64,
    /// Archive files.
    pub archive_files: u64,
    /// Readings of redelivered messages.
    pub readings_duplicate: u64,
    /// Readings recovered from the write-ahead log at start.
    pub readings_recovered: u64,
}

impl Stats {
    fn summary(&self) -> Summary {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Summary {
            readings_in: g(&self.readings_in),
            readings_late: g(&self.readings_late),
            alarms_raised: g(&self.alarms_raised),
            archive_rows: g(&self.archive_rows),
            archive_bytes: g(&self.archive_bytes),
            archive_files: g(&self.archive_files),
            readings_duplicate: g(&self.readings_duplicate),
            readings_recovered: g(&self.readings_recovered),
        }
    }
}

/// A running service.
pub struct Running {
    /// Where the MQTT broker listens (embedded) or is (external).
    pub mqtt_addr: String,
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` listens, when enabled and installed.
    pub metrics_addr: Option<SocketAddr>,
    /// The archive root (`DATA/archive`).
    pub archive_dir: PathBuf,
    /// The quarantine file.
    pub quarantine_file: PathBuf,
    /// Live alarm state.
    pub hub: Arc<AlarmHub>,
    /// The running site model, for changes through the API.
    pub control: SiteControl,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The site catalog ingest validates against (replaced on reload).
    catalog: watch::Sender<Arc<Catalog>>,
    /// Reloads into the feeder, in order with the readings.
    reload: mpsc::Sender<FeedMsg>,
    ingest_stop: CancellationToken,
    grpc_stop: CancellationToken,
    ingest: JoinHandle<hazardwatch_ingest::Result<()>>,
    wal_stage: JoinHandle<anyhow::Result<()>>,
    ticker: JoinHandle<()>,
    feeder: std::thread::JoinHandle<anyhow::Result<()>>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    clock: JoinHandle<()>,
}

/// Changes the running site model through the API (unit states), by the
/// same path as a reload of the file.
#[derive(Clone)]
pub struct SiteControl {
    site: Arc<std::sync::Mutex<SiteModel>>,
    /// Weak, so that the feeder still ends when the service stops.
    feed: mpsc::WeakSender<FeedMsg>,
}

impl SiteControl {
    /// The running site model.
    fn site(&self) -> std::sync::MutexGuard<'_, SiteModel> {
        self.site.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a unit's operating state from the current watermark on;
    /// returns the state it had and its enterprise and hazard source, or
    /// `None` for a unit that is unknown or whose enterprise is not
    /// `allowed`.
    pub async fn set_unit_state(
        &self,
        unit: &str,
        state: UnitState,
        allowed: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Option<(UnitState, [String; 2])>> {
        let (before, place, model) = {
            let mut site = self.site();
            let Some(u) = site.catalog.unit_lookup(unit) else {
                return Ok(None);
            };
            let meta = site.catalog.unit(u);
            if !allowed(&meta.enterprise) {
                return Ok(None);
            }
            let place = [meta.enterprise.to_string(), meta.hazard_source.to_string()];
            let Some(rules) = site.units.get_mut(u as usize) else {
                return Ok(None);
            };
            let before = std::mem::replace(&mut rules.state, state);
            (before, place, site.clone())
        };
        let stopping = || anyhow::anyhow!("the service is stopping");
        let feed = self.feed.upgrade().ok_or_else(stopping)?;
        feed.send(FeedMsg::Reload(Box::new(model)))
            .await
            .map_err(|_| stopping())?;
        Ok(Some((before, place)))
    }

    /// Replaces the running model (after a reload of the file).
    fn replace(&self, site: SiteModel) {
        *self.site() = site;
    }
}

/// What the feeder thread takes, in order.
pub enum FeedMsg {
    /// Durable readings.
    Batch(IngestBatch),
    /// The wall clock, Unix ms: event time advances to it less the lateness.
    Tick(i64),
    /// A changed site model.
    Reload(Box<SiteModel>),
    /// The write-ahead log started this segment: every reading logged
    /// before it has been sent. The archive checkpoints here.
    Segment(u64),
}

enum ArchiveMsg {
    Rows {
        readings: Vec<Reading>,
        received_ms: i64,
        late: Vec<bool>,
    },
    Checkpoint(u64),
    Catalog(Arc<Catalog>),
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Points new in the site model.
    pub added: Vec<String>,
    /// Points no longer in it (their readings are now quarantined).
    pub removed: Vec<String>,
}

/// Picks a free port for servers that cannot report the one they bound.
fn resolve_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    Ok(l.local_addr()?)
}

fn install_metrics(addr: SocketAddr) -> Option<SocketAddr> {
    let addr = match resolve_port(addr) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "metrics endpoint disabled");
            return None;
        }
    };
    match metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
    {
        Ok(()) => {
            tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
            Some(addr)
        }
        Err(e) => {
            // Only one recorder per process: a second service in one test
            // process keeps counting into the first one's.
            tracing::warn!(error = %e, "metrics endpoint not installed");
            None
        }
    }
}

/// Drives the alarm hub's wall-clock work (shelves expiring) once a second
/// until `stop`.
async fn clock_loop(hub: Arc<AlarmHub>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {
                let hub = hub.clone();
                // The hub commits to the journal: not on the async threads.
                let _ = tokio::task::spawn_blocking(move || hub.tick(now_ms())).await;
            }
        }
    }
}

/// Starts every part of the service.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with(config, Arc::new(FileIo)).await
}

/// [`start`], with the write-ahead log written through `wal_io` (tests
/// make the disk fail with it).
pub async fn start_with(config: Config, wal_io: Arc<dyn WalIo>) -> anyhow::Result<Running> {
    let Config { settings, site } = config;
    let data_dir = settings.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let stats = Arc::new(Stats::default());
    let catalog = site.catalog.clone();

    // MQTT broker (embedded unless an external one is configured).
    let (host, port, mqtt_addr) = match &settings.mqtt.broker {
        Some(b) => {
            let (h, p) = broker_host_port(b)?;
            (h, p, b.clone())
        }
        None => {
            let limit = settings.mqtt.max_payload_bytes * 4 + 1024;
            let addr = tokio::task::spawn_blocking({
                let listen = settings.mqtt.listen;
                move || broker::start_embedded(listen, limit)
            })
            .await??;
            (addr.ip().to_string(), addr.port(), addr.to_string())
        }
    };

    let metrics_addr = if settings.metrics.enabled {
        install_metrics(settings.metrics.listen)
    } else {
        None
    };

    // gRPC first, so a taken port fails before anything else runs.
    let listener = grpc::bind(settings.grpc.listen)
        .await
        .with_context(|| format!("binding gRPC on {}", settings.grpc.listen))?;
    let grpc_addr = listener.local_addr()?;
    let journal_path = data_dir.join("journal").join("alarms.redb");
    let journal = AlarmJournal::open(&journal_path)?;
    let (hub, restored) = AlarmHub::open(
        catalog.clone(),
        journal,
        settings.escalation.clone(),
        RiskModel::from_site(&site),
        now_ms(),
    )?;
    tracing::info!(
        journal = %journal_path.display(),
        last_seq = hub.last_seq(),
        alarms = restored.alarms,
        ended = restored.ended,
        "alarm table restored from the journal"
    );
    let grpc_stop = CancellationToken::new();
    let latest = Arc::new(Latest::default());
    let (snapshot_tx, snapshot_rx) = crossbeam_channel::bounded::<Snapshot>(SNAPSHOT_QUEUE);
    let (catalog_tx, catalog_rx) = watch::channel(catalog.clone());
    let telemetry = Telemetry::new(latest.clone(), catalog_rx.clone(), snapshot_tx);
    let tls = settings.grpc.identity().map_err(anyhow::Error::msg)?;
    let server = grpc::server(tls).context("grpc.tls: certificate or key")?;
    let (feed_tx, feed_rx) = mpsc::channel::<FeedMsg>(FEEDER_QUEUE);
    let control = SiteControl {
        site: Arc::new(std::sync::Mutex::new(site.clone())),
        feed: feed_tx.downgrade(),
    };
    let grpc = tokio::spawn(grpc::serve(
        server,
        listener,
        hub.clone(),
        Arc::new(settings.access.clone()),
        control.clone(),
        telemetry,
        grpc_stop.clone(),
    ));
    let clock = tokio::spawn(clock_loop(hub.clone(), grpc_stop.clone()));
    tracing::info!(%grpc_addr, "gRPC listening");

    // The archive first: finish a checkpoint a crash interrupted, then
    // drop the log segments it covers and read back the rest.
    let archive_dir = data_dir.join("archive");
    let (writer, progress) =
        ArchiveWriter::open(&archive_dir, catalog.clone(), settings.archive.clone())?;
    let wal_dir = data_dir.join("wal");
    std::fs::create_dir_all(&wal_dir).with_context(|| format!("creating {}", wal_dir.display()))?;
    wal::release_before(&wal_dir, progress.wal_segment)?;
    let wal_config = WalConfig {
        // About `roll_rows` readings per segment, so per checkpoint.
        segment_bytes: (settings.archive.roll_rows as u64).saturating_mul(24),
    };
    let (wal, logged) = Wal::open_with(&wal_dir, wal_config, wal_io)?;
    let quarantine_dir = data_dir.join("quarantine");
    let mut quarantine = Quarantine::open(&quarantine_dir)?;
    let quarantine_file = quarantine.path().to_owned();
    let recovered = durable::recover(logged, &catalog, &mut quarantine)?;
    let mut dedup = Dedup::new(settings.mqtt.dedup_window);
    for b in &recovered.batches {
        dedup.insert(b.message);
    }
    if let Some(oldest) = recovered.oldest_ms {
        let guarded = hub.guard_replay(oldest)?;
        let readings: usize = recovered.batches.iter().map(|b| b.readings.len()).sum();
        stats
            .readings_recovered
            .store(readings as u64, Ordering::Relaxed);
        tracing::info!(
            messages = recovered.batches.len(),
            readings,
            unknown_points = recovered.unknown,
            alarms_guarded = guarded,
            "write-ahead log: judging and archiving again what the archive does not hold yet"
        );
    }

    // Rule engine; its events go straight into the hub.
    let sink = {
        let hub = hub.clone();
        let stats = stats.clone();
        Arc::new(move |events: Vec<hazardwatch_proto::RuleEvent>| {
            let out = hub.apply(&events);
            let raised = out
                .iter()
                .filter(|e| e.transition == hazardwatch_proto::pb::Transition::Raised as i32)
                .count();
            stats
                .alarms_raised
                .fetch_add(raised as u64, Ordering::Relaxed);
        })
    };
    let engine = Engine::start_from(&site, &settings.engine, sink, &restored.conditions)?;

    // Archive thread.
    let (archive_tx, archive_rx) = crossbeam_channel::bounded::<ArchiveMsg>(ARCHIVE_QUEUE);
    let archive = std::thread::Builder::new().name("archive".into()).spawn({
        let stats = stats.clone();
        let hub = hub.clone();
        let wal_dir = wal_dir.clone();
        move || archive_loop(archive_rx, snapshot_rx, writer, &hub, &wal_dir, &stats)
    })?;

    // Feeder thread: owns the engine input and the archive sender.
    let feeder = std::thread::Builder::new().name("feeder".into()).spawn({
        let stats = stats.clone();
        move || feeder_loop(feed_rx, engine, archive_tx, archive, &latest, &stats)
    })?;
    for b in recovered.batches {
        feed_tx
            .send(FeedMsg::Batch(b))
            .await
            .map_err(|_| anyhow::anyhow!("the feeder stopped while the log was replayed"))?;
    }

    // The clock, the write-ahead stage, and ingest.
    let ingest_stop = CancellationToken::new();
    // Event time advances every epoch (at most every TICK), so a short
    // epoch also means a short wait for a quiet park's last readings.
    let period = TICK.min(Duration::from_millis(settings.engine.epoch_ms));
    let ticker = tokio::spawn(ticker(feed_tx.clone(), period, ingest_stop.clone()));
    let (ingest_tx, ingest_rx) = mpsc::channel::<Delivery>(INGEST_QUEUE);
    let stage = WalStage::new(
        wal,
        dedup,
        catalog_rx.clone(),
        feed_tx.clone(),
        Duration::from_secs(settings.archive.roll_secs),
        stats.clone(),
    );
    let wal_stage = tokio::spawn(stage.run(ingest_rx, ingest_stop.clone()));
    let reload = feed_tx;
    let subscriber = Subscriber {
        host,
        port,
        config: settings.mqtt.clone(),
        catalog: catalog_rx,
    };
    let (ready_tx, mut ready_rx) = watch::channel(false);
    let ingest = tokio::spawn(subscriber.run(quarantine, ingest_tx, ingest_stop.clone(), ready_tx));
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
        archive_dir,
        quarantine_file,
        hub,
        control,
        stats,
        catalog: catalog_tx,
        reload,
        ingest_stop,
        grpc_stop,
        ingest,
        wal_stage,
        ticker,
        feeder,
        grpc,
        clock,
    })
}

/// Advances live event time every `period` until `stop`.
async fn ticker(out: mpsc::Sender<FeedMsg>, period: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if out.send(FeedMsg::Tick(now_ms())).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn feeder_loop(
    mut rx: mpsc::Receiver<FeedMsg>,
    mut engine: Engine,
    archive_tx: crossbeam_channel::Sender<ArchiveMsg>,
    archive: std::thread::JoinHandle<anyhow::Result<()>>,
    latest: &Latest,
    stats: &Stats,
) -> anyhow::Result<()> {
    let mut late = Vec::new();
    // Live from the first tick on: recovered batches come before it and are
    // judged against the watermark they would have met.
    let mut live = false;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            FeedMsg::Batch(b) => {
                let input: &mut EngineInput = engine.input();
                input.send(&b.readings, &mut late);
                if live {
                    // Event time also follows the wall clock between ticks,
                    // so a busy park's readings are judged as soon as the
                    // lateness bound allows, not at the next tick.
                    let lateness = input.lateness_ms();
                    input.advance_to(now_ms() - lateness);
                }
                latest.update(&b.readings);
                let n_late = late.iter().filter(|&&l| l).count() as u64;
                stats
                    .readings_in
                    .fetch_add(b.readings.len() as u64, Ordering::Relaxed);
                if n_late > 0 {
                    stats.readings_late.fetch_add(n_late, Ordering::Relaxed);
                    metrics::counter!("hazardwatch_readings_late_total").increment(n_late);
                }
                let rows = ArchiveMsg::Rows {
                    readings: b.readings,
                    received_ms: b.received_ms,
                    late: std::mem::take(&mut late),
                };
                if archive_tx.send(rows).is_err() {
                    anyhow::bail!("archive thread stopped");
                }
            }
            FeedMsg::Reload(site) => {
                engine.input().reload(&site);
                if archive_tx.send(ArchiveMsg::Catalog(site.catalog)).is_err() {
                    anyhow::bail!("archive thread stopped");
                }
            }
            FeedMsg::Tick(now) => {
                live = true;
                let input = engine.input();
                let lateness = input.lateness_ms();
                input.advance_to(now - lateness);
            }
            FeedMsg::Segment(segment) => {
                if archive_tx.send(ArchiveMsg::Checkpoint(segment)).is_err() {
                    anyhow::bail!("archive thread stopped");
                }
            }
        }
    }
    // Input has ended: nothing more can arrive, so event time up to now is
    // complete. Judge what is left, then stop the engine.
    engine.input().advance_to(now_ms());
    let drained = engine.finish();
    // Seal the archive whatever happened to the engine.
    drop(archive_tx);
    let sealed = archive
        .join()
        .map_err(|_| anyhow::anyhow!("archive thread panicked"))?;
    drained.context("rule engine")?;
    sealed
}

fn archive_loop(
    rx: crossbeam_channel::Receiver<ArchiveMsg>,
    snapshots: crossbeam_channel::Receiver<Snapshot>,
    mut writer: ArchiveWriter,
    hub: &AlarmHub,
    wal_dir: &std::path::Path,
    stats: &Stats,
) -> anyhow::Result<()> {
    let record = |sealed: &[hazardwatch_storage::SealedFile]| {
        for f in sealed {
            if f.dataset == hazardwatch_storage::Dataset::Alarms {
                stats
                    .archive_alarm_events
                    .fetch_add(f.rows as u64, Ordering::Relaxed);
                metrics::counter!("hazardwatch_archive_alarm_events_total")
                    .increment(f.rows as u64);
                continue;
            }
            stats.archive_files.fetch_add(1, Ordering::Relaxed);
            stats
                .archive_rows
                .fetch_add(f.rows as u64, Ordering::Relaxed);
            stats.archive_bytes.fetch_add(f.bytes, Ordering::Relaxed);
            metrics::counter!("hazardwatch_archive_rows_total").increment(f.rows as u64);
            metrics::counter!("hazardwatch_archive_bytes_total").increment(f.bytes);
            metrics::counter!("hazardwatch_archive_files_total").increment(1);
            tracing::debug!(path = %f.path.display(), rows = f.rows, bytes = f.bytes, "sealed");
        }
    };
    let report = |what: &str, e: &dyn std::fmt::Display| {
        stats.archive_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("hazardwatch_archive_errors_total").increment(1);
        tracing::error!(error = %e, "archive {what} failed; the readings stay in the write-ahead log and the next checkpoint retries");
    };
    // Seals the buffered readings and the alarm events journaled since, as
    // covering the log before `segment`; `None` (reported) if that failed.
    let seal = |writer: &mut ArchiveWriter, segment: u64, what: &str| {
        let events = match hub.journal_after(writer.progress().alarms_seq, ALARMS_PER_CHECKPOINT) {
            Ok(e) => e,
            Err(e) => {
                report("reading the alarm journal", &e);
                Vec::new()
            }
        };
        match writer.checkpoint(segment, &events) {
            Ok(sealed) => {
                record(&sealed);
                Some(sealed)
            }
            Err(e) => {
                report(what, &e);
                None
            }
        }
    };
    // A checkpoint that failed, retried every CHECKPOINT_RETRY even when
    // nothing new arrives.
    let mut failed: Option<u64> = None;
    loop {
        let msg = crossbeam_channel::select! {
            recv(rx) -> msg => match msg {
                Ok(msg) => msg,
                Err(_) => break,
            },
            recv(snapshots) -> q => {
                if let Ok(q) = q {
                    let taken = telemetry::take(&writer, &q);
                    // The caller may have gone; nothing to do then.
                    let _ = q.reply.send(taken);
                }
                continue;
            },
            default(CHECKPOINT_RETRY) => match failed.take() {
                Some(segment) => ArchiveMsg::Checkpoint(segment),
                None => continue,
            },
        };
        match msg {
            ArchiveMsg::Rows {
                readings,
                received_ms,
                late,
            } => writer.append(&readings, received_ms, &late),
            ArchiveMsg::Catalog(catalog) => writer.set_catalog(catalog),
            ArchiveMsg::Checkpoint(segment) => {
                let Some(sealed) = seal(&mut writer, segment, "checkpoint") else {
                    failed = Some(segment);
                    continue;
                };
                failed = None;
                if let Err(e) = wal::release_before(wal_dir, writer.progress().wal_segment) {
                    tracing::warn!(error = %e, "write-ahead log: cannot delete archived segments");
                }
                let mut touched: Vec<std::path::PathBuf> = sealed
                    .iter()
                    .filter_map(|f| f.path.parent().map(std::path::Path::to_owned))
                    .collect();
                touched.sort();
                touched.dedup();
                if let Err(e) = writer.compact(Some(&touched)) {
                    report("compaction", &e);
                }
                match writer.expire(now_ms()) {
                    Ok(gone) => {
                        for d in gone {
                            tracing::info!(partition = %d.display(), "archive: deleted past the retention");
                        }
                    }
                    Err(e) => report("retention", &e),
                }
            }
        }
    }
    let left = writer.buffered_rows();
    if left == 0 {
        // The engine has finished: the alarm events of its last epochs are
        // journaled now. Archive them with no readings (so the log's
        // progress stays exactly where the readings put it).
        let segment = writer.progress().wal_segment;
        seal(&mut writer, segment, "archiving the last alarm events");
    } else {
        tracing::warn!(
            readings = left,
            "archive: readings not sealed at shutdown; they are in the write-ahead log and are archived at the next start"
        );
    }
    Ok(())
}

impl Running {
    /// Applies a changed site model without a restart. Points and units
    /// keep their indices (see [`SiteModel::rebase`]); the new rules apply
    /// from the current watermark on; alarm state and the rule state of
    /// every point carry over, so unchanged points keep their alarms. The
    /// engine and the archive learn the new catalog before ingest starts
    /// accepting new points.
    pub async fn reload(&self, mut site: SiteModel) -> anyhow::Result<Reloaded> {
        let running = self.catalog.borrow().clone();
        let (added, removed) = site.rebase(&running);
        let catalog = site.catalog.clone();
        let risk = RiskModel::from_site(&site);
        self.control.replace(site.clone());
        self.reload
            .send(FeedMsg::Reload(Box::new(site)))
            .await
            .map_err(|_| anyhow::anyhow!("the service is stopping"))?;
        self.hub.set_site(catalog.clone(), risk);
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
        let served = self.grpc.await.context("gRPC task")?;
        self.clock.await.context("clock task")?;
        ingest.context("ingest")?;
        logged.context("write-ahead log")?;
        drained.context("draining the engine and archive")?;
        served.context("gRPC server")?;
        Ok(self.stats.summary())
    }
}
