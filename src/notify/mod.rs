//! Notifications that reach people: critical alarms and escalations POSTed
//! to webhooks (a duty officer's messaging bot, a provider's SMS or voice
//! gateway, a regulator's system), through a durable outbox.
//!
//! ```text
//! alarm journal --scanner--> outbox (in the journal's database)
//!                              --one delivery task per recipient--> POST
//! ```
//!
//! - The scanner reads the journal after its cursor, puts an entry in the
//!   outbox for every recipient an event is for ([`config::Webhook::wants`]),
//!   and moves the cursor, in one transaction: no event is looked at twice
//!   or skipped, whatever the restarts. A new installation starts from the
//!   newest event (history is not sent).
//! - Each recipient's task sends its entries in sequence order, one at a
//!   time, and takes an entry out of the outbox only when it is delivered
//!   (a 2xx answer) or abandoned (refused by the recipient, or older than
//!   `give_up_h`). Failed attempts are retried with exponential back-off.
//!   On shutdown an attempt under way is finished, not cut: a delivered
//!   notification is taken out before the service stops, so a restart
//!   does not send it again. After a crash (SIGKILL) at the wrong moment a
//!   delivered notification can be sent once more: it carries the same id
//!   (`Idempotency-Key`), by which the recipient recognises it.
//! - The alarm's timeline records the delivery (`TRANSITION_NOTIFIED`),
//!   the first failed attempt and an abandonment
//!   (`TRANSITION_NOTIFICATION_FAILED`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hazardwatch_alarms::AlarmHub;
use hazardwatch_alarms::hub::Delivery;
use hazardwatch_proto::clock::SharedClock;
use hazardwatch_proto::pb;
use hazardwatch_storage::journal::OUTBOX_CAP;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod config;
pub mod post;
pub mod render;

pub use config::{Notify as NotifySettings, NotifyConfig, Webhook};
use post::Outcome;

/// Journal events scanned per outbox transaction.
const SCAN_PAGE: usize = 512;
/// How often the scanner looks without being woken (events held while the
/// journal failed arrive without a wake-up).
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// The running notifier.
pub struct Notifier {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Notifier {
    /// Stops scanning and sending; an attempt under way is finished first
    /// (within the attempt's time limit).
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// What every task shares.
struct Shared {
    settings: NotifySettings,
    park: String,
    hub: Arc<AlarmHub>,
    clock: SharedClock,
    stop: CancellationToken,
}

impl Shared {
    /// Runs journal work off the async threads.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&AlarmHub) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let me = self.clone();
        Ok(tokio::task::spawn_blocking(move || work(&me.hub)).await?)
    }

