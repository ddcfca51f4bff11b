//! Reading the exports: CSV and Parquet, wide or long, row by row into the
//! [`Importer`].

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, UInt64Array};
use arrow_schema::{DataType, TimeUnit};
use hazardwatch_storage::reader::Foreign;

use super::time::Stamp;
use super::{At, Cell, Importer, Layout, Target};

/// Rows between progress updates.
const PROGRESS_EVERY: u64 = 8192;

/// Parquet rows decoded at once.
const PARQUET_BATCH: usize = 64 * 1024;

/// Parquet by its extension; anything else is read as CSV.
pub(crate) fn is_parquet(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["parquet", "parq", "pq"].contains(&e.to_ascii_lowercase().as_str()))
}

/// Which columns hold what, from a file's column names.
enum Plan {
    Wide {
        time: usize,
        /// Value columns: index, where their values go (`None`: unmapped,
        /// skipped), name.
        values: Vec<(usize, Option<Target>, String)>,
    },
    Long {
        time: usize,
        tag: usize,
        value: usize,
        quality: Option<usize>,
    },
}

impl Plan {
    /// The columns a row uses (the others are not decoded).
    fn columns(&self) -> Vec<usize> {
        match self {
            Plan::Wide { time, values } => std::iter::once(*time)
                .chain(values.iter().filter(|v| v.1.is_some()).map(|v| v.0))
                .collect(),
            Plan::Long {
                time,
                tag,
                value,
                quality,
            } => [Some(*time), Some(*tag), Some(*value), *quality]
                .into_iter()
                .flatten()
                .collect(),
        }
    }
}

/// The plan for a file whose columns are `names`.
fn plan(imp: &Importer, file: &str, names: &[String]) -> anyhow::Result<Plan> {
    let find = |flag: &str, name: &str| {
        names
            .iter()
            .position(|n| n.trim().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{file}: no column `{name}` ({flag}); its columns are: {}",
                    names.join(", ")
                )
            })
    };
    let o = &imp.options;
    match o.layout {
        Layout::Wide => {
            let time = match &o.time_column {
                Some(n) => find("--time-column", n)?,
                None => 0,
            };
            let mut values = Vec::new();
            let mut unmapped = Vec::new();
            for (i, name) in names.iter().enumerate().filter(|(i, _)| *i != time) {
                let target = imp.mapping.get(name);
                if target.is_none() {
                    unmapped.push(name.as_str());
                }
                values.push((i, target, name.trim().to_owned()));
            }
            if !unmapped.is_empty() && !o.ignore_unmapped {
                let shown: Vec<&str> = unmapped.iter().take(20).copied().collect();
                anyhow::bail!(
                    "{file}: {} column{} not mapped to a point: {}{} (map {} with --map, or skip {} with --ignore-unmapped)",
                    unmapped.len(),
                    if unmapped.len() == 1 { " is" } else { "s are" },
                    shown.join(", "),
                    if unmapped.len() > 20 { ", ..." } else { "" },
                    if unmapped.len() == 1 { "it" } else { "them" },
                    if unmapped.len() == 1 { "it" } else { "them" },
                );
            }
            anyhow::ensure!(
                values.iter().any(|v| v.1.is_some()),
                "{file}: no column is mapped to a point (is the layout long? then say --layout long)"
            );
            Ok(Plan::Wide { time, values })
        }
        Layout::Long => Ok(Plan::Long {
            time: find("--time-column", o.time_column.as_deref().unwrap_or("time"))?,
            tag: find("--tag-column", &o.tag_column)?,
            value: find("--value-column", &o.value_column)?,
            quality: match &o.quality_column {
                Some(q) => Some(find("--quality-column", q)?),
                None => None,
            },
        }),
    }
}

/// One row of a file.
trait Row {
    /// Cell `i` as a value.
    fn cell(&self, i: usize) -> Cell<'_>;
    /// Cell `i` as a time stamp.
    fn stamp(&self, i: usize) -> Stamp<'_>;
}

