//! A regional instance's configuration file, as written and as validated.
//!
//! ```toml
//! data_dir = "./region-data"
//!
//! [region]
//! id = "JS-NT"                 # the region's id
//! name = "南通市应急管理局"
//! level = "city"               # county | city | province
//! lost_after_s = 30            # a park out of reach this long raises its alarm here
//!
//! [grpc]
//! listen = "127.0.0.1:50061"
//!
//! [[upstream]]
//! park = "PARK-01"             # the park instance's park id (checked at connect)
//! url = "https://park01.example.cn:50051"
//! token_env = "HW_PARK01_TOKEN" # a viewer token of the park instance, at this level
//! ca_file = "park01-ca.pem"    # trusted for the park's certificate
//!
//! [journal]
//! retention_days = 90          # merged events kept this long (0: for ever)
//!
//! [metrics]
//! listen = "127.0.0.1:9465"    # /metrics, /readyz, /livez (`hazardwatch health --metrics`)
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hazardwatch_alarms::access::Level;
use hazardwatch_alarms::{Access, AccessConfig};
use hazardwatch_rules::Source;
use hazardwatch_storage::JournalConfig;
use serde::Deserialize;

use crate::config::{
    ConfigError, GrpcConfig, MetricsConfig, Secret, check_grpc_exposure, outbound_url,
};
use crate::readiness::HealthConfig;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionFile {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    region: RegionSpec,
    #[serde(default)]
    grpc: GrpcConfig,
    #[serde(default)]
    access: AccessConfig,
    #[serde(default)]
    upstream: Vec<UpstreamSpec>,
    #[serde(default)]
    journal: JournalConfig,
    #[serde(default = "region_metrics")]
    metrics: MetricsConfig,
    #[serde(default)]
    health: HealthConfig,
}

/// A region's endpoints beside a park's on the same machine: one port up.
fn region_metrics() -> MetricsConfig {
    MetricsConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9465)),
        ..MetricsConfig::default()
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./region-data")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionSpec {
    id: String,
    #[serde(default)]
    name: String,
    level: Level,
    #[serde(default = "thirty")]
    lost_after_s: f64,
}

fn thirty() -> f64 {
    30.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamSpec {
    park: String,
    url: String,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    allow_plaintext: bool,
}

/// One upstream park instance.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its park id.
    pub park: String,
    /// Its gRPC address.
    pub url: String,
    /// Its viewer token for us.
    pub token: Option<Secret>,
    /// The CA certificates its certificate is checked against (PEM).
    pub ca_file: Option<PathBuf>,
}

/// A validated regional configuration.
#[derive(Debug, Clone)]
pub struct RegionConfig {
    /// Where the regional journal lives.
    pub data_dir: PathBuf,
    /// The region's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its place on the escalation chain.
    pub level: Level,
    /// How long a park may be out of reach before its alarm is raised.
    pub lost_after: Duration,
    /// The gRPC server regulators call.
    pub grpc: GrpcConfig,
    /// Who may call.
    pub access: Access,
    /// The parks.
    pub upstreams: Vec<Upstream>,
    /// How long merged events are kept, ms (`None`: for ever). The parks'
    /// own archives keep theirs.
    pub keep_ms: Option<i64>,
    /// `/metrics`, `/readyz`, `/livez` (default 127.0.0.1:9465).
    pub metrics: MetricsConfig,
    /// When it says it is not ready: the free disk it needs
    /// (`disk_min_free_mb`; `engine_max_lag_s` has no engine to apply to).
    pub health: HealthConfig,
}

impl RegionConfig {
    /// Reads and validates a regional configuration file.
    pub fn load(path: &Path) -> Result<RegionConfig, ConfigError> {
        let src = Source::read(path).map_err(|e| ConfigError::new(e.to_string()))?;
        Self::from_source(&src, |var| std::env::var(var).ok())
    }

