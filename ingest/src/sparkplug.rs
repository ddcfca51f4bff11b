//! Sparkplug B (spBv1.0), the MQTT convention most industrial gateways and
//! Ignition speak, as a third payload beside JSON and protobuf.
//!
//! Topics are `spBv1.0/{group}/{type}/{edge node}[/{device}]`: the group is
//! the enterprise, the edge node the gateway (its registry id), the device
//! free. A metric's name is the point id, or ends with `/{point id}` (tag
//! folders); the service's own metrics (`bdSeq`, `Node Control/...`,
//! `Properties/...`) are not readings.
//!
//! What each message does:
//! - **NBIRTH**: starts the edge node's session: its `bdSeq`, its metric
//!   aliases, sequence number 0, and the values it carries (readings);
//! - **DBIRTH**: a device's aliases and values;
//! - **NDATA / DDATA**: readings, metrics named or by alias;
//! - **NDEATH** (the node's last will, with the `bdSeq` of its birth): the
//!   node is offline: every point of the gateway is marked offline, as a
//!   `status` of `offline` does; a death of an older session is ignored;
//! - **DDEATH**: the points the device reported are marked offline.
//!
//! Every message after the birth carries the next sequence number (mod
//! 256). A gap (lost messages), data before any birth or an unknown alias
//! is recorded in the quarantine and a rebirth is requested: an NCMD with
//! `Node Control/Rebirth = true` to `spBv1.0/{group}/NCMD/{node}`.

use std::borrow::Cow;
use std::collections::HashMap;

use hazardwatch_proto::sparkplug::{Payload, payload::Metric, payload::metric::Value};
use prost::Message;

use crate::decode::{RawReading, RejectKind, Rejection};

/// The topic namespace.
pub const NAMESPACE: &str = "spBv1.0";

/// The metric that asks an edge node to send its births again.
pub const REBIRTH_METRIC: &str = "Node Control/Rebirth";

/// Edge node sessions remembered at most. With a registry only registered
/// gateways can publish; this bounds the open mode, where any node name
/// can arrive: past it, sessions without a birth are forgotten, then all.
pub const MAX_SESSIONS: usize = 100_000;

/// Sparkplug's Boolean data type.
const BOOLEAN: u32 = 11;

/// A Sparkplug message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Edge node birth.
    NBirth,
    /// Edge node data.
    NData,
    /// Edge node death (its last will).
    NDeath,
    /// Device birth.
    DBirth,
    /// Device data.
    DData,
    /// Device death.
    DDeath,
    /// Command to an edge node.
    NCmd,
    /// Command to a device.
    DCmd,
}

/// The parts of a Sparkplug topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic<'a> {
    /// Group id: the enterprise.
    pub group: &'a str,
    /// Message type.
    pub kind: Kind,
    /// Edge node id: the gateway.
    pub node: &'a str,
    /// Device id (device messages only).
    pub device: Option<&'a str>,
}

/// Parses `spBv1.0/{group}/{type}/{node}[/{device}]`; `None` for anything
/// else (the `STATE` topics of host applications included).
pub fn parse_topic(topic: &str) -> Option<Topic<'_>> {
    let mut parts = topic.strip_prefix(NAMESPACE)?.strip_prefix('/')?.split('/');
    let group = parts.next().filter(|s| !s.is_empty())?;
    let kind = match parts.next()? {
        "NBIRTH" => Kind::NBirth,
        "NDATA" => Kind::NData,
        "NDEATH" => Kind::NDeath,
        "DBIRTH" => Kind::DBirth,
        "DDATA" => Kind::DData,
        "DDEATH" => Kind::DDeath,
        "NCMD" => Kind::NCmd,
        "DCMD" => Kind::DCmd,
        _ => return None,
    };
    let node = parts.next().filter(|s| !s.is_empty())?;
    let device = parts.next();
    let is_device = matches!(kind, Kind::DBirth | Kind::DData | Kind::DDeath | Kind::DCmd);
    if parts.next().is_some() || device.is_some_and(str::is_empty) || device.is_some() != is_device
    {
        return None;
    }
    Some(Topic {
        group,
        kind,
        node,
        device,
    })
}

