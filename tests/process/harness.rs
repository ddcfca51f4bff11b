//! The pieces the process tests share: the service as a child process,
//! and what its archive holds.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hazardwatch_tests::{Gateway, now_ms, read_archive};
use tokio_util::sync::CancellationToken;

/// A reading as the tests key it: (point, event time, value bits).
pub(crate) type Key = (String, i64, u64);

/// The service as a child process, its stderr collected.
pub(crate) struct Process {
    child: Child,
    log: Arc<Mutex<String>>,
    ready: std::sync::mpsc::Receiver<()>,
}

impl Process {
    /// Starts `hazardwatch run` and waits until it has subscribed.
    pub(crate) fn start(config: &Path, data: &Path) -> anyhow::Result<Process> {
        Self::start_on(config, data, "127.0.0.1:0")
    }

    /// [`Process::start`] with gRPC on `grpc`.
    pub(crate) fn start_on(config: &Path, data: &Path, grpc: &str) -> anyhow::Result<Process> {
        let mut p = Self::spawn(config, data, grpc, &[])?;
        p.subscribed()?;
        Ok(p)
    }

    /// Starts `hazardwatch run` with `more` arguments and returns at once
    /// (the processes of a cluster wait for each other while they start).
    pub(crate) fn spawn(
        config: &Path,
        data: &Path,
        grpc: &str,
        more: &[String],
    ) -> anyhow::Result<Process> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hazardwatch"))
            .args(["run", "--no-metrics", "--grpc", grpc, "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .args(more)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the hazardwatch binary")?;
        let stderr = child.stderr.take().context("stderr piped")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("subscribed to telemetry") {
                        let _ = ready_tx.send(());
                    }
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        Ok(Process { child, log, ready })
    }

    /// Waits until it has subscribed to telemetry (killed if it has not
    /// within 30 s).
    pub(crate) fn subscribed(&mut self) -> anyhow::Result<()> {
        if self.ready.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = self.child.kill();
            anyhow::bail!("the service did not subscribe:\n{}", self.log());
        }
        Ok(())
    }

    /// The gRPC address it listens on, from its log.
    pub(crate) fn grpc_addr(&self) -> Option<String> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("gRPC listening"))?;
        // The log may be coloured: keep what is not an escape sequence.
        let mut plain = String::new();
        let mut escape = false;
        for c in line.chars() {
            match (escape, c) {
                (false, '\x1b') => escape = true,
                (true, 'm') => escape = false,
                (false, c) => plain.push(c),
                (true, _) => {}
            }
        }
        let addr = plain
            .split("grpc_addr=")
            .nth(1)?
            .split_whitespace()
            .next()?;
        Some(addr.to_owned())
    }

    /// Sends it a signal by name (`HUP`: reload the configuration).
    pub(crate) fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits up to `limit` for it to exit on its own: its exit status and
    /// log, or `None` (it is still running).
    pub(crate) fn exited(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((status, self.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// SIGKILL: no shutdown code runs.
    pub(crate) fn kill(mut self) -> anyhow::Result<String> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(self.log())
    }

    /// SIGTERM, and a clean exit.
    pub(crate) fn stop(mut self) -> anyhow::Result<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let exit = self.child.wait()?;
        let log = self.log();
        anyhow::ensure!(exit.success(), "the service exited with {exit}:\n{log}");
        Ok(log)
    }
}

