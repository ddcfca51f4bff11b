//! Shared fixtures of the end-to-end tests: a service started on free ports
//! in a temporary data directory, a real tonic client, and an independent
//! reader of the Parquet archive; MQTT clients as gateways are ([`mqtt`]);
//! an external broker and a PKI ([`external`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow_array::{Array, BooleanArray, Float64Array, StringArray, TimestampMillisecondArray};
use hazardwatch::config::Config;
use hazardwatch::service::{self, Running};
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_client::AlarmServiceClient;
use hazardwatch_proto::pb::site_service_client::SiteServiceClient;
use hazardwatch_rules::Source;
use hazardwatch_storage::wal::{FileIo, WalIo};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

pub mod external;
pub mod http;
pub mod mqtt;
pub mod powercut;
pub mod proxy;
pub mod webhook;

pub use external::{Mosquitto, MosquittoSecurity, Pki};
pub use mqtt::{Burst, Gateway, Identity, Probe};

/// A small park for tests: no on-delays, a short lateness, so alarms come
/// within a few hundred milliseconds of the readings.
pub const TEST_PARK: &str = r#"
[mqtt]
listen = "127.0.0.1:0"
max_payload_bytes = 4096

[grpc]
listen = "127.0.0.1:0"

[metrics]
enabled = false

[engine]
workers = 2
lateness_ms = 300
epoch_ms = 50

[archive]
roll_secs = 3600

[park]
id = "TEST"

[[enterprise]]
id = "E01"
[[enterprise.hazard_source]]
id = "E01-HS1"
grade = 2
[[enterprise.hazard_source.unit]]
id = "T101"
[[enterprise.hazard_source.unit.point]]
id = "T101.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
l = 2.0
h = 18.0
hh = 19.0
on_delay_s = 0
off_delay_s = 0
[[enterprise.hazard_source.unit.point]]
id = "T101.PT"
kind = "pressure"
eng_unit = "kPa"
range = [0.0, 1000.0]
h = 600.0
on_delay_s = 0

[[enterprise.hazard_source.unit]]
id = "E01-GAS"
[[enterprise.hazard_source.unit.point]]
id = "E01-GT01"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = 20.0
hh = 40.0
off_delay_s = 0

[[enterprise]]
id = "E02"
[[enterprise.hazard_source]]
id = "E02-HS1"
grade = 3
[[enterprise.hazard_source.unit]]
id = "T201"
[[enterprise.hazard_source.unit.point]]
id = "T201.TE"
kind = "temperature"
eng_unit = "degC"
range = [-20.0, 200.0]
h = 45.0
on_delay_s = 0
off_delay_s = 0
"#;

/// A running service in its own temporary data directory.
pub struct TestService {
    /// The service.
    pub running: Running,
    /// Its data directory (deleted on drop).
    pub data: tempfile::TempDir,
}

impl TestService {
    /// Starts the service on [`TEST_PARK`].
    pub async fn start() -> anyhow::Result<TestService> {
        Self::start_in(tempfile::tempdir()?).await
    }

    /// Stops the service and starts it again on the same data directory
    /// (new ports).
    pub async fn restart(self) -> anyhow::Result<TestService> {
        self.restart_text(TEST_PARK).await
    }

    /// Stops the service and starts it again on the same data directory
    /// with configuration `text` (new ports).
    pub async fn restart_text(self, text: &str) -> anyhow::Result<TestService> {
        let TestService { running, data } = self;
        running.shutdown().await?;
        Self::start_text(data, text).await
    }

    /// Starts the service on [`TEST_PARK`] with `data` as its data
    /// directory (which may hold a journal and an archive already).
    pub async fn start_in(data: tempfile::TempDir) -> anyhow::Result<TestService> {
        Self::start_text(data, TEST_PARK).await
    }

    /// Starts the service on a configuration text (e.g. [`TEST_PARK`] with
    /// tables added).
    pub async fn start_text(data: tempfile::TempDir, text: &str) -> anyhow::Result<TestService> {
        Self::start_with(data, text, Arc::new(FileIo)).await
    }

    /// Starts the service on a configuration text, its write-ahead log
    /// written through `wal_io`.
    pub async fn start_with(
        data: tempfile::TempDir,
        text: &str,
        wal_io: Arc<dyn WalIo>,
    ) -> anyhow::Result<TestService> {
        let env = service::Environment {
            wal_io,
            ..Default::default()
        };
        Self::start_env(data, text, env).await
    }

    /// Starts the service on a configuration text in `env` (its clock, its
    /// disk).
    pub async fn start_env(
        data: tempfile::TempDir,
        text: &str,
        env: service::Environment,
    ) -> anyhow::Result<TestService> {
        let src = Source {
            path: "test-park.toml".into(),
            text: text.into(),
        };
        let mut config = Config::from_source(&src)?;
        config.settings.data_dir = data.path().to_owned();
        let running = service::start_with(config, env).await?;
        Ok(TestService { running, data })
    }

