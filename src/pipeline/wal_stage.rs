//! The write-ahead stage between ingest and the rules: every checked MQTT
//! message is appended to the write-ahead log, synced, and only then sent
//! on and acknowledged.
//!
//! Group commit: the stage takes every delivery waiting (up to
//! [`MAX_GROUP`]) and makes them durable with one sync, so the cost of the
//! sync is shared by all the messages that arrived while the previous one
//! ran. Redeliveries (the same message id in the recent window) are
//! acknowledged without being logged or judged again.
//!
//! When the log cannot be written (a full disk), nothing is acknowledged:
//! the stage says why in the log and in metrics
//! (`hazardwatch_wal_errors_total`, `hazardwatch_wal_stalled`), retries
//! every [`RETRY`], and carries on where it stopped once writing works.
//! Meanwhile ingest's queue fills, the broker's in-flight window fills, and
//! the broker holds the backlog.
//!
//! The log is rolled to a new segment every `roll_secs` (and by size);
//! each roll is passed downstream, in order with the readings, as
//! [`FeedMsg::Segment`]: the archive checkpoints there, and the segments
//! before it can go.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use hazardwatch_ingest::decode::{RejectKind, Rejection};
use hazardwatch_ingest::{Ack, Dedup, Delivery, IngestBatch, Quarantine};
use hazardwatch_proto::{Catalog, Reading};
use hazardwatch_storage::wal::{Entry, LoggedBatch, Wal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Counters, FeedMsg};

/// Most deliveries made durable by one sync.
pub const MAX_GROUP: usize = 1024;
/// Pause between attempts while the log cannot be written.
pub const RETRY: Duration = Duration::from_secs(1);
/// Pause before acks that found the MQTT client's request queue full are
/// tried again.
const ACK_RETRY: Duration = Duration::from_millis(1);

/// The stage (see the module docs).
pub struct WalStage {
    /// The log; only ever out while an append runs on a blocking thread.
    wal: Option<Wal>,
    dedup: Dedup,
    catalog: watch::Receiver<Arc<Catalog>>,
    feed: mpsc::Sender<FeedMsg>,
    roll_every: Duration,
    counters: Arc<Counters>,
    /// Acks owed to the broker, in order, that did not fit in the MQTT
    /// client's request queue yet.
    unsent: VecDeque<Ack>,
}

impl WalStage {
    /// A stage over `wal` that remembers `dedup` message ids, names points
    /// from `catalog`, sends to `feed` and rolls every `roll_every`.
    pub fn new(
        wal: Wal,
        dedup: Dedup,
        catalog: watch::Receiver<Arc<Catalog>>,
        feed: mpsc::Sender<FeedMsg>,
        roll_every: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        WalStage {
            wal: Some(wal),
            dedup,
            catalog,
            feed,
            roll_every,
            counters,
            unsent: VecDeque::new(),
        }
    }

    /// Sends the owed acks, in order, as far as the client's request queue
    /// takes them. Never waits: the queue drains only while ingest polls
    /// the MQTT event loop, and ingest may itself be waiting for this stage
    /// to take the next delivery. Waiting here would deadlock both once
    /// the broker lets more messages be in flight than the queue holds.
    fn send_acks(&mut self) {
        while let Some(ack) = self.unsent.pop_front() {
            if let Err(ack) = ack.try_send() {
                self.unsent.push_front(ack);
                return;
            }
        }
    }

    fn wal(&mut self) -> anyhow::Result<&mut Wal> {
        self.wal
            .as_mut()
            .context("the write-ahead log was lost by a failed append task")
    }

