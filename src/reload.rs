//! Hot reload of the site model: on SIGHUP, or when the configuration
//! file changes (checked every [`POLL`]), the file is read and validated
//! again. A valid site model is applied without a restart
//! ([`Running::reload`]); an invalid file is reported with every error and
//! the running model stays. Changed service settings (`[mqtt]`, `[grpc]`,
//! `[engine]`, ...) need a restart, and the log says so.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hazardwatch_rules::Source;

use crate::config::{Config, Settings};
use crate::service::Running;

/// How often the file's modification time and size are checked.
pub const POLL: Duration = Duration::from_secs(2);

/// What identifies a version of the file without reading it.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reloads `path` into `running` whenever it changes or SIGHUP arrives,
/// until `stop` resolves. `file_settings` are the service settings as the
/// file gave them at start (before command-line overrides).
pub async fn watch(
    path: PathBuf,
    file_settings: Settings,
    running: &Running,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading on file changes only");
            None
        }
    };
    let mut last = stamp(&path);
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            _ = &mut stop => return,
            _ = hangup => tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration"),
            _ = tick.tick() => {
                let now = stamp(&path);
                if now == last {
                    continue;
                }
                tracing::info!(path = %path.display(), "configuration file changed: reloading");
            }
        }
        last = stamp(&path);
        reload_once(&path, &file_settings, running).await;
    }
}

/// Reads, validates and applies the file once, logging the outcome.
pub async fn reload_once(path: &Path, file_settings: &Settings, running: &Running) {
    let loaded = Source::read(path)
        .map_err(|e| e.to_string())
        .and_then(|src| Config::from_source(&src).map_err(|e| e.to_string()));
    let config = match loaded {
        Ok(c) => c,
        Err(errors) => {
            metrics::counter!("hazardwatch_config_reloads_total", "result" => "invalid")
                .increment(1);
            tracing::error!("configuration not reloaded; the running site model stays:\n{errors}");
            return;
        }
    };
    if &config.settings != file_settings {
        tracing::warn!(
            "service settings ([mqtt], [grpc], [metrics], [engine], [archive], data_dir) changed: they apply at the next restart; the site model applies now"
        );
    }
    match running.reload(config.site).await {
        Ok(r) => tracing::info!(
            added = ?r.added,
            removed = ?r.removed,
            "site model reloaded"
        ),
        Err(e) => tracing::error!(error = %e, "site model not reloaded"),
    }
}
