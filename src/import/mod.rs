//! `hazardwatch import`: history from other systems (issue 17). CSV and
//! Parquet exports of historians and DCSs, in a wide layout (a time column
//! and one column per tag) or a long one (time, tag, value and optionally
//! quality per row), become an archive in the service's layout, so that
//! `learn` and `replay` run on years that predate hazardwatch.
//!
//! Every value is checked as the live path checks a gateway's: its tag
//! mapped to a point of the configuration, a finite number, a time stamp
//! that parses and lies between `[mqtt] min_timestamp_s` and now, a known
//! quality. What fails is counted by reason and shown with its file and
//! line, never dropped silently; past `--max-rejected` the import stops.
//!
//! The archive is sorted and partitioned by day and enterprise as the
//! service writes it, small files merged, and written aside and renamed
//! to `--out` only when complete ([`crate::new_archive`]). The new
//! archive is read beside the service's own (`--archive` twice); it is
//! never written into a live one. A reading is imported as often as the
//! inputs hold it: import overlapping exports once.

mod mapping;
mod source;
mod time;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hazardwatch_proto::{Quality, Reading};
use hazardwatch_storage::archive::{ArchiveConfig, ArchiveWriter};

pub use mapping::{Mapping, Target};
pub use time::{Clock, Format, Zone};

use crate::config::Config;
use time::{Bad, NoZone, Stamp};

/// Readings handed to the archive writer at once.
const BATCH: usize = 64 * 1024;

/// Examples kept per reason of rejection.
const EXAMPLES: usize = 5;

/// Distinct unmapped tag names remembered for the report.
const UNMAPPED_NAMES: usize = 1000;

/// How an export is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// A time column, then one column per tag.
    Wide,
    /// One value per row: time, tag, value and optionally quality columns.
    Long,
}

/// `hazardwatch import`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportCommand {
    /// Export files: CSV (any name) or Parquet (`.parquet`, `.parq`, `.pq`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The configuration whose points the tags are mapped to.
    #[arg(long)]
    pub config: PathBuf,
    /// The archive to write: a new directory (read it with a second
    /// `--archive` beside the service's).
    #[arg(long)]
    pub out: PathBuf,
    /// Tag-to-point map: CSV with the columns tag, point and optionally
    /// scale and offset. Without it, tags are point ids.
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// Zone of time stamps that carry no UTC offset: an IANA name
    /// (Asia/Shanghai) or an offset (+08:00). Required when there are such.
    #[arg(long)]
    pub timezone: Option<String>,
    /// How time stamps are written: auto (RFC 3339 and common layouts),
    /// epoch-s, epoch-ms, or a strftime layout such as '%d.%m.%Y %H:%M:%S'.
    #[arg(long, default_value = "auto")]
    pub time_format: String,
    /// How to read the files.
    #[command(flatten)]
    pub options: Options,
}

/// How to read the exports.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Wide (a column per tag) or long (a row per value).
    #[arg(long, value_enum, default_value_t = Layout::Wide)]
    pub layout: Layout,
    /// Time column [default: the first column (wide), `time` (long)].
    #[arg(long)]
    pub time_column: Option<String>,
    /// Tag column of the long layout.
    #[arg(long, default_value = "tag")]
    pub tag_column: String,
    /// Value column of the long layout.
    #[arg(long, default_value = "value")]
    pub value_column: String,
    /// Quality column of the long layout (good/uncertain/bad or an OPC
    /// quality code); without it every value is good.
    #[arg(long)]
    pub quality_column: Option<String>,
    /// CSV field delimiter: one ASCII character, or `tab`.
    #[arg(long, default_value = ",", value_parser = delimiter)]
    pub delimiter: u8,
    /// Skip columns and tags that the map does not name instead of
    /// stopping (wide) or rejecting them (long).
    #[arg(long)]
    pub ignore_unmapped: bool,
    /// Stop (writing nothing) after this many rejected values.
    #[arg(long, default_value_t = 10_000)]
    pub max_rejected: u64,
}

