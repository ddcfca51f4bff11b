//! Replay: archived readings through the same rules, in event time, at full
//! speed; and what-if, two rule sets over the same history.
//!
//! The archive is read row group by row group in order of earliest event
//! time ([`hazardwatch_storage::reader::plan`] skips the partitions and row
//! groups the range cannot touch). Each row group's rows are sorted by time
//! into a run; the replay then moves a window of event time forward, hands
//! the engine every run's rows before the window's end, and advances the
//! watermark to it. Readings that were late when live (`late = true`) were
//! archived but never judged, so they are not judged here either: that is
//! what makes a replay give the alarms the live service gave.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use hazardwatch_proto::{Catalog, PointIdx, Reading, RuleEvent};
use hazardwatch_rules::operators::Epochs;
use hazardwatch_rules::{Collector, Engine, EngineConfig, SiteModel};
use hazardwatch_storage::ArchiveConfig;
use hazardwatch_storage::reader::{self, Plan, Range};

use crate::config::Config;

/// Event time handed to the engine per step.
const WINDOW_MS: i64 = 60_000;

/// What a replay did.
#[derive(Debug)]
pub struct Replayed {
    /// Readings judged (the service's offline and expected markers, judged
    /// too, are not counted).
    pub readings: u64,
    /// Readings archived as late (not judged live, not judged here).
    pub late: u64,
    /// Readings of points the configuration does not have (not judged).
    pub unknown_points: u64,
    /// Rule events of the configuration, in order.
    pub events: Vec<RuleEvent>,
    /// Rule events of the compared configuration, if any.
    pub compared: Option<Vec<RuleEvent>>,
    /// Event time covered: first and last reading judged.
    pub span_ms: Option<(i64, i64)>,
    /// What was read.
    pub plan: Plan,
    /// Wall time taken.
    pub elapsed: Duration,
}

