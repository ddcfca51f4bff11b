//! Where [`super::event_time`] keeps a rule's per-key states and pending
//! timers on one worker: compact, because every point pays for them.

use std::collections::BTreeMap;

use super::event_time::Epochs;

/// Keys below this are kept in [`KeyStates`]' dense table; a catalog never
/// has as many points, units, consoles or gateways.
pub(super) const DENSE_KEYS: u32 = 1 << 24;

/// One worker's states of a rule, by key. Keys are catalog indices, so the
/// states are a vector, with each key's place in it in a second vector by
/// key: 4 bytes per key of the catalog besides the state itself (a hash
/// map cost about twice the state, in load factor and hashes). A key past
/// [`DENSE_KEYS`] is kept in a map aside rather than grow the vector by
/// key to it.
pub(super) struct KeyStates<S> {
    /// By key: 1 + the key's place in `states`; 0: no state here.
    place: Vec<u32>,
    states: Vec<S>,
    far: BTreeMap<u32, S>,
}

impl<S> Default for KeyStates<S> {
    fn default() -> Self {
        KeyStates {
            place: Vec::new(),
            states: Vec::new(),
            far: BTreeMap::new(),
        }
    }
}

impl<S: Default> KeyStates<S> {
    /// The key's state, created empty on first use.
    pub(super) fn get_or_default(&mut self, key: u32) -> &mut S {
        if key >= DENSE_KEYS {
            return self.far.entry(key).or_default();
        }
        let k = key as usize;
        if k >= self.place.len() {
            grow_by_an_eighth(&mut self.place, k + 1);
            self.place.resize(k + 1, 0);
        }
        if self.place[k] == 0 {
            let len = self.states.len() + 1;
            grow_by_an_eighth(&mut self.states, len);
            self.states.push(S::default());
            // Fewer states than keys below DENSE_KEYS: fits.
            self.place[k] = self.states.len() as u32;
        }
        &mut self.states[self.place[k] as usize - 1]
    }

    /// Makes room for keys below `space`, `states` of them here.
    pub(super) fn reserve(&mut self, space: usize, states: usize) {
        self.place.reserve_exact(space);
        self.states.reserve_exact(states);
    }

    /// Every key with state, in key order.
    pub(super) fn for_each(&mut self, mut f: impl FnMut(u32, &mut S)) {
        for (key, &at) in self.place.iter().enumerate() {
            if at != 0 {
                f(key as u32, &mut self.states[at as usize - 1]);
            }
        }
        for (&key, state) in &mut self.far {
            f(key, state);
        }
    }
}

/// One worker's pending timers of a rule, as (due, key) by the epoch they
/// fall in: most keys have one pending (the stale deadline), and in a
/// vector per epoch one costs its 16 bytes, in a B-tree set about twice
/// that. A timer set twice fires once (the epoch's timers are gathered by
/// key and time).
pub(super) struct Timers<K> {
    epochs: Epochs,
    by_epoch: BTreeMap<u64, Vec<(i64, K)>>,
}

impl<K> Timers<K> {
    pub(super) fn new(epochs: Epochs) -> Self {
        Timers {
            epochs,
            by_epoch: BTreeMap::new(),
        }
    }

    pub(super) fn insert(&mut self, due_ms: i64, key: K) {
        self.by_epoch
            .entry(self.epochs.of(due_ms))
            .or_default()
            .push((due_ms, key));
    }

    /// The first epoch with a timer pending.
    pub(super) fn next_epoch(&self) -> Option<u64> {
        self.by_epoch.keys().next().copied()
    }

    /// Takes every timer of the epochs that begin before `epoch_end`.
    pub(super) fn take_before(&mut self, epoch_end: i64, mut f: impl FnMut(i64, K)) {
        while let Some(entry) = self.by_epoch.first_entry() {
            if self.epochs.start(*entry.key()) >= epoch_end {
                break;
            }
            for (due, key) in entry.remove() {
                f(due, key);
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.by_epoch.clear();
    }
}

/// Makes room for `len` elements, growing by an eighth rather than
/// doubling: the tables of states are the largest part of a point's
/// memory, and doubling leaves up to half of them unused.
fn grow_by_an_eighth<T>(v: &mut Vec<T>, len: usize) {
    if len > v.capacity() {
        let want = len.max(v.capacity() + v.capacity() / 8).max(64);
        v.reserve_exact(want - v.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_kept_by_key_dense_or_far() {
        let mut states: KeyStates<u32> = KeyStates::default();
        *states.get_or_default(7) += 1;
        *states.get_or_default(u32::MAX) += 5;
        *states.get_or_default(7) += 1;
        *states.get_or_default(2) += 3;
        // The far key does not stretch the dense table to it.
        assert_eq!(states.place.len(), 8);
        let mut seen = Vec::new();
        states.for_each(|k, s| seen.push((k, *s)));
        assert_eq!(seen, [(2, 3), (7, 2), (u32::MAX, 5)]);
    }
}
