//! hazardwatch: telemetry and early warning for major hazard sources in
//! chemical parks.
//!
//! The binary's library: everything `main.rs` wires together, so tests and
//! benchmarks drive the same entry points as the command line.
//!
//! - [`config`]: the one configuration file (service settings + site model).
//! - [`service`]: starts and stops a whole service ([`service::start`]),
//!   wiring the rooms below; knows every room, and no room knows it.
//! - [`pipeline`]: the stages between MQTT and the rules (write-ahead
//!   stage, feeder, archiver) and the messages they share.
//! - [`live_site`]: the running site model, changed through the API.
//! - [`grpc`]: the gRPC edge, one file per service; the only place that
//!   knows tonic's `Status`.
//! - [`telemetry`]: latest values and range queries, for any edge.
//! - [`replay`]: archived readings through the same rules; what-if.
//! - [`reload`]: the configuration applied again on SIGHUP or a change.
//! - [`run`]: `hazardwatch run` in the foreground; [`shutdown`]: the
//!   signals that stop it.
//! - [`sim`]: the park simulator with scheduled incidents.
//! - [`demo`]: `hazardwatch demo`: service, simulator, alarms on screen.
//! - [`console`]: the control-room web console and its JSON API.
//! - [`notify`]: critical alarms and escalations to webhooks, through a
//!   durable outbox.
//! - [`region`]: a regional instance (county, city, province) that merges
//!   its parks' alarm feeds for regulators.
//!
//! The alarm service itself (table, hub, escalation, risk, EEMUA 191,
//! access) is the `hazardwatch-alarms` crate.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let mut config = hazardwatch::config::Config::example();
//! config.settings.grpc.listen = "127.0.0.1:0".parse()?;
//! config.settings.mqtt.listen = "127.0.0.1:0".parse()?;
//! config.settings.metrics.enabled = false;
//! let running = hazardwatch::service::start(config).await?;
//! println!("gRPC on {}", running.grpc_addr);
//! let summary = running.shutdown().await?;
//! println!("{} readings", summary.readings_in);
//! # Ok(()) }
//! ```

pub mod config;
pub mod console;
pub mod demo;
pub mod evaluate;
pub mod grpc;
pub mod http;
pub mod import;
pub mod learn;
pub mod live_site;
pub mod new_archive;
pub mod notify;
pub mod pipeline;
pub mod readiness;
pub mod region;
pub mod reload;
pub mod replay;
pub mod run;
pub mod service;
pub mod shutdown;
pub mod sim;
pub mod telemetry;
#[cfg(test)]
mod test_park;

/// The process's allocator: mimalloc, not the system's. Under the soak's
/// load (`bench/src/bin/soak.rs`) glibc's per-thread arenas kept what the
/// archive's checkpoints and compactions had freed: 465 MB held by the
/// allocator for 78 MB in use after 47 minutes (glibc `malloc_stats`), and
/// resident memory rose all the while. mimalloc gives freed pages back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
