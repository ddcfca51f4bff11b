//! The engine's `[engine]` settings: workers, epochs, lateness, how live
//! event time advances, and the processes of a cluster.

use serde::Deserialize;

use crate::error::{Error, Result};

/// The shortest epoch [`EngineConfig::history_epoch_ms`] gives, ms.
const HISTORY_EPOCH_MS: u64 = 1000;

/// `[engine]` settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Timely worker threads; 0 means one per core.
    pub workers: usize,
    /// Length of one timely epoch in ms of event time. Coarse epochs keep
    /// progress tracking cheap; the exact time stays inside each reading.
    pub epoch_ms: u64,
    /// How late (behind the newest time known) a reading may arrive and still
    /// be judged by the rules, in ms.
    pub lateness_ms: u64,
    /// How live event time advances within the lateness (see
    /// [`WatermarkPolicy`]).
    pub watermark: WatermarkPolicy,
    /// The processes of a cluster, `host:port` each, in the order of their
    /// index (empty: this process alone). Every process runs `workers`
    /// workers; readings are exchanged between them by point, and the
    /// events gathered by worker 0 of process 0.
    pub cluster: Vec<String>,
    /// This process's index in `cluster`.
    pub process: usize,
    /// Set when `cluster` names addresses off loopback: the links between
    /// the processes are timely's, plain TCP with neither TLS nor
    /// authentication, so they belong on a network of their own (a
    /// private VLAN, or a WireGuard or IPsec tunnel). Setting this says
    /// that they are.
    pub cluster_private_network: bool,
}

/// `engine.watermark`: how live event time advances. Either way it is never
/// held further behind the clock than `lateness_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatermarkPolicy {
    /// As far as the gateways' learned disorder and delay allow: a reading
    /// is judged as soon as every gateway has sent what could precede it
    /// (the service's `pipeline::watermark`).
    #[default]
    Learned,
    /// The clock less the lateness: every reading waits the full bound.
    Fixed,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 0,
            epoch_ms: 10,
            lateness_ms: 2_000,
            watermark: WatermarkPolicy::default(),
            cluster: Vec::new(),
            process: 0,
            cluster_private_network: false,
        }
    }
}

impl EngineConfig {
    /// Checks the settings, naming the field that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message| Err(Error::Setting { field, message });
        if self.workers > 256 {
            return bad(
                "engine.workers",
                format!("{} is more than 256", self.workers),
            );
        }
        if !(1..=60_000).contains(&self.epoch_ms) {
            return bad(
                "engine.epoch_ms",
                format!("{} must be from 1 to 60000", self.epoch_ms),
            );
        }
        if self.lateness_ms > 86_400_000 {
            return bad(
                "engine.lateness_ms",
                format!("{} is more than a day", self.lateness_ms),
            );
        }
        if self.cluster.len() > 64 {
            return bad(
                "engine.cluster",
                format!("{} processes: at most 64", self.cluster.len()),
            );
        }
        if let Some(a) = self.cluster.iter().find(|a| {
            a.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        }) {
            return bad("engine.cluster", format!("`{a}` is not host:port"));
        }
        if self.cluster.len() > 1 && self.workers == 0 {
            // Timely needs as many workers in every process; "one per
            // core" may differ between hosts.
            return bad(
                "engine.workers",
                "0 (one per core) in a cluster: give every process the same number".to_owned(),
            );
        }
        if !self.cluster_private_network
            && let Some(a) = self.cluster.iter().find(|a| {
                let host = a.rsplit_once(':').map_or("", |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                !(host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback()))
            })
        {
            return bad(
                "engine.cluster",
                format!(
                    "`{a}` is not loopback: the links between the processes have neither TLS nor \
                     authentication; put them on a private network or tunnel and set \
                     engine.cluster_private_network = true"
                ),
            );
        }
        if self.process >= self.cluster.len().max(1) {
            return bad(
                "engine.process",
                format!(
                    "{} is not the index of one of the {} processes",
                    self.process,
                    self.cluster.len().max(1)
                ),
            );
        }
        Ok(())
    }

    /// Timely's configuration: one thread, threads in this process, or
    /// this process's part of a cluster.
    pub(super) fn timely(&self) -> timely::Config {
        let workers = self.worker_count();
        if self.cluster.len() > 1 {
            timely::Config {
                communication: timely::CommunicationConfig::Cluster {
                    threads: workers,
                    process: self.process,
                    addresses: self.cluster.clone(),
                    report: false,
                    zerocopy: false,
                },
                worker: timely::WorkerConfig::default(),
            }
        } else if workers == 1 {
            timely::Config::thread()
        } else {
            timely::Config::process(workers)
        }
    }

    /// The epochs to judge a finite history with (a replay, a backfilled
    /// episode), ms: the configured ones, but a second at least. What the
    /// rules give does not depend on the epochs' length, only on the
    /// readings (the proptests of `rules/tests`); an epoch's fixed cost
    /// does, and live epochs are short for latency. At most a second: the
    /// gateway rule's beats assume a batch spans less than its shortest
    /// silence (`offline_after_s` >= 1).
    pub fn history_epoch_ms(&self) -> u64 {
        self.epoch_ms.max(HISTORY_EPOCH_MS)
    }

    /// Worker count with 0 resolved to the number of cores.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }
}
