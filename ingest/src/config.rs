//! `[mqtt]` settings.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::error::{Error, Result};

/// How hazardwatch reaches its gateways.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// External broker `host:port`. When absent, an embedded broker is
    /// started on `listen`.
    pub broker: Option<String>,
    /// Listen address of the embedded broker. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Topic prefix: gateways publish to `{prefix}/{enterprise}/{gateway}/telemetry`.
    pub topic_prefix: String,
    /// MQTT client id of the ingest subscriber (its persistent session).
    pub client_id: String,
    /// Largest payload accepted; larger messages are quarantined.
    pub max_payload_bytes: usize,
    /// How far ahead of the service's clock a reading's timestamp may be
    /// before it is quarantined (a gateway with a wrong clock must not drag
    /// event time forward).
    pub max_clock_skew_s: u64,
    /// Oldest timestamp accepted, Unix seconds (default 2000-01-01): older
    /// values are a gateway clock that was never set.
    pub min_timestamp_s: i64,
    /// How many of the most recent telemetry messages are remembered to
    /// recognise a redelivery (see [`crate::dedup`]).
    pub dedup_window: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            topic_prefix: "hw/v1".into(),
            client_id: "hazardwatch".into(),
            max_payload_bytes: 256 * 1024,
            max_clock_skew_s: 300,
            min_timestamp_s: 946_684_800,
            dedup_window: 100_000,
        }
    }
}

impl MqttConfig {
    /// Checks the settings, naming the field that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['+', '#'])
            || self.topic_prefix.starts_with('/')
            || self.topic_prefix.ends_with('/')
        {
            return bad(format!(
                "mqtt.topic_prefix: `{}` must be non-empty, without wildcards or a leading/trailing `/`",
                self.topic_prefix
            ));
        }
        if self.client_id.is_empty() || self.client_id.len() > 64 {
            return bad("mqtt.client_id: must be 1-64 characters".into());
        }
        if !(64..=16 * 1024 * 1024).contains(&self.max_payload_bytes) {
            return bad(format!(
                "mqtt.max_payload_bytes: {} must be from 64 to 16777216",
                self.max_payload_bytes
            ));
        }
        if !(1_000..=10_000_000).contains(&self.dedup_window) {
            return bad(format!(
                "mqtt.dedup_window: {} must be from 1000 to 10000000 messages",
                self.dedup_window
            ));
        }
        if let Some(b) = &self.broker {
            broker_host_port(b)?;
        }
        Ok(())
    }
}

/// Splits `host:port`.
pub fn broker_host_port(addr: &str) -> Result<(String, u16)> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| Error::Config(format!("mqtt.broker: `{addr}` is not host:port")))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| Error::Config(format!("mqtt.broker: `{port}` in `{addr}` is not a port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(Error::Config(format!("mqtt.broker: `{addr}` has no host")));
    }
    Ok((host.to_owned(), port))
}