    /// Runs until ingest closes its queue (or `stop`, while the log cannot
    /// be written); then rolls the log once more so the archive seals
    /// everything.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Delivery>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut segment = self.wal()?.segment();
        let mut next_roll = Instant::now() + self.roll_every;
        loop {
            let first = tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => d,
                    None => break,
                },
                _ = tokio::time::sleep(ACK_RETRY), if !self.unsent.is_empty() => {
                    self.send_acks();
                    continue;
                }
                _ = tokio::time::sleep_until(next_roll) => {
                    next_roll = Instant::now() + self.roll_every;
                    if self.wal()?.segment_len() > 0 {
                        self.roll(&mut segment).await?;
                    }
                    continue;
                }
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(d) => group.push(d),
                    Err(_) => break,
                }
            }
            if !self.commit(group, &mut segment, &stop).await? {
                // Stopped while the log could not be written: what was not
                // logged was not acknowledged, and the broker keeps it.
                return Ok(());
            }
        }
        self.roll(&mut segment).await
    }

    /// Starts a new segment and tells the archive.
    async fn roll(&mut self, segment: &mut u64) -> anyhow::Result<()> {
        match self.wal()?.roll() {
            Ok(s) => {
                *segment = s;
                self.send(FeedMsg::Segment(s)).await
            }
            Err(e) => {
                // The current segment goes on; the archive checkpoints later.
                tracing::warn!(error = %e, "write-ahead log: cannot start a new segment");
                Ok(())
            }
        }
    }

    async fn send(&self, msg: FeedMsg) -> anyhow::Result<()> {
        self.feed
            .send(msg)
            .await
            .map_err(|_| anyhow::anyhow!("the rule engine's feeder stopped"))
    }

    /// Logs, forwards and acknowledges one group; `false` if `stop` came
    /// while the log could not be written.
    async fn commit(
        &mut self,
        group: Vec<Delivery>,
        segment: &mut u64,
        stop: &CancellationToken,
    ) -> anyhow::Result<bool> {
        // Redeliveries: already logged (and judged, and archived or about
        // to be); only their ack is owed.
        let mut fresh = Vec::with_capacity(group.len());
        let mut acks = Vec::with_capacity(group.len());
        let mut ids = HashSet::new();
        let mut duplicates = 0u64;
        for Delivery { batch, ack } in group {
            let id = batch.message;
            if self.dedup.contains(id) || (id != 0 && ids.contains(&id)) {
                duplicates += batch.readings.len() as u64;
            } else if !batch.readings.is_empty() {
                ids.insert(id);
                fresh.push(batch);
            }
            acks.push(ack);
        }
        if duplicates > 0 {
            self.counters
                .readings_duplicate
                .fetch_add(duplicates, Ordering::Relaxed);
            metrics::counter!("hazardwatch_readings_duplicate_total").increment(duplicates);
        }
        if !fresh.is_empty() {
            let Some((logged, batches)) = self.append(fresh, stop).await? else {
                return Ok(false);
            };
            if logged != *segment {
                *segment = logged;
                self.send(FeedMsg::Segment(logged)).await?;
            }
            for b in batches {
                self.send(FeedMsg::Batch(b)).await?;
            }
            for id in ids {
                self.dedup.insert(id);
            }
        }
        // An ack that never reaches the broker (ingest stopped or
        // reconnected) only means the message comes again, and is then
        // recognised as a redelivery.
        self.unsent.extend(acks);
        self.send_acks();
        Ok(true)
    }

    /// Appends the batches and syncs, retrying while the log cannot be
    /// written; `None` if `stop` came first.
    async fn append(
        &mut self,
        batches: Vec<IngestBatch>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<(u64, Vec<IngestBatch>)>> {
        let mut batches = batches;
        let mut failures = 0u64;
        loop {
            let catalog = self.catalog.borrow().clone();
            let mut wal = self.wal.take().context("the write-ahead log was lost")?;
            let (wal, back, result) = tokio::task::spawn_blocking(move || {
                let entries: Vec<Entry<'_>> = batches
                    .iter()
                    .map(|b| Entry {
                        message: b.message,
                        received_ms: b.received_ms,
                        readings: &b.readings,
                    })
                    .collect();
                let result = wal.append(&entries, &catalog);
                (wal, batches, result)
            })
            .await
            .context("write-ahead log append task")?;
            self.wal = Some(wal);
            batches = back;
            match result {
                Ok(segment) => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            "write-ahead log writable again; acknowledging resumes"
                        );
                        self.counters.wal_stalled.store(false, Ordering::Relaxed);
                        metrics::gauge!("hazardwatch_wal_stalled").set(0.0);
                    }
                    return Ok(Some((segment, batches)));
                }
                Err(e) => {
                    failures += 1;
                    self.counters.wal_errors.fetch_add(1, Ordering::Relaxed);
                    self.counters.wal_stalled.store(true, Ordering::Relaxed);
                    metrics::counter!("hazardwatch_wal_errors_total").increment(1);
                    metrics::gauge!("hazardwatch_wal_stalled").set(1.0);
                    tracing::error!(
                        error = %e,
                        messages = batches.len(),
                        "write-ahead log cannot be written; not acknowledging (the broker keeps the messages); retrying"
                    );
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }
}

/// The window of message ids at start, `capacity` of them, seeded with the
/// ids of the messages archived last (their log segments deleted; see
/// `wal::release_before`); the caller adds those the log replays. A
/// damaged record of them is logged: a message archived before the start
/// and sent again is then taken again.
pub fn starting_window(wal_dir: &std::path::Path, capacity: usize) -> Dedup {
    let mut dedup = Dedup::new(capacity);
    match hazardwatch_storage::wal::released_ids(wal_dir) {
        Ok(ids) => ids.into_iter().for_each(|id| dedup.insert(id)),
        Err(e) => tracing::warn!(
            error = %e,
            "a message archived before this start and sent again will not be recognised"
        ),
    }
    dedup
}

/// Maps a batch recovered from the log back to the running catalog, to be
/// judged and archived again; `None` if none of its points is still in the
/// site model. Readings of points the model no longer has are quarantined
/// with the reason, never dropped silently; `unknown` counts them.
pub fn recovered(
    b: LoggedBatch,
    catalog: &Catalog,
    quarantine: &mut Quarantine,
    unknown: &mut u64,
) -> anyhow::Result<Option<IngestBatch>> {
    let mut readings = Vec::with_capacity(b.readings.len());
    let mut rejections = Vec::new();
    for r in &b.readings {
        match catalog.lookup(&r.point) {
            Some(point) => readings.push(Reading {
                point,
                ts_ms: r.ts_ms,
                value: r.value,
                quality: r.quality,
            }),
            None => rejections.push(Rejection {
                kind: RejectKind::UnknownPoint,
                reason: format!(
                    "recovered from the write-ahead log (segment {}, ts {}, value {}): point `{}` is no longer in the site model",
                    b.segment, r.ts_ms, r.value, r.point
                ),
            }),
        }
    }
    if !rejections.is_empty() {
        *unknown += rejections.len() as u64;
        quarantine
            .record("(write-ahead log)", b"", &rejections)
            .context("quarantining recovered readings of removed points")?;
    }
    Ok((!readings.is_empty()).then_some(IngestBatch {
        readings,
        received_ms: b.received_ms,
        message: b.message,
        source: 0,
    }))
}