/// `--delimiter`: one ASCII character, or `tab`.
fn delimiter(s: &str) -> Result<u8, String> {
    match s.as_bytes() {
        [b] if b.is_ascii() && !b.is_ascii_alphanumeric() => Ok(*b),
        _ if s == "tab" || s == "\\t" => Ok(b'\t'),
        _ => Err(format!(
            "{s:?}: one ASCII character that is not a letter or digit, or `tab`"
        )),
    }
}

/// Why a value was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A tag the map (or the configuration) does not know.
    UnmappedTag,
    /// A value that is not a number.
    NotANumber,
    /// A number that is not finite (after scaling).
    NotFinite,
    /// A time stamp that does not parse.
    BadTime,
    /// A local time that happened twice (daylight saving ends).
    AmbiguousTime,
    /// A local time that never happened (daylight saving starts).
    NonexistentTime,
    /// Before `[mqtt] min_timestamp_s`.
    TooOld,
    /// After the import started.
    InFuture,
    /// A quality that is not good, uncertain, bad or an OPC code.
    BadQuality,
    /// A CSV row that is not CSV (field count, encoding).
    Malformed,
}

impl Reason {
    fn says(self) -> &'static str {
        match self {
            Reason::UnmappedTag => "tag not mapped to a point",
            Reason::NotANumber => "value not a number",
            Reason::NotFinite => "value not finite",
            Reason::BadTime => "time stamp not readable",
            Reason::AmbiguousTime => "local time repeated when daylight saving ends",
            Reason::NonexistentTime => "local time skipped when daylight saving starts",
            Reason::TooOld => "time stamp before [mqtt] min_timestamp_s",
            Reason::InFuture => "time stamp in the future",
            Reason::BadQuality => "quality not good, uncertain, bad or an OPC code",
            Reason::Malformed => "row not CSV",
        }
    }
}

/// Rejections of one reason.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Rejected {
    /// Values rejected.
    pub count: u64,
    /// The first few, with where they were.
    pub examples: Vec<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Readings written.
    pub readings: u64,
    /// Distinct points among them.
    pub points: usize,
    /// Earliest and latest event time, Unix ms.
    pub span_ms: Option<(i64, i64)>,
    /// Empty cells (no value at that time): not readings, not rejected.
    pub empty_cells: u64,
    /// Values skipped because their tag is unmapped and
    /// `--ignore-unmapped` was given.
    pub skipped_unmapped: u64,
    /// Unmapped tags seen, with how many values each had.
    pub unmapped_tags: BTreeMap<String, u64>,
    /// Rejections by reason.
    pub rejected: BTreeMap<Reason, Rejected>,
    /// Per input file: rows read and readings taken.
    pub files: Vec<FileReport>,
}

impl Report {
    /// Values rejected, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().map(|r| r.count).sum()
    }
}

/// One input file's share.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileReport {
    /// As given.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Rows (CSV lines after the header, Parquet rows).
    pub rows: u64,
    /// Readings imported from it.
    pub readings: u64,
}

/// Where a value is, for the report: file and line (CSV) or row (Parquet).
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    file: &'a str,
    what: &'static str,
    n: u64,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {} {}", self.file, self.what, self.n)
    }
}

/// A value or quality cell as a file holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    /// No value.
    Empty,
    /// Text.
    Text(&'a str),
    /// A number.
    Number(f64),
}

/// The import under way: checks values and hands readings to the writer.
pub(crate) struct Importer {
    mapping: Mapping,
    clock: Clock,
    options: Options,
    earliest_ms: i64,
    latest_ms: i64,
    ingest_ms: i64,
    writer: ArchiveWriter,
    roll_rows: usize,
    batch: Vec<Reading>,
    seen: Vec<bool>,
    report: Report,
}

