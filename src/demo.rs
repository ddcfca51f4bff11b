//! `hazardwatch demo`: the service, a simulated park publishing to it, and
//! alarms printed as they happen, until a signal or a duration.

use std::time::Duration;

use hazardwatch_proto::pb;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::run::{print_banner, print_summary};
use crate::service;
use crate::shutdown::shutdown_signal;
use crate::sim::{self, SimOptions};

/// The column header of [`alarm_line`].
pub const ALARM_HEADER: &str = "time (UTC)    enterprise  unit      point       alarm  priority  event          value  limit    message";

/// One alarm event as a screen line.
pub fn alarm_line(e: &pb::AlarmEvent) -> String {
    let time = chrono::DateTime::from_timestamp_millis(e.event_time_ms)
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| e.event_time_ms.to_string());
    if e.transition == pb::Transition::RiskChanged as i32 {
        return format!("{time:<13} {:<11} {}", e.enterprise, e.message);
    }
    let tag = e.alarm_id.rsplit('/').next().unwrap_or("");
    let priority = pb::Priority::try_from(e.priority)
        .map(|p| {
            p.as_str_name()
                .trim_start_matches("PRIORITY_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let event = pb::Transition::try_from(e.transition)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("TRANSITION_")
                .to_string()
        })
        .unwrap_or_default();
    let value = if e.value.is_nan() {
        String::from("-")
    } else {
        format!("{:.2} {}", e.value, e.eng_unit)
    };
    format!(
        "{time:<13} {:<11} {:<9} {:<11} {tag:<6} {priority:<9} {event:<12} {value:>12}  {:<8} {}",
        e.enterprise,
        e.unit,
        e.point,
        format!("{:.2}", e.limit),
        e.message
    )
}

async fn print_alarms(mut rx: broadcast::Receiver<pb::AlarmEvent>, stop: CancellationToken) {
    println!("{ALARM_HEADER}");
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = rx.recv() => match r {
                // Suppressed by design: recorded, not annunciated.
                Ok(e) if e.suppressed => {}
                Ok(e) => println!("{}", alarm_line(&e)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    println!("... {n} alarm events not shown (screen fell behind; see gRPC History)");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
    // Show what arrived while shutting down.
    while let Ok(e) = rx.try_recv() {
        if !e.suppressed {
            println!("{}", alarm_line(&e));
        }
    }
}

/// Runs the demo: the service, the simulated park publishing to it over
/// MQTT, and alarms on screen, until `duration` or a signal.
pub async fn demo(
    config: Config,
    duration: Option<Duration>,
    seed: u64,
    credentials: sim::Credentials,
) -> anyhow::Result<()> {
    let running = service::start(config.clone()).await?;
    print_banner(&running, &config, config.settings.mqtt.broker.is_none());
    let options = SimOptions {
        seed,
        format: sim::PayloadFormat::Mixed,
        topic_prefix: config.settings.mqtt.topic_prefix.clone(),
        credentials,
        ..SimOptions::default()
    };
    let preview = sim::Simulator::new(&config.site, &options);
    for i in preview.incidents() {
        println!(
            "  incident: {:<16} {:<10} from +{:>3.0} s, peak {:.2}",
            i.name, i.point, i.start_s, i.peak
        );
    }
    match duration {
        Some(d) => println!("  running for {} s (Ctrl-C stops earlier)\n", d.as_secs()),
        None => println!("  running until Ctrl-C\n"),
    }
    let stop = CancellationToken::new();
    let printer_stop = CancellationToken::new();
    let printer = tokio::spawn(print_alarms(running.hub.watch(), printer_stop.clone()));
    let (host, port) = hazardwatch_ingest::config::broker_host_port(&running.mqtt_addr)?;
    let simulator = tokio::spawn({
        let model = config.site.clone();
        let stop = stop.clone();
        async move { sim::publish(&model, &options, &host, port, duration, stop).await }
    });
    tokio::pin!(simulator);
    let published = tokio::select! {
        r = &mut simulator => Some(r),
        _ = shutdown_signal() => None,
    };
    stop.cancel();
    let published = match published {
        Some(r) => r,
        None => simulator.await,
    };
    let published = published??;
    // Let the last published messages through ingest before stopping it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let archive_dir = running.archive_dir.clone();
    let summary = running.shutdown().await?;
    printer_stop.cancel();
    let _ = printer.await;
    println!("\nsimulator published {published} readings");
    print_summary(&summary, &archive_dir);
    Ok(())
}
