//! `[mqtt]` settings.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Off loopback it needs `tls` and registered gateways.
    pub listen: SocketAddr,
    /// TLS of the embedded broker's listener (rustls); with `client_ca`,
    /// mutual TLS.
    pub tls: Option<ListenerTlsConfig>,
    /// TLS towards the external `broker`: the CA that signed its
    /// certificate, and this client's certificate for mutual TLS.
    pub broker_tls: Option<BrokerTlsConfig>,
    /// User name of the service at the external `broker`.
    pub username: Option<String>,
    /// File holding the service's password at the external `broker` (one
    /// line; keep it readable by the service only).
    pub password_file: Option<PathBuf>,
    /// Connect to an external broker that is not on loopback without TLS.
    /// Off by default: credentials and telemetry must not cross a network
    /// in clear.
    pub allow_plaintext: bool,
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

/// `[mqtt] tls = { cert = "...", key = "...", client_ca = "..." }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM.
    pub key: PathBuf,
    /// CA of the gateways' client certificates, PEM (mutual TLS: every
    /// client must present one).
    pub client_ca: Option<PathBuf>,
}

/// `[mqtt] broker_tls = { ca = "...", cert = "...", key = "..." }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BrokerTlsConfig {
    /// The CA that signed the broker's certificate, PEM.
    pub ca: PathBuf,
    /// This client's certificate chain, PEM (mutual TLS).
    pub cert: Option<PathBuf>,
    /// This client's private key, PEM (mutual TLS).
    pub key: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            tls: None,
            broker_tls: None,
            username: None,
            password_file: None,
            allow_plaintext: false,
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
            let (host, _) = broker_host_port(b)?;
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback && self.broker_tls.is_none() && !self.allow_plaintext {
                return bad(format!(
                    "mqtt.broker {b} is not loopback: configure mqtt.broker_tls = {{ ca = ... }}, or set mqtt.allow_plaintext = true"
                ));
            }
            if self.username.is_some() != self.password_file.is_some() {
                return bad("mqtt.username and mqtt.password_file go together".into());
            }
        } else if self.broker_tls.is_some()
            || self.username.is_some()
            || self.password_file.is_some()
        {
            return bad(
                "mqtt.broker_tls, mqtt.username and mqtt.password_file are for an external mqtt.broker; the embedded broker authenticates the service itself".into(),
            );
        }
        if let Some(t) = &self.broker_tls {
            if t.cert.is_some() != t.key.is_some() {
                return bad("mqtt.broker_tls: cert and key go together".into());
            }
            readable("mqtt.broker_tls.ca", &t.ca)?;
            for (f, p) in [("cert", &t.cert), ("key", &t.key)] {
                if let Some(p) = p {
                    readable(&format!("mqtt.broker_tls.{f}"), p)?;
                }
            }
        }
        if let Some(t) = &self.tls {
            readable("mqtt.tls.cert", &t.cert)?;
            readable("mqtt.tls.key", &t.key)?;
            if let Some(ca) = &t.client_ca {
                readable("mqtt.tls.client_ca", ca)?;
            }
        }
        if let Some(p) = &self.password_file {
            readable("mqtt.password_file", p)?;
        }
        Ok(())
    }

    /// The service's password at the external broker, read from
    /// `password_file` (first line, without its line end).
    pub fn password(&self) -> Result<Option<String>> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("mqtt.password_file: {}: {e}", path.display())))?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            return Err(Error::Config(format!(
                "mqtt.password_file: {} is empty",
                path.display()
            )));
        }
        Ok(Some(line.to_owned()))
    }
}

fn readable(field: &str, path: &std::path::Path) -> Result<()> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| Error::Config(format!("{field}: {}: {e}", path.display())))
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
