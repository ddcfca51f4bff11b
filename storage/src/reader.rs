//! Reading the readings archive back, for replay and queries: only the
//! partitions and row groups a range can touch.
//!
//! [`plan`] prunes in two steps: partitions by their directory names (event
//! date, enterprise), then row groups by the statistics in each file's
//! footer (event time, and point id when a point pattern has a literal
//! prefix). [`read_part`] then decodes one row group's needed columns
//! and keeps the rows in range.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, DictionaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use hazardwatch_proto::Quality;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use crate::archive::{DAY_MS, Dataset, day_of_dir, parquet_files, partition_of};
use crate::error::{Error, Result, io, parquet};
use crate::txn::subdirs;

mod budget;
mod footer;
use budget::Budgeted;

/// Which readings to read.
#[derive(Debug, Clone, Default)]
pub struct Range {
    /// Event time from (inclusive), Unix ms.
    pub from_ms: Option<i64>,
    /// Event time to (exclusive), Unix ms.
    pub to_ms: Option<i64>,
    /// Enterprises; empty means all.
    pub enterprises: Vec<String>,
    /// Point id pattern (`*` any run of characters, `?` one character).
    pub points: Option<String>,
}

impl Range {
    fn has_time(&self, ts: i64) -> bool {
        self.from_ms.is_none_or(|f| ts >= f) && self.to_ms.is_none_or(|t| ts < t)
    }

    fn has_point(&self, point: &str) -> bool {
        self.points.as_deref().is_none_or(|p| glob_match(p, point))
    }

    /// The literal start of the point pattern (before any wildcard).
    fn point_prefix(&self) -> &str {
        let p = self.points.as_deref().unwrap_or("");
        &p[..p.find(['*', '?']).unwrap_or(p.len())]
    }
}

/// Matches `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One row group to read.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The file.
    pub path: PathBuf,
    /// Its row group.
    pub row_group: usize,
    /// Rows in it.
    pub rows: u64,
    /// Event time range of its rows (from its statistics).
    pub ts_min: i64,
    /// See `ts_min`.
    pub ts_max: i64,
}

/// What to read, and how much pruning left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Row groups to read, by their earliest event time.
    pub parts: Vec<Part>,
    /// Files whose footer was read (in partitions the range can touch).
    pub files_opened: usize,
    /// Row groups in those files.
    pub row_groups_total: usize,
    /// Partitions (date and enterprise directories) skipped by name.
    pub partitions_skipped: usize,
}

impl Plan {
    /// Rows in the row groups to read.
    pub fn rows(&self) -> u64 {
        self.parts.iter().map(|p| p.rows).sum()
    }
}

/// The readings files a range can touch, found by the partitions'
/// directory names alone (no file is opened), and how many partitions were
/// skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    /// The files, in partition order.
    pub files: Vec<PathBuf>,
    /// Partitions (date and enterprise directories) skipped by name.
    pub partitions_skipped: usize,
}

/// Plans a read of the readings under `root` (see the module docs).
pub fn plan(root: &Path, range: &Range) -> Result<Plan> {
    plan_all(&[root], range)
}

/// Plans one read of the readings under several roots, as of one archive:
/// a cluster's processes each archive what they ingested, under their own
/// data directories (file names never collide: they carry the writer's
/// clock, process id and sequence).
pub fn plan_all(roots: &[&Path], range: &Range) -> Result<Plan> {
    let mut plan = Plan::default();
    for root in roots {
        let found = candidates(root, range)?;
        plan.partitions_skipped += found.partitions_skipped;
        for path in found.files {
            let file = File::open(&path).map_err(io(&path))?;
            plan_file(&file, &path, range, &mut plan)?;
        }
    }
    plan.parts.sort_by(part_order);
    Ok(plan)
}

/// [`plan`]'s second step over files found by [`candidates`] and opened
/// already (by a thread that may delete them next, in a compaction: an
/// open file stays readable). Each row group comes with its file.
pub fn plan_opened(files: Vec<(PathBuf, File)>, range: &Range) -> Result<Vec<(Part, File)>> {
    let mut opened = Vec::with_capacity(files.len());
    for (path, file) in files {
        let mut plan = Plan::default();
        plan_file(&file, &path, range, &mut plan)?;
        for part in plan.parts {
            let clone = file.try_clone().map_err(io(&path))?;
            opened.push((part, clone));
        }
    }
    opened.sort_by(|(a, _), (b, _)| part_order(a, b));
    Ok(opened)
}

fn part_order(a: &Part, b: &Part) -> std::cmp::Ordering {
    (a.ts_min, &a.path, a.row_group).cmp(&(b.ts_min, &b.path, b.row_group))
}

