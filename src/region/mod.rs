//! A regional instance (county, city, province; a national one federates
//! provinces): regulators' view across parks.
//!
//! ```text
//! park instance A --Subscribe(resume)--\
//! park instance B --Subscribe(resume)---> regional journal --> AlarmService
//! park instance C --Subscribe(resume)--/   (numbered here, tagged by park)
//! ```
//!
//! Each upstream park's feed is followed over gRPC ([`upstream`]): its
//! events are numbered again here, keep their park's number in
//! `upstream_seq`, carry the park's id in `park`, and are journaled with
//! the park's cursor in one transaction, so a restart of the park, of the
//! region, or a partition between them resumes the feed with no gap and no
//! duplicate, in the park's order. A park out of reach for
//! `lost_after_s` raises `{park}/OFFLINE` on the regional feed.
//!
//! `SiteService` answers with each park's own risk colours and gateway
//! online rates ([`site`]).
//!
//! Regulators call the same `AlarmService`: `Subscribe` (with
//! `filter.parks`, `min_escalation` for what reached their level, resume
//! from the regional numbering), `History` and `Stats` over the merged
//! journal. Alarms are acknowledged, shelved and disposed of where they
//! are handled, at the park (ISA-18.2 gives that to the operator who
//! answers the alarm, and GB/T 50493 disposal to the enterprise): the
//! regional instance records and shows those actions as they arrive from
//! the park, and takes none itself.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hazardwatch_alarms::AlarmHub;
use hazardwatch_proto::clock::SharedClock;
use hazardwatch_storage::AlarmJournal;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::readiness::{self, Readiness};
use crate::{grpc, http};

pub mod config;
pub mod site;
pub mod upstream;

pub use config::RegionConfig;
pub use upstream::UpstreamStatus;

/// A running regional instance.
pub struct RegionRunning {
    /// Where its gRPC server listens.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics`, `/readyz` and `/livez` listen, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The merged alarm feed.
    pub hub: Arc<AlarmHub>,
    /// Each upstream park and how it is doing, in configuration order.
    pub upstreams: Vec<(String, Arc<UpstreamStatus>)>,
    stop: CancellationToken,
    followers: Vec<JoinHandle<()>>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Starts a regional instance: its journal, a follower per upstream park,
/// its gRPC server.
pub async fn start(config: RegionConfig, clock: SharedClock) -> anyhow::Result<RegionRunning> {
    let journal_path = config.data_dir.join("journal").join("region.redb");
    let journal = AlarmJournal::open(&journal_path)
        .with_context(|| format!("opening {}", journal_path.display()))?;
    let hub = AlarmHub::open_regional(journal, clock.now_ms())?;
    let stop = CancellationToken::new();
    // Ready while the disk has room; a park out of reach is an alarm on
    // the feed, not unreadiness.
    let readiness = Arc::new(Readiness::default());
    let metrics_addr = if config.metrics.enabled {
        let listen = config.metrics.listen;
        let listener = http::bind(listen)
            .await
            .with_context(|| format!("binding metrics and health on {listen}"))?;
        let addr = listener.local_addr()?;
        tokio::spawn(http::serve(listener, readiness.clone(), stop.clone()));
        Some(addr)
    } else {
        None
    };
    let check = {
        let (dir, min_free_mb) = (config.data_dir.clone(), config.health.disk_min_free_mb);
        move || {
            readiness::disk_cause(&dir, min_free_mb)
                .into_iter()
                .collect()
        }
    };
    tokio::spawn(readiness::watch(check, readiness.clone(), stop.clone()));
    let tls = config.grpc.identity().map_err(anyhow::Error::msg)?;
    let server = grpc::server(tls).context("grpc.tls: certificate or key")?;
    let listener = grpc::bind(config.grpc.listen)
        .await
        .with_context(|| format!("binding gRPC to {}", config.grpc.listen))?;
    let grpc_addr = listener.local_addr()?;
    let alarms = Arc::new(grpc::alarms::Alarms::new(
        hub.clone(),
        clock.clone(),
        stop.clone(),
    ));
    let upstreams: Vec<(String, Arc<UpstreamStatus>)> = config
        .upstreams
        .iter()
        .map(|up| {
            let status = UpstreamStatus::at_start(&up.park, &hub);
            (up.park.clone(), Arc::new(status))
        })
        .collect();
    let site = Arc::new(site::RegionSite::new(
        config.id.clone(),
        config.name.clone(),
        upstreams.clone(),
    ));
    let grpc = tokio::spawn(grpc::serve_region(
        server,
        listener,
        Arc::new(config.access.clone()),
        alarms,
        site.clone(),
        stop.clone(),
    ));
    let mut followers = Vec::new();
    for (up, (_, status)) in config.upstreams.iter().zip(&upstreams) {
        followers.push(tokio::spawn(upstream::follow(
            up.clone(),
            hub.clone(),
            clock.clone(),
            config.lost_after,
            status.clone(),
            stop.clone(),
        )));
        followers.push(tokio::spawn(site::poll(
            up.clone(),
            site.clone(),
            status.clone(),
            clock.clone(),
            stop.clone(),
        )));
    }
    if let Some(keep_ms) = config.keep_ms {
        followers.push(tokio::spawn(prune(
            hub.clone(),
            clock.clone(),
            keep_ms,
            stop.clone(),
        )));
    }
    tracing::info!(
        region = %config.id,
        level = config.level.as_str(),
        parks = config.upstreams.len(),
        %grpc_addr,
        last_seq = hub.last_seq(),
        "regional instance started"
    );
    Ok(RegionRunning {
        grpc_addr,
        metrics_addr,
        hub,
        upstreams,
        stop,
        followers,
        grpc,
    })
}

/// `hazardwatch region`: runs until SIGINT or SIGTERM, then stops.
pub async fn run(config: RegionConfig) -> anyhow::Result<()> {
    let running = start(config, Arc::new(hazardwatch_proto::clock::WallClock)).await?;
    println!(
        "hazardwatch region: gRPC on {}, following {} parks",
        running.grpc_addr,
        running.upstreams.len()
    );
    crate::shutdown::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await
}

/// How often merged events past the retention are looked for.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Deletes merged events older than `keep_ms` every [`PRUNE_EVERY`] until
/// `stop` (the region has no archive: the parks' archives keep them).
async fn prune(hub: Arc<AlarmHub>, clock: SharedClock, keep_ms: i64, stop: CancellationToken) {
    loop {
        let (h, before_ms) = (hub.clone(), clock.now_ms().saturating_sub(keep_ms));
        match tokio::task::spawn_blocking(move || h.prune_journal(before_ms, u64::MAX, 10)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                events = n,
                "regional journal: events past the retention deleted"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "regional journal retention"),
            Err(e) => tracing::error!(error = %e, "regional journal retention"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

impl RegionRunning {
    /// Stops following the parks and serving.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        for f in self.followers {
            f.await.context("an upstream follower")?;
        }
        self.grpc.await.context("gRPC task")??;
        Ok(())
    }
}
