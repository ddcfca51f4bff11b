//! Payload decoding and validation: bytes from MQTT in, validated
//! [`Reading`]s and reasoned rejections out. Nothing here panics on any
//! input, and every reading that is not accepted is returned as a
//! [`Rejection`], so nothing vanishes unrecorded.

use std::borrow::Cow;
use std::fmt;

use hazardwatch_proto::{Catalog, NO_GATEWAY, Quality, Reading, Registry, pb};
use prost::Message;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::topic::{self, Format};

/// Why a message or a reading was rejected: a low-cardinality label for
/// metrics, with the detail in [`Rejection::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// Topic is not a telemetry topic under the prefix.
    BadTopic,
    /// Payload larger than `max_payload_bytes`.
    TooLarge,
    /// Not valid JSON / protobuf, or not of the payload's schema.
    Malformed,
    /// The payload's gateway differs from the topic's.
    GatewayMismatch,
    /// Point not in the site model.
    UnknownPoint,
    /// Point of another enterprise than the topic's.
    WrongEnterprise,
    /// Point that the topic's gateway does not report (the registry says
    /// another gateway does), or a gateway that is not registered.
    WrongGateway,
    /// Value not a finite number.
    BadValue,
    /// Timestamp too old or too far ahead of the clock.
    BadTimestamp,
    /// Quality not `good`, `uncertain` or `bad`.
    BadQuality,
    /// Sparkplug B: a sequence number out of order (messages lost), or data
    /// before the edge node's birth; the data is taken and a rebirth asked.
    SequenceGap,
    /// Late beyond the backfill horizon: archived flagged late, not judged
    /// (recorded by the backfill, not refused).
    BeyondHorizon,
}

impl RejectKind {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::BadTopic => "bad_topic",
            RejectKind::TooLarge => "too_large",
            RejectKind::Malformed => "malformed",
            RejectKind::GatewayMismatch => "gateway_mismatch",
            RejectKind::UnknownPoint => "unknown_point",
            RejectKind::WrongEnterprise => "wrong_enterprise",
            RejectKind::WrongGateway => "wrong_gateway",
            RejectKind::BadValue => "bad_value",
            RejectKind::BadTimestamp => "bad_timestamp",
            RejectKind::BadQuality => "bad_quality",
            RejectKind::SequenceGap => "sequence_gap",
            RejectKind::BeyondHorizon => "beyond_horizon",
        }
    }
}

/// A rejected message or reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Category.
    pub kind: RejectKind,
    /// Human-readable detail naming the reading and point where there is one.
    pub reason: String,
}

/// The result of checking one MQTT message.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Checked {
    /// Readings that passed every check.
    pub readings: Vec<Reading>,
    /// Everything that did not: one entry for a rejected message, or one per
    /// rejected reading.
    pub rejections: Vec<Rejection>,
    /// Gateway's message sequence number, when it sent one.
    pub seq: Option<u64>,
}

/// A reading as decoded, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawReading<'a> {
    /// Point name.
    pub point: Cow<'a, str>,
    /// Event time, Unix ms.
    pub ts_ms: i64,
    /// Value.
    pub value: f64,
    /// Quality as sent (`None`: good).
    pub quality: Option<Cow<'a, str>>,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded<'a> {
    /// Gateway id from the payload.
    pub gateway: Option<Cow<'a, str>>,
    /// Message sequence number.
    pub seq: Option<u64>,
    /// The readings.
    pub readings: Vec<RawReading<'a>>,
}

/// Event time in JSON: Unix ms as a number, or an RFC 3339 string.
struct JsonTs(i64);