/// The first step of [`plan`] (see [`Candidates`]): cheap, for a thread
/// that must not wait on file footers.
pub fn candidates(root: &Path, range: &Range) -> Result<Candidates> {
    let mut found = Candidates::default();
    for date in subdirs(&root.join(Dataset::Readings.dir()))? {
        let day = date
            .file_name()
            .and_then(|n| day_of_dir(&n.to_string_lossy()));
        let Some(day) = day else { continue };
        let enterprises = subdirs(&date)?;
        let (start, end) = (day * DAY_MS, (day + 1) * DAY_MS);
        if range.from_ms.is_some_and(|f| end <= f) || range.to_ms.is_some_and(|t| start >= t) {
            found.partitions_skipped += enterprises.len();
            continue;
        }
        for dir in enterprises {
            let Some((_, enterprise)) = partition_of(&dir) else {
                continue;
            };
            if !range.enterprises.is_empty() && !range.enterprises.contains(&enterprise) {
                found.partitions_skipped += 1;
                continue;
            }
            found.files.extend(parquet_files(&dir)?);
        }
    }
    Ok(found)
}

/// Checks that every column chunk a footer names lies inside its file: a
/// damaged or hostile footer otherwise makes the Parquet reader panic
/// (found by fuzzing).
fn check_chunks(meta: &ParquetMetaData, file: &File, path: &Path) -> Result<()> {
    let file_len = file.metadata().map_err(io(path))?.len();
    for (i, rg) in meta.row_groups().iter().enumerate() {
        for (c, col) in rg.columns().iter().enumerate() {
            let start = col
                .dictionary_page_offset()
                .unwrap_or_else(|| col.data_page_offset());
            let len = col.compressed_size();
            let inside = start >= 0
                && len >= 0
                && (start as u64)
                    .checked_add(len as u64)
                    .is_some_and(|end| end <= file_len);
            if !inside {
                return Err(Error::Archive {
                    path: path.to_owned(),
                    message: format!(
                        "row group {i}, column {c}: its bytes ({start}, {len} long) are not inside the file ({file_len} bytes)"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Checks `file`'s footer before the Parquet crate parses it (see
/// [`footer`]).
pub(crate) fn check_footer(file: &File, path: &Path) -> Result<()> {
    footer::check(file).map_err(|message| Error::Archive {
        path: path.to_owned(),
        message,
    })
}

/// Runs a step of the Parquet decoder on a file that may be damaged or
/// hostile: a panic inside the decoder (it has some on corrupt input, found
/// by fuzzing: overflowing arithmetic, failed assertions) becomes an error
/// naming the file. Nothing of ours runs inside, so nothing of ours is
/// hidden.
pub(crate) fn guard<T>(path: &Path, step: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Error::Archive {
            path: path.to_owned(),
            message: format!("the Parquet decoder failed on this file: {why}"),
        }
    })
}

/// A reader builder over `file`, its footer checked before it is parsed
/// (see [`footer`]) and after (see [`check_chunks`]), every read paid
/// from a budget (see [`budget`]).
pub(crate) fn open_checked(
    file: &File,
    path: &Path,
) -> Result<ParquetRecordBatchReaderBuilder<Budgeted>> {
    check_footer(file, path)?;
    let clone = file.try_clone().and_then(Budgeted::new).map_err(io(path))?;
    let builder =
        guard(path, || ParquetRecordBatchReaderBuilder::try_new(clone))?.map_err(parquet(path))?;
    check_chunks(builder.metadata(), file, path)?;
    Ok(builder)
}

/// The next batch of `reader`, decoded under [`guard`].
pub(crate) fn next_batch(
    reader: &mut ParquetRecordBatchReader,
    path: &Path,
) -> Result<Option<RecordBatch>> {
    guard(path, || reader.next())?
        .transpose()
        .map_err(parquet(path))
}

/// Adds the row groups of one file that `range` can touch to `plan`.
fn plan_file(file: &File, path: &Path, range: &Range, plan: &mut Plan) -> Result<()> {
    let prefix = range.point_prefix();
    let builder = open_checked(file, path)?;
    plan.files_opened += 1;
    let meta = builder.metadata();
    let schema = builder.schema();
    let (Ok(point_col), Ok(ts_col)) = (schema.index_of("point"), schema.index_of("ts")) else {
        return Err(Error::Archive {
            path: path.to_owned(),
            message: "not a readings file: no `point` or `ts` column".into(),
        });
    };
    for (i, rg) in meta.row_groups().iter().enumerate() {
        plan.row_groups_total += 1;
        let (ts_min, ts_max) = match rg.column(ts_col).statistics() {
            Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(&a), Some(&b)) => (a, b),
                _ => (i64::MIN, i64::MAX),
            },
            _ => (i64::MIN, i64::MAX),
        };
        if range.from_ms.is_some_and(|f| ts_max < f) || range.to_ms.is_some_and(|t| ts_min >= t) {
            continue;
        }
        if !prefix.is_empty()
            && let Some(Statistics::ByteArray(s)) = rg.column(point_col).statistics()
            && let (Some(min), Some(max)) = (s.min_opt(), s.max_opt())
            && let (Ok(min), Ok(max)) = (min.as_utf8(), max.as_utf8())
            && (max < prefix || (min > prefix && !min.starts_with(prefix)))
        {
            continue;
        }
        plan.parts.push(Part {
            path: path.to_owned(),
            row_group: i,
            rows: rg.num_rows().max(0) as u64,
            ts_min,
            ts_max,
        });
    }
    Ok(())
}

/// The key for [`read_part`] callers that need only the point id: every
/// point, keyed by nothing.
pub fn all_points(_: &str) -> Option<()> {
    Some(())
}

/// A row read back by [`read_part`].
#[derive(Debug, Clone, Copy)]
pub struct KeyedRow<'a, K> {
    /// The point id.
    pub point: &'a str,
    /// What the caller's `key` made of the point id.
    pub key: K,
    /// Event time, Unix ms.
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
    /// Its quality.
    pub quality: Quality,
    /// Archived as late (not judged live).
    pub late: bool,
}

/// The rows of one planned row group that are in `range` and whose point
/// `key` maps to `Some`, calling `f` for each; no allocation per row.
///
/// The point and quality columns are decoded as the dictionaries the
/// archive writes them in: `key` is called once per distinct point id of a
/// dictionary (a row group's, usually) rather than once per row, and no
/// string is compared or copied per row. Callers map point ids to their
/// own indices there, once.
pub fn read_part<K: Copy>(
    part: &Part,
    range: &Range,
    key: impl FnMut(&str) -> Option<K>,
    f: impl FnMut(KeyedRow<'_, K>),
) -> Result<()> {
    let file = File::open(&part.path).map_err(io(&part.path))?;
    read_part_of(file, part, range, key, f)
}

/// [`read_part`] from `file`, opened already (a file opened before it was
/// compacted away can still be read).
pub fn read_part_of<K: Copy>(
    file: File,
    part: &Part,
    range: &Range,
    mut key: impl FnMut(&str) -> Option<K>,
    mut f: impl FnMut(KeyedRow<'_, K>),
) -> Result<()> {
    let path = &part.path;
    let builder = open_dictionaries(&file, path, &["point", "quality"])?;
    let schema = builder.schema().clone();
    let wanted = ["point", "ts", "value", "quality", "late"];
    let mut roots = Vec::new();
    for name in wanted {
        roots.push(schema.index_of(name).map_err(Error::Arrow)?);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut reader = builder
        .with_row_groups(vec![part.row_group])
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(parquet(path))?;
    // The dictionaries last resolved, and what they resolved to: a row
    // group's batches share its dictionary, so this is done once a group.
    let mut points: Option<(ArrayRef, Vec<Option<K>>)> = None;
    let mut qualities: Option<(ArrayRef, Vec<Option<Quality>>)> = None;
    while let Some(batch) = next_batch(&mut reader, path)? {
        let col = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| Error::Archive {
                path: path.clone(),
                message: format!("column {name} missing"),
            })
        };
        let (point_keys, point_names) = dictionary(col("point")?, path, "point")?;
        let ts = col("ts")?
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| bad_type(path, "ts"))?;
        let value = col("value")?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| bad_type(path, "value"))?;
        let (quality_keys, quality_names) = dictionary(col("quality")?, path, "quality")?;
        let late = col("late")?
            .as_boolean_opt()
            .ok_or_else(|| bad_type(path, "late"))?;
        if point_keys.null_count() > 0
            || quality_keys.null_count() > 0
            || point_names.null_count() > 0
            || quality_names.null_count() > 0
        {
            return Err(Error::Archive {
                path: path.clone(),
                message: "a row has no point or no quality".into(),
            });
        }
        let keys = resolved(&mut points, point_keys.values(), point_names, |name| {
            if range.has_point(name) {
                key(name)
            } else {
                None
            }
        });
        let quals = resolved(
            &mut qualities,
            quality_keys.values(),
            quality_names,
            archived_quality,
        );
        let point_of = point_keys.keys();
        let quality_of = quality_keys.keys();
        for i in 0..batch.num_rows() {
            let t = ts.value(i);
            if !range.has_time(t) {
                continue;
            }
            let p = point_of.value(i) as usize;
            let k = match keys.get(p) {
                Some(&Some(k)) => k,
                // Out of the range, or not wanted.
                Some(None) => continue,
                // The decoder refuses keys past their dictionary; should
                // one come through, it is an error, not a row skipped.
                None => {
                    return Err(Error::Archive {
                        path: path.clone(),
                        message: format!("row {i}: point key {p} outside its dictionary"),
                    });
                }
            };
            let q = quality_of.value(i) as usize;
            let Some(&Some(quality)) = quals.get(q) else {
                let shown = (q < quality_names.len()).then(|| quality_names.value(q));
                let shown = shown.unwrap_or("?");
                return Err(Error::Archive {
                    path: path.clone(),
                    message: format!("row {i}: quality `{shown}` unknown"),
                });
            };
            f(KeyedRow {
                point: point_names.value(p),
                key: k,
                ts_ms: t,
                value: value.value(i),
                quality,
                late: late.value(i),
            });
        }
    }
    Ok(())
}

/// A dictionary column of strings: its keys and its values.
fn dictionary<'a>(
    col: &'a ArrayRef,
    path: &Path,
    name: &str,
) -> Result<(&'a DictionaryArray<Int32Type>, &'a StringArray)> {
    let keys = col
        .as_dictionary_opt::<Int32Type>()
        .ok_or_else(|| bad_type(path, name))?;
    let values = keys
        .values()
        .as_string_opt::<i32>()
        .ok_or_else(|| bad_type(path, name))?;
    Ok((keys, values))
}