    /// The broker's host and port.
    pub fn broker(&self) -> (String, u16) {
        let (h, p) = self
            .running
            .mqtt_addr
            .rsplit_once(':')
            .expect("an address the service resolved");
        (
            h.to_owned(),
            p.parse().expect("a port the service resolved"),
        )
    }

    /// A tonic client of the alarm service.
    pub async fn alarms(&self) -> anyhow::Result<AlarmServiceClient<Channel>> {
        Ok(AlarmServiceClient::connect(format!("http://{}", self.running.grpc_addr)).await?)
    }

    /// A tonic client of the alarm service that presents a bearer token.
    pub async fn alarms_as(
        &self,
        token: &str,
    ) -> anyhow::Result<AlarmServiceClient<InterceptedService<Channel, Bearer>>> {
        alarms_client(self.running.grpc_addr, token).await
    }

    /// A tonic client of the site service that presents a bearer token.
    pub async fn site_as(
        &self,
        token: &str,
    ) -> anyhow::Result<SiteServiceClient<InterceptedService<Channel, Bearer>>> {
        site_client(self.running.grpc_addr, token).await
    }

    /// A tonic client and a Subscribe stream of every alarm from now on
    /// (after the active ones).
    pub async fn subscribe_all(
        &self,
    ) -> anyhow::Result<(
        AlarmServiceClient<Channel>,
        tonic::Streaming<pb::AlarmEvent>,
    )> {
        let mut alarms = self.alarms().await?;
        let stream = alarms
            .subscribe(pb::SubscribeRequest {
                filter: all_alarms(),
                resume_after: 0,
            })
            .await?
            .into_inner();
        Ok((alarms, stream))
    }

    /// Waits until the service has accepted at least `n` readings.
    pub async fn wait_for_readings(&self, n: u64) -> anyhow::Result<()> {
        let stats = &self.running.counters;
        wait_until(Duration::from_secs(20), || {
            stats.readings_in.load(std::sync::atomic::Ordering::Relaxed) >= n
        })
        .await
        .with_context(|| format!("waiting for {n} readings"))
    }
}

/// A tonic client of the alarm service at `addr` (plaintext) that
/// presents a bearer token.
pub async fn alarms_client(
    addr: std::net::SocketAddr,
    token: &str,
) -> anyhow::Result<AlarmServiceClient<InterceptedService<Channel, Bearer>>> {
    let (channel, bearer) = bearer_channel(addr, token).await?;
    Ok(AlarmServiceClient::with_interceptor(channel, bearer))
}

/// A tonic client of the site service at `addr` (plaintext) that presents
/// a bearer token.
pub async fn site_client(
    addr: std::net::SocketAddr,
    token: &str,
) -> anyhow::Result<SiteServiceClient<InterceptedService<Channel, Bearer>>> {
    let (channel, bearer) = bearer_channel(addr, token).await?;
    Ok(SiteServiceClient::with_interceptor(channel, bearer))
}

/// A plaintext channel to `addr` and the interceptor presenting `token`.
async fn bearer_channel(
    addr: std::net::SocketAddr,
    token: &str,
) -> anyhow::Result<(Channel, Bearer)> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok((channel, Bearer(format!("Bearer {token}").parse()?)))
}

/// A client interceptor adding `authorization: Bearer ...` to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A filter that passes every alarm that is annunciated (all enterprises,
/// all priorities, all escalation levels; suppressed, shelved and
/// out-of-service ones left out).
pub fn all_alarms() -> Option<pb::AlarmFilter> {
    Some(pb::AlarmFilter::default())
}

/// Reads the next alarm event from a Subscribe stream, with a time limit,
/// passing over risk colour changes (see [`next_feed_event`]).
pub async fn next_event(
    stream: &mut tonic::Streaming<pb::AlarmEvent>,
) -> anyhow::Result<pb::AlarmEvent> {
    loop {
        let e = next_feed_event(stream).await?;
        if e.transition != pb::Transition::RiskChanged as i32 {
            return Ok(e);
        }
    }
}

/// Reads the next event of any kind from a Subscribe stream, with a time
/// limit.
pub async fn next_feed_event(
    stream: &mut tonic::Streaming<pb::AlarmEvent>,
) -> anyhow::Result<pb::AlarmEvent> {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .context("no alarm event in time")??
        .context("stream ended")
}

