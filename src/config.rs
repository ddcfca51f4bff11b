//! The configuration file: service settings and the site model in one TOML
//! file (see `deploy/config/example-park.toml`, printed by
//! `hazardwatch generate-config`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hazardwatch_ingest::MqttConfig;

use hazardwatch_alarms::{Access, AccessConfig, EscalationPolicy, EscalationSpec, TokensFile};
use hazardwatch_rules::site::{DefaultsSpec, EnterpriseSpec, ParkSpec};
use hazardwatch_rules::{EngineConfig, SiteModel, SiteSpec, Source};
use hazardwatch_storage::{ArchiveConfig, JournalConfig};

use crate::notify::{NotifyConfig, NotifySettings};
use crate::pipeline::backfill::BackfillConfig;
use crate::readiness::HealthConfig;
use serde::Deserialize;
use toml::Spanned;

/// The documented example configuration, embedded in the binary.
pub const EXAMPLE_CONFIG: &str = include_str!("../deploy/config/example-park.toml");

/// `[grpc]` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address of the gRPC server. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// TLS (rustls): the server's certificate chain and private key, PEM.
    pub tls: Option<TlsConfig>,
    /// Serve plaintext on an address that is not loopback. Off by default:
    /// alarms and tokens must not cross a network in clear.
    pub allow_plaintext: bool,
}

/// `[grpc] tls = { cert = "...", key = "..." }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls: None,
            allow_plaintext: false,
        }
    }
}

impl TlsConfig {
    /// Checks that both files exist (`section` names the setting in
    /// errors, e.g. `grpc.tls`).
    fn check(&self, section: &str) -> Result<(), String> {
        for (field, path) in [("cert", &self.cert), ("key", &self.key)] {
            std::fs::metadata(path)
                .map_err(|e| format!("{section}.{field}: {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// The certificate chain and the key, PEM.
    pub fn read(&self, section: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
        let read = |field: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("{section}.{field}: {}: {e}", path.display()))
        };
        Ok((read("cert", &self.cert)?, read("key", &self.key)?))
    }
}

impl GrpcConfig {
    /// Checks that plaintext is only served on loopback (unless allowed)
    /// and that the TLS files can be read.
    pub fn validate(&self) -> Result<(), String> {
        match &self.tls {
            None if !self.listen.ip().is_loopback() && !self.allow_plaintext => Err(format!(
                "grpc.listen {} is not loopback: configure grpc.tls = {{ cert = ..., key = ... }}, or set grpc.allow_plaintext = true",
                self.listen
            )),
            Some(tls) => tls.check("grpc.tls"),
            None => Ok(()),
        }
    }

    /// The server identity from the TLS files, if TLS is configured.
    pub fn identity(&self) -> Result<Option<tonic::transport::Identity>, String> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let (cert, key) = tls.read("grpc.tls")?;
        Ok(Some(tonic::transport::Identity::from_pem(cert, key)))
    }
}

/// `[console]` settings: the web console (see [`crate::console`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Listen address; absent: no console (`demo` serves it on
    /// [`ConsoleConfig::DEMO_LISTEN`] unless told otherwise). Port 0 picks
    /// a free port.
    pub listen: Option<SocketAddr>,
    /// TLS (rustls): the certificate chain and private key, PEM. Required
    /// on an address that is not loopback.
    pub tls: Option<TlsConfig>,
}

impl ConsoleConfig {
    /// Where `demo` serves the console when the configuration does not say.
    pub const DEMO_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8480);

    /// Checks that the console is served off loopback only with TLS, and
    /// that the TLS files can be read. (Tokens are checked with gRPC's.)
    pub fn validate(&self) -> Result<(), String> {
        match (&self.tls, self.listen) {
            (Some(tls), _) => tls.check("console.tls"),
            (None, Some(listen)) if !listen.ip().is_loopback() => Err(format!(
                "console.listen {listen} is not loopback: configure console.tls = {{ cert = ..., key = ... }}"
            )),
            (None, _) => Ok(()),
        }
    }
}

/// `[metrics]` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics and the health endpoints.
    pub enabled: bool,
    /// Listen address of `/metrics`, `/readyz` and `/livez`.
    pub listen: SocketAddr,
    /// Serve them on an address that is not loopback (plain HTTP, no
    /// authentication). Off by default. They carry counts, gauges and
    /// readiness causes, never readings, alarms or names; a Prometheus
    /// scraping a pod's address needs this, a probe run inside the
    /// container or unit (`hazardwatch health`) does not.
    pub allow_off_loopback: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            allow_off_loopback: false,
        }
    }
}

