//! Following one upstream park: its alarm feed over gRPC (TLS and token as
//! configured), resumed from the cursor the regional journal keeps, merged
//! into the regional journal in batches; a park out of reach for
//! `lost_after` raises its upstream alarm here, and clears it when the
//! feed is back and caught up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use hazardwatch_alarms::AlarmHub;
use hazardwatch_alarms::text::Text;
use hazardwatch_alarms::wire;
use hazardwatch_proto::clock::SharedClock;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_client::AlarmServiceClient;
use hazardwatch_proto::pb::site_service_client::SiteServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::config::Upstream;

/// Events merged per journal transaction, at most.
const BATCH: usize = 512;
/// Waits between attempts to reach a park: the first, and the longest.
const RETRY: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How one upstream is doing, for status and tests.
#[derive(Debug, Default)]
pub struct UpstreamStatus {
    /// Its feed is open.
    pub connected: AtomicBool,
    /// Events merged since start.
    pub merged: AtomicU64,
    /// Its upstream alarm is raised here.
    pub lost: AtomicBool,
    /// A risk colour of the park changed on its feed.
    pub risk_changed: tokio::sync::Notify,
}

impl UpstreamStatus {
    /// The status of `park` as the regional journal left it: lost, if its
    /// upstream alarm is still raised.
    pub fn at_start(park: &str, hub: &AlarmHub) -> UpstreamStatus {
        let status = UpstreamStatus::default();
        let lost = hub.merged_open(park, &offline_id(park)).is_some();
        status.lost.store(lost, Ordering::Release);
        status
    }
}

/// The id of a park's upstream alarm on the regional feed.
fn offline_id(park: &str) -> String {
    wire::alarm_id(park, hazardwatch_proto::AlarmKind::Offline)
}

/// What a session ended with.
enum Ended {
    /// Stopped.
    Stop,
    /// The park's feed broke, or it could not be reached: try again.
    Broken(String),
}

/// Follows `up` until `stop`.
pub async fn follow(
    up: Upstream,
    hub: Arc<AlarmHub>,
    clock: SharedClock,
    lost_after: Duration,
    status: Arc<UpstreamStatus>,
    stop: CancellationToken,
) {
    // Out of reach when the region last stopped: its alarm is still
    // raised (see [`UpstreamStatus::at_start`]), from then.
    let down_since_start = hub
        .merged_open(&up.park, &offline_id(&up.park))
        .map(|raised| raised.event_time_ms);
    let mut down_since = down_since_start.unwrap_or_else(|| clock.now_ms());
    let lost_after_ms = i64::try_from(lost_after.as_millis()).unwrap_or(i64::MAX);
    let mut wait = RETRY.0;
    loop {
        match session(&up, &hub, &clock, &status, down_since, &stop).await {
            Ended::Stop => return,
            Ended::Broken(why) => {
                if status.connected.swap(false, Ordering::AcqRel) {
                    down_since = clock.now_ms();
                    wait = RETRY.0;
                    tracing::warn!(park = %up.park, url = %up.url, %why, "upstream feed broken; reconnecting");
                } else {
                    tracing::debug!(park = %up.park, %why, "upstream still out of reach");
                }
            }
        }
        let lost_for = clock.now_ms().saturating_sub(down_since);
        if !status.lost.load(Ordering::Acquire) && lost_for >= lost_after_ms {
            raise_lost(&up.park, &hub, &clock, &status, down_since, true).await;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY.1);
        // Never wait past the moment the park counts as lost.
        if !status.lost.load(Ordering::Acquire) {
            let left = lost_after_ms.saturating_sub(clock.now_ms().saturating_sub(down_since));
            wait = wait.min(Duration::from_millis(
                u64::try_from(left.max(1)).unwrap_or(1),
            ));
        }
    }
}