impl Importer {
    /// The time of a row, `None` if rejected (the row's `values` values
    /// counted as rejected). A local time without a zone stops the import.
    fn time(&mut self, at: At<'_>, stamp: Stamp<'_>, values: u64) -> anyhow::Result<Option<i64>> {
        let ms = match self.clock.read(stamp) {
            Ok(Ok(ms)) => ms,
            Ok(Err(bad)) => {
                let reason = match bad {
                    Bad::Unparseable => Reason::BadTime,
                    Bad::Ambiguous => Reason::AmbiguousTime,
                    Bad::Nonexistent => Reason::NonexistentTime,
                };
                self.reject(reason, at, &stamp.to_string(), values)?;
                return Ok(None);
            }
            Err(NoZone) => anyhow::bail!(
                "{at}: the time stamp {stamp} has no UTC offset: state the zone of the export with --timezone (an IANA name such as Asia/Shanghai, or an offset such as +08:00)"
            ),
        };
        if ms < self.earliest_ms {
            self.reject(Reason::TooOld, at, &stamp.to_string(), values)?;
            return Ok(None);
        }
        if ms > self.latest_ms {
            self.reject(Reason::InFuture, at, &stamp.to_string(), values)?;
            return Ok(None);
        }
        Ok(Some(ms))
    }

    /// A value of an unmapped tag: rejected, or skipped with
    /// `--ignore-unmapped`; remembered by name either way.
    fn unmapped(&mut self, at: At<'_>, tag: &str) -> anyhow::Result<()> {
        let names = &mut self.report.unmapped_tags;
        if let Some(n) = names.get_mut(tag) {
            *n += 1;
        } else if names.len() < UNMAPPED_NAMES {
            names.insert(tag.to_owned(), 1);
        }
        if self.options.ignore_unmapped {
            self.report.skipped_unmapped += 1;
            Ok(())
        } else {
            self.reject(Reason::UnmappedTag, at, tag, 1)
        }
    }

    /// One value of `target` at `ts_ms`.
    fn value(
        &mut self,
        at: At<'_>,
        target: Target,
        ts_ms: i64,
        value: Cell<'_>,
        quality: Cell<'_>,
    ) -> anyhow::Result<()> {
        let raw = match value {
            Cell::Empty => {
                self.report.empty_cells += 1;
                return Ok(());
            }
            Cell::Number(x) => x,
            Cell::Text(t) => match t.trim().parse::<f64>() {
                Ok(x) => x,
                Err(_) => return self.reject(Reason::NotANumber, at, &format!("`{t}`"), 1),
            },
        };
        let value = target.convert(raw);
        if !value.is_finite() {
            return self.reject(Reason::NotFinite, at, &raw.to_string(), 1);
        }
        let Some(quality) = parse_quality(quality) else {
            let shown = match quality {
                Cell::Text(t) => t.to_owned(),
                Cell::Number(x) => x.to_string(),
                Cell::Empty => String::new(),
            };
            return self.reject(Reason::BadQuality, at, &shown, 1);
        };
        self.batch.push(Reading {
            point: target.point,
            ts_ms,
            value,
            quality,
        });
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Counts `n` values rejected for `reason`; errors past the limit.
    fn reject(&mut self, reason: Reason, at: At<'_>, what: &str, n: u64) -> anyhow::Result<()> {
        let r = self.report.rejected.entry(reason).or_default();
        r.count += n;
        if r.examples.len() < EXAMPLES {
            let what: String = what.chars().take(80).collect();
            r.examples.push(format!("{at}: {what}"));
        }
        let total = self.report.rejected_total();
        anyhow::ensure!(
            total <= self.options.max_rejected,
            "{total} values rejected, more than --max-rejected {}; nothing was written. {}",
            self.options.max_rejected,
            rejections(&self.report)
        );
        Ok(())
    }

    /// Hands the batch to the writer; seals when `roll_rows` are buffered.
    fn flush(&mut self) -> anyhow::Result<()> {
        for r in &self.batch {
            let seen = &mut self.seen[r.point as usize];
            if !*seen {
                *seen = true;
                self.report.points += 1;
            }
            let (lo, hi) = self.report.span_ms.unwrap_or((r.ts_ms, r.ts_ms));
            self.report.span_ms = Some((lo.min(r.ts_ms), hi.max(r.ts_ms)));
        }
        self.report.readings += self.batch.len() as u64;
        if let Some(f) = self.report.files.last_mut() {
            f.readings += self.batch.len() as u64;
        }
        self.writer.append(&self.batch, self.ingest_ms, &[]);
        self.batch.clear();
        if self.writer.buffered_rows() >= self.roll_rows {
            self.writer.checkpoint(0, &[])?;
        }
        Ok(())
    }
}

/// A quality cell: empty is good; text is good, uncertain or bad; a number
/// is an OPC quality code (its top two bits: 11 good, 01 uncertain, 00 bad).
fn parse_quality(cell: Cell<'_>) -> Option<Quality> {
    let code = match cell {
        Cell::Empty => return Some(Quality::Good),
        Cell::Text(t) => {
            let t = t.trim();
            if t.is_empty() {
                return Some(Quality::Good);
            }
            match Quality::parse(t) {
                Some(q) => return Some(q),
                None => t.parse::<f64>().ok()?,
            }
        }
        Cell::Number(x) => x,
    };
    if !(0.0..=65535.0).contains(&code) || code.fract() != 0.0 {
        return None;
    }
    match (code as u32) & 0xC0 {
        0xC0 => Some(Quality::Good),
        0x40 => Some(Quality::Uncertain),
        0x00 => Some(Quality::Bad),
        _ => None,
    }
}

/// The rejections, one line per reason with its examples.
fn rejections(report: &Report) -> String {
    let mut out = String::new();
    for (reason, r) in &report.rejected {
        out.push_str(&format!("\n  {} rejected: {}", r.count, reason.says()));
        for e in &r.examples {
            out.push_str(&format!("\n    {e}"));
        }
    }
    out
}

/// An import: what to read, how, and into which points.
pub struct Import<'a> {
    /// The export files.
    pub files: &'a [PathBuf],
    /// Tags to points (and the catalog the points are in).
    pub mapping: Mapping,
    /// How time stamps are read.
    pub clock: Clock,
    /// How the files are laid out.
    pub options: Options,
    /// How the archive is written.
    pub archive: &'a ArchiveConfig,
    /// Oldest time stamp accepted, Unix ms.
    pub earliest_ms: i64,
    /// Show a progress bar.
    pub progress: bool,
}