impl Replayed {
    /// Readings judged per second of wall time.
    pub fn rate(&self) -> f64 {
        self.readings as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One engine and what it collects.
struct Run {
    engine: Engine,
    events: Collector,
    catalog: Arc<Catalog>,
}

impl Run {
    fn start(model: &SiteModel, config: &EngineConfig) -> anyhow::Result<Run> {
        let events = Collector::new();
        let engine = Engine::start(model, config, events.sink())?;
        Ok(Run {
            engine,
            events,
            catalog: model.catalog.clone(),
        })
    }
}

/// Replays `range` of the archive under `root` through `model`'s rules (and
/// `compare`'s, if given); `progress` shows a progress bar on a terminal.
pub fn replay(
    root: &Path,
    range: &Range,
    model: &SiteModel,
    compare: Option<&SiteModel>,
    config: &EngineConfig,
    progress: bool,
) -> anyhow::Result<Replayed> {
    replay_all(&[root], range, model, compare, config, progress)
}

/// [`replay`] over the archives under several roots as one (the archives
/// of a cluster's processes).
pub fn replay_all(
    roots: &[&Path],
    range: &Range,
    model: &SiteModel,
    compare: Option<&SiteModel>,
    config: &EngineConfig,
    progress: bool,
) -> anyhow::Result<Replayed> {
    let started = Instant::now();
    let plan = reader::plan_all(roots, range).with_context(|| {
        let names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        format!("reading the archive at {}", names.join(", "))
    })?;
    let bar = progress_bar(plan.rows(), progress);
    let config = EngineConfig {
        // The replay moves the watermark itself, after the readings.
        lateness_ms: 0,
        epoch_ms: config.history_epoch_ms(),
        // Reading the archive keeps a core busy: when the configuration
        // leaves the workers to the machine (0), one per core but that one.
        workers: match config.workers {
            0 => config.worker_count().saturating_sub(1).max(1),
            w => w,
        },
        // A replay runs in this process alone.
        cluster: Vec::new(),
        process: 0,
        ..config.clone()
    };
    let mut runs = vec![Run::start(model, &config)?];
    if let Some(other) = compare {
        runs.push(Run::start(other, &config)?);
    }

    // Readings read and not yet handed over, by window of event time: for
    // each window (its index on the grid of WINDOW_MS), per epoch of the
    // engine's, a batch per configuration. Row groups come in order of
    // their earliest time, so a window is complete once every row group
    // starting before its end is read; it is handed over then, an epoch
    // at a time (the engine takes a batch of one epoch as it is), and the
    // watermark moved to its end.
    let mut windows = Windows::new(
        runs.len(),
        Epochs {
            epoch_ms: config.epoch_ms as i64,
        },
    );
    let mut next_part = 0;
    let mut readings = 0u64;
    let mut late = 0u64;
    let mut unknown = vec![0u64; runs.len()];
    let mut span: Option<(i64, i64)> = None;
    // Where what is known ends: the range's end, or just past the last
    // reading read.
    let known_end =
        |span: Option<(i64, i64)>| range.to_ms.or(span.map(|(_, b)| b.saturating_add(1)));
    // The next window with readings or a row group that may hold some;
    // empty time between is skipped.
    while let Some(w) = windows
        .first()
        .into_iter()
        .chain(plan.parts.get(next_part).map(|p| window_of(p.ts_min)))
        .min()
    {
        let end = (w.saturating_add(1)).saturating_mul(WINDOW_MS);
        while let Some(part) = plan.parts.get(next_part)
            && part.ts_min < end
        {
            // Each point id is looked up once per row group.
            let points = |name: &str| {
                let mut points = [UNKNOWN; 2];
                for (slot, run) in points.iter_mut().zip(&runs) {
                    *slot = run.catalog.lookup(name).unwrap_or(UNKNOWN);
                }
                Some(points)
            };
            reader::read_part(part, range, points, |r| {
                if r.late {
                    late += 1;
                    return;
                }
                if !r.quality.is_marker() {
                    readings += 1;
                }
                span = Some(span.map_or((r.ts_ms, r.ts_ms), |(a, b)| {
                    (a.min(r.ts_ms), b.max(r.ts_ms))
                }));
                let batches = windows.of(r.ts_ms);
                for ((batch, &point), unknown) in batches.iter_mut().zip(&r.key).zip(&mut unknown) {
                    if point == UNKNOWN {
                        *unknown += 1;
                    } else {
                        batch.push(Reading {
                            point,
                            ts_ms: r.ts_ms,
                            value: r.value,
                            quality: r.quality,
                        });
                    }
                }
            })?;
            bar.inc(part.rows);
            next_part += 1;
        }
        let epochs = windows.take(w);
        // Event time moves to the window's end, but never past the range
        // or the last reading read: what comes after the archive's last
        // reading is not known (a point is not stale because its archive
        // ends), so the replay ends in the same place whatever its windows.
        let until = known_end(span).map_or(end, |cap| end.min(cap));
        let mut flags = Vec::new();
        for batches in &epochs {
            for (run, batch) in runs.iter_mut().zip(batches) {
                run.engine.input().send(batch, &mut flags);
            }
        }
        for run in &mut runs {
            run.engine.input().advance_to(until);
        }
        windows.recycle(epochs);
    }
    // The end of the range (or just past the last reading) is complete.
    let last = known_end(span).unwrap_or(0);
    let mut outs = Vec::new();
    for mut run in runs {
        run.engine.input().advance_to(last);
        run.engine.finish()?;
        outs.push(run.events.take());
    }
    bar.finish_and_clear();
    let compared = if outs.len() > 1 { outs.pop() } else { None };
    let events = outs.pop().unwrap_or_default();
    Ok(Replayed {
        readings,
        late,
        unknown_points: unknown.into_iter().max().unwrap_or(0),
        events,
        compared,
        span_ms: span,
        plan,
        elapsed: started.elapsed(),
    })
}

/// A point the configuration does not have.
const UNKNOWN: PointIdx = PointIdx::MAX;

/// A window's readings: per epoch of the engine's from the window's first
/// (a few: a window is a minute, a replay's epochs a second at least), a
/// batch per configuration.
type ByEpoch = Vec<Vec<Vec<Reading>>>;

/// Readings not yet handed over, by window of event time; the batches
/// handed over are kept for the next windows.
struct Windows {
    /// By window index, ascending; few at a time (those the row groups
    /// read so far reach into).
    open: Vec<(i64, ByEpoch)>,
    /// The open window a row last went to.
    last: usize,
    spare: Vec<ByEpoch>,
    configurations: usize,
    /// The engine's.
    epochs: Epochs,
}

/// The window (on the grid of [`WINDOW_MS`]) an event time falls in.
fn window_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(WINDOW_MS)
}

impl Windows {
    fn new(configurations: usize, epochs: Epochs) -> Windows {
        Windows {
            open: Vec::new(),
            last: 0,
            spare: Vec::new(),
            configurations,
            epochs,
        }
    }

    /// The first open window.
    fn first(&self) -> Option<i64> {
        self.open.first().map(|(w, _)| *w)
    }

