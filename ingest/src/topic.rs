//! Telemetry topics: `{prefix}/{enterprise}/{gateway}/telemetry[/pb]`, and
//! each gateway's status topic `{prefix}/{enterprise}/{gateway}/status`
//! (`online` / `offline`, normally its MQTT last will).

/// How a telemetry payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON (`.../telemetry`).
    Json,
    /// Protobuf `ReadingBatch` (`.../telemetry/pb`).
    Protobuf,
}

impl Format {
    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Protobuf => "protobuf",
        }
    }
}

/// The parts of a telemetry topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryTopic<'a> {
    /// Enterprise segment: the only enterprise whose points this message
    /// may carry.
    pub enterprise: &'a str,
    /// Gateway segment.
    pub gateway: &'a str,
    /// Payload encoding.
    pub format: Format,
}

/// Parses a telemetry topic under `prefix`; `None` for anything else.
pub fn parse<'a>(prefix: &str, topic: &'a str) -> Option<TelemetryTopic<'a>> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let enterprise = parts.next().filter(|s| !s.is_empty())?;
    let gateway = parts.next().filter(|s| !s.is_empty())?;
    if parts.next()? != "telemetry" {
        return None;
    }
    let format = match parts.next() {
        None => Format::Json,
        Some("pb") => Format::Protobuf,
        Some(_) => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(TelemetryTopic {
        enterprise,
        gateway,
        format,
    })
}

/// Parses a status topic under `prefix` into (enterprise, gateway).
pub fn parse_status<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let enterprise = parts.next().filter(|s| !s.is_empty())?;
    let gateway = parts.next().filter(|s| !s.is_empty())?;
    (parts.next()? == "status" && parts.next().is_none()).then_some((enterprise, gateway))
}

/// The topic of a gateway's status.
pub fn status(prefix: &str, enterprise: &str, gateway: &str) -> String {
    format!("{prefix}/{enterprise}/{gateway}/status")
}

/// The subscription filters for telemetry and gateway status under
/// `prefix`: every enterprise's, or one's.
pub fn filters(prefix: &str, enterprise: Option<&str>) -> [String; 3] {
    let e = enterprise.unwrap_or("+");
    [
        format!("{prefix}/{e}/+/telemetry"),
        format!("{prefix}/{e}/+/telemetry/pb"),
        format!("{prefix}/{e}/+/status"),
    ]
}

/// The topic a gateway publishes JSON telemetry to.
pub fn telemetry(prefix: &str, enterprise: &str, gateway: &str, format: Format) -> String {
    match format {
        Format::Json => format!("{prefix}/{enterprise}/{gateway}/telemetry"),
        Format::Protobuf => format!("{prefix}/{enterprise}/{gateway}/telemetry/pb"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_protobuf_topics_and_rejects_others() {
        let t = parse("hw/v1", "hw/v1/E01/GW1/telemetry").unwrap();
        assert_eq!(
            (t.enterprise, t.gateway, t.format),
            ("E01", "GW1", Format::Json)
        );
        let t = parse("hw/v1", "hw/v1/E01/GW1/telemetry/pb").unwrap();
        assert_eq!(t.format, Format::Protobuf);
        for bad in [
            "hw/v1/E01/telemetry",
            "hw/v2/E01/GW1/telemetry",
            "hw/v1//GW1/telemetry",
            "hw/v1/E01/GW1/telemetry/xml",
            "hw/v1/E01/GW1/telemetry/pb/x",
            "hw/v1/E01/GW1/status",
        ] {
            assert!(parse("hw/v1", bad).is_none(), "{bad}");
        }
        assert_eq!(
            telemetry("hw/v1", "E01", "GW1", Format::Protobuf),
            "hw/v1/E01/GW1/telemetry/pb"
        );
    }

    #[test]
    fn filters_cover_every_enterprise_or_one() {
        assert_eq!(
            filters("hw/v1", None),
            [
                "hw/v1/+/+/telemetry",
                "hw/v1/+/+/telemetry/pb",
                "hw/v1/+/+/status"
            ]
        );
        assert_eq!(
            filters("hw/v1", Some("E02")),
            [
                "hw/v1/E02/+/telemetry",
                "hw/v1/E02/+/telemetry/pb",
                "hw/v1/E02/+/status"
            ]
        );
        assert_eq!(
            crate::sparkplug::filters(Some("E02")),
            ["spBv1.0/E02/+/+", "spBv1.0/E02/+/+/+"]
        );
    }

    #[test]
    fn parses_status_topics() {
        assert_eq!(
            parse_status("hw/v1", "hw/v1/E01/GW1/status"),
            Some(("E01", "GW1"))
        );
        assert_eq!(
            parse_status("hw/v1", &status("hw/v1", "E", "G")),
            Some(("E", "G"))
        );
        for bad in [
            "hw/v1/E01/status",
            "hw/v1/E01/GW1/status/x",
            "hw/v1/E01/GW1/telemetry",
        ] {
            assert!(parse_status("hw/v1", bad).is_none(), "{bad}");
        }
    }
}