/// Imports into a new archive at `out` (see the module docs).
pub fn import(job: Import<'_>, out: &Path) -> anyhow::Result<Report> {
    crate::new_archive::write("--out", out, |root| run(job, root))
}

fn run(job: Import<'_>, root: &Path) -> anyhow::Result<Report> {
    let Import {
        files,
        mapping,
        clock,
        options,
        archive,
        earliest_ms,
        progress,
    } = job;
    let catalog = mapping.catalog().clone();
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()
        .context("reading the size of an input file")?;
    let bar = byte_bar(total, progress);
    let (writer, _) = ArchiveWriter::open(root, catalog.clone(), archive.clone())?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut imp = Importer {
        mapping,
        clock,
        options,
        earliest_ms,
        latest_ms: now_ms,
        ingest_ms: now_ms,
        writer,
        roll_rows: archive.roll_rows,
        batch: Vec::with_capacity(BATCH),
        seen: vec![false; catalog.len()],
        report: Report::default(),
    };
    for path in files {
        let bytes = std::fs::metadata(path)
            .with_context(|| path.display().to_string())?
            .len();
        imp.report.files.push(FileReport {
            path: path.display().to_string(),
            bytes,
            rows: 0,
            readings: 0,
        });
        let started = bar.position();
        let rows = if source::is_parquet(path) {
            source::parquet(&mut imp, path, &|done| bar.set_position(started + done))?
        } else {
            source::csv(&mut imp, path, &|done| bar.set_position(started + done))?
        };
        imp.flush()?;
        if let Some(f) = imp.report.files.last_mut() {
            f.rows = rows;
        }
        bar.set_position(started + bytes);
    }
    imp.writer.checkpoint(0, &[])?;
    bar.set_message("merging small files");
    imp.writer.compact(None)?;
    bar.finish_and_clear();
    let manifest = serde_json::to_vec_pretty(&Manifest {
        format: "hazardwatch-import",
        version: 1,
        imported_at_ms: now_ms,
        report: &imp.report,
    })?;
    hazardwatch_storage::txn::replace_durably(&root.join("import.json"), &manifest)?;
    Ok(imp.report)
}

/// `import.json` in the archive: what was imported, from where.
#[derive(serde::Serialize)]
struct Manifest<'a> {
    format: &'static str,
    version: u32,
    imported_at_ms: i64,
    #[serde(flatten)]
    report: &'a Report,
}

