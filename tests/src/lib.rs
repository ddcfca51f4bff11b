//! Shared fixtures of the end-to-end tests: a service started on free ports
//! in a temporary data directory, a gateway that publishes over real MQTT,
//! a real tonic client, and an independent reader of the Parquet archive.

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
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::task::JoinHandle;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

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
        let TestService { running, data } = self;
        running.shutdown().await?;
        Self::start_in(data).await
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
        let src = Source {
            path: "test-park.toml".into(),
            text: text.into(),
        };
        let mut config = Config::from_source(&src)?;
        config.settings.data_dir = data.path().to_owned();
        let env = service::Environment {
            wal_io,
            ..Default::default()
        };
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
        let channel = Channel::from_shared(format!("http://{}", self.running.grpc_addr))?
            .connect()
            .await?;
        let header = format!("Bearer {token}").parse()?;
        Ok(AlarmServiceClient::with_interceptor(
            channel,
            Bearer(header),
        ))
    }

    /// A tonic client of the site service that presents a bearer token.
    pub async fn site_as(
        &self,
        token: &str,
    ) -> anyhow::Result<SiteServiceClient<InterceptedService<Channel, Bearer>>> {
        let channel = Channel::from_shared(format!("http://{}", self.running.grpc_addr))?
            .connect()
            .await?;
        let header = format!("Bearer {token}").parse()?;
        Ok(SiteServiceClient::with_interceptor(channel, Bearer(header)))
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

/// A gateway: a rumqttc client publishing at QoS 1.
pub struct Gateway {
    client: AsyncClient,
    acked: tokio::sync::watch::Receiver<u64>,
    poller: JoinHandle<()>,
    sent: u64,
}

impl Gateway {
    /// Connects to the broker.
    pub async fn connect(host: &str, port: u16, id: &str) -> anyhow::Result<Gateway> {
        Self::connect_with_will(host, port, id, None).await
    }

    /// Connects with a last will: `offline` on `will_topic`, which the broker
    /// publishes when the connection drops without a DISCONNECT.
    pub async fn connect_with_will(
        host: &str,
        port: u16,
        id: &str,
        will_topic: Option<&str>,
    ) -> anyhow::Result<Gateway> {
        Self::connect_as(host, port, id, None, will_topic).await
    }

    /// Connects as a registered gateway: client id and user name `id`,
    /// with its password.
    pub async fn connect_as(
        host: &str,
        port: u16,
        id: &str,
        password: Option<&str>,
        will_topic: Option<&str>,
    ) -> anyhow::Result<Gateway> {
        let mut options = MqttOptions::new(id, host, port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some(p) = password {
            options.set_credentials(id, p);
        }
        if let Some(topic) = will_topic {
            options.set_last_will(LastWill::new(topic, "offline", QoS::AtLeastOnce, false));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, acked) = tokio::sync::watch::channel(0u64);
        let poller = tokio::spawn(async move {
            let mut n = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        n += 1;
                        let _ = tx.send(n);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Gateway {
            client,
            acked,
            poller,
            sent: 0,
        })
    }

    /// Publishes and waits for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        self.sent += 1;
        let want = self.sent;
        tokio::time::timeout(Duration::from_secs(10), self.acked.wait_for(|&n| n >= want))
            .await
            .context("no PUBACK from the broker")??;
        Ok(())
    }

    /// Publishes a JSON batch as gateway `GW1` of `enterprise` and waits for
    /// the PUBACK.
    pub async fn publish_json(
        &mut self,
        enterprise: &str,
        readings: serde_json::Value,
    ) -> anyhow::Result<()> {
        let json = serde_json::json!({"gateway": "GW1", "readings": readings});
        self.publish(
            &format!("hw/v1/{enterprise}/GW1/telemetry"),
            serde_json::to_vec(&json)?,
        )
        .await
    }

    /// Drops the connection without a DISCONNECT, as a gateway losing power
    /// or its link does: the broker then publishes its last will.
    pub async fn cut(mut self) {
        self.poller.abort();
        let _ = (&mut self.poller).await;
    }

    /// Disconnects.
    pub async fn close(mut self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.poller).await;
    }
}

impl Drop for Gateway {
    /// Stops the event loop: a gateway left behind must not reconnect to
    /// its port once its service is gone, where another test's service may
    /// be listening by then.
    fn drop(&mut self) {
        self.poller.abort();
    }
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

/// How [`Mosquitto::start_secured`] locks the broker down.
#[derive(Debug, Clone, Default)]
pub struct MosquittoSecurity {
    /// The ACL file's text (e.g. from `hazardwatch gateway mosquitto-acl`).
    pub acl: String,
    /// User names and passwords, hashed into mosquitto's password file.
    pub users: Vec<(String, String)>,
    /// CA, certificate and key files of a TLS-only listener.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

/// A Debian mosquitto broker on a free port, stopped on drop: the external
/// broker that keeps a subscriber's persistent session (and its queued
/// QoS 1 messages) while the service is down.
pub struct Mosquitto {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto, or returns `None` when it is not installed and
    /// `HAZARDWATCH_REQUIRE_MOSQUITTO` is not set (the test command sets it
    /// after installing mosquitto, so there the test cannot be skipped).
    pub fn start() -> anyhow::Result<Option<Mosquitto>> {
        Self::start_secured(None)
    }

    /// Starts mosquitto as a park would run it in production: no anonymous
    /// clients, a password file, an ACL file, client ids bound to user
    /// names, and (with `tls`) TLS only. `None` without mosquitto, as
    /// [`Mosquitto::start`].
    pub fn start_secured(
        security: Option<&MosquittoSecurity>,
    ) -> anyhow::Result<Option<Mosquitto>> {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists());
        let Some(bin) = bin else {
            anyhow::ensure!(
                std::env::var_os("HAZARDWATCH_REQUIRE_MOSQUITTO").is_none(),
                "mosquitto is required (HAZARDWATCH_REQUIRE_MOSQUITTO) but not installed"
            );
            eprintln!("mosquitto not installed: skipping (apt-get install mosquitto)");
            return Ok(None);
        };
        let port = hazardwatch_ingest::broker::resolve_port("127.0.0.1:0".parse()?)?.port();
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        // Queue without limit for a disconnected persistent session: the
        // default drops QoS 1 messages past 1000.
        let mut text = format!(
            "per_listener_settings false\nlistener {port} 127.0.0.1\npersistence false\n\
             max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 100\n\
             log_dest stderr\nlog_type error\nlog_type warning\n"
        );
        match security {
            None => text.push_str("allow_anonymous true\n"),
            Some(sec) => {
                let passwd = dir.path().join("passwd");
                std::fs::write(&passwd, "")?;
                for (user, password) in &sec.users {
                    let status = std::process::Command::new("mosquitto_passwd")
                        .arg("-b")
                        .arg(&passwd)
                        .arg(user)
                        .arg(password)
                        .status()
                        .context("running mosquitto_passwd")?;
                    anyhow::ensure!(status.success(), "mosquitto_passwd failed for {user}");
                }
                let acl = dir.path().join("acl");
                std::fs::write(&acl, &sec.acl)?;
                text.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\nacl_file {}\nuse_username_as_clientid true\n",
                    passwd.display(),
                    acl.display()
                ));
                if let Some((ca, cert, key)) = &sec.tls {
                    text.push_str(&format!(
                        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate false\n",
                        ca.display(),
                        cert.display(),
                        key.display()
                    ));
                }
            }
        }
        std::fs::write(&conf, text)?;
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < until,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(Mosquitto {
            child,
            port,
            _dir: dir,
        }))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MQTT client that reports how the broker answered it, for the
/// trusted-edge tests: it never reconnects, so a refusal or a
/// disconnection is seen, not hidden by a retry.
pub struct Probe {
    /// The client.
    pub client: AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<Result<Packet, String>>,
    poller: JoinHandle<()>,
}

/// Who a [`Probe`] claims to be.
#[derive(Debug, Clone, Default)]
pub struct Identity<'a> {
    /// MQTT client id.
    pub client_id: &'a str,
    /// User name and password.
    pub login: Option<(&'a str, &'a str)>,
    /// Last will topic (payload `offline`, or `will_payload`).
    pub will: Option<&'a str>,
    /// The last will's payload, when not `offline`.
    pub will_payload: Option<Vec<u8>>,
    /// TLS towards the broker.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Probe {
    /// Connects and waits for the CONNACK: `Err` with the reason when the
    /// broker refuses or drops the connection (or TLS fails).
    pub async fn connect(host: &str, port: u16, id: Identity<'_>) -> Result<Probe, String> {
        let mut options = MqttOptions::new(id.client_id, host, port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((u, p)) = id.login {
            options.set_credentials(u, p);
        }
        if let Some(topic) = id.will {
            let payload = id.will_payload.unwrap_or_else(|| b"offline".to_vec());
            options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, false));
        }
        if let Some(tls) = id.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let poller = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let answer = tokio::time::timeout(Duration::from_secs(20), events.recv()).await;
        match answer {
            Ok(Some(Ok(Packet::ConnAck(ack))))
                if ack.code == rumqttc::ConnectReturnCode::Success =>
            {
                Ok(Probe {
                    client,
                    events,
                    poller,
                })
            }
            Ok(Some(Ok(other))) => Err(format!("{other:?}")),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err("closed".into()),
            Err(_) => Err("no answer in 20 s".into()),
        }
    }

    /// The next packet from the broker within `limit`: `Ok(None)` when
    /// nothing came, `Err` when the connection ended.
    pub async fn next(&mut self, limit: Duration) -> Result<Option<Packet>, String> {
        match tokio::time::timeout(limit, self.events.recv()).await {
            Err(_) => Ok(None),
            Ok(None) => Err("closed".into()),
            Ok(Some(r)) => r.map(Some),
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK: `Err` when the broker
    /// disconnects instead.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match self.next(Duration::from_secs(10)).await? {
                Some(Packet::PubAck(_)) => return Ok(()),
                Some(_) => {}
                None => return Err("no PUBACK in 10 s".into()),
            }
        }
    }

    /// Subscribes and returns the broker's answer (the SUBACK's codes).
    pub async fn subscribe(
        &mut self,
        filter: &str,
    ) -> Result<Vec<rumqttc::SubscribeReasonCode>, String> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match self.next(Duration::from_secs(10)).await? {
                Some(Packet::SubAck(ack)) => return Ok(ack.return_codes),
                Some(_) => {}
                None => return Err("no SUBACK in 10 s".into()),
            }
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// A gateway that publishes as fast as the broker acknowledges (QoS 1, 100
/// in flight), counting the PUBACKs: for load and backpressure tests.
pub struct Burst {
    /// The client: publish with it.
    pub client: AsyncClient,
    /// PUBACKs received.
    pub acked: Arc<std::sync::atomic::AtomicI64>,
    poller: JoinHandle<()>,
}