/// Takes one row.
fn row(imp: &mut Importer, plan: &Plan, at: At<'_>, row: &impl Row) -> anyhow::Result<()> {
    match plan {
        Plan::Wide { time, values } => {
            let filled = values
                .iter()
                .filter(|v| v.1.is_some() && row.cell(v.0) != Cell::Empty)
                .count() as u64;
            let ts = if filled > 0 {
                imp.time(at, row.stamp(*time), filled)?
            } else {
                None
            };
            for (i, target, name) in values {
                let cell = row.cell(*i);
                match (target, ts) {
                    (Some(t), Some(ts)) => imp.value(at, *t, ts, cell, Cell::Empty)?,
                    (Some(_), None) => {
                        if cell == Cell::Empty {
                            imp.report.empty_cells += 1;
                        }
                    }
                    (None, _) => {
                        if cell != Cell::Empty {
                            imp.unmapped(at, name)?;
                        }
                    }
                }
            }
        }
        Plan::Long {
            time,
            tag,
            value,
            quality,
        } => {
            let tag = match row.cell(*tag) {
                Cell::Text(t) => t.trim(),
                Cell::Empty => "",
                // A numeric tag column: tags are names, so look the number up as text.
                Cell::Number(x) => return number_tag(imp, at, x, row, *time, *value, *quality),
            };
            let Some(target) = imp.mapping.get(tag) else {
                return imp.unmapped(at, tag);
            };
            long_value(imp, at, target, row, *time, *value, *quality)?;
        }
    }
    Ok(())
}

fn number_tag(
    imp: &mut Importer,
    at: At<'_>,
    tag: f64,
    row: &impl Row,
    time: usize,
    value: usize,
    quality: Option<usize>,
) -> anyhow::Result<()> {
    let name = tag.to_string();
    match imp.mapping.get(&name) {
        Some(target) => long_value(imp, at, target, row, time, value, quality),
        None => imp.unmapped(at, &name),
    }
}

fn long_value(
    imp: &mut Importer,
    at: At<'_>,
    target: Target,
    row: &impl Row,
    time: usize,
    value: usize,
    quality: Option<usize>,
) -> anyhow::Result<()> {
    let Some(ts) = imp.time(at, row.stamp(time), 1)? else {
        return Ok(());
    };
    let q = quality.map_or(Cell::Empty, |q| row.cell(q));
    imp.value(at, target, ts, row.cell(value), q)
}

/// A CSV record: cells are trimmed; a cell that is not UTF-8 reads as
/// U+FFFD, so it is rejected with the rest of its row's reasons.
struct CsvRow<'a>(&'a csv::ByteRecord);

impl CsvRow<'_> {
    fn text(&self, i: usize) -> &str {
        let bytes = self.0.get(i).unwrap_or(b"");
        std::str::from_utf8(bytes).unwrap_or("\u{FFFD}").trim()
    }
}

impl Row for CsvRow<'_> {
    fn cell(&self, i: usize) -> Cell<'_> {
        match self.text(i) {
            "" => Cell::Empty,
            t => Cell::Text(t),
        }
    }

    fn stamp(&self, i: usize) -> Stamp<'_> {
        Stamp::Text(self.text(i))
    }
}

