//! Recognising a message that was already received: the window of the
//! most recent message ids ([`crate::message_id`]).
//!
//! A redelivery comes soon after the original: the broker resends only
//! what was in flight, unacknowledged, when a connection broke (at most its
//! in-flight window per session), and a gateway resends what it did not
//! get an acknowledgement for. A window of the last `capacity` messages,
//! seeded at start with the ids of the messages archived last and those the
//! write-ahead log recovered (`hazardwatch_storage::wal`), covers both
//! with a wide margin; ids are 128-bit hashes, so two different messages
//! colliding within it is not a practical concern.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Ids are uniform hashes already: use their low bits as the hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// The last `capacity` message ids.
pub struct Dedup {
    seen: HashSet<u128, BuildHasherDefault<IdHasher>>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl Dedup {
    /// An empty window of `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Dedup {
            seen: HashSet::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            order: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Whether `id` is in the window (0, "no id", never is).
    pub fn contains(&self, id: u128) -> bool {
        id != 0 && self.seen.contains(&id)
    }

    /// Adds `id`, forgetting the oldest beyond the capacity.
    pub fn insert(&mut self, id: u128) {
        if id == 0 || !self.seen.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
    }

    /// Ids in the window.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_remembers_the_last_ids_only() {
        let mut d = Dedup::new(3);
        for id in 1..=4 {
            d.insert(id);
        }
        assert!(!d.contains(1));
        assert!(d.contains(2) && d.contains(4));
        assert!(!d.contains(0));
        d.insert(0);
        d.insert(4);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn a_redelivered_message_has_the_same_id_and_another_message_does_not() {
        let topic = "hw/v1/E01/GW01/telemetry";
        let a = br#"{"gateway":"GW01","seq":1,"readings":[]}"#;
        let b = br#"{"gateway":"GW01","seq":2,"readings":[]}"#;
        assert_eq!(crate::message_id(topic, a), crate::message_id(topic, a));
        assert_ne!(crate::message_id(topic, a), crate::message_id(topic, b));
        assert_ne!(
            crate::message_id(topic, a),
            crate::message_id("hw/v1/E01/GW02/telemetry", a)
        );
    }
}