impl MetricsConfig {
    /// Checks that the endpoints leave loopback only when allowed.
    pub fn validate(&self) -> Result<(), String> {
        if self.enabled && !self.listen.ip().is_loopback() && !self.allow_off_loopback {
            return Err(format!(
                "metrics.listen {} is not loopback: the endpoints are plain HTTP with no authentication; set metrics.allow_off_loopback = true to serve them there anyway, or probe them from inside with `hazardwatch health`",
                self.listen
            ));
        }
        Ok(())
    }
}

/// The whole file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    mqtt: MqttConfig,
    #[serde(default)]
    grpc: GrpcConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    console: ConsoleConfig,
    #[serde(default)]
    engine: EngineConfig,
    #[serde(default)]
    archive: ArchiveConfig,
    #[serde(default)]
    backfill: BackfillConfig,
    #[serde(default)]
    journal: JournalConfig,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    access: AccessConfig,
    #[serde(default)]
    escalation: Vec<EscalationSpec>,
    #[serde(default)]
    notify: NotifyConfig,
    park: ParkSpec,
    #[serde(default)]
    defaults: BTreeMap<String, Spanned<DefaultsSpec>>,
    #[serde(default)]
    enterprise: Vec<EnterpriseSpec>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

/// Validated service settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Archive, quarantine and state live here.
    pub data_dir: PathBuf,
    /// MQTT side.
    pub mqtt: MqttConfig,
    /// gRPC server.
    pub grpc: GrpcConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The web console.
    pub console: ConsoleConfig,
    /// Rule engine.
    pub engine: EngineConfig,
    /// Parquet archive.
    pub archive: ArchiveConfig,
    /// Judging readings that arrive late.
    pub backfill: BackfillConfig,
    /// The alarm journal.
    pub journal: JournalConfig,
    /// When the instance says it is not ready.
    pub health: HealthConfig,
    /// gRPC callers: tokens, roles, scopes.
    pub access: Access,
    /// Disposal and escalation chains by enterprise.
    pub escalation: EscalationPolicy,
    /// Who is notified of critical alarms and escalations.
    pub notify: NotifySettings,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Service settings.
    pub settings: Settings,
    /// The site model.
    pub site: SiteModel,
}

/// Why a configuration was refused: every message names the file and, where
/// there is one, the line and field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = Source::read(path).map_err(|e| ConfigError(e.to_string()))?;
        Config::from_source(&src)
    }

    /// The embedded example configuration.
    pub fn example() -> Config {
        let src = Source {
            path: "<built-in example-park.toml>".into(),
            text: EXAMPLE_CONFIG.into(),
        };
        Config::from_source(&src).expect("the embedded example configuration is valid (tested)")
    }

    /// Parses and validates configuration text.
    pub fn from_source(src: &Source) -> Result<Config, ConfigError> {
        let file: ConfigFile = src.parse().map_err(|e| ConfigError(e.to_string()))?;
        let section = |r: Result<(), String>| {
            r.map_err(|e| ConfigError(format!("{}: {e}", src.path.display())))
        };
        section(file.engine.validate().map_err(|e| e.to_string()))?;
        section(file.archive.validate().map_err(|e| e.to_string()))?;
        section(file.backfill.validate())?;
        section(file.journal.validate().map_err(|e| e.to_string()))?;
        section(file.health.validate())?;
        let enterprises = file
            .enterprise
            .iter()
            .map(|e| e.id.get_ref().clone())
            .collect();
        let access = Access::new(&with_tokens_file(&file.access, src)?, &enterprises)
            .map_err(|e| ConfigError(format!("{}: {e}", src.path.display())))?;
        let escalation = EscalationPolicy::new(&file.escalation, &enterprises)
            .map_err(|e| ConfigError(format!("{}: {e}", src.path.display())))?;
        let notify = file
            .notify
            .validate(
                &enterprises,
                |p| src.beside(p),
                |var| std::env::var(var).ok(),
            )
            .map_err(|e| ConfigError(format!("{}: {e}", src.path.display())))?;
        let spec = SiteSpec {
            park: file.park,
            defaults: file.defaults,
            enterprise: file.enterprise,
        };
        let site = SiteModel::from_spec(&spec, src).map_err(|e| ConfigError(e.to_string()))?;
        let config = Config {
            settings: Settings {
                data_dir: file.data_dir,
                mqtt: file.mqtt,
                grpc: file.grpc,
                metrics: file.metrics,
                console: file.console,
                engine: file.engine,
                archive: file.archive,
                backfill: file.backfill,
                journal: file.journal,
                health: file.health,
                access,
                escalation,
                notify,
            },
            site,
        };
        config
            .check_exposure()
            .map_err(|e| ConfigError(format!("{}: {e}", src.path.display())))?;
        Ok(config)
    }

    /// Checks what the service exposes to the network, as it will run
    /// (call it again after command-line or environment overrides):
    /// plaintext or unauthenticated gRPC, console and MQTT only on loopback.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        // Again: an override may name this process of a cluster, and the
        // cluster's links are checked for what they expose.
        s.engine
            .validate()
            .map_err(|e| ConfigError(e.to_string()))?;
        check_grpc_exposure(&s.grpc, &s.access)?;
        s.console.validate().map_err(ConfigError)?;
        s.metrics.validate().map_err(ConfigError)?;
        if let Some(listen) = s.console.listen
            && s.access.is_open()
            && !listen.ip().is_loopback()
        {
            return Err(ConfigError(format!(
                "console.listen {listen} is not loopback, so [[access.token]] entries are required"
            )));
        }
        s.mqtt.validate().map_err(|e| ConfigError(e.to_string()))?;
        if s.mqtt.broker.is_none() && !s.mqtt.listen.ip().is_loopback() {
            if s.mqtt.tls.is_none() {
                return Err(ConfigError(format!(
                    "mqtt.listen {} is not loopback: configure mqtt.tls = {{ cert = ..., key = ... }}",
                    s.mqtt.listen
                )));
            }
            if self.site.registry.is_open() {
                return Err(ConfigError(format!(
                    "mqtt.listen {} is not loopback, so gateways must be registered ([[enterprise.gateway]] with a credential)",
                    s.mqtt.listen
                )));
            }
        }
        Ok(())
    }
}

