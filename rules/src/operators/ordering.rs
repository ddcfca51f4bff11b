//! Putting records in the order the event-time mechanics need, in linear
//! time where the keys allow: a batch cut into runs of one epoch before it
//! enters the dataflow (an epoch's readings are sorted by point before they
//! are judged with [`hazardwatch_proto::order::sort_by_dense_key`]).

use super::event_time::{Epochs, Timed};

impl Epochs {
    /// Cuts `records` into runs of one epoch each, into `runs` (emptied
    /// first) in order of epoch, keeping the records' order within an
    /// epoch. A batch of one epoch (a live batch mostly is) becomes the run
    /// as it is; otherwise each record is copied once, into its epoch's run
    /// (a replayed batch spans about a minute of epochs). Records spanning
    /// [`SPLIT_SPAN`] epochs or more are put in order by a sort first.
    /// `room` is working room kept between calls.
    pub fn split<T: Timed + Copy>(
        &self,
        mut records: Vec<T>,
        room: &mut SplitRoom,
        runs: &mut Vec<(u64, Vec<T>)>,
    ) {
        runs.clear();
        let Some(first) = records.first() else {
            return;
        };
        let e0 = self.of(first.ts_ms());
        let (from, to) = (self.start(e0), self.end(e0));
        if records
            .iter()
            .all(|r| (from..to).contains(&r.ts_ms().max(0)))
        {
            runs.push((e0, records));
            return;
        }
        let SplitRoom { epochs, counts } = room;
        epochs.clear();
        epochs.extend(records.iter().map(|r| self.of(r.ts_ms())));
        let (lo, hi) = epochs
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), &e| (lo.min(e), hi.max(e)));
        if hi - lo >= SPLIT_SPAN {
            records.sort_by_key(|r| self.of(r.ts_ms()));
            let mut rest = records.as_slice();
            while let Some(r) = rest.first() {
                let e = self.of(r.ts_ms());
                let n = rest
                    .iter()
                    .position(|r| self.of(r.ts_ms()) != e)
                    .unwrap_or(rest.len());
                runs.push((e, rest[..n].to_vec()));
                rest = &rest[n..];
            }
            return;
        }
        counts.clear();
        counts.resize((hi - lo) as usize + 1, 0);
        for &e in epochs.iter() {
            counts[(e - lo) as usize] += 1;
        }
        let mut by_epoch: Vec<Vec<T>> = counts.iter().map(|&n| Vec::with_capacity(n)).collect();
        for (r, &e) in records.iter().zip(epochs.iter()) {
            by_epoch[(e - lo) as usize].push(*r);
        }
        runs.extend((lo..).zip(by_epoch).filter(|(_, run)| !run.is_empty()));
    }
}

/// Working room for [`Epochs::split`], kept between calls.
#[derive(Debug, Default)]
pub struct SplitRoom {
    epochs: Vec<u64>,
    counts: Vec<usize>,
}

/// Records spanning this many epochs or more are cut after a sort.
pub(crate) const SPLIT_SPAN: u64 = 1 << 16;

#[cfg(test)]
mod tests {
    use hazardwatch_proto::{Quality, Reading};

    use super::super::event_time::Epochs;
    use super::SplitRoom;

    fn reading(point: u32, ts_ms: i64) -> Reading {
        Reading {
            point,
            ts_ms,
            value: 0.0,
            quality: Quality::Good,
        }
    }

    /// Cuts `records` into runs and returns (epoch, points) of each run.
    fn split(epochs: Epochs, records: Vec<Reading>) -> Vec<(u64, Vec<u32>)> {
        let (mut room, mut runs) = (SplitRoom::default(), Vec::new());
        epochs.split(records, &mut room, &mut runs);
        runs.into_iter()
            .map(|(e, run)| {
                assert!(run.iter().all(|r| epochs.of(r.ts_ms) == e), "{e}: {run:?}");
                (e, run.iter().map(|r| r.point).collect())
            })
            .collect()
    }

    /// Cut into runs of one epoch, in order of epoch, each epoch's records
    /// in the order they came; the same by counting (few epochs) and by a
    /// sort (very many).
    #[test]
    fn records_are_cut_into_epochs_keeping_their_order_within_one() {
        let epochs = Epochs { epoch_ms: 1000 };
        // Three points' runs in time order, as a replayed file holds them.
        let records: Vec<Reading> = [2u32, 0, 1]
            .into_iter()
            .flat_map(|p| (0..5).map(move |s| reading(p, 10_000 + s * 700)))
            .collect();
        assert_eq!(
            split(epochs, records),
            [
                (10, vec![2, 2, 0, 0, 1, 1]),
                (11, vec![2, 0, 1]),
                (12, vec![2, 2, 0, 0, 1, 1]),
            ]
        );
        // Far apart: past the counting's span, the same order by a sort.
        let far = 1000 * super::SPLIT_SPAN as i64;
        let records = vec![
            reading(0, far + 5),
            reading(1, 5),
            reading(2, far),
            reading(3, 7),
        ];
        assert_eq!(
            split(epochs, records),
            [(0, vec![1, 3]), (super::SPLIT_SPAN, vec![0, 2])]
        );
        // One epoch, out of time order within it, or before 1970 (epoch
        // 0): one run, as it came.
        assert_eq!(
            split(epochs, vec![reading(1, 5), reading(0, 3), reading(4, -7)]),
            [(0, vec![1, 0, 4])]
        );
        assert!(split(epochs, Vec::new()).is_empty());
    }
}