/// What `resolve` makes of each of `names`, from `memo` if that was made
/// of the same dictionary.
fn resolved<'m, T: Copy>(
    memo: &'m mut Option<(ArrayRef, Vec<Option<T>>)>,
    values: &ArrayRef,
    names: &StringArray,
    mut resolve: impl FnMut(&str) -> Option<T>,
) -> &'m [Option<T>] {
    let same = memo
        .as_ref()
        .is_some_and(|(seen, _)| std::sync::Arc::ptr_eq(seen, values));
    if !same {
        let out = names.iter().map(|n| n.and_then(&mut resolve)).collect();
        *memo = Some((values.clone(), out));
    }
    memo.as_ref().map_or(&[], |(_, out)| out.as_slice())
}

/// A reader of `file` that decodes the string columns `names` as
/// dictionaries, [`open_checked`] otherwise.
fn open_dictionaries(
    file: &File,
    path: &Path,
    names: &[&str],
) -> Result<ParquetRecordBatchReaderBuilder<Budgeted>> {
    let checked = open_checked(file, path)?;
    let schema = checked.schema();
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            if names.contains(&f.name().as_str()) && f.data_type() == &DataType::Utf8 {
                f.with_data_type(dictionary.clone())
            } else {
                f
            }
        })
        .collect();
    let options = ArrowReaderOptions::new().with_schema(std::sync::Arc::new(
        Schema::new_with_metadata(fields, schema.metadata().clone()),
    ));
    let metadata =
        ArrowReaderMetadata::try_new(checked.metadata().clone(), options).map_err(parquet(path))?;
    let input = file.try_clone().and_then(Budgeted::new).map_err(io(path))?;
    Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
        input, metadata,
    ))
}