impl Burst {
    /// Connects anonymously as `client_id`.
    pub fn connect(host: &str, port: u16, client_id: &str) -> Burst {
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let acked = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let poller = tokio::spawn({
            let acked = acked.clone();
            async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        });
        Burst {
            client,
            acked,
            poller,
        }
    }

    /// PUBACKs received so far.
    pub fn acked(&self) -> i64 {
        self.acked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// A test PKI: a CA for the gateways (which also signs the broker's
/// certificate), and another CA nobody trusts.
pub struct Pki {
    /// Where the files are written.
    pub dir: tempfile::TempDir,
    /// The park's CA.
    pub ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// A CA nobody trusts.
    pub stranger: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    /// Two fresh CAs in a temporary directory.
    pub fn new() -> anyhow::Result<Pki> {
        let ca = |name: &str| -> anyhow::Result<_> {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            Ok(rcgen::CertifiedIssuer::self_signed(
                params,
                rcgen::KeyPair::generate()?,
            )?)
        };
        Ok(Pki {
            dir: tempfile::tempdir()?,
            ca: ca("Test park gateway CA")?,
            stranger: ca("Somebody else's CA")?,
        })
    }

    /// Writes a certificate for `cn` (with `sans`) signed by `issuer`,
    /// valid over `years` (from, to), and its key; returns their paths.
    pub fn issue(
        &self,
        name: &str,
        cn: &str,
        sans: &[&str],
        issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        years: (i32, i32),
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, issuer)?;
        let (c, k) = (
            self.dir.path().join(format!("{name}.crt")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((c, k))
    }

    /// The park CA's certificate, written to a file.
    pub fn ca_file(&self) -> anyhow::Result<PathBuf> {
        let p = self.dir.path().join("ca.crt");
        std::fs::write(&p, self.ca.pem())?;
        Ok(p)
    }
}
