//! Gateway payloads, written as a gateway writes them: the inverse of
//! [`crate::decode`], shared by the simulator, the benchmarks' load
//! generator and the tests, so that all of them speak the documented wire
//! format one way.
//!
//! ```
//! use hazardwatch_ingest::encode::{OutReading, batch};
//! use hazardwatch_ingest::topic::Format;
//! use hazardwatch_proto::Quality;
//!
//! let r = OutReading { point: "T101.LT", ts_ms: 1_732_262_400_123, value: 12.34, quality: Quality::Good };
//! let json = batch(Format::Json, "GW01", 1042, [r]);
//! assert_eq!(
//!     String::from_utf8(json).unwrap(),
//!     r#"{"gateway":"GW01","seq":1042,"readings":[{"point":"T101.LT","ts":1732262400123,"value":12.34}]}"#
//! );
//! ```

use hazardwatch_proto::{Quality, pb};
use prost::Message;
use serde::Serialize;

use crate::topic::Format;

/// One reading as a gateway sends it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutReading<'a> {
    /// Point id.
    pub point: &'a str,
    /// Event time, Unix ms.
    pub ts_ms: i64,
    /// Value in engineering units.
    pub value: f64,
    /// Quality (`good` is left out of JSON: it is the default).
    pub quality: Quality,
}

#[derive(Serialize)]
struct JsonBatch<'a> {
    gateway: &'a str,
    seq: u64,
    readings: Vec<JsonReading<'a>>,
}

#[derive(Serialize)]
struct JsonReading<'a> {
    point: &'a str,
    ts: i64,
    value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<&'static str>,
}

/// The payload of one batch of `gateway`'s readings, numbered `seq`, in
/// `format` (JSON for `.../telemetry`, protobuf `ReadingBatch` for
/// `.../telemetry/pb`).
pub fn batch<'a>(
    format: Format,
    gateway: &str,
    seq: u64,
    readings: impl IntoIterator<Item = OutReading<'a>>,
) -> Vec<u8> {
    match format {
        Format::Json => {
            let message = JsonBatch {
                gateway,
                seq,
                readings: readings
                    .into_iter()
                    .map(|r| JsonReading {
                        point: r.point,
                        ts: r.ts_ms,
                        value: r.value,
                        quality: (r.quality != Quality::Good).then(|| r.quality.as_str()),
                    })
                    .collect(),
            };
            // Strings and numbers only: serialising into memory cannot fail
            // (a non-finite value becomes `null`, which ingest refuses).
            serde_json::to_vec(&message).unwrap_or_default()
        }
        Format::Protobuf => pb::ReadingBatch {
            gateway: gateway.to_owned(),
            seq,
            readings: readings
                .into_iter()
                .map(|r| pb::Reading {
                    point: r.point.to_owned(),
                    ts_ms: r.ts_ms,
                    value: r.value,
                    quality: pb::Quality::from(r.quality) as i32,
                })
                .collect(),
        }
        .encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::decode::{decode_json, decode_protobuf};

    #[test]
    fn what_is_encoded_decodes_to_the_same_readings() {
        let readings = [
            OutReading {
                point: "T101.LT",
                ts_ms: 1_000,
                value: 12.5,
                quality: Quality::Good,
            },
            OutReading {
                point: "E03-GT01",
                ts_ms: 2_000,
                value: -0.25,
                quality: Quality::Bad,
            },
        ];
        for format in [Format::Json, Format::Protobuf] {
            let payload = batch(format, "GW7", 9, readings);
            let d = match format {
                Format::Json => decode_json(&payload).unwrap(),
                Format::Protobuf => decode_protobuf(&payload).unwrap(),
            };
            assert_eq!(d.gateway.as_deref(), Some("GW7"));
            assert_eq!(d.seq, Some(9));
            let got: Vec<(String, i64, f64, String)> = d
                .readings
                .iter()
                .map(|r| {
                    (
                        r.point.to_string(),
                        r.ts_ms,
                        r.value,
                        r.quality.as_deref().unwrap_or("good").to_owned(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    ("T101.LT".into(), 1_000, 12.5, "good".into()),
                    ("E03-GT01".into(), 2_000, -0.25, "bad".into()),
                ],
                "{format:?}"
            );
        }
    }
}
