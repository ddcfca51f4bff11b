//! Telemetry in: the MQTT side of hazardwatch.
//!
//! - [`auth`]: who may connect to the broker and what each may do, from
//!   the gateway registry.
//! - [`broker`]: the embedded broker.
//! - [`client`]: the QoS 1 subscriber with manual acks; hands validated
//!   readings to the pipeline with the ack it owes, to send once they are
//!   durable.
//! - [`dedup`]: recognising a redelivered message.
//! - [`gateways`]: which gateway reported each point last (offline
//!   markers).
//! - [`health`]: gateway online rate and data completeness.
//! - [`decode`]: JSON and protobuf payloads to validated readings, with a
//!   [`decode::Rejection`] for everything refused.
//! - [`quarantine`]: the JSON-lines record of rejections.
//! - [`sparkplug`]: Sparkplug B sessions (births, aliases, sequence numbers,
//!   deaths) to readings.
//! - [`topic`]: the topic scheme.
//! - [`config`]: `[mqtt]` settings.
//!
//! ```
//! use hazardwatch_ingest::decode::{check, Limits};
//! use hazardwatch_proto::{Catalog, PointKind, PointMeta, Registry};
//!
//! let mut catalog = Catalog::default();
//! catalog.insert(PointMeta::new("T101.LT", "E01", "HS1", "T101", PointKind::Level, "m"));
//! let limits = Limits { topic_prefix: "hw/v1".into(), max_payload_bytes: 4096,
//!     max_clock_skew_ms: 300_000, min_timestamp_ms: 0 };
//! let payload = br#"{"gateway":"GW01","seq":1,"readings":[{"point":"T101.LT","ts":1732262400123,"value":12.34}]}"#;
//! let checked = check(&catalog, &Registry::default(), &limits, "hw/v1/E01/GW01/telemetry", payload, 1_732_262_400_200);
//! assert_eq!(checked.readings.len(), 1);
//! assert!(checked.rejections.is_empty());
//! ```

pub mod auth;
pub mod broker;
pub mod client;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod encode;
pub mod error;
pub mod gateways;
pub mod health;
pub mod quarantine;
pub mod sparkplug;
pub mod tls;
pub mod topic;

pub use client::{Ack, Delivery, IngestBatch, Subscriber, message_id, source_id};
pub use config::MqttConfig;
pub use dedup::Dedup;
pub use error::{Error, Result};
pub use quarantine::Quarantine;