/// Imports a CSV file; returns its rows.
pub(crate) fn csv(imp: &mut Importer, path: &Path, progress: &dyn Fn(u64)) -> anyhow::Result<u64> {
    let file_name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{file_name}: {e}"))?;
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(imp.options.delimiter)
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
    let header = rdr
        .byte_headers()
        .map_err(|e| anyhow::anyhow!("{file_name}: its header: {e}"))?
        .clone();
    let mut names = Vec::with_capacity(header.len());
    for h in header.iter() {
        let name = std::str::from_utf8(h).map_err(|_| {
            anyhow::anyhow!(
                "{file_name}: its header is not UTF-8 (exports saved by Excel in Chinese are often GBK: convert with `iconv -f GBK -t UTF-8`)"
            )
        })?;
        names.push(name.trim_start_matches('\u{FEFF}').trim().to_owned());
    }
    let plan = plan(imp, &file_name, &names)?;
    let mut rec = csv::ByteRecord::new();
    let mut rows = 0u64;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Only I/O fails here: the reader is flexible about field counts.
                anyhow::bail!("{file_name}: {e}");
            }
        }
        rows += 1;
        let at = At {
            file: &file_name,
            what: "line",
            n: rec.position().map_or(rows + 1, |p| p.line()),
        };
        if rec.len() != names.len() {
            let n = (rec.len().max(2) - 1) as u64;
            let why = format!("{} fields where the header has {}", rec.len(), names.len());
            imp.reject(super::Reason::Malformed, at, &why, n)?;
            continue;
        }
        row(imp, &plan, at, &CsvRow(&rec))?;
        if rows.is_multiple_of(PROGRESS_EVERY) {
            progress(rec.position().map_or(0, |p| p.byte()));
        }
    }
    Ok(rows)
}

/// A Parquet column of one batch, decoded for the import.
enum Cells<'a> {
    Text(Vec<Option<&'a str>>),
    Number(Vec<Option<f64>>),
    /// Unix ms (or local ms when not UTC) and whether the column is UTC.
    Instant(Vec<Option<i64>>, bool),
}

/// A dictionary column as plain values; other columns as they are.
fn plain(array: &ArrayRef) -> anyhow::Result<ArrayRef> {
    let Some(dict) = array.as_any_dictionary_opt() else {
        return Ok(array.clone());
    };
    let keys = dict.keys();
    let normalized = dict.normalized_keys();
    let take = UInt64Array::from_iter(
        (0..keys.len()).map(|i| (!keys.is_null(i)).then(|| normalized[i] as u64)),
    );
    Ok(arrow_select::take::take(dict.values(), &take, None)?)
}

/// The cells of a column, or the type it has that cannot be imported.
fn cells(array: &ArrayRef) -> Result<Cells<'_>, DataType> {
    fn num<T: arrow_array::ArrowPrimitiveType>(a: &ArrayRef) -> Cells<'_>
    where
        T::Native: ToF64,
    {
        Cells::Number(
            a.as_primitive::<T>()
                .iter()
                .map(|v| v.map(ToF64::to_f64))
                .collect(),
        )
    }
    fn ts<T: arrow_array::ArrowPrimitiveType<Native = i64>>(
        a: &ArrayRef,
        per_ms: i64,
        ms_per: i64,
        utc: bool,
    ) -> Cells<'_> {
        Cells::Instant(
            a.as_primitive::<T>()
                .iter()
                .map(|v| v.map(|x| x.div_euclid(per_ms).saturating_mul(ms_per)))
                .collect(),
            utc,
        )
    }
    Ok(match array.data_type() {
        DataType::Utf8 => Cells::Text(array.as_string::<i32>().iter().collect()),
        DataType::LargeUtf8 => Cells::Text(array.as_string::<i64>().iter().collect()),
        DataType::Utf8View => Cells::Text(array.as_string_view().iter().collect()),
        DataType::Null => Cells::Text(vec![None; array.len()]),
        DataType::Float64 => num::<Float64Type>(array),
        DataType::Float32 => num::<Float32Type>(array),
        DataType::Int8 => num::<Int8Type>(array),
        DataType::Int16 => num::<Int16Type>(array),
        DataType::Int32 => num::<Int32Type>(array),
        DataType::Int64 => num::<Int64Type>(array),
        DataType::UInt8 => num::<UInt8Type>(array),
        DataType::UInt16 => num::<UInt16Type>(array),
        DataType::UInt32 => num::<UInt32Type>(array),
        DataType::UInt64 => num::<UInt64Type>(array),
        DataType::Timestamp(unit, zone) => {
            let utc = zone.is_some();
            match unit {
                TimeUnit::Second => ts::<TimestampSecondType>(array, 1, 1000, utc),
                TimeUnit::Millisecond => ts::<TimestampMillisecondType>(array, 1, 1, utc),
                TimeUnit::Microsecond => ts::<TimestampMicrosecondType>(array, 1000, 1, utc),
                TimeUnit::Nanosecond => ts::<TimestampNanosecondType>(array, 1_000_000, 1, utc),
            }
        }
        other => return Err(other.clone()),
    })
}

