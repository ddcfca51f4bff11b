//! `hazardwatch run`: the service in the foreground until a signal, with
//! the configuration reloaded on SIGHUP or when its file changes; and the
//! banner and summary it shares with the demo.

use std::path::PathBuf;

use crate::config::{Config, Settings};
use crate::pipeline::Summary;
use crate::reload;
use crate::service::{self, Running};
use crate::shutdown::shutdown_signal;

/// Runs the service until a signal. With the configuration file's path
/// (and its service settings as written), the site model is reloaded on
/// SIGHUP or when the file changes.
pub async fn run(config: Config, reload_from: Option<(PathBuf, Settings)>) -> anyhow::Result<()> {
    let running = service::start(config.clone()).await?;
    print_banner(&running, &config, config.settings.mqtt.broker.is_none());
    let stop = async {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = running.failed() => {}
        }
    };
    match reload_from {
        Some((path, file_settings)) => {
            reload::watch(path, file_settings, &running, stop).await;
        }
        None => stop.await,
    }
    tracing::info!("shutting down");
    let archive_dir = running.archive_dir.clone();
    let summary = running.shutdown().await?;
    print_summary(&summary, &archive_dir);
    Ok(())
}

pub(crate) fn print_summary(s: &Summary, running_archive: &std::path::Path) {
    let per_reading = if s.archive_rows > 0 {
        s.archive_bytes as f64 / s.archive_rows as f64
    } else {
        0.0
    };
    println!();
    println!(
        "readings ingested {}  (late {}), alarms raised {}",
        s.readings_in, s.readings_late, s.alarms_raised
    );
    println!(
        "archive: {} rows ({} of them the service's `expected` markers) in {} sealed Parquet files, {} bytes ({per_reading:.2} bytes/row) under {}",
        s.archive_rows,
        s.markers_expected,
        s.archive_files,
        s.archive_bytes,
        running_archive.display()
    );
}

pub(crate) fn print_banner(r: &Running, config: &Config, embedded: bool) {
    let site = &config.site;
    println!(
        "hazardwatch: park {} ({}), {} enterprises, {} points",
        site.park_id,
        site.park_name,
        site.enterprises.len(),
        site.point_count()
    );
    println!(
        "  MQTT {}{}   gRPC {}   metrics and health {}",
        r.mqtt_addr,
        if embedded { " (embedded broker)" } else { "" },
        r.grpc_addr,
        r.metrics_addr.map_or("off".to_string(), |a| format!(
            "http://{a}/metrics, /readyz"
        ))
    );
    println!(
        "  archive {}   quarantine {}",
        r.archive_dir.display(),
        r.quarantine_file.display()
    );
    if let Some(addr) = r.console_addr {
        let scheme = if config.settings.console.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let login = if config.settings.access.is_open() {
            " (open: no tokens configured, loopback only)"
        } else {
            " (log in with an [[access.token]])"
        };
        println!("  console {scheme}://{addr}/{login}");
    }
}