impl<'de> Deserialize<'de> for JsonTs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonTs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("Unix milliseconds or an RFC 3339 timestamp")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonTs, E> {
                Ok(JsonTs(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonTs, E> {
                i64::try_from(v)
                    .map(JsonTs)
                    .map_err(|_| E::custom(format!("timestamp {v} out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonTs, E> {
                if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(JsonTs(v as i64))
                } else {
                    Err(E::custom(format!(
                        "timestamp {v} is not whole milliseconds"
                    )))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonTs, E> {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| JsonTs(t.timestamp_millis()))
                    .map_err(|e| E::custom(format!("timestamp `{v}`: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonReading<'a> {
    #[serde(borrow)]
    point: Cow<'a, str>,
    ts: JsonTs,
    value: f64,
    #[serde(borrow, default)]
    quality: Option<Cow<'a, str>>,
}

/// The JSON payload: a batch (`readings`) or a single reading at top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonMessage<'a> {
    #[serde(borrow, default)]
    gateway: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(borrow, default)]
    readings: Option<Vec<JsonReading<'a>>>,
    #[serde(borrow, default)]
    point: Option<Cow<'a, str>>,
    #[serde(default)]
    ts: Option<JsonTs>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(borrow, default)]
    quality: Option<Cow<'a, str>>,
}

/// Why a payload could not be decoded at all (quarantined as `malformed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Not JSON, or JSON outside the schema (an unknown field, a wrong type).
    #[error("JSON: {0}")]
    Json(String),
    /// Both a batch and a single reading's fields.
    #[error("JSON: give either `readings` or one reading's `point`/`ts`/`value`, not both")]
    BatchAndSingle,
    /// A single reading without all of its fields.
    #[error("JSON: a single reading needs `point`, `ts` and `value`")]
    IncompleteSingle,
    /// Neither a batch nor a single reading.
    #[error("JSON: no `readings` and no single reading")]
    Empty,
    /// Not a protobuf `ReadingBatch`.
    #[error("protobuf: {0}")]
    Protobuf(String),
}

/// Decodes a JSON payload (see the README for the schema).
pub fn decode_json(payload: &[u8]) -> Result<Decoded<'_>, Malformed> {
    let m: JsonMessage<'_> =
        serde_json::from_slice(payload).map_err(|e| Malformed::Json(e.to_string()))?;
    let single = m.point.is_some() || m.ts.is_some() || m.value.is_some();
    let readings = match (m.readings, single) {
        (Some(_), true) => return Err(Malformed::BatchAndSingle),
        (Some(rs), false) => rs
            .into_iter()
            .map(|r| RawReading {
                point: r.point,
                ts_ms: r.ts.0,
                value: r.value,
                quality: r.quality,
            })
            .collect(),
        (None, true) => {
            let (Some(point), Some(ts), Some(value)) = (m.point, m.ts, m.value) else {
                return Err(Malformed::IncompleteSingle);
            };
            vec![RawReading {
                point,
                ts_ms: ts.0,
                value,
                quality: m.quality,
            }]
        }
        (None, false) => return Err(Malformed::Empty),
    };
    Ok(Decoded {
        gateway: m.gateway,
        seq: m.seq,
        readings,
    })
}

/// Decodes a protobuf `ReadingBatch` payload.
pub fn decode_protobuf(payload: &[u8]) -> Result<Decoded<'static>, Malformed> {
    let b = pb::ReadingBatch::decode(payload).map_err(|e| Malformed::Protobuf(e.to_string()))?;
    let readings = b
        .readings
        .into_iter()
        .map(|r| {
            let quality = match pb::Quality::try_from(r.quality) {
                Ok(q) => Quality::from(q).as_str().into(),
                Err(_) => format!("<unknown enum {}>", r.quality).into(),
            };
            RawReading {
                point: r.point.into(),
                ts_ms: r.ts_ms,
                value: r.value,
                quality: Some(quality),
            }
        })
        .collect();
    Ok(Decoded {
        gateway: Some(b.gateway).filter(|g| !g.is_empty()).map(Cow::Owned),
        seq: Some(b.seq).filter(|&s| s != 0),
        readings,
    })
}

/// Limits a [`Validator`] enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Topic prefix.
    pub topic_prefix: String,
    /// Largest payload accepted.
    pub max_payload_bytes: usize,
    /// How far ahead of the clock a timestamp may be, ms.
    pub max_clock_skew_ms: i64,
    /// Oldest timestamp accepted, Unix ms.
    pub min_timestamp_ms: i64,
}

fn reject(kind: RejectKind, reason: impl Into<String>) -> Rejection {
    Rejection {
        kind,
        reason: reason.into(),
    }
}

/// A gateway's announced status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayStatus {
    /// Connected and reporting.
    Online,
    /// Gone (usually its last will, published by the broker when the
    /// gateway's connection dropped).
    Offline,
}

/// Decodes a status payload: `online` or `offline` as plain text, or JSON
/// `{"status": "offline", ...}` (other fields ignored), case-insensitive.
pub fn status(payload: &[u8]) -> Result<GatewayStatus, Rejection> {
    #[derive(Deserialize)]
    struct Json<'a> {
        #[serde(borrow)]
        status: Cow<'a, str>,
    }
    let bad = || {
        reject(
            RejectKind::Malformed,
            format!(
                "status payload must be `online` or `offline` (or JSON {{\"status\": ...}}), not `{}`",
                String::from_utf8_lossy(&payload[..payload.len().min(64)])
            ),
        )
    };
    let text = std::str::from_utf8(payload).map_err(|_| bad())?.trim();
    let word: Cow<'_, str> = if text.starts_with('{') {
        serde_json::from_str::<Json<'_>>(text)
            .map_err(|_| bad())?
            .status
    } else {
        Cow::Borrowed(text)
    };
    if word.eq_ignore_ascii_case("online") {
        Ok(GatewayStatus::Online)
    } else if word.eq_ignore_ascii_case("offline") {
        Ok(GatewayStatus::Offline)
    } else {
        Err(bad())
    }
}

