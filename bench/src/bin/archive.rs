//! Archive: bytes per reading, write and read rows/s for readings shaped
//! like a park's (points at 1 Hz, quantised random walks), against writing
//! the same rows with the parquet crate's default settings in the same run.
//!
//! `cargo run --release -p hazardwatch-bench --bin archive [POINTS] [SECONDS_OF_DATA]`

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use hazardwatch_bench::{baseline, header, park_seconds, per_sec, row, synthetic_catalog};
use hazardwatch_storage::schema::readings_schema;
use hazardwatch_storage::{ArchiveConfig, ArchiveWriter};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let points: usize = args.next().map_or(Ok(5_000), |s| s.parse())?;
    let seconds: i64 = args.next().map_or(Ok(400), |s| s.parse())?;
    let (catalog, _) = synthetic_catalog(1, points);
    let catalog = Arc::new(catalog);
    let ts0 = 1_732_262_400_000i64;
    let batches = park_seconds(points, seconds, ts0);
    let total = (points as i64 * seconds) as usize;

    // Baseline: the same rows, unsorted, default parquet writer settings.
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let names: Vec<&str> = (0..points).map(|p| catalog.meta(p as u32).id).collect();
    let base_batch = RecordBatch::try_from_iter([
        (
            "point",
            Arc::new(StringArray::from_iter_values(
                batches.iter().flatten().map(|r| names[r.point as usize]),
            )) as _,
        ),
        (
            "ts",
            Arc::new(Int64Array::from_iter_values(
                batches.iter().flatten().map(|r| r.ts_ms),
            )) as _,
        ),
        (
            "value",
            Arc::new(Float64Array::from_iter_values(
                batches.iter().flatten().map(|r| r.value),
            )) as _,
        ),
    ])?;
    let base_path = dir.path().join("baseline.parquet");
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(&base_path)?,
        base_batch.schema(),
        None,
    )?;
    w.write(&base_batch)?;
    w.close()?;
    let base_write = total as f64 / t.elapsed().as_secs_f64();
    let base_bytes = std::fs::metadata(&base_path)?.len() as f64 / total as f64;

    // hazardwatch's writer: partitioned, sorted, zstd, statistics, sealed.
    let config = ArchiveConfig {
        roll_rows: total.max(1),
        ..ArchiveConfig::default()
    };
    let (mut writer, _) = ArchiveWriter::open(dir.path(), catalog.clone(), config)?;
    let late = vec![false; points];
    let t = Instant::now();
    for b in &batches {
        writer.append(b, ts0, &late);
    }
    let sealed = writer.checkpoint(1, &[])?;
    let write_rate = total as f64 / t.elapsed().as_secs_f64();
    let bytes: u64 = sealed.iter().map(|f| f.bytes).sum();
    let rows: usize = sealed.iter().map(|f| f.rows).sum();
    anyhow::ensure!(rows == total, "sealed {rows} of {total} rows");

    let t = Instant::now();
    let mut read = 0;
    for f in &sealed {
        for b in ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f.path)?)?.build()? {
            read += b?.num_rows();
        }
    }
    let read_rate = read as f64 / t.elapsed().as_secs_f64();

    header(
        &format!("archive: {points} points x {seconds} s at 1 Hz = {total} readings"),
        &format!("cargo run --release -p hazardwatch-bench --bin archive {points} {seconds}"),
    );
    baseline(
        "parquet defaults, 3 columns, unsorted: write",
        &per_sec(base_write),
    );
    baseline(
        "parquet defaults: bytes/reading",
        &format!("{base_bytes:.3}"),
    );
    row(
        "hazardwatch archive: write (sort, 9 columns, zstd, fsync)",
        &per_sec(write_rate),
        Some(write_rate / base_write),
    );
    row(
        "hazardwatch archive: bytes/reading",
        &format!("{:.3}", bytes as f64 / total as f64),
        Some(bytes as f64 / total as f64 / base_bytes),
    );
    row(
        "hazardwatch archive: read (parquet crate, all columns)",
        &per_sec(read_rate),
        None,
    );
    println!("\n{} file(s), {bytes} bytes", sealed.len());

    // The encodings, chosen by measurement: the sealed rows rewritten with
    // each candidate (zstd and page statistics in all).
    let readings: Vec<RecordBatch> = sealed
        .iter()
        .filter(|f| f.dataset == hazardwatch_storage::Dataset::Readings)
        .map(|f| -> anyhow::Result<Vec<RecordBatch>> {
            Ok(
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f.path)?)?
                    .build()?
                    .collect::<Result<_, _>>()?,
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    println!("\nencodings (bytes/reading on the same sorted rows):");
    // Columns taken off the dictionary, each with its encoding (None: plain).
    type Variant<'a> = (&'a str, &'a [(&'a str, Option<Encoding>)]);
    let variants: [Variant<'_>; 5] = [
        ("dictionary everywhere (parquet default)", &[]),
        ("ts delta", &[("ts", Some(Encoding::DELTA_BINARY_PACKED))]),
        (
            "ts + ingest_ts delta",
            &[
                ("ts", Some(Encoding::DELTA_BINARY_PACKED)),
                ("ingest_ts", Some(Encoding::DELTA_BINARY_PACKED)),
            ],
        ),
        (
            "ts delta, value byte-stream-split",
            &[
                ("ts", Some(Encoding::DELTA_BINARY_PACKED)),
                ("value", Some(Encoding::BYTE_STREAM_SPLIT)),
            ],
        ),
        ("value plain (no dictionary)", &[("value", None)]),
    ];
    for (name, columns) in variants {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(1_000_000));
        for (column, encoding) in columns {
            props = props.set_column_dictionary_enabled((*column).into(), false);
            if let Some(e) = encoding {
                props = props.set_column_encoding((*column).into(), *e);
            }
        }
        let path = dir.path().join("variant.parquet");
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(&path)?,
            readings_schema(),
            Some(props.build()),
        )?;
        for b in &readings {
            w.write(b)?;
        }
        w.close()?;
        let size = std::fs::metadata(&path)?.len() as f64 / total as f64;
        println!("  {name:<45} {size:.3}");
    }
    Ok(())
}
