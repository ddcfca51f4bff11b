//! The feeder: the one thread that owns the rule engine's input. It takes
//! durable readings, clock ticks, reloads and log segments in order from
//! the write-ahead stage, advances event time with the clock (wall clock
//! less the lateness), records the latest values, and hands every reading
//! to the archiver with its late flag.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use hazardwatch_proto::clock::{Clock, SharedClock};
use hazardwatch_proto::{Quality, Reading};
use hazardwatch_rules::{Engine, EngineInput};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::backfill::{BackfillConfig, BackfillMsg};
use super::watermark::Watermark;
use super::{ArchiveMsg, Counters, FeedMsg};

/// Where the feeder sends late readings (see [`super::backfill`]).
pub struct BackfillLink {
    /// The backfill thread's queue.
    pub tx: crossbeam_channel::Sender<BackfillMsg>,
    /// `[backfill]` settings.
    pub config: BackfillConfig,
}

impl BackfillLink {
    /// Sends the late readings of a batch (flagged in `late`) within the
    /// horizon to be judged, and unflags them (they are archived as
    /// judged); reports the rest, which stay flagged: archived, not judged.
    /// The service's markers stay flagged and are not sent.
    pub fn route(
        &self,
        readings: &[Reading],
        late: &mut [bool],
        received_ms: i64,
        now_ms: i64,
    ) -> anyhow::Result<()> {
        let oldest = self.config.oldest_judged(now_ms);
        let mut judged = Vec::new();
        let (mut too_old, mut span) = (0usize, (i64::MAX, i64::MIN));
        for (r, l) in readings.iter().zip(late.iter_mut()) {
            if !*l || r.quality.is_marker() {
                continue;
            }
            match oldest {
                Some(o) if r.ts_ms >= o => {
                    judged.push(*r);
                    *l = false;
                }
                _ => {
                    too_old += 1;
                    span = (span.0.min(r.ts_ms), span.1.max(r.ts_ms));
                }
            }
        }
        let gone = || anyhow::anyhow!("backfill thread stopped");
        if !judged.is_empty() {
            self.tx
                .send(BackfillMsg::Late(judged))
                .map_err(|_| gone())?;
        }
        if too_old > 0 {
            self.tx
                .send(BackfillMsg::TooOld {
                    readings: too_old,
                    span,
                    received_ms,
                })
                .map_err(|_| gone())?;
        }
        Ok(())
    }
}
use crate::telemetry::Latest;

