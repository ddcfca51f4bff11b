//! Fewer readings with the same picture: for a trend chart that is a few
//! thousand pixels wide, each point's readings are cut into equal time
//! buckets and each bucket keeps its first, lowest, highest and last
//! reading (the M4 reduction), so every peak, dip and step still shows.

use hazardwatch_proto::Reading;

/// Keeps at most about `max_points` readings of each point of `rows`
/// (sorted by point, then time) over `[from_ms, to_ms)`: `max_points / 4`
/// buckets per point, each keeping its first, lowest, highest and last
/// reading, in time order. A point with no more than `max_points`
/// readings keeps them all; `max_points` 0 keeps everything. Readings
/// without a value (NaN: offline markers) are never a bucket's lowest or
/// highest, but may be its first or last.
pub(super) fn decimate(
    rows: Vec<Reading>,
    from_ms: i64,
    to_ms: i64,
    max_points: usize,
) -> Vec<Reading> {
    if max_points == 0 || rows.len() <= max_points {
        return rows;
    }
    let buckets = (max_points / 4).max(1) as i128;
    let span = i128::from(to_ms.saturating_sub(from_ms)).max(1);
    let bucket =
        |ts: i64| ((i128::from(ts) - i128::from(from_ms)) * buckets / span).clamp(0, buckets - 1);
    let mut out = Vec::with_capacity(rows.len().min(max_points * 8));
    let mut start = 0;
    while start < rows.len() {
        let point = rows[start].point;
        let end = start
            + rows[start..]
                .iter()
                .take_while(|r| r.point == point)
                .count();
        let run = &rows[start..end];
        if run.len() <= max_points {
            out.extend_from_slice(run);
        } else {
            let mut b = 0;
            while b < run.len() {
                let key = bucket(run[b].ts_ms);
                let len = run[b..]
                    .iter()
                    .take_while(|r| bucket(r.ts_ms) == key)
                    .count();
                keep_m4(&run[b..b + len], &mut out);
                b += len;
            }
        }
        start = end;
    }
    out
}

/// The first, lowest, highest and last of one bucket, each once, in time
/// order.
fn keep_m4(bucket: &[Reading], out: &mut Vec<Reading>) {
    let last = bucket.len() - 1;
    let mut low: Option<usize> = None;
    let mut high: Option<usize> = None;
    for (i, r) in bucket.iter().enumerate() {
        if r.value.is_nan() {
            continue;
        }
        if low.is_none_or(|l| r.value < bucket[l].value) {
            low = Some(i);
        }
        if high.is_none_or(|h| r.value > bucket[h].value) {
            high = Some(i);
        }
    }
    let mut keep: Vec<usize> = [Some(0), low, high, Some(last)]
        .into_iter()
        .flatten()
        .collect();
    keep.sort_unstable();
    keep.dedup();
    out.extend(keep.into_iter().map(|i| bucket[i]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use hazardwatch_proto::Quality;
    use proptest::prelude::*;

    fn r(point: u32, ts_ms: i64, value: f64) -> Reading {
        Reading {
            point,
            ts_ms,
            value,
            quality: Quality::Good,
        }
    }

    #[test]
    fn few_readings_are_kept_and_a_spike_survives() {
        let few = vec![r(0, 0, 1.0), r(0, 10, 2.0)];
        assert_eq!(decimate(few.clone(), 0, 100, 8), few);
        assert_eq!(decimate(few.clone(), 0, 100, 0), few);
        // 10,000 readings of a flat line with one spike, down to 40.
        let mut rows: Vec<Reading> = (0..10_000).map(|t| r(0, t, 5.0)).collect();
        rows[7_321].value = 99.0;
        rows[2_000].value = -3.0;
        let kept = decimate(rows, 0, 10_000, 40);
        assert!(kept.len() <= 40, "{}", kept.len());
        assert!(kept.iter().any(|x| x.ts_ms == 7_321 && x.value == 99.0));
        assert!(kept.iter().any(|x| x.ts_ms == 2_000 && x.value == -3.0));
        assert_eq!(kept.first().map(|x| x.ts_ms), Some(0));
        assert_eq!(kept.last().map(|x| x.ts_ms), Some(9_999));
    }

    #[test]
    fn each_point_is_reduced_on_its_own() {
        let mut rows: Vec<Reading> = (0..1_000).map(|t| r(0, t, t as f64)).collect();
        rows.extend((0..3).map(|t| r(1, t * 100, 1.0)));
        let kept = decimate(rows, 0, 1_000, 8);
        assert_eq!(kept.iter().filter(|x| x.point == 1).count(), 3);
        assert!(kept.iter().filter(|x| x.point == 0).count() <= 8);
    }

    proptest! {
        /// What is kept is a subsequence of the input, at most `max` per
        /// point, and each point keeps its first and last reading and its
        /// lowest and highest value.
        #[test]
        fn decimation_keeps_the_extremes_of_every_point(
            series in prop::collection::vec(
                prop::collection::vec((0i64..100_000, -1e6f64..1e6), 1..600), 1..4),
            max in 4usize..64,
        ) {
            let mut rows = Vec::new();
            for (p, s) in series.iter().enumerate() {
                let mut s = s.clone();
                s.sort_by_key(|(t, _)| *t);
                rows.extend(s.into_iter().map(|(t, v)| r(p as u32, t, v)));
            }
            let kept = decimate(rows.clone(), 0, 100_000, max);
            let mut it = rows.iter();
            for k in &kept {
                prop_assert!(it.any(|x| x == k), "not a subsequence");
            }
            for p in 0..series.len() as u32 {
                let all: Vec<&Reading> = rows.iter().filter(|x| x.point == p).collect();
                let mine: Vec<&Reading> = kept.iter().filter(|x| x.point == p).collect();
                prop_assert!(mine.len() <= max);
                prop_assert_eq!(mine.first(), all.first());
                prop_assert_eq!(mine.last(), all.last());
                let top = |v: &[&Reading]| v.iter().map(|x| x.value).fold(f64::MIN, f64::max);
                let bottom = |v: &[&Reading]| v.iter().map(|x| x.value).fold(f64::MAX, f64::min);
                prop_assert_eq!(top(&mine), top(&all));
                prop_assert_eq!(bottom(&mine), bottom(&all));
            }
        }
    }
}