/// A Parquet file from another system (`hazardwatch import`), read batch
/// by batch with the guards the archive's own files get: the footer
/// checked before and after it is parsed, every read paid from a budget,
/// a panic in the decoder turned into an error naming the file.
pub struct Foreign {
    path: PathBuf,
    schema: arrow_schema::SchemaRef,
    rows: u64,
    reader: ParquetRecordBatchReader,
}

impl Foreign {
    /// Opens `path`; batches hold at most `batch_rows` rows.
    pub fn open(path: &Path, batch_rows: usize) -> Result<Foreign> {
        let file = File::open(path).map_err(io(path))?;
        let builder = open_checked(&file, path)?;
        let schema = builder.schema().clone();
        let rows = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows().max(0) as u64)
            .sum();
        let reader = guard(path, || builder.with_batch_size(batch_rows.max(1)).build())?
            .map_err(parquet(path))?;
        Ok(Foreign {
            path: path.to_owned(),
            schema,
            rows,
            reader,
        })
    }

    /// The file's Arrow schema.
    pub fn schema(&self) -> &arrow_schema::SchemaRef {
        &self.schema
    }

    /// Rows the footer says the file holds.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The next batch, `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        next_batch(&mut self.reader, &self.path)
    }
}

/// A `quality` as archived (including the service's markers).
fn archived_quality(s: &str) -> Option<Quality> {
    Quality::ALL.into_iter().find(|q| q.as_str() == s)
}

fn bad_type(path: &Path, column: &str) -> Error {
    Error::Archive {
        path: path.to_owned(),
        message: format!("column {column} has the wrong type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_a_shell_does() {
        assert!(glob_match("T101.*", "T101.LT"));
        assert!(glob_match("*.LT", "T101.LT"));
        assert!(glob_match("T?01.L?", "T101.LT"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("T101.*", "T102.LT"));
        assert!(!glob_match("T1", "T101"));
        assert!(glob_match("E*-GT*", "E01-GT01"));
    }
}
