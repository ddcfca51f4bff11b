//! Fixtures the fuzz targets share: the example park (its catalog and
//! gateway registry are what payloads are checked against), ingest limits,
//! and a way to split one fuzz input into several messages.

use std::sync::OnceLock;

use hazardwatch::config::{Config, EXAMPLE_CONFIG};
use hazardwatch_ingest::decode::{Decoded, Limits, Malformed, check};
use hazardwatch_rules::Source;

/// The example park, parsed once.
pub fn example() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let src = Source {
            path: "example-park.toml".into(),
            text: EXAMPLE_CONFIG.into(),
        };
        match Config::from_source(&src) {
            Ok(c) => c,
            Err(e) => panic!("the example configuration is valid: {e}"),
        }
    })
}

/// The service's default ingest limits, with a fixed clock.
pub fn limits() -> Limits {
    Limits {
        topic_prefix: "hw/v1".into(),
        max_payload_bytes: 256 * 1024,
        max_clock_skew_ms: 5 * 60_000,
        min_timestamp_ms: 1_500_000_000_000,
    }
}

/// "Now" for every target: a fixed instant, so a crash replays exactly.
pub const NOW_MS: i64 = 1_800_000_000_000;

/// Splits an input into parts at each `\xff\xfe` separator (at most
/// `max`): several messages from one input.
pub fn parts(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < max {
        match rest.windows(2).position(|w| w == [0xff, 0xfe]) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + 2..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// A temporary directory in memory where there is one (`/dev/shm`): the
/// file-based targets sync directories, which on a disk would make each
/// execution cost milliseconds.
pub fn scratch() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
}

/// A payload on gateway E01-GW1's `topic`: checked against the example park
/// as ingest checks it. Whatever `decode` reads is accounted for: accepted
/// or rejected with a reason, never dropped.
pub fn check_batch(topic: &str, data: &[u8], decode: fn(&[u8]) -> Result<Decoded<'_>, Malformed>) {
    let site = &example().site;
    let checked = check(
        &site.catalog,
        &site.registry,
        &limits(),
        topic,
        data,
        NOW_MS,
    );
    if let Ok(d) = decode(data)
        && !d.readings.is_empty()
    {
        assert!(!checked.readings.is_empty() || !checked.rejections.is_empty());
    }
}