/// A number as f64 (integers past 2^53 round, as any export of them does).
trait ToF64 {
    fn to_f64(self) -> f64;
}

macro_rules! to_f64 {
    ($($t:ty),*) => {$(
        impl ToF64 for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
to_f64!(f64, f32, i8, i16, i32, i64, u8, u16, u32, u64);

/// Row `i` of a batch's decoded columns.
struct ParquetRow<'a> {
    columns: &'a [Option<Cells<'a>>],
    i: usize,
}

impl Row for ParquetRow<'_> {
    fn cell(&self, c: usize) -> Cell<'_> {
        match self.columns.get(c).and_then(Option::as_ref) {
            Some(Cells::Text(v)) => match v[self.i].map(str::trim) {
                None | Some("") => Cell::Empty,
                Some(t) => Cell::Text(t),
            },
            Some(Cells::Number(v)) => v[self.i].map_or(Cell::Empty, Cell::Number),
            // A time stamp where a value belongs: not a number.
            Some(Cells::Instant(v, _)) => {
                v[self.i].map_or(Cell::Empty, |_| Cell::Text("(a time stamp)"))
            }
            None => Cell::Empty,
        }
    }

    fn stamp(&self, c: usize) -> Stamp<'_> {
        match self.columns.get(c).and_then(Option::as_ref) {
            Some(Cells::Text(v)) => Stamp::Text(v[self.i].unwrap_or("")),
            Some(Cells::Number(v)) => v[self.i].map_or(Stamp::Text(""), Stamp::Number),
            Some(Cells::Instant(v, utc)) => {
                v[self.i].map_or(Stamp::Text(""), |ms| Stamp::Instant { ms, utc: *utc })
            }
            None => Stamp::Text(""),
        }
    }
}

/// Imports a Parquet file; returns its rows.
pub(crate) fn parquet(
    imp: &mut Importer,
    path: &Path,
    progress: &dyn Fn(u64),
) -> anyhow::Result<u64> {
    let file_name = path.display().to_string();
    let bytes = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("{file_name}: {e}"))?
        .len();
    let mut file = Foreign::open(path, PARQUET_BATCH)?;
    let names: Vec<String> = file
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let plan = plan(imp, &file_name, &names)?;
    let used = plan.columns();
    let total = file.rows().max(1);
    let mut rows = 0u64;
    while let Some(batch) = file.next_batch()? {
        let mut arrays: Vec<Option<ArrayRef>> = vec![None; names.len()];
        for &c in &used {
            arrays[c] = Some(plain(batch.column(c))?);
        }
        let mut columns = Vec::with_capacity(names.len());
        for (c, a) in arrays.iter().enumerate() {
            columns.push(match a {
                Some(a) => Some(cells(a).map_err(|t| {
                    anyhow::anyhow!("{file_name}: column `{}` is of type {t}, which cannot be imported (numbers, text and timestamps can)", names[c])
                })?),
                None => None,
            });
        }
        for i in 0..batch.num_rows() {
            rows += 1;
            let at = At {
                file: &file_name,
                what: "row",
                n: rows,
            };
            row(
                imp,
                &plan,
                at,
                &ParquetRow {
                    columns: &columns,
                    i,
                },
            )?;
        }
        progress((bytes as u128 * u128::from(rows.min(total)) / u128::from(total)) as u64);
    }
    Ok(rows)
}