/// The subscription filters for every edge node and device message: of
/// every group (enterprise), or of one.
pub fn filters(group: Option<&str>) -> [String; 2] {
    let g = group.unwrap_or("+");
    [
        format!("{NAMESPACE}/{g}/+/+"),
        format!("{NAMESPACE}/{g}/+/+/+"),
    ]
}

/// The rebirth request for edge node `node` of `group`: topic and payload.
pub fn rebirth_request(group: &str, node: &str, now_ms: i64) -> (String, Vec<u8>) {
    let payload = Payload {
        timestamp: Some(now_ms.max(0) as u64),
        metrics: vec![Metric {
            name: Some(REBIRTH_METRIC.into()),
            datatype: Some(BOOLEAN),
            timestamp: Some(now_ms.max(0) as u64),
            value: Some(Value::BooleanValue(true)),
            ..Metric::default()
        }],
        ..Payload::default()
    };
    (
        format!("{NAMESPACE}/{group}/NCMD/{node}"),
        payload.encode_to_vec(),
    )
}

/// What a Sparkplug message means to ingest.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Its readings, to validate like any payload's.
    pub readings: Vec<RawReading<'static>>,
    /// What was refused or noticed (a sequence gap, an unknown alias ...).
    pub rejections: Vec<Rejection>,
    /// Points (by name) that went offline with the node or device; the
    /// whole gateway when `node_offline`.
    pub offline_points: Vec<String>,
    /// The edge node died: all its points are offline.
    pub node_offline: bool,
    /// Ask the node for its births again.
    pub rebirth: bool,
}

/// One edge node's session.
#[derive(Debug, Default)]
struct Node {
    born: bool,
    bd_seq: Option<u64>,
    /// The sequence number the next message must carry.
    next_seq: u8,
    /// Alias to metric name, by device (`None`: the node's own).
    aliases: HashMap<(Option<String>, u64), String>,
    /// Metric names each device reported (for its death).
    devices: HashMap<String, Vec<String>>,
}

/// The Sparkplug sessions of every edge node seen.
#[derive(Debug, Default)]
pub struct Sessions {
    nodes: HashMap<(String, String), Node>,
}

fn reject(kind: RejectKind, reason: String) -> Rejection {
    Rejection { kind, reason }
}

/// The service's own metrics, which are not readings.
fn is_control(name: &str) -> bool {
    name == "bdSeq"
        || name.starts_with("Node Control/")
        || name.starts_with("Device Control/")
        || name.starts_with("Properties/")
}

/// The point a metric name stands for: the name, or its last segment.
fn point_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// A metric's value as a number, by its data type.
fn number(m: &Metric) -> Result<f64, String> {
    if m.is_null == Some(true) {
        return Err("null value".into());
    }
    let datatype = m.datatype.unwrap_or(0);
    Ok(match (&m.value, datatype) {
        // Signed types travel as their two's complement bits.
        (Some(Value::IntValue(v)), 1) => f64::from(*v as u8 as i8),
        (Some(Value::IntValue(v)), 2) => f64::from(*v as u16 as i16),
        (Some(Value::IntValue(v)), 3) => f64::from(*v as i32),
        (Some(Value::IntValue(v)), _) => f64::from(*v),
        (Some(Value::LongValue(v)), 4) => *v as i64 as f64,
        (Some(Value::LongValue(v)), _) => *v as f64,
        (Some(Value::FloatValue(v)), _) => f64::from(*v),
        (Some(Value::DoubleValue(v)), _) => *v,
        (Some(Value::BooleanValue(v)), _) => f64::from(u8::from(*v)),
        (Some(_), t) => return Err(format!("data type {t} is not a number")),
        (None, _) => return Err("no value".into()),
    })
}

