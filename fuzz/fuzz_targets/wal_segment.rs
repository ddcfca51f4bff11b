//! A write-ahead log segment of arbitrary bytes, opened as the newest
//! segment: recovery either reads records back or stops with an error
//! naming the file; a torn tail is cut. Never a panic, and the checked
//! counts match what is read back.
#![no_main]

use hazardwatch_storage::wal::{FileIo, Wal, WalConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = hazardwatch_fuzz::scratch() else {
        return;
    };
    let path = dir.path().join("wal-0000000000000001.log");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let config = WalConfig::default();
    let Ok((_wal, recovery)) = Wal::open_with(dir.path(), config, std::sync::Arc::new(FileIo))
    else {
        return;
    };
    let scanned = recovery.scanned();
    let mut batches = 0u64;
    let mut readings = 0u64;
    for batch in recovery {
        let batch = batch.expect("records the check passed read back");
        batches += 1;
        readings += batch.readings.len() as u64;
    }
    assert_eq!((batches, readings), (scanned.batches, scanned.readings));
    // Opening again finds the same records (the torn tail is gone).
    let (_wal, again) = Wal::open(dir.path(), config).expect("a checked log opens again");
    assert_eq!(again.len() as u64, batches);
});