    /// The batches of the epoch `ts_ms` falls in (its window opened if it
    /// is not).
    fn of(&mut self, ts_ms: i64) -> &mut Vec<Vec<Reading>> {
        let w = window_of(ts_ms);
        // Rows come in runs of a point, each in time order: mostly the
        // window of the row before.
        if self.open.get(self.last).is_none_or(|(at, _)| *at != w) {
            self.last = match self.open.binary_search_by_key(&w, |(at, _)| *at) {
                Ok(i) => i,
                Err(i) => {
                    self.open
                        .insert(i, (w, self.spare.pop().unwrap_or_default()));
                    i
                }
            };
        }
        let first = self.epochs.of(w.saturating_mul(WINDOW_MS));
        let slot = (self.epochs.of(ts_ms) - first) as usize;
        let by_epoch = &mut self.open[self.last].1;
        if by_epoch.len() <= slot {
            by_epoch.resize_with(slot + 1, || vec![Vec::new(); self.configurations]);
        }
        &mut by_epoch[slot]
    }

    /// Closes window `w`: its batches, by epoch (none if it had none).
    fn take(&mut self, w: i64) -> ByEpoch {
        self.last = 0;
        match self.open.binary_search_by_key(&w, |(at, _)| *at) {
            Ok(i) => self.open.remove(i).1,
            Err(_) => self.spare.pop().unwrap_or_default(),
        }
    }

