//! A JSON batch on a gateway's topic: decoded, checked against the example
//! park (enterprise, gateway, points, values, times). Never a panic; every
//! reading is either accepted or rejected with a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hazardwatch_fuzz::check_batch(
        "hw/v1/E01/E01-GW1/telemetry",
        data,
        hazardwatch_ingest::decode::decode_json,
    );
});