/// One connection to the park: resume its feed and merge until it ends.
async fn session(
    up: &Upstream,
    hub: &Arc<AlarmHub>,
    clock: &SharedClock,
    status: &UpstreamStatus,
    down_since: i64,
    stop: &CancellationToken,
) -> Ended {
    let (channel, authorise) = match channel_to(up).await {
        Ok(c) => c,
        Err(e) => return Ended::Broken(e),
    };
    // The park must be the one configured: merging another park's feed
    // under this name would mislead every regulator.
    let mut site = SiteServiceClient::with_interceptor(channel.clone(), authorise.clone());
    match site.describe(pb::DescribeRequest::default()).await {
        Ok(d) if d.get_ref().park_id == up.park => {}
        Ok(d) => {
            return Ended::Broken(format!(
                "{} serves park `{}`, not `{}`",
                up.url,
                d.get_ref().park_id,
                up.park
            ));
        }
        Err(e) => return Ended::Broken(format!("Describe: {e}")),
    }
    let mut alarms = AlarmServiceClient::with_interceptor(channel, authorise);
    let park = up.park.clone();
    let cursor = {
        let (hub, park) = (hub.clone(), park.clone());
        match tokio::task::spawn_blocking(move || hub.journal().upstream_cursor(&park)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Ended::Broken(format!("the regional journal: {e}")),
            Err(e) => return Ended::Broken(e.to_string()),
        }
    };
    // Everything the park records, whatever a control room would hide.
    let every = pb::AlarmFilter {
        include_suppressed: true,
        include_shelved: true,
        ..Default::default()
    };
    let request = |resume_after| pb::SubscribeRequest {
        filter: Some(every.clone()),
        resume_after,
    };
    let feed = match alarms.subscribe(request(cursor)).await {
        Ok(f) => f.into_inner(),
        Err(e) if e.code() == tonic::Code::OutOfRange => {
            // The park no longer holds what we have not seen (its journal
            // was pruned or replaced): say so, then start from its state.
            tracing::error!(park = %park, cursor, error = %e, "upstream cannot resume: events lost to this feed");
            let mut gap = notice(&park, "upstream_gap", clock.now_ms(), |t| {
                t.with("after", cursor)
            });
            gap.transition = pb::Transition::Commented as i32;
            gap.state = pb::AlarmState::Normal as i32;
            let (hub2, park2) = (hub.clone(), park.clone());
            let _ =
                tokio::task::spawn_blocking(move || hub2.record_upstream(&park2, None, vec![gap]))
                    .await;
            match alarms.subscribe(request(0)).await {
                Ok(f) => f.into_inner(),
                Err(e) => return Ended::Broken(format!("Subscribe: {e}")),
            }
        }
        Err(e) => return Ended::Broken(format!("Subscribe: {e}")),
    };
    status.connected.store(true, Ordering::Release);
    tracing::info!(park = %park, resume_after = cursor, "following upstream park");
    if status.lost.load(Ordering::Acquire) {
        raise_lost(&park, hub, clock, status, down_since, false).await;
    }
    let mut batches = feed.ready_chunks(BATCH);
    loop {
        let batch = tokio::select! {
            () = stop.cancelled() => return Ended::Stop,
            b = batches.next() => b,
        };
        let Some(batch) = batch else {
            return Ended::Broken("the park ended its feed".into());
        };
        let mut events = Vec::with_capacity(batch.len());
        let mut broken = None;
        for item in batch {
            match item {
                Ok(e) => events.push(e),
                Err(e) => {
                    broken = Some(format!("feed: {e}"));
                    break;
                }
            }
        }
        if let Some(last) = events.last().map(|e| e.seq) {
            let n = events.len() as u64;
            let colours = events
                .iter()
                .any(|e| e.transition == pb::Transition::RiskChanged as i32);
            let (hub, park) = (hub.clone(), park.clone());
            match tokio::task::spawn_blocking(move || {
                hub.record_upstream(&park, Some(last), events)
            })
            .await
            {
                Ok(Ok(_)) => {
                    status.merged.fetch_add(n, Ordering::Relaxed);
                    if colours {
                        status.risk_changed.notify_one();
                    }
                }
                Ok(Err(e)) => return Ended::Broken(format!("the regional journal: {e}")),
                Err(e) => return Ended::Broken(e.to_string()),
            }
        }
        if let Some(why) = broken {
            return Ended::Broken(why);
        }
    }
}

/// A channel to the park and the interceptor that presents its token.
pub(super) async fn channel_to(
    up: &Upstream,
) -> Result<
    (
        Channel,
        impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone,
    ),
    String,
> {
    let channel = connect(up).await?;
    let bearer = up.token.as_ref().and_then(|t| {
        format!("Bearer {}", t.0)
            .parse::<tonic::metadata::MetadataValue<_>>()
            .ok()
    });
    let authorise = move |mut req: tonic::Request<()>| {
        if let Some(b) = &bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        Ok(req)
    };
    Ok((channel, authorise))
}

/// A channel to the park, with TLS for `https`.
async fn connect(up: &Upstream) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(up.url.clone())
        .map_err(|e| format!("{}: {e}", up.url))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if up.url.starts_with("https") {
        let tls = match &up.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("{}: TLS: {e}", up.url))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {}: {e}", up.url))
}

/// Raises (or clears) the park's upstream alarm on the regional feed.
async fn raise_lost(
    park: &str,
    hub: &Arc<AlarmHub>,
    clock: &SharedClock,
    status: &UpstreamStatus,
    down_since: i64,
    raised: bool,
) {
    let since = chrono::DateTime::from_timestamp_millis(down_since)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let key = if raised {
        "upstream_lost"
    } else {
        "upstream_back"
    };
    let mut event = notice(park, key, clock.now_ms(), |t| t.with("since", since));
    if !raised {
        event.transition = pb::Transition::Cleared as i32;
        event.state = pb::AlarmState::Normal as i32;
    }
    if raised {
        tracing::error!(%park, "upstream park out of reach: its alarm raised");
    } else {
        tracing::info!(%park, "upstream park back: its alarm cleared");
    }
    let (hub, name) = (hub.clone(), park.to_owned());
    let recorded =
        tokio::task::spawn_blocking(move || hub.record_upstream(&name, None, vec![event])).await;
    match recorded {
        // Lost (or back) once its alarm says so.
        Ok(Ok(_)) => status.lost.store(raised, Ordering::Release),
        Ok(Err(e)) => {
            tracing::error!(%park, error = %e, "recording the park's upstream alarm failed; trying again")
        }
        Err(e) => {
            tracing::error!(%park, error = %e, "recording the park's upstream alarm failed; trying again")
        }
    }
}

/// An event of the park's upstream alarm (`{park}/OFFLINE`, high), raised,
/// with text `key` (parameters: `id` and what `params` adds).
fn notice(
    park: &str,
    key: &'static str,
    now_ms: i64,
    params: impl FnOnce(Text) -> Text,
) -> pb::AlarmEvent {
    let mut event = pb::AlarmEvent {
        alarm_id: offline_id(park),
        park: park.to_owned(),
        kind: pb::AlarmKind::Offline as i32,
        priority: pb::Priority::High as i32,
        transition: pb::Transition::Raised as i32,
        state: pb::AlarmState::UnackedActive as i32,
        event_time_ms: now_ms,
        value: f64::NAN,
        limit: f64::NAN,
        escalation_level: pb::EscalationLevel::Enterprise as i32,
        ..Default::default()
    };
    wire::set_text(&mut event, &params(Text::new(key).with("id", park)));
    event
}
