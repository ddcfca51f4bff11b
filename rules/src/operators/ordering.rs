//! Putting records in the order the event-time mechanics need, in linear
//! time where the keys allow: a batch grouped by epoch before it enters the
//! dataflow (an epoch's readings are sorted by point before they are judged
//! with [`hazardwatch_proto::order::sort_by_dense_key`]).

use hazardwatch_proto::order::scatter;

use super::event_time::{Epochs, Timed};

impl Epochs {
    /// Reorders `records` by epoch, keeping their order within an epoch,
    /// in linear time when they span fewer than [`GROUP_SPAN`] epochs (a
    /// live batch spans one or two, a replayed point's run about a
    /// minute's); `room` is working room kept between calls.
    pub fn group<T: Timed + Copy>(&self, records: &mut Vec<T>, room: &mut GroupRoom<T>) {
        if records.is_sorted_by_key(|r| r.ts_ms()) {
            return;
        }
        let GroupRoom { epochs, next, out } = room;
        epochs.clear();
        epochs.extend(records.iter().map(|r| self.of(r.ts_ms())));
        let (Some(&lo), Some(&hi)) = (epochs.iter().min(), epochs.iter().max()) else {
            return;
        };
        if lo == hi {
            return;
        }
        if hi - lo >= GROUP_SPAN {
            records.sort_by_key(|r| self.of(r.ts_ms()));
            return;
        }
        let bucket = |i: usize, _: &T| (epochs[i] - lo) as usize;
        scatter(records, bucket, (hi - lo) as usize + 1, next, out);
        std::mem::swap(records, out);
    }
}

/// Working room for [`Epochs::group`], kept between calls.
#[derive(Debug)]
pub struct GroupRoom<T> {
    epochs: Vec<u64>,
    next: Vec<usize>,
    out: Vec<T>,
}

impl<T> Default for GroupRoom<T> {
    fn default() -> Self {
        GroupRoom {
            epochs: Vec::new(),
            next: Vec::new(),
            out: Vec::new(),
        }
    }
}

/// Records spanning this many epochs or more are grouped by a sort.
pub(crate) const GROUP_SPAN: u64 = 1 << 16;

#[cfg(test)]
mod tests {
    use hazardwatch_proto::{Quality, Reading};

    use super::super::event_time::Epochs;
    use super::GroupRoom;

    fn reading(point: u32, ts_ms: i64) -> Reading {
        Reading {
            point,
            ts_ms,
            value: 0.0,
            quality: Quality::Good,
        }
    }

    /// Grouped by epoch, each epoch's records in the order they came; the
    /// same by a scatter (few epochs) and by a sort (very many).
    #[test]
    fn records_are_grouped_by_epoch_keeping_their_order_within_one() {
        let epochs = Epochs { epoch_ms: 1000 };
        // Two points' runs in time order, as a replayed file holds them.
        let mut records: Vec<Reading> = (0..2u32)
            .flat_map(|p| (0..5).map(move |s| reading(p, 10_000 + s * 700)))
            .collect();
        let mut want = records.clone();
        want.sort_by_key(|r| epochs.of(r.ts_ms));
        let mut room = GroupRoom::default();
        epochs.group(&mut records, &mut room);
        assert_eq!(records, want);
        let order: Vec<(u32, i64)> = records.iter().map(|r| (r.point, r.ts_ms)).collect();
        assert_eq!(
            order,
            [
                (0, 10_000),
                (0, 10_700),
                (1, 10_000),
                (1, 10_700),
                (0, 11_400),
                (1, 11_400),
                (0, 12_100),
                (0, 12_800),
                (1, 12_100),
                (1, 12_800),
            ]
        );
        // Far apart: past the scatter's span, the same order by a sort.
        let far = 1000 * super::GROUP_SPAN as i64;
        let mut records = vec![
            reading(0, far + 5),
            reading(1, 5),
            reading(2, far),
            reading(3, 7),
        ];
        epochs.group(&mut records, &mut room);
        let points: Vec<u32> = records.iter().map(|r| r.point).collect();
        assert_eq!(points, [1, 3, 0, 2]);
        // One epoch, or none: untouched.
        let mut one = vec![reading(1, 5), reading(0, 3)];
        epochs.group(&mut one, &mut room);
        assert_eq!(one, [reading(1, 5), reading(0, 3)]);
        epochs.group(&mut Vec::<Reading>::new(), &mut room);
    }
}
