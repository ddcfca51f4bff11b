//! Ordering records by dense keys in linear time: a point's index, an
//! epoch's number. The rule engine groups and sorts its input with these;
//! the archive orders a partition's rows by point before sealing it.

/// Copies `records` into `out` in order of their `bucket` (of the record
/// and its place; each below `span`), keeping their order within a bucket
/// (a counting sort's scatter); `next` ends holding each bucket's end in
/// `out`.
pub fn scatter<T: Copy>(
    records: &[T],
    bucket: impl Fn(usize, &T) -> usize,
    span: usize,
    next: &mut Vec<usize>,
    out: &mut Vec<T>,
) {
    next.clear();
    next.resize(span, 0);
    for (i, r) in records.iter().enumerate() {
        next[bucket(i, r)] += 1;
    }
    let mut at = 0;
    for n in next.iter_mut() {
        (*n, at) = (at, at + *n);
    }
    out.clear();
    out.extend_from_slice(records);
    for (i, r) in records.iter().enumerate() {
        let b = bucket(i, r);
        out[next[b]] = *r;
        next[b] += 1;
    }
}

/// Sorts `records` by `order`, whose first part is `key`: when the keys
/// are dense (an epoch's readings: most of a worker's points, once or a
/// few times each; a partition's rows: every point of an enterprise, many
/// times each), by counting them into place and then ordering each key's
/// records where they are not in order already, which takes a few passes
/// instead of a comparison sort's n log n. Stable: records equal by
/// `order` keep their order. A key's records nearly in order (a point's
/// readings as they came) are put in order by merging their runs.
pub fn sort_by_dense_key<T: Copy, O: Ord>(
    records: &mut [T],
    key: impl Fn(&T) -> u32,
    order: impl Fn(&T) -> O + Copy,
) {
    const SMALL: usize = 64;
    if records.is_sorted_by_key(order) {
        return;
    }
    if records.len() <= SMALL {
        records.sort_by_key(order);
        return;
    }
    let (lo, hi) = records.iter().fold((u32::MAX, 0), |(lo, hi), r| {
        let k = key(r);
        (lo.min(k), hi.max(k))
    });
    let span = (hi - lo) as usize + 1;
    if span > 4 * records.len() {
        records.sort_by_key(order);
        return;
    }
    let (mut next, mut out) = (Vec::new(), Vec::new());
    let bucket = |_: usize, r: &T| (key(r) - lo) as usize;
    scatter(records, bucket, span, &mut next, &mut out);
    records.copy_from_slice(&out);
    // `next` holds each key's end now: order the keys' runs.
    let mut start = 0;
    for &end in &next {
        let run = &mut records[start..end];
        if run.len() > 1 && !run.is_sorted_by_key(order) {
            run.sort_by_key(order);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::sort_by_dense_key;

    /// The same order by counting as by a stable comparison sort (records
    /// equal in key and time keep their order: the third field tells), whether
    /// the keys are dense, sparse, repeated or few, and whether each key's
    /// records come in order (a partition's rows) or not (an epoch's
    /// readings).
    #[test]
    fn records_sort_by_key_then_order_however_their_keys_spread() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (n, keys) in [
            (10, 5),
            (200, 150),
            (1000, 1000),
            (1000, 30),
            (300, 1_000_000),
            (5000, 20),
        ] {
            for in_order in [false, true] {
                let mut t = 0;
                let mut records: Vec<(u32, u64, u64)> = (0..n)
                    .map(|_| {
                        t += next() % 2;
                        let time = if in_order { t } else { next() % 3 };
                        (7 + (next() % keys) as u32, time, next() % 4)
                    })
                    .collect();
                let mut want = records.clone();
                want.sort_by_key(|r| (r.0, r.1));
                sort_by_dense_key(&mut records, |r| r.0, |r| (r.0, r.1));
                assert_eq!(records, want, "{n} records of up to {keys} keys");
            }
        }
    }
}