    /// Keeps `by_epoch`'s batches, emptied, for a window to come.
    fn recycle(&mut self, mut by_epoch: ByEpoch) {
        by_epoch.iter_mut().flatten().for_each(Vec::clear);
        self.spare.push(by_epoch);
    }
}

/// The event's alarm id, as on the gRPC feed.
pub fn alarm_id(catalog: &Catalog, e: &RuleEvent) -> String {
    hazardwatch_alarms::wire::alarm_id(catalog.source_id(e.source), e.kind)
}

/// Raises per (alarm id), sorted.
pub fn raises(catalog: &Catalog, events: &[RuleEvent]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in events.iter().filter(|e| e.active) {
        *out.entry(alarm_id(catalog, e)).or_insert(0) += 1;
    }
    out
}

/// Writes rule events to `path`: JSON lines (`.jsonl`) or Parquet
/// (`.parquet`, with the archive's writer settings `archive`).
pub fn write_events(
    path: &Path,
    catalog: &Catalog,
    events: &[RuleEvent],
    archive: &ArchiveConfig,
) -> anyhow::Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "jsonl" => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            for e in events {
                let line = serde_json::json!({
                    "ts": e.ts_ms,
                    "alarm_id": alarm_id(catalog, e),
                    "source": catalog.source_id(e.source),
                    "kind": e.kind.tag(),
                    "active": e.active,
                    "priority": e.priority.as_str(),
                    "value": finite(e.value),
                    "limit": finite(e.limit),
                    "predicted_ts": e.predicted_ms,
                    "suppressed": e.suppressed,
                });
                serde_json::to_writer(&mut w, &line)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        "parquet" => {
            let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
            let schema = Arc::new(Schema::new(vec![
                Field::new("ts", ts.clone(), false),
                Field::new("alarm_id", DataType::Utf8, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("active", DataType::Boolean, false),
                Field::new("priority", DataType::Utf8, false),
                Field::new("value", DataType::Float64, false),
                Field::new("limit", DataType::Float64, false),
                Field::new("predicted_ts", ts, true),
                Field::new("suppressed", DataType::Boolean, false),
            ]));
            let columns: Vec<ArrayRef> = vec![
                Arc::new(
                    TimestampMillisecondArray::from_iter_values(events.iter().map(|e| e.ts_ms))
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter_values(
                    events.iter().map(|e| alarm_id(catalog, e)),
                )),
                Arc::new(StringArray::from_iter_values(
                    events.iter().map(|e| catalog.source_id(e.source)),
                )),
                Arc::new(StringArray::from_iter_values(
                    events.iter().map(|e| e.kind.tag()),
                )),
                Arc::new(BooleanArray::from_iter(
                    events.iter().map(|e| Some(e.active)),
                )),
                Arc::new(StringArray::from_iter_values(
                    events.iter().map(|e| e.priority.as_str()),
                )),
                Arc::new(Float64Array::from_iter_values(
                    events.iter().map(|e| e.value),
                )),
                Arc::new(Float64Array::from_iter_values(
                    events.iter().map(|e| e.limit),
                )),
                Arc::new(
                    TimestampMillisecondArray::from_iter(events.iter().map(|e| e.predicted_ms))
                        .with_timezone("UTC"),
                ),
                Arc::new(BooleanArray::from_iter(
                    events.iter().map(|e| Some(e.suppressed)),
                )),
            ];
            let batch = RecordBatch::try_new(schema, columns)?;
            hazardwatch_storage::archive::export_parquet(path, &batch, archive)?;
        }
        _ => anyhow::bail!(
            "--out {}: the file name must end in .jsonl or .parquet",
            path.display()
        ),
    }
    Ok(())
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The closing summary: readings, alarms raised by kind, speed, pruning.
pub fn summary(r: &Replayed) -> String {
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for e in r.events.iter().filter(|e| e.active) {
        *by_kind.entry(e.kind.tag()).or_insert(0) += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let span = match r.span_ms {
        Some((a, b)) => format!("{} .. {}", fmt_ts(a), fmt_ts(b)),
        None => "no readings in range".into(),
    };
    format!(
        "replayed {} readings ({span}) in {:.2} s: {:.0} readings/s\n\
         alarms raised: {} ({})\n\
         skipped: {} late when live, {} of points not in the configuration\n\
         read {} of {} row groups in {} files ({} partitions skipped by name)",
        r.readings,
        r.elapsed.as_secs_f64(),
        r.rate(),
        by_kind.values().sum::<u64>(),
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join(", ")
        },
        r.late,
        r.unknown_points,
        r.plan.parts.len(),
        r.plan.row_groups_total,
        r.plan.files_opened,
        r.plan.partitions_skipped,
    )
}

fn fmt_ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// The what-if table: per alarm, raises under each configuration and the
/// difference, and the EEMUA 191 rate (alarms per 10 minutes) of each.
pub fn compare_table(
    before: &Catalog,
    before_events: &[RuleEvent],
    after: &Catalog,
    after_events: &[RuleEvent],
    span_ms: Option<(i64, i64)>,
) -> String {
    let a = raises(before, before_events);
    let b = raises(after, after_events);
    let mut ids: Vec<&String> = a.keys().chain(b.keys()).collect();
    ids.sort();
    ids.dedup();
    let mut out = String::from("alarm                                  before    after     diff\n");
    for id in ids {
        let (x, y) = (
            a.get(id).copied().unwrap_or(0),
            b.get(id).copied().unwrap_or(0),
        );
        out.push_str(&format!(
            "{id:<36} {x:>8} {y:>8} {:>+8}\n",
            y as i64 - x as i64
        ));
    }
    let (ta, tb): (u64, u64) = (a.values().sum(), b.values().sum());
    let minutes = span_ms.map_or(0.0, |(s, e)| (e - s).max(1) as f64 / 60_000.0);
    let rate = |n: u64| {
        if minutes > 0.0 {
            n as f64 / minutes * 10.0
        } else {
            0.0
        }
    };
    out.push_str(&format!(
        "{:<36} {ta:>8} {tb:>8} {:>+8}\n\
         EEMUA 191 rate over {minutes:.1} min: {:.2} -> {:.2} alarms per 10 minutes (about 1 is manageable)\n",
        "total",
        tb as i64 - ta as i64,
        rate(ta),
        rate(tb),
    ));
    out
}

/// The bar a long read of the archive shows on a terminal (`shown`), over
/// `rows` readings; hidden otherwise.
pub(crate) fn progress_bar(rows: u64, shown: bool) -> indicatif::ProgressBar {
    styled_bar(
        rows,
        shown,
        "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} readings ({per_sec}, {eta} left)",
    )
}

/// A bar of `len` steps drawn with `template` on a terminal (`shown`),
/// hidden otherwise.
pub(crate) fn styled_bar(len: u64, shown: bool, template: &str) -> indicatif::ProgressBar {
    let bar = if shown {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Checks that every `--archive` root is a service's `DATA/archive`.
pub(crate) fn check_archive_roots(roots: &[PathBuf]) -> anyhow::Result<()> {
    for root in roots {
        anyhow::ensure!(
            root.join("readings").is_dir(),
            "--archive {}: no readings/ directory there (give the service's DATA/archive)",
            root.display()
        );
    }
    Ok(())
}

/// A time argument: Unix ms, or RFC 3339.
pub fn parse_time(flag: &str, s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|e| anyhow::anyhow!("{flag} {s}: not Unix ms or RFC 3339 ({e})"))
}

/// `hazardwatch replay`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayCommand {
    /// The archive root (the service's `DATA/archive`); repeated, the
    /// archives of a cluster's processes read as one.
    #[arg(long, required = true)]
    pub archive: Vec<PathBuf>,
    /// The configuration whose rules judge the readings.
    #[arg(long)]
    pub config: PathBuf,
    /// Event time from (inclusive): RFC 3339 or Unix ms.
    #[arg(long)]
    pub from: Option<String>,
    /// Event time to (exclusive): RFC 3339 or Unix ms.
    #[arg(long)]
    pub to: Option<String>,
    /// Only these enterprises (repeatable).
    #[arg(long)]
    pub enterprise: Vec<String>,
    /// Only points matching this pattern (`*`, `?`), e.g. `T101.*`.
    #[arg(long)]
    pub points: Option<String>,
    /// Write the alarms (condition changes) to FILE.jsonl or FILE.parquet.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A second configuration: print per alarm the raises under each, the
    /// difference, and the EEMUA 191 rate before and after.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Timely worker threads (default: the configuration's; when that is
    /// 0, one per core but one, the core that reads the archive).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Runs `hazardwatch replay`: checks the arguments, replays, prints the
/// summary (and the comparison), writes `--out`.
pub fn command(a: ReplayCommand) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    check_archive_roots(&a.archive)?;
    let config = Config::load(&a.config)?;
    let other = a.compare.as_deref().map(Config::load).transpose()?;
    let range = Range {
        from_ms: a
            .from
            .as_deref()
            .map(|s| parse_time("--from", s))
            .transpose()?,
        to_ms: a.to.as_deref().map(|s| parse_time("--to", s)).transpose()?,
        enterprises: a.enterprise,
        points: a.points,
    };
    if let (Some(f), Some(t)) = (range.from_ms, range.to_ms) {
        anyhow::ensure!(f < t, "--from must be before --to");
    }
    let mut engine = config.settings.engine.clone();
    if let Some(w) = a.workers {
        engine.workers = w;
    }
    let roots: Vec<&Path> = a.archive.iter().map(PathBuf::as_path).collect();
    let r = replay_all(
        &roots,
        &range,
        &config.site,
        other.as_ref().map(|c| &c.site),
        &engine,
        std::io::stderr().is_terminal(),
    )?;
    println!("{}", summary(&r));
    if let Some(out) = &a.out {
        write_events(
            out,
            &config.site.catalog,
            &r.events,
            &config.settings.archive,
        )?;
        println!("alarms written to {}", out.display());
    }
    if let (Some(other), Some(compared)) = (&other, &r.compared) {
        print!(
            "{}",
            compare_table(
                &config.site.catalog,
                &r.events,
                &other.site.catalog,
                compared,
                r.span_ms,
            )
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hazardwatch_proto::Quality;

    use hazardwatch_storage::ArchiveWriter;

    use super::*;

    /// A replay ends at the archive's last reading, wherever its windows
    /// (minutes) end: a clear an off-delay would make after it is not
    /// known, and is not made.
    #[test]
    fn a_replay_ends_at_the_last_reading_wherever_the_minute_ends() {
        // H at 18 m, cleared 5 s after the level is back below it.
        let site = crate::test_park::site(&[("off_delay_s", "5")]);
        let point = site.catalog.lookup("T101.LT").unwrap();
        let minute = 1_800_000_000_000i64 / WINDOW_MS * WINDOW_MS;
        for last in [minute - 2_000, minute + 20_000] {
            let dir = tempfile::tempdir().unwrap();
            let (mut writer, _) =
                ArchiveWriter::open(dir.path(), site.catalog.clone(), ArchiveConfig::default())
                    .unwrap();
            let reading = |ts_ms, value| Reading {
                point,
                ts_ms,
                value,
                quality: Quality::Good,
            };
            writer.append(
                &[reading(last - 8_000, 19.0), reading(last, 10.0)],
                last,
                &[],
            );
            writer.checkpoint(1, &[]).unwrap();
            let engine = EngineConfig {
                workers: 1,
                ..EngineConfig::default()
            };
            let out = replay(dir.path(), &Range::default(), &site, None, &engine, false).unwrap();
            let changes: Vec<(bool, i64)> =
                out.events.iter().map(|e| (e.active, e.ts_ms)).collect();
            assert_eq!(changes, [(true, last - 8_000)], "last reading at {last}");
        }
    }
}
