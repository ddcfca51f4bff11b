//! The `hazardwatch` command line. Parses arguments and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hazardwatch::config::{Config, EXAMPLE_CONFIG};
use hazardwatch::replay::ReplayCommand;
use hazardwatch::sim::{PayloadFormat, SimOptions};

/// Telemetry and early warning for major hazard sources in chemical parks.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on standard error as text, or as one JSON object per line
    /// (time, level, target, message and fields) for a log collector.
    #[arg(long, global = true, value_enum, env = "HAZARDWATCH_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Embedded broker + simulated park + rules + archive + gRPC, alarms on screen.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Seed of the simulated noise.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Site model and settings (default: the built-in example park).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The simulated gateways' passwords, TOML `GATEWAY = "password"`
        /// (default: the example park's public demo passwords).
        #[arg(long)]
        credentials: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Run the service with a configuration file.
    Run {
        /// The configuration file.
        #[arg(long, env = "HAZARDWATCH_CONFIG")]
        config: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Run a regional instance (county, city, province): the alarm feeds of
    /// its parks' instances merged for regulators.
    Region {
        /// The regional configuration file (deploy/config/example-region.toml).
        #[arg(long, env = "HAZARDWATCH_REGION_CONFIG")]
        config: PathBuf,
        /// Serve gRPC here instead of the file's `[grpc] listen`.
        #[arg(long)]
        grpc: Option<SocketAddr>,
        /// Keep the regional journal here instead of the file's `data_dir`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Publish a simulated park to an MQTT broker, as its gateways would.
    Simulate {
        /// Broker `host:port`.
        #[arg(long, default_value = "127.0.0.1:1883")]
        broker: String,
        /// Site model to simulate (default: the built-in example park).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Payload encoding.
        #[arg(long, value_enum, default_value_t = PayloadFormat::Json)]
        format: PayloadFormat,
        /// Normal operation only: no incidents.
        #[arg(long)]
        no_incidents: bool,
        /// Seconds before the first incident.
        #[arg(long, default_value_t = 10.0)]
        incident_start: f64,
        /// Schedule the slow incidents too (hours long: cooling
        /// degradation, feed-ratio fault, slow leak).
        #[arg(long)]
        slow_incidents: bool,
        /// Write the simulated readings straight into a new archive here,
        /// in simulated time (needs --duration), instead of publishing.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// With --archive: the simulated start, RFC 3339 or Unix ms
        /// (default: --duration before now).
        #[arg(long)]
        start: Option<String>,
        /// Seed of the simulated noise.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The gateways' passwords, TOML `GATEWAY = "password"` (default:
        /// the example park's public demo passwords).
        #[arg(long)]
        credentials: Option<PathBuf>,
    },
    /// Replay archived readings through a configuration's rules, at full
    /// speed in event time; with --compare, a what-if of two rule sets.
    Replay(ReplayCommand),
    /// Fit models of normal operation (per point: centre, spread, CUSUM;
    /// per unit: PCA with T² and SPE limits) from a period of the archive.
    Learn(hazardwatch::learn::LearnCommand),
    /// Import history from other systems (CSV or Parquet exports, wide or
    /// long) into a new archive for learn and replay.
    Import(hazardwatch::import::ImportCommand),
    /// Validate a configuration file; errors name file, line and field.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Print the documented example configuration.
    GenerateConfig,
    /// Ask a running service on this machine whether it is ready (its
    /// `/readyz`), for a container's health check or an exec probe: exit 0
    /// when ready, 1 when not (the causes are printed), 2 when it cannot
    /// be asked.
    Health {
        /// The service's `[metrics] listen` address.
        #[arg(long, env = "HAZARDWATCH_METRICS", default_value = "127.0.0.1:9464")]
        metrics: SocketAddr,
        /// Ask whether the process serves at all (`/livez`) instead.
        #[arg(long)]
        live: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Gateway credentials.
    #[command(subcommand)]
    Gateway(GatewayCommand),
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Read a password from standard input (one line) and print its
    /// argon2id hash for a gateway's `password_hash`. The password is never
    /// taken as an argument, where other users could see it.
    HashPassword,
    /// Print the gateway registry as a mosquitto ACL file, for a park whose
    /// production broker is mosquitto.
    MosquittoAcl {
        /// The configuration file.
        #[arg(long, env = "HAZARDWATCH_CONFIG")]
        config: PathBuf,
    },
}

/// Settings a command line (or container environment) can override.
#[derive(Args)]
struct Overrides {
    /// Directory for archive, quarantine and state.
    #[arg(long = "data", env = "HAZARDWATCH_DATA")]
    data: Option<PathBuf>,
    /// gRPC listen address (port 0: any free port).
    #[arg(long, env = "HAZARDWATCH_GRPC")]
    grpc: Option<SocketAddr>,
    /// Embedded MQTT broker listen address (port 0: any free port).
    #[arg(long, env = "HAZARDWATCH_MQTT")]
    mqtt: Option<SocketAddr>,
    /// External MQTT broker `host:port` instead of the embedded one.
    #[arg(long, env = "HAZARDWATCH_BROKER")]
    broker: Option<String>,
    /// Prometheus listen address.
    #[arg(long, env = "HAZARDWATCH_METRICS")]
    metrics: Option<SocketAddr>,
    /// Turn the Prometheus endpoint off.
    #[arg(long)]
    no_metrics: bool,
    /// Web console listen address (`demo` serves it on 127.0.0.1:8480
    /// unless the configuration or this says otherwise).
    #[arg(long, env = "HAZARDWATCH_CONSOLE")]
    console: Option<SocketAddr>,
    /// Timely worker threads (0: one per core).
    #[arg(long, env = "HAZARDWATCH_WORKERS")]
    workers: Option<usize>,
    /// This process's index in the file's `engine.cluster` (the same file
    /// serves every process of a cluster).
    #[arg(long, env = "HAZARDWATCH_PROCESS")]
    process: Option<usize>,
}

impl Overrides {
    /// Applies the overrides, then checks again what the service would
    /// expose: an override must not open what the file's checks refused.
    fn apply(self, config: &mut Config) -> anyhow::Result<()> {
        self.set(config);
        config
            .check_exposure()
            .map_err(|e| anyhow::anyhow!("{e} (with the command-line and HAZARDWATCH_* overrides)"))
    }

    fn set(self, config: &mut Config) {
        let s = &mut config.settings;
        if let Some(d) = self.data {
            s.data_dir = d;
        }
        if let Some(a) = self.grpc {
            s.grpc.listen = a;
        }
        if let Some(a) = self.mqtt {
            s.mqtt.listen = a;
        }
        if self.broker.is_some() {
            s.mqtt.broker = self.broker;
        }
        if let Some(a) = self.metrics {
            s.metrics.listen = a;
        }
        if self.no_metrics {
            s.metrics.enabled = false;
        }
        if self.console.is_some() {
            s.console.listen = self.console;
        }
        if let Some(w) = self.workers {
            s.engine.workers = w;
        }
        if let Some(p) = self.process {
            s.engine.process = p;
        }
    }
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::example(),
    })
}

fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < 12 {
        anyhow::bail!(
            "the password must have at least 12 characters (got {})",
            password.len()
        );
    }
    let hash = hazardwatch_ingest::auth::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}

/// The simulated gateways' passwords: from `path`, or the demo's.
fn credentials(path: Option<&PathBuf>) -> anyhow::Result<hazardwatch::sim::Credentials> {
    match path {
        Some(p) => hazardwatch::sim::read_credentials(p),
        None => hazardwatch::sim::parse_credentials(hazardwatch::sim::DEMO_CREDENTIALS),
    }
}

/// Logs to standard error, filtered by `RUST_LOG` or else `default`.
fn init_tracing(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hazardwatch-io")
        .build()?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hazardwatch::service::install_crypto_provider();
    hazardwatch::service::raise_open_files_limit();
    let result = match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                let gateways = match c.site.registry.gateways().len() {
                    0 => "no gateways registered (open MQTT, loopback only)".to_owned(),
                    n => format!("{n} gateways"),
                };
                println!(
                    "{}: OK: park {}, {} enterprises, {} points, {gateways}",
                    file.display(),
                    c.site.park_id,
                    c.site.enterprises.len(),
                    c.site.point_count()
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        Command::Replay(a) => {
            init_tracing("warn", cli.log_format);
            hazardwatch::replay::command(a)
        }
        Command::Learn(a) => {
            init_tracing("warn", cli.log_format);
            hazardwatch::learn::command(a)
        }
        Command::Import(a) => {
            init_tracing("warn", cli.log_format);
            hazardwatch::import::command(a)
        }
        Command::Health {
            metrics,
            live,
            timeout,
        } => {
            let path = if live { "/livez" } else { "/readyz" };
            return match hazardwatch::http::ask(metrics, path, Duration::from_secs(timeout)) {
                Ok((200, body)) => {
                    print!("{body}");
                    ExitCode::SUCCESS
                }
                Ok((status, body)) => {
                    print!("{status}: {body}");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("error: cannot ask http://{metrics}: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::GenerateConfig => {
            print!("{EXAMPLE_CONFIG}");
            Ok(())
        }
        Command::Gateway(GatewayCommand::HashPassword) => hash_password(),
        Command::Gateway(GatewayCommand::MosquittoAcl { config }) => Config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                let mqtt = &c.settings.mqtt;
                anyhow::ensure!(
                    !c.site.registry.is_open(),
                    "{}: no gateways are registered ([[enterprise.gateway]])",
                    config.display()
                );
                let service = mqtt.username.as_deref().unwrap_or(&mqtt.client_id);
                print!(
                    "{}",
                    hazardwatch_ingest::auth::mosquitto_acl(
                        &c.site.registry,
                        &mqtt.topic_prefix,
                        service
                    )
                );
                Ok(())
            }),
        Command::Demo {
            duration,
            seed,
            config,
            credentials: creds,
            overrides,
        } => {
            init_tracing("warn,rmqtt=off,rmqtt_net=off", cli.log_format);
            load(config.as_ref()).and_then(|mut c| {
                let console = &mut c.settings.console.listen;
                console.get_or_insert(hazardwatch::config::ConsoleConfig::DEMO_LISTEN);
                overrides.apply(&mut c)?;
                let creds = credentials(creds.as_ref())?;
                runtime()?.block_on(hazardwatch::demo::demo(
                    c,
                    duration.map(Duration::from_secs),
                    seed,
                    creds,
                ))
            })
        }
        Command::Run { config, overrides } => {
            init_tracing("info,rmqtt=warn,rmqtt_net=warn", cli.log_format);
            load(Some(&config)).and_then(|mut c| {
                let file_settings = c.settings.clone();
                overrides.apply(&mut c)?;
                runtime()?.block_on(hazardwatch::run::run(c, Some((config, file_settings))))
            })
        }
        Command::Region { config, grpc, data } => {
            init_tracing("info", cli.log_format);
            hazardwatch::region::RegionConfig::load(&config)
                .map_err(anyhow::Error::from)
                .and_then(|mut c| {
                    if let Some(addr) = grpc {
                        c.grpc.listen = addr;
                    }
                    if let Some(dir) = data {
                        c.data_dir = dir;
                    }
                    c.check_exposure()?;
                    runtime()?.block_on(hazardwatch::region::run(c))
                })
        }
        Command::Simulate {
            broker,
            config,
            duration,
            format,
            no_incidents,
            incident_start,
            slow_incidents,
            archive,
            start,
            seed,
            credentials: creds,
        } => {
            init_tracing("info", cli.log_format);
            load(config.as_ref()).and_then(|c| {
                let mut options = SimOptions {
                    seed,
                    incidents: !no_incidents,
                    incident_start_s: incident_start,
                    slow_incidents,
                    format,
                    topic_prefix: c.settings.mqtt.topic_prefix.clone(),
                    credentials: hazardwatch::sim::Credentials::new(),
                };
                if let Some(out) = archive {
                    return simulate_archive(&c, &options, &out, duration, start.as_deref());
                }
                anyhow::ensure!(start.is_none(), "--start needs --archive");
                options.credentials = credentials(creds.as_ref())?;
                let (host, port) = hazardwatch_ingest::config::broker_host_port(&broker)?;
                runtime()?.block_on(async move {
                    let n = hazardwatch::sim::publish_until_signal(
                        &c.site,
                        &options,
                        &host,
                        port,
                        duration.map(Duration::from_secs),
                    )
                    .await?;
                    println!("published {n} readings");
                    Ok(())
                })
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `simulate --archive`: simulated history written straight to an archive.
fn simulate_archive(
    c: &Config,
    options: &SimOptions,
    out: &std::path::Path,
    duration: Option<u64>,
    start: Option<&str>,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let duration = duration.ok_or_else(|| anyhow::anyhow!("--archive needs --duration"))?;
    anyhow::ensure!(
        (1..=366 * 86_400).contains(&duration),
        "--duration {duration}: from 1 s to a year with --archive"
    );
    let start_ms = match start {
        Some(t) => hazardwatch::replay::parse_time("--start", t)?,
        None => {
            let now = chrono::Utc::now().timestamp_millis();
            (now - duration as i64 * 1000).div_euclid(1000) * 1000
        }
    };
    let n = hazardwatch::sim::write_archive(
        &c.site,
        options,
        out,
        start_ms,
        duration,
        &c.settings.archive,
        std::io::stderr().is_terminal(),
    )?;
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    println!(
        "wrote {n} simulated readings, {} to {}, into {}",
        at(start_ms),
        at(start_ms + duration as i64 * 1000),
        out.display()
    );
    Ok(())
}
