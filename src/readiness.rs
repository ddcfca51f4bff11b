//! Whether this instance can do its job now, told truthfully to whatever
//! routes traffic or pages people: the gRPC health service and the HTTP
//! `/readyz` answer from the same check, every second.
//!
//! An instance is not ready while:
//! - it is starting (the write-ahead log is being judged again);
//! - the write-ahead log cannot be written (nothing is acknowledged);
//! - the alarm journal cannot be written (alarm events wait in memory);
//! - archive checkpoints fail (the log grows instead of the archive);
//! - the MQTT broker is unreachable or refused the subscription;
//! - the rules judge event time more than `health.engine_max_lag_s` behind
//!   the clock (less the configured lateness);
//! - the data directory's file system has less than
//!   `health.disk_min_free_mb` free.
//!
//! Each cause is a gauge, `hazardwatch_unready{cause="..."}`, beside
//! `hazardwatch_ready`, `hazardwatch_engine_lag_ms` and
//! `hazardwatch_disk_free_bytes`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hazardwatch_alarms::AlarmHub;
use hazardwatch_proto::clock::SharedClock;
use hazardwatch_rules::Progress;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::pipeline::Counters;

/// How often readiness is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// `[health]` settings.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Not ready when the rules are further behind than this, seconds.
    pub engine_max_lag_s: u64,
    /// Not ready when the data directory has less free space, MiB.
    pub disk_min_free_mb: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            engine_max_lag_s: 30,
            disk_min_free_mb: 1024,
        }
    }
}

impl HealthConfig {
    /// Checks the settings, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=86_400).contains(&self.engine_max_lag_s) {
            return Err(format!(
                "health.engine_max_lag_s: {} must be from 1 to 86400",
                self.engine_max_lag_s
            ));
        }
        if self.disk_min_free_mb > 1 << 30 {
            return Err(format!(
                "health.disk_min_free_mb: {} is more than any disk (at most {})",
                self.disk_min_free_mb,
                1u64 << 30
            ));
        }
        Ok(())
    }
}

/// Why the instance is not ready.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// Still starting.
    Starting,
    /// The write-ahead log cannot be written.
    WalStalled,
    /// Alarm events wait for the journal, which cannot be written.
    JournalFailing(usize),
    /// Archive checkpoints fail.
    CheckpointsFailing,
    /// The broker is unreachable, or refused the subscription.
    BrokerUnreachable,
    /// The rules are this far behind, ms.
    EngineBehind(i64),
    /// The data directory has this little space free, bytes.
    DiskNearlyFull(u64),
}

impl Cause {
    /// Every cause's label, as in the metrics.
    pub const LABELS: [&'static str; 7] = [
        "starting",
        "wal_stalled",
        "journal_failing",
        "checkpoints_failing",
        "broker_unreachable",
        "engine_behind",
        "disk_nearly_full",
    ];

    /// The cause's label in the metrics.
    pub fn label(&self) -> &'static str {
        let i = match self {
            Cause::Starting => 0,
            Cause::WalStalled => 1,
            Cause::JournalFailing(_) => 2,
            Cause::CheckpointsFailing => 3,
            Cause::BrokerUnreachable => 4,
            Cause::EngineBehind(_) => 5,
            Cause::DiskNearlyFull(_) => 6,
        };
        Self::LABELS[i]
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Starting => write!(f, "starting: the write-ahead log is being judged again"),
            Cause::WalStalled => write!(
                f,
                "the write-ahead log cannot be written: no reading is acknowledged"
            ),
            Cause::JournalFailing(n) => write!(
                f,
                "the alarm journal cannot be written: {n} alarm events wait in memory"
            ),
            Cause::CheckpointsFailing => write!(
                f,
                "archive checkpoints fail: readings stay in the write-ahead log"
            ),
            Cause::BrokerUnreachable => write!(
                f,
                "the MQTT broker is unreachable or refused the subscription"
            ),
            Cause::EngineBehind(ms) => write!(f, "the rules are {ms} ms behind the clock"),
            Cause::DiskNearlyFull(free) => write!(
                f,
                "the data directory has {} MiB free",
                free / (1024 * 1024)
            ),
        }
    }
}

/// The latest verdict: no causes means ready.
#[derive(Debug)]
pub struct Readiness {
    causes: watch::Sender<Vec<Cause>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            causes: watch::Sender::new(vec![Cause::Starting]),
        }
    }
}

impl Readiness {
    /// Why the instance is not ready now; empty when it is.
    pub fn causes(&self) -> Vec<Cause> {
        self.causes.borrow().clone()
    }

    /// Changes of the verdict.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Cause>> {
        self.causes.subscribe()
    }

    fn set(&self, causes: Vec<Cause>) {
        self.causes.send_if_modified(|now| {
            // Causes carrying figures change every check: report the
            // change of the set of causes, keep the figures fresh.
            let changed = labels(now) != labels(&causes);
            *now = causes;
            changed
        });
    }
}