impl Sessions {
    /// Handles one message of `topic` (data and births; deaths).
    pub fn handle(&mut self, topic: &Topic<'_>, payload: &[u8]) -> Outcome {
        let mut out = Outcome::default();
        if matches!(topic.kind, Kind::NCmd | Kind::DCmd) {
            // Commands are ours or a host's: nothing to ingest.
            return out;
        }
        let decoded = match Payload::decode(payload) {
            Ok(p) => p,
            Err(e) => {
                out.rejections.push(reject(
                    RejectKind::Malformed,
                    format!("not a Sparkplug B payload: {e}"),
                ));
                return out;
            }
        };
        let key = (topic.group.to_owned(), topic.node.to_owned());
        if self.nodes.len() >= MAX_SESSIONS && !self.nodes.contains_key(&key) {
            self.nodes.retain(|_, n| n.born);
            if self.nodes.len() >= MAX_SESSIONS {
                tracing::warn!(
                    sessions = self.nodes.len(),
                    "Sparkplug: too many edge node sessions; forgetting them all (nodes will be asked for a rebirth)"
                );
                self.nodes.clear();
            }
        }
        let node = self.nodes.entry(key).or_default();
        let seq = decoded.seq.map(|s| (s % 256) as u8);
        let bd_seq = decoded
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some("bdSeq"))
            .and_then(|m| number(m).ok())
            .map(|v| v as u64);
        match topic.kind {
            Kind::NBirth => {
                *node = Node {
                    born: true,
                    bd_seq,
                    next_seq: seq.unwrap_or(0).wrapping_add(1),
                    ..Node::default()
                };
            }
            Kind::NDeath => {
                if node.bd_seq.is_some() && bd_seq.is_some() && node.bd_seq != bd_seq {
                    // The will of an older session: this one lives on.
                    return out;
                }
                node.born = false;
                out.node_offline = true;
                return out;
            }
            _ => {
                if !node.born {
                    out.rejections.push(reject(
                        RejectKind::SequenceGap,
                        format!("{:?} before the edge node's NBIRTH", topic.kind),
                    ));
                    out.rebirth = true;
                } else if let Some(s) = seq {
                    if s != node.next_seq {
                        out.rejections.push(reject(
                            RejectKind::SequenceGap,
                            format!(
                                "sequence number {s}, expected {}: messages were lost",
                                node.next_seq
                            ),
                        ));
                        out.rebirth = true;
                    }
                    node.next_seq = s.wrapping_add(1);
                }
            }
        }
        let device = topic.device.map(str::to_owned);
        if topic.kind == Kind::DDeath {
            if let Some(d) = &device {
                out.offline_points = node.devices.remove(d).unwrap_or_default();
            }
            return out;
        }
        let birth = matches!(topic.kind, Kind::NBirth | Kind::DBirth);
        if topic.kind == Kind::DBirth
            && let Some(d) = &device
        {
            node.aliases
                .retain(|(dev, _), _| dev.as_deref() != Some(d.as_str()));
            node.devices.insert(d.clone(), Vec::new());
        }
        for (i, m) in decoded.metrics.iter().enumerate() {
            let name = match (&m.name, m.alias) {
                (Some(n), alias) => {
                    if birth && let Some(a) = alias {
                        node.aliases.insert((device.clone(), a), n.clone());
                    }
                    n.clone()
                }
                (None, Some(a)) => {
                    let found = node
                        .aliases
                        .get(&(device.clone(), a))
                        .or_else(|| node.aliases.get(&(None, a)));
                    match found {
                        Some(n) => n.clone(),
                        None => {
                            out.rejections.push(reject(
                                RejectKind::UnknownPoint,
                                format!("metric {i}: alias {a} was not in a birth"),
                            ));
                            out.rebirth = true;
                            continue;
                        }
                    }
                }
                (None, None) => {
                    out.rejections.push(reject(
                        RejectKind::Malformed,
                        format!("metric {i}: neither a name nor an alias"),
                    ));
                    continue;
                }
            };
            if is_control(&name) {
                continue;
            }
            let point = point_name(&name).to_owned();
            if let Some(d) = &device
                && let Some(names) = node.devices.get_mut(d)
                && !names.contains(&point)
            {
                names.push(point.clone());
            }
            if birth && m.value.is_none() {
                // A birth may declare a metric without a value yet.
                continue;
            }
            let value = match number(m) {
                Ok(v) => v,
                Err(why) => {
                    out.rejections.push(reject(
                        RejectKind::BadValue,
                        format!("metric {i} (point `{point}`): {why}"),
                    ));
                    continue;
                }
            };
            let ts = m.timestamp.or(decoded.timestamp);
            let Some(ts) = ts.and_then(|t| i64::try_from(t).ok()) else {
                out.rejections.push(reject(
                    RejectKind::BadTimestamp,
                    format!("metric {i} (point `{point}`): no timestamp"),
                ));
                continue;
            };
            out.readings.push(RawReading {
                point: Cow::Owned(point),
                ts_ms: ts,
                value,
                quality: None,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: Option<&str>, alias: Option<u64>, value: Option<Value>, ts: u64) -> Metric {
        Metric {
            name: name.map(Into::into),
            alias,
            timestamp: Some(ts),
            datatype: Some(10),
            value,
            ..Metric::default()
        }
    }

    fn payload(seq: u64, metrics: Vec<Metric>) -> Vec<u8> {
        Payload {
            timestamp: Some(1_000),
            metrics,
            seq: Some(seq),
            ..Payload::default()
        }
        .encode_to_vec()
    }

    fn topic(s: &str) -> Topic<'_> {
        parse_topic(s).unwrap()
    }

    #[test]
    fn topics() {
        assert_eq!(
            parse_topic("spBv1.0/E01/DDATA/GW1/pump"),
            Some(Topic {
                group: "E01",
                kind: Kind::DData,
                node: "GW1",
                device: Some("pump")
            })
        );
        for bad in [
            "spBv1.0/E01/NDATA/GW1/extra",
            "spBv1.0/E01/DDATA/GW1",
            "spBv1.0/E01/XDATA/GW1",
            "spBv1.0/STATE/host",
            "hw/v1/E01/GW1/telemetry",
        ] {
            assert_eq!(parse_topic(bad), None, "{bad}");
        }
    }

    #[test]
    fn birth_data_by_alias_death_and_a_sequence_gap() {
        let mut s = Sessions::default();
        let birth = payload(
            0,
            vec![
                metric(Some("bdSeq"), None, Some(Value::LongValue(7)), 1_000),
                metric(
                    Some("Tanks/T101.LT"),
                    Some(1),
                    Some(Value::DoubleValue(5.0)),
                    1_000,
                ),
                metric(Some("T101.PT"), Some(2), None, 1_000),
                metric(
                    Some("Node Control/Rebirth"),
                    Some(3),
                    Some(Value::BooleanValue(false)),
                    1_000,
                ),
            ],
        );
        let o = s.handle(&topic("spBv1.0/E01/NBIRTH/GW1"), &birth);
        assert!(o.rejections.is_empty(), "{:?}", o.rejections);
        assert_eq!(o.readings.len(), 1);
        assert_eq!(
            (o.readings[0].point.as_ref(), o.readings[0].value),
            ("T101.LT", 5.0)
        );
        // Data by alias, with its own timestamps.
        let data = payload(
            1,
            vec![
                metric(None, Some(1), Some(Value::DoubleValue(6.0)), 2_000),
                metric(None, Some(2), Some(Value::FloatValue(300.0)), 2_100),
            ],
        );
        let o = s.handle(&topic("spBv1.0/E01/NDATA/GW1"), &data);
        assert!(o.rejections.is_empty() && !o.rebirth);
        let got: Vec<_> = o
            .readings
            .iter()
            .map(|r| (r.point.as_ref(), r.ts_ms, r.value))
            .collect();
        assert_eq!(got, [("T101.LT", 2_000, 6.0), ("T101.PT", 2_100, 300.0)]);
        // Sequence 5 after 1: messages were lost; the data is still taken.
        let o = s.handle(
            &topic("spBv1.0/E01/NDATA/GW1"),
            &payload(
                5,
                vec![metric(None, Some(1), Some(Value::DoubleValue(7.0)), 3_000)],
            ),
        );
        assert!(o.rebirth);
        assert_eq!(o.rejections[0].kind, RejectKind::SequenceGap);
        assert!(
            o.rejections[0].reason.contains("expected 2"),
            "{:?}",
            o.rejections
        );
        assert_eq!(o.readings.len(), 1);
        // An unknown alias: refused, rebirth.
        let o = s.handle(
            &topic("spBv1.0/E01/NDATA/GW1"),
            &payload(
                6,
                vec![metric(None, Some(9), Some(Value::DoubleValue(1.0)), 3_000)],
            ),
        );
        assert!(o.rebirth && o.readings.is_empty());
        // The will of an older session is ignored; this session's is not.
        let death = |bd| {
            payload(
                0,
                vec![metric(
                    Some("bdSeq"),
                    None,
                    Some(Value::LongValue(bd)),
                    4_000,
                )],
            )
        };
        assert!(
            !s.handle(&topic("spBv1.0/E01/NDEATH/GW1"), &death(6))
                .node_offline
        );
        assert!(
            s.handle(&topic("spBv1.0/E01/NDEATH/GW1"), &death(7))
                .node_offline
        );
        // Data after death, before a new birth: refused, rebirth.
        let o = s.handle(&topic("spBv1.0/E01/NDATA/GW1"), &data);
        assert!(o.rebirth);
    }

    #[test]
    fn devices_have_their_own_aliases_and_deaths() {
        let mut s = Sessions::default();
        s.handle(&topic("spBv1.0/E01/NBIRTH/GW1"), &payload(0, vec![]));
        let o = s.handle(
            &topic("spBv1.0/E01/DBIRTH/GW1/gds"),
            &payload(
                1,
                vec![metric(
                    Some("E01-GT01"),
                    Some(1),
                    Some(Value::FloatValue(1.5)),
                    1_000,
                )],
            ),
        );
        assert_eq!(o.readings.len(), 1);
        let o = s.handle(
            &topic("spBv1.0/E01/DDATA/GW1/gds"),
            &payload(
                2,
                vec![Metric {
                    datatype: Some(3),
                    ..metric(None, Some(1), Some(Value::IntValue((-4i32) as u32)), 2_000)
                }],
            ),
        );
        assert_eq!(o.readings[0].value, -4.0, "Int32 as two's complement");
        let o = s.handle(&topic("spBv1.0/E01/DDEATH/GW1/gds"), &payload(3, vec![]));
        assert_eq!(o.offline_points, ["E01-GT01"]);
        assert!(!o.node_offline);
        // Null and non-numeric values are refused one by one.
        let o = s.handle(
            &topic("spBv1.0/E01/NDATA/GW1"),
            &payload(
                4,
                vec![
                    Metric {
                        is_null: Some(true),
                        ..metric(Some("T101.LT"), None, None, 1)
                    },
                    metric(
                        Some("T101.PT"),
                        None,
                        Some(Value::StringValue("x".into())),
                        1,
                    ),
                ],
            ),
        );
        assert_eq!(o.rejections.len(), 2);
        assert!(o.readings.is_empty());
        // Garbage is malformed.
        let o = s.handle(&topic("spBv1.0/E01/NDATA/GW1"), b"\xff\xff\xff");
        assert_eq!(o.rejections[0].kind, RejectKind::Malformed);
    }

    #[test]
    fn sessions_stay_bounded_whatever_node_names_arrive() {
        let mut s = Sessions::default();
        let data = payload(
            1,
            vec![metric(
                Some("T101.LT"),
                None,
                Some(Value::DoubleValue(1.0)),
                1,
            )],
        );
        for i in 0..MAX_SESSIONS + 10 {
            let t = format!("spBv1.0/E01/NDATA/N{i}");
            s.handle(&topic(&t), &data);
        }
        assert!(s.nodes.len() <= MAX_SESSIONS, "{}", s.nodes.len());
    }

    #[test]
    fn a_rebirth_request_is_an_ncmd_with_the_rebirth_metric() {
        let (topic, bytes) = rebirth_request("E01", "GW1", 5);
        assert_eq!(topic, "spBv1.0/E01/NCMD/GW1");
        let p = Payload::decode(bytes.as_slice()).unwrap();
        assert_eq!(p.metrics[0].name.as_deref(), Some(REBIRTH_METRIC));
        assert_eq!(p.metrics[0].value, Some(Value::BooleanValue(true)));
    }
}
