//! A configuration file: parsed and checked (site model, gateways, access,
//! escalation, exposure). Never a panic: a clear error or a configuration.
//! An input that parses is parsed again to the same site.
#![no_main]

use hazardwatch::config::Config;
use hazardwatch_rules::Source;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let src = Source {
        path: "fuzz.toml".into(),
        text: text.into(),
    };
    match Config::from_source(&src) {
        Ok(c) => {
            let again = Config::from_source(&src).map(|a| a.site.point_count());
            assert_eq!(again.ok(), Some(c.site.point_count()), "deterministic");
        }
        Err(e) => assert!(!e.to_string().is_empty(), "an error says what is wrong"),
    }
});
