//! Alarm probes: readings that cross a limit (or return from it), sent at
//! a steady pace beside a background load, and the time until each one's
//! alarm event reaches a gRPC subscriber (or its message a plain MQTT
//! subscriber), in hdrhistogram. Shared by `latency` and `soak`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hazardwatch_proto::pb;
use hdrhistogram::Histogram;
use rumqttc::QoS;

use crate::load::{self, Format};

/// Probe points, after the load's.
pub const PROBES: usize = 20;
/// One probe every this often.
pub const PROBE_EVERY: Duration = Duration::from_millis(5);

/// Probes sent and not yet seen, by (point, time stamp).
pub type Sent = Arc<Mutex<HashMap<(String, i64), Instant>>>;

/// A latency histogram, µs.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 60 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// Locks, through a poisoned lock.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes the probes (points `P{first}` to `P{first + PROBES - 1}` of
/// gateway `GWprobe`) for `duration`, recording each in `sent` before it
/// goes out; returns how many. For `warmup` before that, the same points
/// get normal readings at the same pace, not recorded: the service learns
/// how the gateway's readings arrive (its live event time does).
pub async fn probe(
    host: &str,
    port: u16,
    first: usize,
    sent: Sent,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<u64> {
    let (client, mut eventloop) = load::options("bench-probe", host, port);
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = hazardwatch_ingest::topic::telemetry("hw/v1", "E", "GWprobe", Format::Json);
    let start = tokio::time::Instant::now();
    let (mut seq, mut n) = (0u64, 0u64);
    while start.elapsed() < warmup + duration {
        tokio::time::sleep_until(start + PROBE_EVERY * seq as u32).await;
        let warming = start.elapsed() < warmup;
        let k = seq as usize % PROBES;
        let value = if !warming && (n as usize / PROBES).is_multiple_of(2) {
            18.5
        } else {
            10.0
        };
        let point = format!("P{}", first + k);
        let ts = chrono::Utc::now().timestamp_millis();
        let body = format!(
            "{{\"gateway\":\"GWprobe\",\"seq\":{seq},\"readings\":[{{\"point\":\"{point}\",\"ts\":{ts},\"value\":{value}}}]}}"
        );
        if !warming {
            lock(&sent).insert((point, ts), Instant::now());
            n += 1;
        }
        client
            .publish(&topic, QoS::AtLeastOnce, false, body)
            .await?;
        seq += 1;
    }
    // Let the last acknowledgements come in before the connection goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = client.disconnect().await;
    poller.abort();
    Ok(n)
}

/// Waits up to 5 s for the probes still outstanding; returns how many were
/// never seen.
pub async fn stragglers(sent: &Sent) -> u64 {
    // A timeout is the answer here, not an error: the count says how many.
    let _ = hazardwatch_tests::wait_until(Duration::from_secs(5), || lock(sent).is_empty()).await;
    lock(sent).len() as u64
}

/// Records a probe seen now in the histogram.
pub fn seen(sent: &Sent, total: &Mutex<Histogram<u64>>, key: &(String, i64)) {
    let now = Instant::now();
    let Some(t0) = lock(sent).remove(key) else {
        return;
    };
    let us = (now - t0).as_micros().max(1) as u64;
    lock(total).saturating_record(us);
}

/// (point, time stamp) of a probe's JSON payload.
pub fn probe_key(payload: &[u8]) -> Option<(String, i64)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let r = v.get("readings")?.get(0)?;
    Some((r.get("point")?.as_str()?.to_owned(), r.get("ts")?.as_i64()?))
}

/// A gRPC subscriber of every alarm at `grpc` that records each probe's
/// raise or clear in `total` (publish to arrival).
pub async fn alarm_subscriber(
    grpc: String,
    sent: Sent,
    total: Arc<Mutex<Histogram<u64>>>,
) -> anyhow::Result<()> {
    load::apart("subscriber", 1, async move {
        let mut client = pb::alarm_service_client::AlarmServiceClient::connect(grpc).await?;
        let filter = pb::AlarmFilter {
            include_suppressed: true,
            include_shelved: true,
            ..Default::default()
        };
        let mut stream = client
            .subscribe(pb::SubscribeRequest {
                filter: Some(filter),
                resume_after: 0,
            })
            .await?
            .into_inner();
        let high = pb::AlarmKind::High as i32;
        let changes = [
            pb::Transition::Raised as i32,
            pb::Transition::Cleared as i32,
        ];
        while let Some(e) = stream.message().await? {
            if e.kind == high && changes.contains(&e.transition) {
                seen(&sent, &total, &(e.point, e.event_time_ms));
            }
        }
        anyhow::Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    // The probe key of a relay message is its reading's (point, ts); check
    // the parser on a payload as `probe` writes it.
    #[test]
    fn probe_key_reads_the_probe_payload() {
        let body = br#"{"gateway":"GWprobe","seq":3,"readings":[{"point":"P8001","ts":1700000000123,"value":18.5}]}"#;
        assert_eq!(
            super::probe_key(body),
            Some(("P8001".to_owned(), 1_700_000_000_123))
        );
        assert_eq!(super::probe_key(b"{}"), None);
    }
}