/// The bar over the input's bytes, on a terminal.
fn byte_bar(bytes: u64, shown: bool) -> indicatif::ProgressBar {
    crate::replay::styled_bar(
        bytes,
        shown,
        "{elapsed_precise} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left) {msg}",
    )
}

/// Runs `hazardwatch import`: checks the arguments, imports, prints what
/// was imported and what was not.
pub fn command(a: ImportCommand) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let config = Config::load(&a.config)?;
    let catalog = config.site.catalog.clone();
    let mapping = match &a.map {
        Some(path) => Mapping::load(path, catalog.clone())?,
        None => Mapping::identity(catalog.clone()),
    };
    let zone = a
        .timezone
        .as_deref()
        .map(Zone::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let format = Format::parse(&a.time_format).map_err(anyhow::Error::msg)?;
    for f in &a.files {
        anyhow::ensure!(f.is_file(), "{}: no such file", f.display());
    }
    let earliest_ms = config.settings.mqtt.min_timestamp_s.saturating_mul(1000);
    let job = Import {
        files: &a.files,
        mapping,
        clock: Clock::new(zone, format),
        options: a.options,
        archive: &config.settings.archive,
        earliest_ms,
        progress: std::io::stderr().is_terminal(),
    };
    let report = import(job, &a.out)?;
    print!("{}", summary(&report, &a.out));
    Ok(())
}

/// What `import` prints.
pub fn summary(report: &Report, out: &Path) -> String {
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default()
    };
    let mut s = format!(
        "{} readings of {} points imported into {}",
        report.readings,
        report.points,
        out.display()
    );
    if let Some((a, b)) = report.span_ms {
        s.push_str(&format!(", {} to {}", time(a), time(b)));
    }
    s.push('\n');
    for f in &report.files {
        s.push_str(&format!(
            "  {}: {} rows, {} readings\n",
            f.path, f.rows, f.readings
        ));
    }
    if report.empty_cells > 0 {
        s.push_str(&format!(
            "  {} empty cells (no value)\n",
            report.empty_cells
        ));
    }
    if report.skipped_unmapped > 0 {
        let mut names: Vec<(&String, &u64)> = report.unmapped_tags.iter().collect();
        names.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = names
            .iter()
            .take(10)
            .map(|(t, n)| format!("{t} ({n})"))
            .collect();
        s.push_str(&format!(
            "  {} values of unmapped tags skipped: {}{}\n",
            report.skipped_unmapped,
            shown.join(", "),
            if names.len() > 10 { ", ..." } else { "" }
        ));
    }
    let rejected = rejections(report);
    if !rejected.is_empty() {
        s.push_str(rejected.trim_start_matches('\n'));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delimiter_is_one_ascii_character_or_tab() {
        assert_eq!(delimiter(";"), Ok(b';'));
        assert_eq!(delimiter("tab"), Ok(b'\t'));
        assert_eq!(delimiter("|"), Ok(b'|'));
        for bad in ["", ";;", "a", "7", "，"] {
            assert!(delimiter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn qualities_are_names_or_opc_codes() {
        assert_eq!(parse_quality(Cell::Empty), Some(Quality::Good));
        assert_eq!(parse_quality(Cell::Text(" ")), Some(Quality::Good));
        assert_eq!(
            parse_quality(Cell::Text("Uncertain")),
            Some(Quality::Uncertain)
        );
        assert_eq!(parse_quality(Cell::Text("192")), Some(Quality::Good));
        assert_eq!(parse_quality(Cell::Number(192.0)), Some(Quality::Good));
        assert_eq!(
            parse_quality(Cell::Number(0xD8 as f64)),
            Some(Quality::Good)
        );
        assert_eq!(
            parse_quality(Cell::Number(0x44 as f64)),
            Some(Quality::Uncertain)
        );
        assert_eq!(parse_quality(Cell::Number(0.0)), Some(Quality::Bad));
        assert_eq!(parse_quality(Cell::Number(0x80 as f64)), None);
        assert_eq!(parse_quality(Cell::Number(1.5)), None);
        assert_eq!(parse_quality(Cell::Text("offline")), None);
        assert_eq!(parse_quality(Cell::Text("ok")), None);
    }
}