    /// Records how a notification went on its alarm's timeline.
    async fn record(
        self: &Arc<Self>,
        entry: &pb::OutboxEntry,
        recipient: &str,
        delivery: Delivery,
        reason: String,
    ) {
        let Some(event) = entry.event.clone() else {
            return;
        };
        let (recipient, attempts, now) =
            (recipient.to_owned(), entry.attempts, self.clock.now_ms());
        let result = match delivery {
            Delivery::Delivered => "delivered",
            Delivery::Retrying => "retrying",
            Delivery::Abandoned => "abandoned",
        };
        metrics::counter!("hazardwatch_notifications_total", "recipient" => recipient.clone(), "result" => result)
            .increment(1);
        match delivery {
            Delivery::Abandoned => tracing::warn!(
                %recipient, alarm = %event.alarm_id, seq = event.seq, attempts, %reason,
                "notification abandoned"
            ),
            Delivery::Retrying => tracing::warn!(
                %recipient, alarm = %event.alarm_id, seq = event.seq, %reason,
                "notification failed; retrying"
            ),
            Delivery::Delivered => tracing::info!(
                %recipient, alarm = %event.alarm_id, seq = event.seq, attempts,
                "notification delivered"
            ),
        }
        let recorded = self
            .blocking(move |hub| {
                hub.record_notification(&event, &recipient, delivery, attempts, &reason, now)
            })
            .await;
        if !matches!(recorded, Ok(Some(_))) {
            tracing::info!("the notified alarm has left the site model: no timeline to record on");
        }
    }
}

/// Starts notifying the recipients of `settings` about the hub's events,
/// after bringing the outbox in line with them: with no recipients the
/// outbox is emptied (what waited is recorded as abandoned) and `None`
/// is returned; a recipient no longer configured has its waiting
/// notifications abandoned likewise.
pub async fn start(
    settings: NotifySettings,
    park: String,
    hub: Arc<AlarmHub>,
    clock: SharedClock,
) -> anyhow::Result<Option<Notifier>> {
    let names: Vec<String> = settings.webhooks.iter().map(|w| w.name.clone()).collect();
    let tls: Vec<_> = settings
        .webhooks
        .iter()
        .map(post::tls_for)
        .collect::<anyhow::Result<_>>()?;
    let stop = CancellationToken::new();
    let shared = Arc::new(Shared {
        settings,
        park,
        hub,
        clock,
        stop: stop.clone(),
    });
    // The live feed wakes the scanner; taken before the cursor is read, so
    // nothing journaled after it goes unnoticed.
    let live = shared.hub.watch();
    let stale = {
        let names = names.clone();
        shared
            .blocking(move |hub| -> anyhow::Result<_> {
                let journal = hub.journal();
                let mut stale = Vec::new();
                for (recipient, _) in journal.outbox_waiting()? {
                    if !names.contains(&recipient) {
                        let entries = journal.outbox_take_all(&recipient)?;
                        stale.extend(entries.into_iter().map(|e| (recipient.clone(), e)));
                    }
                }
                if names.is_empty() {
                    journal.outbox_close()?;
                } else if journal.outbox_scanned()?.is_none() {
                    journal.outbox_enqueue(hub.last_seq(), &[])?;
                }
                Ok(stale)
            })
            .await??
    };
    let why = if names.is_empty() {
        "notifications are off ([[notify.webhook]] is empty)"
    } else {
        "the recipient is no longer configured"
    };
    for (recipient, entry) in &stale {
        shared
            .record(entry, recipient, Delivery::Abandoned, why.into())
            .await;
    }
    if names.is_empty() {
        return Ok(None);
    }
    let wakers: BTreeMap<String, Arc<Notify>> = names
        .iter()
        .map(|n| (n.clone(), Arc::new(Notify::new())))
        .collect();
    let mut tasks = vec![tokio::spawn(scan(shared.clone(), live, wakers.clone()))];
    for (i, tls) in tls.into_iter().enumerate() {
        let wake = wakers[&names[i]].clone();
        tasks.push(tokio::spawn(deliver(shared.clone(), i, tls, wake)));
    }
    tracing::info!(recipients = names.len(), "notifications on");
    Ok(Some(Notifier { stop, tasks }))
}

/// Moves new journal events into the outbox, for the recipients they are
/// for, until stopped.
async fn scan(
    shared: Arc<Shared>,
    mut live: broadcast::Receiver<pb::AlarmEvent>,
    wakers: BTreeMap<String, Arc<Notify>>,
) {
    let mut cursor = Cursor::default();
    loop {
        match scan_once(&shared, &mut cursor).await {
            Ok(woken) => {
                for name in woken {
                    wakers[&name].notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "notification scan failed; trying again"),
        }
        tokio::select! {
            () = shared.stop.cancelled() => return,
            r = live.recv() => {
                if matches!(r, Err(broadcast::error::RecvError::Closed)) {
                    pause(&shared, SCAN_EVERY).await;
                }
                // One scan for everything that arrived meanwhile.
                while matches!(
                    live.try_recv(),
                    Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_))
                ) {}
            }
            () = tokio::time::sleep(SCAN_EVERY) => {}
        }
    }
}

/// How far the scanner has read. The outbox's cursor moves with every
/// notification enqueued; over events that notify nobody (most of them)
/// it is written at most every [`CURSOR_EVERY_MS`], so the scanner does
/// not add a journal transaction per alarm event. After a restart those
/// events are scanned again, to the same result.
#[derive(Debug, Default)]
struct Cursor {
    /// Scanned up to here (`None`: read it from the outbox).
    scanned: Option<u64>,
    /// The outbox's cursor was last written at this wall time.
    written_ms: i64,
}

/// The longest the outbox's cursor lags the scan over events that notify
/// nobody, ms.
const CURSOR_EVERY_MS: i64 = 10_000;

/// Scans every event after the cursor; returns the recipients that got
/// something.
async fn scan_once(shared: &Arc<Shared>, cursor: &mut Cursor) -> anyhow::Result<Vec<String>> {
    let mut woken = Vec::new();
    loop {
        let webhooks = shared.settings.webhooks.clone();
        let now = shared.clock.now_ms();
        let (after, write_anyway) = (cursor.scanned, now - cursor.written_ms >= CURSOR_EVERY_MS);
        let (scanned, page_len, names, pushed_out) = shared
            .blocking(move |hub| -> anyhow::Result<_> {
                let journal = hub.journal();
                let after = match after {
                    Some(a) => a,
                    None => journal.outbox_scanned()?.unwrap_or(0),
                };
                let page = hub.journal_after(after, SCAN_PAGE)?;
                let last = page.last().map_or(after, |e| e.seq);
                let mut entries = Vec::new();
                for event in &page {
                    for w in webhooks.iter().filter(|w| w.wants(event)) {
                        entries.push((
                            w.name.as_str(),
                            pb::OutboxEntry {
                                event: Some(event.clone()),
                                attempts: 0,
                                enqueued_ms: now,
                                last_error: String::new(),
                            },
                        ));
                    }
                }
                let write = !entries.is_empty() || (write_anyway && last != after);
                let pushed_out = if write {
                    journal.outbox_enqueue(last, &entries)?
                } else {
                    Vec::new()
                };
                let names: Vec<String> = entries.iter().map(|(n, _)| (*n).to_owned()).collect();
                Ok((last, page.len(), (write, names), pushed_out))
            })
            .await??;
        cursor.scanned = Some(scanned);
        let (written, names) = names;
        if written {
            cursor.written_ms = now;
        }
        for (recipient, entry) in pushed_out {
            let why = format!("{OUTBOX_CAP} newer notifications for this recipient were waiting");
            shared
                .record(&entry, &recipient, Delivery::Abandoned, why)
                .await;
        }
        woken.extend(names);
        woken.sort_unstable();
        woken.dedup();
        if page_len < SCAN_PAGE {
            return Ok(woken);
        }
    }
}

