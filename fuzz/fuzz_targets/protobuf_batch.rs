//! A protobuf `ReadingBatch` on a gateway's topic: decoded and checked
//! against the example park. Never a panic; every reading is either
//! accepted or rejected with a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hazardwatch_fuzz::check_batch(
        "hw/v1/E01/E01-GW1/telemetry/pb",
        data,
        hazardwatch_ingest::decode::decode_protobuf,
    );
});