/// Advances live event time every `period` until `stop`.
pub async fn ticker(
    out: mpsc::Sender<FeedMsg>,
    period: Duration,
    clock: SharedClock,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if out.send(FeedMsg::Tick(clock.now_ms())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Where the feeder's readings go besides the engine.
pub struct Downstream {
    /// The archiver's queue.
    pub archive_tx: super::archive_queue::ArchiveSender,
    /// The archiver thread, joined when the feeder ends.
    pub archive: std::thread::JoinHandle<anyhow::Result<()>>,
    /// The backfill thread's queue.
    pub backfill: BackfillLink,
}

/// The feeder thread: takes [`FeedMsg`]s in order until every sender is
/// gone, then drains the engine and waits for the archiver to seal. Live
/// event time advances as `watermark` allows.
pub fn feeder_loop(
    mut rx: mpsc::Receiver<FeedMsg>,
    mut engine: Engine,
    mut watermark: Watermark,
    downstream: Downstream,
    latest: &Latest,
    counters: &Counters,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let Downstream {
        archive_tx,
        archive,
        backfill,
    } = downstream;
    let mut late = Vec::new();
    // Live from the first tick on: recovered batches come before it and are
    // judged against the watermark they would have met.
    let mut live = false;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            FeedMsg::Batch(b) => {
                let input: &mut EngineInput = engine.input();
                input.send(&b.readings, &mut late);
                if live {
                    // Event time also advances between ticks, so a busy
                    // park's readings are judged as soon as every gateway
                    // has sent what could come before them.
                    watermark.observe(b.source, &b.readings, b.received_ms);
                    input.advance_to(watermark.at_most_once_a_ms(clock.now_ms()));
                }
                latest.update(&b.readings);
                let n_late = late.iter().filter(|&&l| l).count() as u64;
                let n = b.readings.len() as u64;
                if n_late > 0 {
                    counters.readings_late.fetch_add(n_late, Ordering::Relaxed);
                    metrics::counter!("hazardwatch_readings_late_total").increment(n_late);
                    backfill.route(&b.readings, &mut late, b.received_ms, clock.now_ms())?;
                }
                let rows = ArchiveMsg::Rows {
                    readings: b.readings,
                    received_ms: b.received_ms,
                    late: std::mem::take(&mut late),
                };
                if archive_tx.send(rows).is_err() {
                    anyhow::bail!("archive thread stopped");
                }
                // Counted once the archive thread has them: a telemetry
                // query asked after this sees them.
                counters.readings_in.fetch_add(n, Ordering::Relaxed);
            }
            FeedMsg::Reload(site) => {
                engine.input().reload(&site);
                if archive_tx.send(ArchiveMsg::Catalog(site.catalog)).is_err() {
                    anyhow::bail!("archive thread stopped");
                }
            }
            FeedMsg::Tick(now) => {
                if engine.failed() {
                    // Not dropped: dropping waits for every worker, and in
                    // a cluster that lost a process some never end. What
                    // was acknowledged is in the write-ahead log.
                    std::mem::forget(engine);
                    anyhow::bail!(
                        "the rule engine stopped: a worker failed, or a process of the cluster was lost"
                    );
                }
                live = true;
                engine.input().advance_to(watermark.at(now));
            }
            FeedMsg::Expect { points, at_ms } => {
                let markers: Vec<Reading> = points
                    .into_iter()
                    .map(|point| Reading {
                        point,
                        ts_ms: at_ms,
                        value: f64::NAN,
                        quality: Quality::Expected,
                    })
                    .collect();
                engine.input().send(&markers, &mut late);
                counters
                    .markers_expected
                    .fetch_add(markers.len() as u64, Ordering::Relaxed);
                let rows = ArchiveMsg::Rows {
                    readings: markers,
                    received_ms: at_ms,
                    late: std::mem::take(&mut late),
                };
                if archive_tx.send(rows).is_err() {
                    anyhow::bail!("archive thread stopped");
                }
            }
            FeedMsg::Segment(segment) => {
                if archive_tx.send(ArchiveMsg::Checkpoint(segment)).is_err() {
                    anyhow::bail!("archive thread stopped");
                }
            }
        }
    }
    // Input has ended: nothing more can arrive, so event time up to now is
    // complete. Judge what is left, then stop the engine.
    engine.input().advance_to(clock.now_ms());
    let drained = engine.finish();
    // Judge the last late readings, then seal the archive whatever
    // happened to the engine.
    drop(backfill);
    drop(archive_tx);
    let sealed = archive
        .join()
        .map_err(|_| anyhow::anyhow!("archive thread panicked"))?;
    drained.context("rule engine")?;
    sealed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use hazardwatch_ingest::IngestBatch;
    use hazardwatch_proto::clock::SettableClock;
    use hazardwatch_proto::{Quality, Reading};
    use hazardwatch_rules::{Collector, EngineConfig};

    use super::*;

    /// The feeder on its own thread with a settable clock, an archiver
    /// that keeps what it is sent, and the engine's events collected.
    struct Harness {
        _backfill: crossbeam_channel::Receiver<BackfillMsg>,
        feed: mpsc::Sender<FeedMsg>,
        feeder: std::thread::JoinHandle<anyhow::Result<()>>,
        archived: crossbeam_channel::Receiver<ArchiveMsg>,
        events: Collector,
        counters: Arc<Counters>,
        point: u32,
    }

    fn harness(clock: Arc<SettableClock>) -> Harness {
        let site = crate::test_park::site(&[]);
        let config = EngineConfig {
            workers: 1,
            lateness_ms: 2_000,
            ..EngineConfig::default()
        };
        let events = Collector::new();
        let engine = Engine::start(&site, &config, events.sink()).unwrap();
        let (feed, rx) = mpsc::channel(16);
        let (archive_tx, archive_rx) = crate::pipeline::archive_queue::archive_queue(1000);
        let (kept_tx, archived) = crossbeam_channel::unbounded();
        let archiver = std::thread::spawn(move || {
            while let Some(msg) = archive_rx.recv() {
                kept_tx.send(msg).unwrap();
            }
            Ok(())
        });
        let counters = Arc::new(Counters::default());
        // Backfill off: late readings stay late (its own tests are in
        // `backfill` and end to end).
        let (backfill_tx, backfill_rx) = crossbeam_channel::unbounded();
        let backfill = BackfillLink {
            tx: backfill_tx,
            config: BackfillConfig {
                horizon_s: 0,
                ..BackfillConfig::default()
            },
        };
        let feeder = std::thread::spawn({
            let counters = counters.clone();
            move || {
                let latest = Latest::default();
                feeder_loop(
                    rx,
                    engine,
                    Watermark::new(config.watermark, config.lateness_ms as i64),
                    Downstream {
                        archive_tx,
                        archive: archiver,
                        backfill,
                    },
                    &latest,
                    &counters,
                    &*clock,
                )
            }
        });
        Harness {
            _backfill: backfill_rx,
            feed,
            feeder,
            archived,
            events,
            counters,
            point: site.catalog.lookup("T101.LT").unwrap(),
        }
    }

    fn reading(point: u32, ts_ms: i64, value: f64) -> Reading {
        Reading {
            point,
            ts_ms,
            value,
            quality: Quality::Good,
        }
    }

    #[test]
    fn readings_older_than_the_clock_less_the_lateness_are_archived_late_and_not_judged() {
        let t0 = 1_800_000_000_000;
        let clock = Arc::new(SettableClock::new(t0));
        let h = harness(clock.clone());
        h.feed.blocking_send(FeedMsg::Tick(t0)).unwrap();
        let batch = IngestBatch {
            // 10 s old: behind the watermark (t0 - 2 s). 1 s old: in time.
            readings: vec![
                reading(h.point, t0 - 10_000, 19.0),
                reading(h.point, t0 - 1_000, 18.5),
            ],
            received_ms: t0,
            message: 1,
            source: 1,
        };
        h.feed.blocking_send(FeedMsg::Batch(batch)).unwrap();
        // Time passes; the input ends; the feeder drains to the clock.
        clock.advance(5_000);
        drop(h.feed);
        h.feeder.join().unwrap().unwrap();

        let rows: Vec<Vec<bool>> = h
            .archived
            .try_iter()
            .filter_map(|m| match m {
                ArchiveMsg::Rows { late, .. } => Some(late),
                _ => None,
            })
            .collect();
        assert_eq!(rows, vec![vec![true, false]]);
        assert_eq!(h.counters.readings_in.load(Ordering::Relaxed), 2);
        assert_eq!(h.counters.readings_late.load(Ordering::Relaxed), 1);
        // Only the reading in time was judged: one H alarm, at its time.
        let events = h.events.take();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].active && events[0].ts_ms == t0 - 1_000);
    }

    #[test]
    fn a_gateway_heard_for_a_while_has_its_readings_judged_without_waiting_for_the_lateness() {
        let t0 = 1_800_000_000_000;
        let clock = Arc::new(SettableClock::new(t0));
        let h = harness(clock.clone());
        h.feed.blocking_send(FeedMsg::Tick(t0)).unwrap();
        // One gateway, a reading every 100 ms, 1 ms old on arrival, in
        // order: past the warmup, the watermark follows its readings.
        let send = |at: i64, value: f64| {
            clock.set(at);
            let batch = IngestBatch {
                readings: vec![reading(h.point, at - 1, value)],
                received_ms: at,
                message: at as u128,
                source: 7,
            };
            h.feed.blocking_send(FeedMsg::Batch(batch)).unwrap();
        };
        let mut at = t0;
        while at < t0 + 11_000 {
            send(at, 10.0);
            at += 100;
        }
        let high = at;
        send(high, 19.0);
        send(high + 100, 10.0);
        send(high + 200, 10.0);
        // The service's ticker asks every epoch (between ticks, event time
        // is asked at most once per clock millisecond, and this clock
        // stands still).
        h.feed.blocking_send(FeedMsg::Tick(high + 200)).unwrap();
        // The clock stays 200 ms past the high reading, far short of the
        // 2 s lateness: with the fixed watermark it would never be judged.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut events = Vec::new();
        while events.len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            events.extend(h.events.take());
        }
        assert_eq!(events.len(), 2, "the raise and the clear: {events:?}");
        assert!(events[0].active && events[0].ts_ms == high - 1);
        assert_eq!(clock.now_ms(), high + 200);
        assert_eq!(h.counters.readings_late.load(Ordering::Relaxed), 0);
        drop(h.feed);
        h.feeder.join().unwrap().unwrap();
    }
}