fn labels(causes: &[Cause]) -> Vec<&'static str> {
    causes.iter().map(Cause::label).collect()
}

/// What the check looks at.
pub struct Probe {
    /// The pipeline's counters (write-ahead and checkpoint state).
    pub counters: Arc<Counters>,
    /// The alarm hub (events waiting for the journal).
    pub hub: Arc<AlarmHub>,
    /// True while subscribed to the broker.
    pub subscribed: watch::Receiver<bool>,
    /// How far the rules have judged.
    pub engine: Progress,
    /// The configured lateness: event time trails the clock by it.
    pub lateness_ms: i64,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Thresholds.
    pub config: HealthConfig,
    /// Where "now" comes from.
    pub clock: SharedClock,
}

impl Probe {
    /// The causes that hold now.
    pub fn check(&self) -> Vec<Cause> {
        let mut causes = Vec::new();
        if self.counters.wal_stalled.load(Ordering::Relaxed) {
            causes.push(Cause::WalStalled);
        }
        let unjournaled = self.hub.unjournaled();
        if unjournaled > 0 {
            causes.push(Cause::JournalFailing(unjournaled));
        }
        if self.counters.checkpoint_failing.load(Ordering::Relaxed) {
            causes.push(Cause::CheckpointsFailing);
        }
        if !*self.subscribed.borrow() {
            causes.push(Cause::BrokerUnreachable);
        }
        let lag = engine_lag_ms(
            self.clock.now_ms(),
            self.lateness_ms,
            self.engine.judged_before_ms(),
        );
        metrics::gauge!("hazardwatch_engine_lag_ms").set(lag as f64);
        if lag > self.config.engine_max_lag_s as i64 * 1000 {
            causes.push(Cause::EngineBehind(lag));
        }
        causes.extend(disk_cause(&self.data_dir, self.config.disk_min_free_mb));
        causes
    }
}

/// [`Cause::DiskNearlyFull`] when `dir`'s file system has less than
/// `min_free_mb` free (and the free space as a metric).
pub fn disk_cause(dir: &std::path::Path, min_free_mb: u64) -> Option<Cause> {
    match free_bytes(dir) {
        Ok(free) => {
            metrics::gauge!("hazardwatch_disk_free_bytes").set(free as f64);
            (free < min_free_mb.saturating_mul(1024 * 1024)).then_some(Cause::DiskNearlyFull(free))
        }
        // Cannot tell: say so in the log, do not guess.
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the free space");
            None
        }
    }
}

/// How far judged event time trails the clock, beyond the lateness every
/// reading is given; never negative.
pub fn engine_lag_ms(now_ms: i64, lateness_ms: i64, judged_before_ms: i64) -> i64 {
    now_ms
        .saturating_sub(lateness_ms)
        .saturating_sub(judged_before_ms)
        .max(0)
}

/// Bytes free to unprivileged writers on the file system holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Checks `probe` every [`CHECK_EVERY`] until `stop` (see [`watch`]).
pub async fn run(probe: Probe, readiness: Arc<Readiness>, stop: CancellationToken) {
    watch(move || probe.check(), readiness, stop).await;
}

/// Runs `check` every [`CHECK_EVERY`] until `stop`, publishing the verdict
/// and its metrics and logging each change.
pub async fn watch(
    check: impl Fn() -> Vec<Cause>,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let causes = check();
        for label in Cause::LABELS {
            let on = causes.iter().any(|c| c.label() == label);
            metrics::gauge!("hazardwatch_unready", "cause" => label).set(f64::from(u8::from(on)));
        }
        metrics::gauge!("hazardwatch_ready").set(f64::from(u8::from(causes.is_empty())));
        let before = readiness.causes();
        if labels(&before) != labels(&causes) {
            if causes.is_empty() {
                tracing::info!("ready");
            } else {
                let why: Vec<String> = causes.iter().map(ToString::to_string).collect();
                tracing::warn!(causes = %why.join("; "), "not ready");
            }
        }
        readiness.set(causes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_measured_beyond_the_lateness_and_never_negative() {
        assert_eq!(engine_lag_ms(10_000, 300, 9_700), 0);
        assert_eq!(engine_lag_ms(10_000, 300, 9_000), 700);
        assert_eq!(engine_lag_ms(10_000, 300, 20_000), 0);
        assert_eq!(engine_lag_ms(i64::MAX, 0, i64::MIN), i64::MAX);
    }

    #[test]
    fn free_space_is_read_and_a_missing_directory_is_an_error() {
        assert!(free_bytes(std::path::Path::new(".")).unwrap_or(0) > 0);
        assert!(free_bytes(std::path::Path::new("/no/such/dir")).is_err());
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(HealthConfig::default().validate().is_ok());
        let zero = HealthConfig {
            engine_max_lag_s: 0,
            ..HealthConfig::default()
        };
        assert!(zero.validate().unwrap_err().contains("engine_max_lag_s"));
    }
}