/// One archived reading as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedRow {
    /// Point id.
    pub point: String,
    /// Event time, ms.
    pub ts: i64,
    /// Value.
    pub value: f64,
    /// Late flag.
    pub late: bool,
    /// Its quality as archived (`good` ... `offline`, `expected`).
    pub quality: String,
    /// Path relative to the archive's readings directory (partition).
    pub partition: String,
}

/// All `*.parquet` files under `dir`, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads every archived reading and offline marker with the parquet crate's
/// own reader; the `expected` markers (one per watched point each time the
/// service starts) are left out, see [`read_archive_all`].
pub fn read_archive(archive: &Path) -> anyhow::Result<Vec<ArchivedRow>> {
    let mut rows = read_archive_all(archive)?;
    rows.retain(|r| r.quality != "expected");
    Ok(rows)
}

/// Reads every archived row, the service's markers included.
pub fn read_archive_all(archive: &Path) -> anyhow::Result<Vec<ArchivedRow>> {
    let readings = archive.join("readings");
    let mut rows = Vec::new();
    for path in parquet_files(&readings) {
        let partition = path
            .parent()
            .and_then(|p| p.strip_prefix(&readings).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let file = std::fs::File::open(&path)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
        for batch in reader {
            let batch = batch?;
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .with_context(|| format!("column {name} missing in {}", path.display()))
            };
            let point = col("point")?
                .as_any()
                .downcast_ref::<StringArray>()
                .context("point is utf8")?
                .clone();
            let ts = col("ts")?
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .context("ts is timestamp(ms)")?
                .clone();
            let value = col("value")?
                .as_any()
                .downcast_ref::<Float64Array>()
                .context("value is float64")?
                .clone();
            let late = col("late")?
                .as_any()
                .downcast_ref::<BooleanArray>()
                .context("late is bool")?
                .clone();
            let quality = col("quality")?
                .as_any()
                .downcast_ref::<StringArray>()
                .context("quality is utf8")?
                .clone();
            for i in 0..batch.num_rows() {
                anyhow::ensure!(!point.is_null(i), "null point");
                rows.push(ArchivedRow {
                    point: point.value(i).to_owned(),
                    ts: ts.value(i),
                    value: value.value(i),
                    late: late.value(i),
                    quality: quality.value(i).to_owned(),
                    partition: partition.clone(),
                });
            }
        }
    }
    Ok(rows)
}

/// Counts archived rows per (point, ts, value bits).
pub fn row_counts(rows: &[ArchivedRow]) -> BTreeMap<(String, i64, u64), usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry((r.point.clone(), r.ts, r.value.to_bits()))
            .or_insert(0) += 1;
    }
    m
}

/// Wall clock, Unix ms.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The wall clock stepped by an offset a test sets: time runs on as usual
/// and jumps when the test says (days ahead for retention, back for a
/// clock fault).
#[derive(Debug, Default)]
pub struct SteppedClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl SteppedClock {
    /// Steps the clock by `ms` (negative: back).
    pub fn step(&self, ms: i64) {
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl hazardwatch_proto::clock::Clock for SteppedClock {
    fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A disk for the write-ahead log or the alarm journal that, once filled,
/// fails every write with ENOSPC (the log's after writing half of it, as a
/// full disk does) until it is freed.
#[derive(Debug, Default)]
pub struct FillableDisk {
    full: std::sync::atomic::AtomicBool,
}

impl FillableDisk {
    /// From now on, writes fail.
    pub fn fill(&self) {
        self.full.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on, writes succeed.
    pub fn free(&self) {
        self.full.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl WalIo for FillableDisk {
    fn write(&self, file: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(std::io::Error::from_raw_os_error(28));
        }
        file.write_all(bytes)
    }
}

impl hazardwatch_storage::JournalFaults for FillableDisk {
    fn before_write(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        Ok(())
    }
}

/// The sequence number of every alarm event in the archive's `alarms`
/// dataset, as many times as it is there.
pub fn archived_alarm_seqs(archive: &Path) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for path in parquet_files(&archive.join("alarms")) {
        let file = std::fs::File::open(&path)?;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
            let batch = batch?;
            let seq = batch
                .column_by_name("seq")
                .and_then(|c| c.as_any().downcast_ref::<arrow_array::UInt64Array>())
                .with_context(|| format!("{}: no seq column", path.display()))?;
            seqs.extend(seq.values().iter().copied());
        }
    }
    Ok(seqs)
}

/// A self-signed certificate for `localhost` and its key, written as PEM
/// into `dir`: (certificate file, key file).
pub fn self_signed_localhost(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, issued.cert.pem())?;
    std::fs::write(&key, issued.signing_key.serialize_pem())?;
    Ok((cert, key))
}

/// A loopback address nothing listens on now (bound, then let go), for a
/// process that must be told its port before it starts.
pub fn free_loopback_addr() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