/// A secret read from the environment: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The secret in the environment variable `var` names (`None` when no
    /// variable is named), read through `env`; `field` is the setting, for
    /// errors. A `bearer` token must fit an `authorization: Bearer` header:
    /// checked here, so it cannot fail at every request later.
    pub fn from_env(
        field: &str,
        var: Option<&str>,
        bearer: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, String> {
        let Some(var) = var else {
            return Ok(None);
        };
        match env(var) {
            Some(v) if !v.is_empty() => {
                if bearer && hyper::header::HeaderValue::from_str(&format!("Bearer {v}")).is_err() {
                    return Err(format!(
                        "{field}: the environment variable {var} holds characters a header cannot carry"
                    ));
                }
                Ok(Some(Secret(v)))
            }
            _ => Err(format!(
                "{field}: the environment variable {var} is not set"
            )),
        }
    }
}

/// A host that is this machine: `localhost` or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An address the service calls out to (a webhook, an upstream park):
/// `https`, or `http` to loopback unless `allow_plaintext`. `field` names
/// the setting in errors.
pub fn outbound_url(field: &str, url: &str, allow_plaintext: bool) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{field}: `{url}`: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{field}: `{url}` has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_plaintext || is_loopback(host) => Ok(uri),
        Some("http") => Err(format!(
            "{field}: `{url}` is plain http to a host that is not loopback: use https, or set allow_plaintext = true"
        )),
        _ => Err(format!("{field}: `{url}` must be http or https")),
    }
}

/// gRPC off loopback only with TLS (or plaintext allowed) and tokens.
pub fn check_grpc_exposure(grpc: &GrpcConfig, access: &Access) -> Result<(), ConfigError> {
    grpc.validate().map_err(ConfigError)?;
    if access.is_open() && !grpc.listen.ip().is_loopback() {
        return Err(ConfigError(format!(
            "grpc.listen {} is not loopback, so [[access.token]] entries are required",
            grpc.listen
        )));
    }
    Ok(())
}