    /// Validates configuration text; `env` reads the environment.
    pub fn from_source(
        src: &Source,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RegionConfig, ConfigError> {
        let file: RegionFile = src.parse().map_err(|e| ConfigError::new(e.to_string()))?;
        let at = |e: String| ConfigError::new(format!("{}: {e}", src.path.display()));
        let region = &file.region;
        if region.id.trim().is_empty() {
            return Err(at("region.id: required".into()));
        }
        if region.level == Level::Enterprise || region.level == Level::Park {
            return Err(at(format!(
                "region.level: `{}`: a regional instance is a county, city or province",
                region.level.as_str()
            )));
        }
        if !(region.lost_after_s.is_finite() && (0.1..=3_600.0).contains(&region.lost_after_s)) {
            return Err(at(format!(
                "region.lost_after_s: {} must be from 0.1 to 3600",
                region.lost_after_s
            )));
        }
        let mut parks = BTreeSet::new();
        let mut upstreams = Vec::new();
        for (i, u) in file.upstream.iter().enumerate() {
            let field = format!("upstream[{i}]");
            if u.park.trim().is_empty() || !parks.insert(u.park.clone()) {
                return Err(at(format!(
                    "{field}.park: `{}` is empty or named twice",
                    u.park
                )));
            }
            outbound_url(&format!("{field}.url"), &u.url, u.allow_plaintext).map_err(at)?;
            let token = Secret::from_env(
                &format!("{field}.token_env"),
                u.token_env.as_deref(),
                true,
                &env,
            )
            .map_err(at)?;
            let ca_file = u.ca_file.as_deref().map(|p| src.beside(p));
            if let Some(ca) = &ca_file
                && !ca.is_file()
            {
                return Err(at(format!(
                    "{field}.ca_file: {} is not a file",
                    ca.display()
                )));
            }
            upstreams.push(Upstream {
                park: u.park.clone(),
                url: u.url.clone(),
                token,
                ca_file,
            });
        }
        let access = Access::regional(&file.access, &parks).map_err(|e| at(e.to_string()))?;
        file.journal.validate().map_err(|e| at(e.to_string()))?;
        file.health.validate().map_err(at)?;
        let config = RegionConfig {
            data_dir: file.data_dir,
            id: region.id.clone(),
            name: region.name.clone(),
            level: region.level,
            lost_after: Duration::from_secs_f64(region.lost_after_s),
            grpc: file.grpc,
            access,
            upstreams,
            keep_ms: file.journal.keep_ms(),
            metrics: file.metrics,
            health: file.health,
        };
        config.check_exposure().map_err(|e| at(e.to_string()))?;
        Ok(config)
    }

    /// Checks what it exposes, as it will run (call again after command-line
    /// overrides): gRPC off loopback only with TLS and tokens.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        check_grpc_exposure(&self.grpc, &self.access)?;
        self.metrics.validate().map_err(ConfigError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RegionConfig, String> {
        let src = Source {
            path: "region.toml".into(),
            text: text.into(),
        };
        RegionConfig::from_source(&src, |v| (v == "T").then(|| "secret-token".into()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_region_is_valid() {
        let text = include_str!("../../deploy/config/example-region.toml");
        let c = parse(text).expect("the example region loads");
        assert_eq!(c.level, Level::City);
        assert_eq!(c.upstreams[0].park, "DEMO-PARK");
        assert_eq!(c.keep_ms, Some(90 * 86_400_000));
    }

    #[test]
    fn a_region_and_its_parks_are_checked() {
        let ok = parse(
            "[region]\nid = \"R\"\nlevel = \"province\"\n[[upstream]]\npark = \"P1\"\nurl = \"http://127.0.0.1:50051\"\ntoken_env = \"T\"\n",
        )
        .expect("valid");
        assert_eq!(ok.upstreams[0].park, "P1");
        assert!(ok.upstreams[0].token.is_some());
        for (text, says) in [
            (
                "[region]\nid = \"R\"\nlevel = \"park\"\n",
                "county, city or province",
            ),
            (
                "[region]\nid = \"R\"\nlevel = \"city\"\n[[upstream]]\npark = \"P1\"\nurl = \"http://10.1.1.1:50051\"\n",
                "allow_plaintext",
            ),
            (
                "[region]\nid = \"R\"\nlevel = \"city\"\n[[upstream]]\npark = \"P1\"\nurl = \"https://a\"\n[[upstream]]\npark = \"P1\"\nurl = \"https://b\"\n",
                "named twice",
            ),
            (
                "[region]\nid = \"R\"\nlevel = \"city\"\n[[upstream]]\npark = \"P1\"\nurl = \"https://a\"\ntoken_env = \"NOPE\"\n",
                "NOPE is not set",
            ),
            (
                "[region]\nid = \"R\"\nlevel = \"city\"\n[grpc]\nlisten = \"0.0.0.0:50061\"\n",
                "grpc",
            ),
            (
                "[region]\nid = \"R\"\nlevel = \"city\"\n[journal]\nretention_days = 3\n",
                "journal.retention_days",
            ),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
