//! hazardwatch: telemetry and early warning for major hazard sources in
//! chemical parks.
//!
//! The binary's library: everything `main.rs` wires together, so tests and
//! benchmarks drive the same entry points as the command line.
//!
//! - [`config`]: the one configuration file (service settings + site model).
//! - [`service`]: starts and stops a whole service ([`service::start`]).
//! - [`durable`]: the write-ahead stage: log, sync, then acknowledge.
//! - [`alarm_hub`]: live alarm state, numbered events, fan-out.
//! - [`grpc`]: the gRPC edge (`AlarmService`, health, reflection).
//! - [`access`]: bearer tokens, roles and scopes of gRPC callers.
//! - [`escalation`]: closed-loop disposal and escalation chains.
//! - [`risk`]: live risk colours from GB 18218 grades and alarms.
//! - [`stats`]: alarm-system performance (EEMUA 191).
//! - [`replay`]: archived readings through the same rules; what-if.
//! - [`telemetry`]: latest values and range queries over gRPC.
//! - [`sim`]: the park simulator with scheduled incidents.
//! - [`demo`]: `demo` and `run` in the foreground.
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

pub mod access;
pub mod alarm_hub;
pub mod config;
pub mod demo;
pub mod durable;
pub mod escalation;
pub mod grpc;
pub mod reload;
pub mod replay;
pub mod risk;
pub mod service;
pub mod sim;
pub mod stats;
pub mod telemetry;
