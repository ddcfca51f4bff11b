//! A Sparkplug B session: up to 16 messages (births, data, deaths of an
//! edge node and its devices, the type chosen by each message's first
//! byte) through one session table, in any order. Never a panic.
#![no_main]

use hazardwatch_fuzz::parts;
use hazardwatch_ingest::sparkplug::{Sessions, parse_topic};
use libfuzzer_sys::fuzz_target;

const TOPICS: [&str; 8] = [
    "spBv1.0/E01/NBIRTH/E01-GW1",
    "spBv1.0/E01/NDATA/E01-GW1",
    "spBv1.0/E01/NDEATH/E01-GW1",
    "spBv1.0/E01/DBIRTH/E01-GW1/PLC1",
    "spBv1.0/E01/DDATA/E01-GW1/PLC1",
    "spBv1.0/E01/DDEATH/E01-GW1/PLC1",
    "spBv1.0/E01/NCMD/E01-GW1",
    "spBv1.0/E02/NDATA/E02-GW1",
];

fuzz_target!(|data: &[u8]| {
    let mut sessions = Sessions::default();
    for part in parts(data, 16) {
        let Some((&kind, payload)) = part.split_first() else {
            continue;
        };
        let Some(topic) = parse_topic(TOPICS[usize::from(kind) % TOPICS.len()]) else {
            continue;
        };
        sessions.handle(&topic, payload);
    }
});
