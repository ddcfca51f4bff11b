//! A protobuf batch on a gateway's topic: decoded and checked against the
//! example park. Never a panic.
#![no_main]

use hazardwatch_fuzz::{NOW_MS, example, limits};
use hazardwatch_ingest::decode::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let site = &example().site;
    let checked = check(
        &site.catalog,
        &site.registry,
        &limits(),
        "hw/v1/E01/E01-GW1/telemetry/pb",
        data,
        NOW_MS,
    );
    // Whatever decodes is accounted for: accepted or rejected, never lost.
    if let Ok(d) = hazardwatch_ingest::decode::decode_protobuf(data)
        && !d.readings.is_empty()
    {
        assert!(!checked.readings.is_empty() || !checked.rejections.is_empty());
    }
});
