//! Arbitrary bytes as a Parquet file of the readings archive: planning and
//! reading either work or fail with an error naming the file; compacting
//! eight such files either merges every row or fails and leaves every file
//! as it was. Never a panic, never a file lost.
#![no_main]

use hazardwatch_fuzz::example;
use hazardwatch_storage::archive::COMPACT_FANIN;
use hazardwatch_storage::reader::{self, Range};
use hazardwatch_storage::{ArchiveConfig, ArchiveWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The archive reader turns panics inside the Parquet decoder into
    // errors: let them unwind to it instead of aborting at once (a panic
    // that escapes still aborts, in libfuzzer-sys, and is a crash).
    static UNWIND: std::sync::Once = std::sync::Once::new();
    UNWIND.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Ok(root) = hazardwatch_fuzz::scratch() else {
        return;
    };
    let partition = root.path().join("readings/date=2027-01-15/enterprise=E01");
    if std::fs::create_dir_all(&partition).is_err() {
        return;
    }
    let files: Vec<_> = (1..=COMPACT_FANIN)
        .map(|i| partition.join(format!("part-{i:04}.parquet")))
        .collect();
    if std::fs::write(&files[0], data).is_err() {
        return;
    }
    let range = Range::default();
    let mut rows_read = 0u64;
    let readable = match reader::plan(root.path(), &range) {
        Ok(plan) => plan
            .parts
            .iter()
            .all(|p| reader::read_part(p, &range, reader::all_points, |_| rows_read += 1).is_ok()),
        Err(e) => {
            assert!(e.to_string().contains("part-0001.parquet"), "{e}");
            // Not a Parquet file: compaction reads the same footer first.
            return;
        }
    };
    for f in &files[1..] {
        if std::fs::write(f, data).is_err() {
            return;
        }
    }
    let catalog = example().site.catalog.clone();
    let Ok((mut writer, _)) = ArchiveWriter::open(root.path(), catalog, ArchiveConfig::default())
    else {
        return;
    };
    match writer.compact(Some(std::slice::from_ref(&partition))) {
        Ok(_) => {
            // Merged: every row of the eight files is in the partition.
            if readable {
                let mut after = 0u64;
                if let Ok(plan) = reader::plan(root.path(), &range) {
                    for p in &plan.parts {
                        let _ = reader::read_part(p, &range, reader::all_points, |_| after += 1);
                    }
                }
                assert_eq!(after, rows_read * COMPACT_FANIN as u64);
            }
        }
        Err(_) => {
            for f in &files {
                assert_eq!(
                    std::fs::read(f).ok().as_deref(),
                    Some(data),
                    "kept as it was"
                );
            }
        }
    }
});
