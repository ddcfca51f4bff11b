//! The queue from the feeder to the archiver, bounded by the readings it
//! holds rather than by its messages.
//!
//! The archiver is busy for a while at every checkpoint (sorting and
//! encoding a segment's readings into Parquet, then compacting): on this
//! kind of machine about a second for two million rows. A queue of a few
//! hundred messages filled in a fraction of that, the feeder then waited
//! on it, and with the feeder the rules: readings queued behind it came
//! later than the lateness bound and went to the backfill (a soak at
//! 250,000 readings/s lost 10 % of them to lateness that way, and its
//! alarm latency p99 was 2 s instead of 215 ms). This queue holds up to a
//! checkpoint's worth of readings (`archive.roll_rows`), so the archiver
//! catches up after a checkpoint while the rules go on; beyond that the
//! feeder waits (memory stays bounded: about 30 bytes a reading).
//!
//! A message larger than the whole budget is let in when the queue is
//! empty, so nothing can wait for ever.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::ArchiveMsg;

/// The archiver has stopped: nothing more can be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

struct State {
    /// Readings in messages sent and not yet received.
    queued: usize,
    /// The receiving end is gone.
    closed: bool,
}

struct Budget {
    state: Mutex<State>,
    room: Condvar,
    limit: usize,
}

impl Budget {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The feeder's end.
pub struct ArchiveSender {
    tx: crossbeam_channel::Sender<ArchiveMsg>,
    budget: Arc<Budget>,
}

/// The archiver's end. Dropping it releases a feeder waiting for room.
pub struct ArchiveReceiver {
    rx: crossbeam_channel::Receiver<ArchiveMsg>,
    budget: Arc<Budget>,
}

/// A queue that holds at most `limit` readings (and any number of
/// messages without readings).
pub fn archive_queue(limit: usize) -> (ArchiveSender, ArchiveReceiver) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let budget = Arc::new(Budget {
        state: Mutex::new(State {
            queued: 0,
            closed: false,
        }),
        room: Condvar::new(),
        limit: limit.max(1),
    });
    (
        ArchiveSender {
            tx,
            budget: budget.clone(),
        },
        ArchiveReceiver { rx, budget },
    )
}

/// Readings a message holds.
fn weight(msg: &ArchiveMsg) -> usize {
    match msg {
        ArchiveMsg::Rows { readings, .. } => readings.len(),
        ArchiveMsg::Catalog(_) | ArchiveMsg::Checkpoint(_) => 0,
    }
}

impl ArchiveSender {
    /// Queues `msg`, waiting while the queue holds its limit of readings.
    pub fn send(&self, msg: ArchiveMsg) -> Result<(), Stopped> {
        let n = weight(&msg);
        let b = &self.budget;
        let mut s = b.lock();
        while !s.closed && s.queued > 0 && s.queued + n > b.limit {
            s = b.room.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.closed {
            return Err(Stopped);
        }
        s.queued += n;
        drop(s);
        self.tx.send(msg).map_err(|_| Stopped)
    }

    /// Readings queued now.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.budget.lock().queued
    }
}

impl ArchiveReceiver {
    /// The channel to receive from (in a `select!`); every message taken
    /// from it must be passed to [`ArchiveReceiver::taken`].
    pub fn channel(&self) -> &crossbeam_channel::Receiver<ArchiveMsg> {
        &self.rx
    }

    /// Gives back the room of a message received from
    /// [`ArchiveReceiver::channel`].
    pub fn taken(&self, msg: &ArchiveMsg) {
        let n = weight(msg);
        if n == 0 {
            return;
        }
        let mut s = self.budget.lock();
        s.queued = s.queued.saturating_sub(n);
        drop(s);
        self.budget.room.notify_all();
    }

    /// The next message, its room given back; `None` once every sender is
    /// gone and the queue is empty.
    pub fn recv(&self) -> Option<ArchiveMsg> {
        let msg = self.rx.recv().ok()?;
        self.taken(&msg);
        Some(msg)
    }
}

impl Drop for ArchiveReceiver {
    fn drop(&mut self) {
        self.budget.lock().closed = true;
        self.budget.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use hazardwatch_proto::{Quality, Reading};

    use super::*;

    fn rows(n: usize) -> ArchiveMsg {
        ArchiveMsg::Rows {
            readings: vec![
                Reading {
                    point: 0,
                    ts_ms: 1,
                    value: 1.0,
                    quality: Quality::Good,
                };
                n
            ],
            received_ms: 1,
            late: Vec::new(),
        }
    }

    #[test]
    fn the_sender_waits_at_the_limit_of_readings_not_of_messages() {
        let (tx, rx) = archive_queue(100);
        for _ in 0..10 {
            tx.send(rows(10)).unwrap();
        }
        // Messages without readings never wait.
        for s in 0..1000 {
            tx.send(ArchiveMsg::Checkpoint(s)).unwrap();
        }
        assert_eq!(tx.queued(), 100);
        let sender = std::thread::spawn(move || {
            tx.send(rows(10)).unwrap();
            tx
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!sender.is_finished(), "waits for room");
        assert_eq!(weight(&rx.recv().unwrap()), 10);
        let tx = sender.join().unwrap();
        assert_eq!(tx.queued(), 100);
    }

    #[test]
    fn a_message_larger_than_the_limit_passes_an_empty_queue() {
        let (tx, rx) = archive_queue(10);
        tx.send(rows(50)).unwrap();
        assert_eq!(tx.queued(), 50);
        let _ = rx.recv().unwrap();
        assert_eq!(tx.queued(), 0);
    }

    #[test]
    fn a_waiting_sender_is_released_when_the_archiver_stops() {
        let (tx, rx) = archive_queue(10);
        tx.send(rows(10)).unwrap();
        let sender = std::thread::spawn(move || tx.send(rows(1)));
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert_eq!(sender.join().unwrap(), Err(Stopped));
    }
}
