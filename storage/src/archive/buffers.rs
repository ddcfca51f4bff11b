//! Readings buffered per partition until a checkpoint, and how a
//! partition's buffer is laid out as Arrow batches when it is sealed.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use hazardwatch_proto::{Catalog, PointIdx, PointView, Quality, order};

use crate::error::Result;
use crate::schema::readings_schema;

/// One partition's unsealed readings, column by column.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    pub(super) point: Vec<PointIdx>,
    pub(super) ts: Vec<i64>,
    pub(super) ingest_ts: Vec<i64>,
    pub(super) value: Vec<f64>,
    pub(super) quality: Vec<Quality>,
    pub(super) late: Vec<bool>,
}

impl Buffer {
    pub(super) fn len(&self) -> usize {
        self.point.len()
    }

    /// Empties the buffer and keeps its room for the next checkpoint's
    /// readings, so that a steady stream is not copied into fresh pages
    /// as its vectors grow again.
    fn clear(&mut self) {
        self.point.clear();
        self.ts.clear();
        self.ingest_ts.clear();
        self.value.clear();
        self.quality.clear();
        self.late.clear();
    }
}

/// The buffers of the partitions written to since the last checkpoint but
/// one, with an index by key and the last one used (a gateway's batch is of
/// one enterprise, and nearly always of one day).
#[derive(Debug, Default)]
pub(super) struct Partitions {
    pub(super) buffers: Vec<(PartitionKey, Buffer)>,
    index: HashMap<PartitionKey, usize>,
    last: usize,
}

impl Partitions {
    /// The buffer of (`day`, `enterprise`), made if new.
    pub(super) fn buffer(&mut self, day: i64, enterprise: &Arc<str>) -> &mut Buffer {
        let hit = self.buffers.get(self.last).is_some_and(|((d, e), _)| {
            *d == day && (Arc::ptr_eq(e, enterprise) || **e == **enterprise)
        });
        if !hit {
            let key = (day, enterprise.clone());
            self.last = match self.index.get(&key) {
                Some(&i) => i,
                None => {
                    self.buffers.push((key.clone(), Buffer::default()));
                    self.index.insert(key, self.buffers.len() - 1);
                    self.buffers.len() - 1
                }
            };
        }
        &mut self.buffers[self.last].1
    }

    /// After a checkpoint sealed every buffer with rows: empties those and
    /// drops the ones that had none (no reading since the checkpoint before),
    /// so that a past day's or an idle enterprise's room is given back.
    pub(super) fn sealed(&mut self) {
        self.buffers.retain_mut(|(_, b)| {
            let used = b.len() > 0;
            b.clear();
            used
        });
        self.index = self
            .buffers
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        self.last = 0;
    }
}

/// Rows of a partition are laid out as Arrow arrays this many at a time
/// when it is sealed: the arrays stay small enough to be reused by the
/// allocator instead of faulting fresh pages in, and a partition of any
/// size seals in bounded memory.
pub(super) const SEAL_CHUNK: usize = 64 * 1024;

/// Partition key: event day (days since 1970-01-01, UTC) and enterprise.
pub(super) type PartitionKey = (i64, Arc<str>);

/// The order in which a buffer's rows are sealed: by point name, event
/// time and value, rows equal in all three in the order they came. A
/// buffer holds each point's readings nearly in time order, so this is a
/// count by the point's rank among the names and a check (or a merge of
/// the runs) of each point's readings.
pub(super) fn seal_order(cat: &Catalog, buf: &Buffer) -> Vec<u32> {
    let mut order: Vec<u32> = (0..buf.len() as u32).collect();
    let rank = |&i: &u32| cat.name_rank(buf.point[i as usize]);
    order::sort_by_dense_key(&mut order, rank, |&i| {
        let row = i as usize;
        (rank(&i), buf.ts[row], buf.value[row].to_bits())
    });
    order
}

/// The rows of `buf` at `rows` (in the order of [`seal_order`]) as a batch
/// of the readings schema. A point's rows are together, so its description
/// is looked up once per run, not per row.
pub(super) fn readings_batch(cat: &Catalog, buf: &Buffer, rows: &[u32]) -> Result<RecordBatch> {
    let mut runs: Vec<(PointView<'_>, usize)> = Vec::new();
    let mut at = 0;
    while let Some(&first) = rows.get(at) {
        let point = buf.point[first as usize];
        let n = rows[at..]
            .iter()
            .take_while(|&&i| buf.point[i as usize] == point)
            .count();
        runs.push((cat.meta(point), n));
        at += n;
    }
    let text = |f: for<'a> fn(&PointView<'a>) -> &'a str| -> ArrayRef {
        let bytes = runs.iter().map(|(m, n)| f(m).len() * n).sum();
        let mut column = StringBuilder::with_capacity(rows.len(), bytes);
        for (m, n) in &runs {
            let s = f(m);
            for _ in 0..*n {
                column.append_value(s);
            }
        }
        Arc::new(column.finish())
    };
    let column = |f: fn(&Buffer, usize) -> i64| {
        TimestampMillisecondArray::from_iter_values(rows.iter().map(|&i| f(buf, i as usize)))
            .with_timezone("UTC")
    };
    let columns: Vec<ArrayRef> = vec![
        text(|m| m.id),
        text(|m| m.hazard_source),
        text(|m| m.unit),
        text(|m| m.kind.as_str()),
        Arc::new(column(|b, i| b.ts[i])),
        Arc::new(column(|b, i| b.ingest_ts[i])),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|&i| buf.value[i as usize]),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|&i| buf.quality[i as usize].as_str()),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|&i| Some(buf.late[i as usize])),
        )),
    ];
    Ok(RecordBatch::try_new(readings_schema(), columns)?)
}