/// Checks a message against topic rules, the payload limit, the schema and
/// the site model: each reading's point must belong to the topic's
/// enterprise and, once gateways are registered, be reported by the
/// topic's gateway.
pub fn check(
    catalog: &Catalog,
    registry: &Registry,
    limits: &Limits,
    topic: &str,
    payload: &[u8],
    now_ms: i64,
) -> Checked {
    let whole = |r: Rejection| Checked {
        rejections: vec![r],
        ..Checked::default()
    };
    let Some(t) = topic::parse(&limits.topic_prefix, topic) else {
        return whole(reject(
            RejectKind::BadTopic,
            format!("`{topic}` is not a telemetry topic"),
        ));
    };
    if payload.len() > limits.max_payload_bytes {
        return whole(reject(
            RejectKind::TooLarge,
            format!(
                "payload of {} bytes is over the limit of {} bytes",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let decoded = match t.format {
        Format::Json => decode_json(payload),
        Format::Protobuf => decode_protobuf(payload),
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => return whole(reject(RejectKind::Malformed, e.to_string())),
    };
    if let Some(g) = decoded.gateway.as_deref()
        && g != t.gateway
    {
        return whole(reject(
            RejectKind::GatewayMismatch,
            format!(
                "payload gateway `{g}` is not the topic's gateway `{}`",
                t.gateway
            ),
        ));
    }
    let mut out = Checked {
        readings: Vec::with_capacity(decoded.readings.len()),
        rejections: Vec::new(),
        seq: decoded.seq,
    };
    validate(
        catalog,
        registry,
        limits,
        (t.enterprise, t.gateway),
        &decoded.readings,
        now_ms,
        &mut out,
    );
    out
}

/// Validates decoded readings of gateway `source` = (enterprise, gateway)
/// against the site model into `out`: each reading's point must belong to
/// the enterprise and, once gateways are registered, be reported by the
/// gateway; its value must be finite and its time plausible. Shared by
/// every payload format.
pub fn validate(
    catalog: &Catalog,
    registry: &Registry,
    limits: &Limits,
    source: (&str, &str),
    readings: &[RawReading<'_>],
    now_ms: i64,
    out: &mut Checked,
) {
    let (enterprise, gateway_id) = source;
    let latest_ms = now_ms.saturating_add(limits.max_clock_skew_ms);
    // The topic's gateway, when gateways are registered.
    let gateway = (!registry.is_open()).then(|| registry.lookup(gateway_id));
    for (i, r) in readings.iter().enumerate() {
        let name = &r.point;
        let fail = |kind, why: String| reject(kind, format!("reading {i} (point `{name}`): {why}"));
        let Some(point) = catalog.lookup(name) else {
            out.rejections
                .push(fail(RejectKind::UnknownPoint, "unknown point".into()));
            continue;
        };
        let owner = &catalog.meta(point).enterprise;
        if **owner != *enterprise {
            out.rejections.push(fail(
                RejectKind::WrongEnterprise,
                format!("point belongs to enterprise `{owner}`, not the topic's `{enterprise}`"),
            ));
            continue;
        }
        if let Some(gateway) = gateway {
            let reporter = registry.owner(point);
            if gateway != Some(reporter) {
                let why = match (gateway, reporter) {
                    (None, _) => format!("gateway `{gateway_id}` is not registered"),
                    (_, NO_GATEWAY) => "no registered gateway reports this point".into(),
                    (_, r) => format!(
                        "reported by gateway `{}`, not the topic's `{gateway_id}`",
                        registry.gateway(r).id
                    ),
                };
                out.rejections.push(fail(RejectKind::WrongGateway, why));
                continue;
            }
        }
        if !r.value.is_finite() {
            out.rejections.push(fail(
                RejectKind::BadValue,
                format!("value {} is not a finite number", r.value),
            ));
            continue;
        }
        if r.ts_ms < limits.min_timestamp_ms {
            out.rejections.push(fail(
                RejectKind::BadTimestamp,
                format!(
                    "timestamp {} ms is before the oldest accepted ({} ms)",
                    r.ts_ms, limits.min_timestamp_ms
                ),
            ));
            continue;
        }
        if r.ts_ms > latest_ms {
            out.rejections.push(fail(
                RejectKind::BadTimestamp,
                format!(
                    "timestamp {} ms is {} s ahead of the service clock (gateway clock wrong?)",
                    r.ts_ms,
                    (r.ts_ms - now_ms) / 1000
                ),
            ));
            continue;
        }
        let quality = match r.quality.as_deref() {
            None => Quality::Good,
            Some(q) => match Quality::parse(q) {
                Some(q) => q,
                None => {
                    out.rejections.push(fail(
                        RejectKind::BadQuality,
                        format!("quality `{q}` is not good, uncertain or bad"),
                    ));
                    continue;
                }
            },
        };
        out.readings.push(Reading {
            point,
            ts_ms: r.ts_ms,
            value: r.value,
            quality,
        });
    }
}

#[cfg(test)]
mod tests;