/// `[access]` with the entries of its `tokens_file`, if it names one.
fn with_tokens_file(access: &AccessConfig, src: &Source) -> Result<AccessConfig, ConfigError> {
    let Some(file) = &access.tokens_file else {
        return Ok(access.clone());
    };
    let path = src.beside(file);
    let tokens: TokensFile = Source::read(&path)
        .and_then(|t| t.parse())
        .map_err(|e| ConfigError(format!("{}: access.tokens_file: {e}", src.path.display())))?;
    let mut all = access.clone();
    all.token.extend(tokens.token);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_off_loopback_needs_tls_and_tokens() {
        let mut c = Config::example();
        c.settings.console.listen = Some(SocketAddr::from(([0, 0, 0, 0], 8480)));
        let err = c.check_exposure().map_err(|e| e.to_string());
        assert!(
            err.as_ref().is_err_and(|e| e.contains("console.tls")),
            "{err:?}"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        for f in [&cert, &key] {
            std::fs::write(f, "not checked here").expect("a file");
        }
        c.settings.console.tls = Some(TlsConfig { cert, key });
        let err = c.check_exposure().map_err(|e| e.to_string());
        assert!(
            err.as_ref().is_err_and(|e| e.contains("[[access.token]]")),
            "{err:?}"
        );
        c.settings.console.tls = Some(TlsConfig {
            cert: dir.path().join("missing.pem"),
            key: dir.path().join("k.pem"),
        });
        let err = c.check_exposure().map_err(|e| e.to_string());
        assert!(
            err.as_ref().is_err_and(|e| e.contains("console.tls.cert")),
            "{err:?}"
        );
        c.settings.console = ConsoleConfig {
            listen: Some(ConsoleConfig::DEMO_LISTEN),
            tls: None,
        };
        assert!(c.check_exposure().is_ok());
    }

    #[test]
    fn metrics_and_health_leave_loopback_only_when_allowed() {
        let mut c = Config::example();
        c.settings.metrics.listen = SocketAddr::from(([0, 0, 0, 0], 9464));
        let err = c.check_exposure().map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("metrics.allow_off_loopback")),
            "{err:?}"
        );
        c.settings.metrics.enabled = false;
        assert!(c.check_exposure().is_ok(), "nothing listens when off");
        c.settings.metrics.enabled = true;
        c.settings.metrics.allow_off_loopback = true;
        assert!(c.check_exposure().is_ok());
    }

    #[test]
    fn tokens_can_live_in_a_file_of_their_own() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join("secrets")).expect("a directory");
        let tokens = dir.path().join("secrets/tokens.toml");
        let park = dir.path().join("park.toml");
        let config = EXAMPLE_CONFIG.replacen(
            "[metrics]",
            "[access]\ntokens_file = \"secrets/tokens.toml\"\n\n[metrics]",
            1,
        );
        std::fs::write(&park, config).expect("a file");
        let load = || Config::load(&park).map_err(|e| e.to_string());
        let err = load().expect_err("no tokens file yet");
        assert!(
            err.contains("access.tokens_file") && err.contains("tokens.toml"),
            "{err}"
        );
        std::fs::write(
            &tokens,
            "[[token]]\nname = \"County\"\ntoken = \"county-0123456789abcdef\"\nrole = \"viewer\"\nlevel = \"county\"\nenterprises = [\"*\"]\n",
        )
        .expect("a file");
        let c = load().expect("the tokens file's entries join [access]");
        assert!(!c.settings.access.is_open());
        // A mistake in it is named with its own file and line.
        std::fs::write(&tokens, "[[token]]\nname = \"County\"\nrole = \"mayor\"\n")
            .expect("a file");
        let err = load().expect_err("a bad role");
        assert!(err.contains("secrets/tokens.toml:3"), "{err}");
    }

    #[test]
    fn a_cluster_off_loopback_needs_its_private_network_said() {
        let load = |engine: &str| {
            let text = EXAMPLE_CONFIG.replacen(
                "[engine]\nworkers = 0",
                &format!("[engine]\n{engine}workers = 2"),
                1,
            );
            assert_ne!(text, EXAMPLE_CONFIG);
            let src = Source {
                path: "park.toml".into(),
                text,
            };
            Config::from_source(&src).map_err(|e| e.to_string())
        };
        let err = load("cluster = [\"10.0.0.1:2101\", \"10.0.0.2:2101\"]\n").unwrap_err();
        assert!(
            err.contains("engine.cluster") && err.contains("not loopback"),
            "{err}"
        );
        let c = load(
            "cluster = [\"10.0.0.1:2101\", \"10.0.0.2:2101\"]\ncluster_private_network = true\n",
        )
        .expect("said to be on a private network");
        assert_eq!(c.settings.engine.cluster.len(), 2);
        // An override naming a process the cluster does not have is
        // refused by the check that runs after overrides.
        let mut c = load("cluster = [\"127.0.0.1:2101\", \"127.0.0.1:2102\"]\n").expect("loopback");
        c.settings.engine.process = 2;
        let err = c.check_exposure().unwrap_err().to_string();
        assert!(err.contains("engine.process"), "{err}");
    }

    #[test]
    fn embedded_example_is_valid() {
        let c = Config::example();
        assert_eq!(c.site.enterprises.len(), 3);
        assert!(c.site.point_count() >= 20);
    }
}