/// Every readings row of the archive, counted by key.
pub(crate) fn archived(archive: &Path) -> BTreeMap<Key, usize> {
    // The service may be compacting while this reads: a file can vanish
    // between listing and opening; read again then.
    loop {
        match read_archive(archive) {
            Ok(rows) => return hazardwatch_tests::row_counts(&rows),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// What a last, clean run left in the archive, against what the gateways
/// were told was received.
pub(crate) struct Outcome {
    /// Acknowledged readings not in the archive.
    pub(crate) missing: Vec<Key>,
    /// Readings archived more than once.
    pub(crate) twice: Vec<(Key, usize)>,
    /// Archived readings nobody published.
    pub(crate) extra: usize,
    /// Readings archived.
    pub(crate) archived: usize,
    /// The last run replayed its write-ahead log.
    pub(crate) replayed: bool,
    /// The last run's log.
    pub(crate) log: String,
}

/// Starts the service once more, waits (up to `limit`) until the archive
/// holds every reading of `want` (it takes what the broker kept for it),
/// stops it cleanly and compares.
pub(crate) async fn last_run(
    config: &Path,
    data: &Path,
    want: &BTreeSet<Key>,
    limit: Duration,
) -> anyhow::Result<Outcome> {
    let p = Process::start(config, data)?;
    let replayed = p
        .log()
        .contains("write-ahead log: judging and archiving again");
    let archive = data.join("archive");
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        let have = archived(&archive);
        if want.iter().all(|k| have.contains_key(k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = p.stop()?;
    let have = archived(&archive);
    Ok(Outcome {
        missing: want
            .iter()
            .filter(|k| !have.contains_key(*k))
            .cloned()
            .collect(),
        twice: have
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, n)| (k.clone(), *n))
            .collect(),
        extra: have.keys().filter(|k| !want.contains(*k)).count(),
        archived: have.len(),
        replayed,
        log,
    })
}

impl Outcome {
    /// Fails the test with examples if anything was lost, doubled or
    /// made up.
    pub(crate) fn assert_exactly_once(&self) {
        assert!(
            self.missing.is_empty(),
            "{} acknowledged readings lost, e.g. {:?}\nlast run's log:\n{}",
            self.missing.len(),
            &self.missing[..self.missing.len().min(5)],
            self.log
        );
        assert!(
            self.twice.is_empty(),
            "archived twice: {:?}",
            &self.twice[..self.twice.len().min(5)]
        );
        assert_eq!(self.extra, 0, "archived readings nobody published");
    }
}

/// Publishes 10-reading messages of one point until told to stop (a
/// message every 5 ms, its values changing every 20 messages); records the
/// readings of every message the broker acknowledged.
pub(crate) async fn gateway(
    port: u16,
    (id, enterprise, point, values): (&'static str, &'static str, &'static str, [f64; 4]),
    acknowledged: Arc<Mutex<Vec<Key>>>,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let mut gw = Gateway::connect("127.0.0.1", port, id).await?;
    let topic = format!("hw/v1/{enterprise}/{id}/telemetry");
    let mut last_ts = 0i64;
    let mut n: u64 = 0;
    while !stop.is_cancelled() {
        let level = values[(n / 20) as usize % values.len()];
        let mut keys = Vec::with_capacity(10);
        let readings: Vec<serde_json::Value> = (0..10u64)
            .map(|i| {
                // Unique per point: time stamps strictly increase, and the
                // value carries the count.
                last_ts = now_ms().max(last_ts + 1);
                let value = level + ((n * 10 + i) % 100) as f64 / 1000.0;
                keys.push((point.to_owned(), last_ts, value.to_bits()));
                serde_json::json!({"point": point, "ts": last_ts, "value": value})
            })
            .collect();
        let payload = serde_json::to_vec(
            &serde_json::json!({"gateway": id, "seq": n, "readings": readings}),
        )?;
        // As a store-and-forward gateway does: a message the broker has not
        // acknowledged (it was restarting) is sent again on a new
        // connection; if the broker had it, the service recognises it.
        while let Err(e) = gw.publish(&topic, payload.clone()).await {
            if stop.is_cancelled() {
                return Ok(n);
            }
            eprintln!("chaos: {id}: {e:#}; connecting again");
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(again) = Gateway::connect("127.0.0.1", port, id).await {
                gw = again;
            }
        }
        acknowledged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(keys);
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.close().await;
    Ok(n)
}
