//! Archive files that fuzzing found to crash or hang a reader, kept as
//! regression tests: each must be refused with an error naming the file,
//! never a panic or minutes of work, by planning, reading and compaction
//! alike.

use std::path::Path;

use hazardwatch_storage::archive::COMPACT_FANIN;
use hazardwatch_storage::reader::{self, Range};
use hazardwatch_storage::{ArchiveConfig, ArchiveWriter};

/// (fixture, what the error says)
const FOUND: [(&str, &str); 4] = [
    // A footer whose column chunk starts at a negative offset: the
    // Parquet reader asserted on it while reading the row group.
    ("chunk-outside-file.parquet", "not inside the file"),
    // Pages whose values overflow the decoder's arithmetic (a panic with
    // overflow checks on; garbage without).
    ("decoder-overflow.parquet", "the Parquet decoder failed"),
    // 2 KiB whose page headers kept the decoder reading them over and over
    // for 351 s (a fuzzing timeout): the read budget stops it.
    ("reread-loop.parquet", "over and over"),
    // A footer declaring a list of two billion booleans, which the Parquet
    // crate skips as taking no bytes each: 11 s per open (a fuzzing
    // timeout). Refused before it is parsed.
    ("bool-list-bomb.parquet", "footer is not valid Thrift"),
];

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn files_found_by_fuzzing_are_refused_with_a_reason() {
    for (name, reason) in FOUND {
        let root = tempfile::tempdir().unwrap();
        let partition = root.path().join("readings/date=2027-01-15/enterprise=E01");
        std::fs::create_dir_all(&partition).unwrap();
        let bytes = fixture(name);
        for i in 1..=COMPACT_FANIN {
            std::fs::write(partition.join(format!("part-{i:04}.parquet")), &bytes).unwrap();
        }
        let range = Range::default();
        let read = reader::plan(root.path(), &range).and_then(|plan| {
            plan.parts
                .iter()
                .try_for_each(|p| reader::read_part(p, &range, reader::all_points, |_| {}))
        });
        let err = read.expect_err(name).to_string();
        assert!(
            err.contains(reason) && err.contains("part-0001.parquet"),
            "{name}: {err}"
        );

        let catalog = std::sync::Arc::new(hazardwatch_proto::Catalog::default());
        let (mut writer, _) =
            ArchiveWriter::open(root.path(), catalog, ArchiveConfig::default()).unwrap();
        let err = writer
            .compact(Some(std::slice::from_ref(&partition)))
            .expect_err(name);
        assert!(err.to_string().contains(reason), "{name}: {err}");
        for i in 1..=COMPACT_FANIN {
            let kept = std::fs::read(partition.join(format!("part-{i:04}.parquet"))).unwrap();
            assert_eq!(kept, bytes, "{name}: kept as it was");
        }
    }
}