/// Sends recipient `index`'s notifications, oldest first, until stopped.
async fn deliver(
    shared: Arc<Shared>,
    index: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
    wake: Arc<Notify>,
) {
    let to = shared.settings.webhooks[index].clone();
    let name = to.name.clone();
    while !shared.stop.is_cancelled() {
        let head = {
            let name = name.clone();
            shared
                .blocking(move |hub| hub.journal().outbox_head(&name))
                .await
                .and_then(|r| Ok(r?))
        };
        let mut entry = match head {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(SCAN_EVERY * 10) => {}
                }
                continue;
            }
            Err(e) => {
                tracing::error!(recipient = %name, error = %e, "reading the outbox failed");
                pause(&shared, shared.settings.retry_min).await;
                continue;
            }
        };
        let Some(event) = entry.event.clone() else {
            let _ = shared
                .blocking({
                    let name = name.clone();
                    move |hub| hub.journal().outbox_remove(&name, 0)
                })
                .await;
            continue;
        };
        let age = shared.clock.now_ms().saturating_sub(entry.enqueued_ms);
        if age > shared.settings.give_up_ms {
            let why = format!(
                "not delivered within {} h (last: {})",
                shared.settings.give_up_ms / 3_600_000,
                entry.last_error
            );
            finish(&shared, &name, &entry, Delivery::Abandoned, why).await;
            continue;
        }
        let doc = render::document(&shared.park, &event, &to);
        let body = render::body(&doc, &to);
        let id = render::notification_id(&shared.park, event.seq, &name);
        let headers = post::headers(&to, &id, &body);
        let outcome = post::post(&to, tls.as_ref(), &headers, body, shared.settings.timeout).await;
        entry.attempts += 1;
        match outcome {
            Outcome::Delivered => {
                finish(&shared, &name, &entry, Delivery::Delivered, String::new()).await;
            }
            Outcome::Refused(why) => {
                finish(&shared, &name, &entry, Delivery::Abandoned, why).await;
            }
            Outcome::Retry(why) => {
                entry.last_error.clone_from(&why);
                let saved = {
                    let (name, entry) = (name.clone(), entry.clone());
                    shared
                        .blocking(move |hub| hub.journal().outbox_update(&name, &entry))
                        .await
                };
                if !matches!(saved, Ok(Ok(()))) {
                    tracing::error!(recipient = %name, "recording a failed attempt in the outbox failed");
                }
                metrics::counter!("hazardwatch_notification_attempts_failed_total", "recipient" => name.clone())
                    .increment(1);
                if entry.attempts == 1 {
                    shared.record(&entry, &name, Delivery::Retrying, why).await;
                }
                pause(&shared, backoff(&shared.settings, entry.attempts)).await;
            }
        }
    }
}

/// Takes a notification out of the outbox, then records how it ended.
/// Out first: a crash in between loses a timeline record, never sends a
/// notification twice.
async fn finish(
    shared: &Arc<Shared>,
    name: &str,
    entry: &pb::OutboxEntry,
    delivery: Delivery,
    why: String,
) {
    let seq = entry.event.as_ref().map_or(0, |e| e.seq);
    let removed = {
        let name = name.to_owned();
        shared
            .blocking(move |hub| hub.journal().outbox_remove(&name, seq))
            .await
    };
    match removed {
        Ok(Ok(_)) => shared.record(entry, name, delivery, why).await,
        _ => {
            tracing::error!(recipient = %name, seq, "taking a notification out of the outbox failed");
            pause(shared, shared.settings.retry_min).await;
        }
    }
}

/// Waits `d`, or until stopped.
async fn pause(shared: &Shared, d: Duration) {
    tokio::select! {
        () = shared.stop.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

/// The wait after `attempts` failed attempts: `retry_min` doubled per
/// attempt up to `retry_max`, less up to a fifth at random so that
/// recipients coming back are not hit by every instance at once.
fn backoff(settings: &NotifySettings, attempts: u32) -> Duration {
    let doubled = settings
        .retry_min
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let wait = doubled.min(settings.retry_max);
    let mut byte = [0u8; 1];
    let jitter = match getrandom::fill(&mut byte) {
        Ok(()) => f64::from(byte[0]) / 255.0 * 0.2,
        Err(_) => 0.0,
    };
    wait.mul_f64(1.0 - jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_ceiling() {
        let s = NotifySettings {
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..NotifySettings::default()
        };
        for (attempts, full) in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (40, 60.0)] {
            let w = backoff(&s, attempts).as_secs_f64();
            assert!(w <= full && w >= full * 0.8, "{attempts}: {w}");
        }
    }
}
