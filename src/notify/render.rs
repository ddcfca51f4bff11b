//! What a recipient receives: hazardwatch's JSON document about the alarm
//! event, or a body made from the recipient's template; the headers that
//! identify and sign it.
//!
//! The document (every field always present; numbers that are not numbers
//! are `null`):
//!
//! ```json
//! {
//!   "id": "PARK-01/1234/E01 duty",  // park, event sequence number, recipient:
//!                                    // the same on every attempt (Idempotency-Key)
//!   "park": "PARK-01", "recipient": "E01 duty", "seq": 1234,
//!   "trigger": "raised",             // or "escalated"
//!   "alarm_id": "T101.LT/HH", "tag": "HH",
//!   "enterprise": "E01", "hazard_source": "E01-HS1", "unit": "T101", "point": "T101.LT",
//!   "priority": "critical", "escalation_level": "enterprise",
//!   "event_time": "2026-11-28T14:03:05.120+08:00", "event_time_ms": 1795845785120,
//!   "value": 19.3, "limit": 19.0, "eng_unit": "m",
//!   "lang": "zh-CN",
//!   "title": "【紧急报警】E01 T101.LT/HH",
//!   "text": "T101.LT 液位 HH 报警:19.300 m(限值 19.000)"
//! }
//! ```
//!
//! A template (`[[notify.webhook]] template`) replaces `${field}` by that
//! field of the document, escaped for JSON when the content type is JSON;
//! `$$` is a literal `$`.

use hazardwatch_alarms::text::{Lang, Text};
use hazardwatch_alarms::wire;
use hazardwatch_proto::pb;
use ring::hmac;
use serde_json::{Value, json};

use super::config::Webhook;

/// The document's fields, the names a template may use.
pub const FIELDS: &[&str] = &[
    "id",
    "park",
    "recipient",
    "seq",
    "trigger",
    "alarm_id",
    "tag",
    "enterprise",
    "hazard_source",
    "unit",
    "point",
    "priority",
    "escalation_level",
    "event_time",
    "event_time_ms",
    "value",
    "limit",
    "eng_unit",
    "lang",
    "title",
    "text",
];

/// The notification's id: the same on every attempt and across restarts.
pub fn notification_id(park: &str, seq: u64, recipient: &str) -> String {
    format!("{park}/{seq}/{recipient}")
}

/// The JSON document about `event` for `to`.
pub fn document(park: &str, event: &pb::AlarmEvent, to: &Webhook) -> Value {
    let escalated = event.transition == pb::Transition::Escalated as i32;
    let priority = pb::Priority::try_from(event.priority)
        .unwrap_or(pb::Priority::Unspecified)
        .as_str_name()
        .trim_start_matches("PRIORITY_")
        .to_ascii_lowercase();
    let level = pb::EscalationLevel::try_from(event.escalation_level)
        .unwrap_or(pb::EscalationLevel::Enterprise)
        .as_str_name()
        .trim_start_matches("ESCALATION_LEVEL_")
        .to_ascii_lowercase();
    let title = if escalated {
        Text::new("notify_escalated").with("level", &level)
    } else {
        Text::new("notify_raised").with("priority", &priority)
    }
    .with("enterprise", &event.enterprise)
    .with("id", &event.alarm_id)
    .render(to.lang);
    let time = chrono::DateTime::from_timestamp_millis(event.event_time_ms)
        .map(|t| {
            t.with_timezone(&to.time_zone)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
        })
        .unwrap_or_default();
    let number = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
    json!({
        "id": notification_id(park, event.seq, &to.name),
        "park": park,
        "recipient": to.name,
        "seq": event.seq,
        "trigger": if escalated { "escalated" } else { "raised" },
        "alarm_id": event.alarm_id,
        "tag": event.alarm_id.rsplit_once('/').map_or("", |(_, tag)| tag),
        "enterprise": event.enterprise,
        "hazard_source": event.hazard_source,
        "unit": event.unit,
        "point": event.point,
        "priority": priority,
        "escalation_level": level,
        "event_time": time,
        "event_time_ms": event.event_time_ms,
        "value": number(event.value),
        "limit": number(event.limit),
        "eng_unit": event.eng_unit,
        "lang": match to.lang { Lang::Zh => "zh-CN", Lang::En => "en" },
        "title": title,
        "text": wire::message(event, to.lang),
    })
}

/// The request body for `to`: the document, or its template filled in.
pub fn body(doc: &Value, to: &Webhook) -> Vec<u8> {
    let Some(template) = &to.template else {
        return doc.to_string().into_bytes();
    };
    let json = to.content_type.contains("json");
    let mut out = String::with_capacity(template.len() + 256);
    // Templates were checked at load ([`check_template`]).
    let _ = fill(
        template,
        |name, out| {
            let value = match doc.get(name) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            if json {
                // A JSON string's inside: the quotes are the template's.
                let quoted = Value::String(value).to_string();
                out.push_str(&quoted[1..quoted.len() - 1]);
            } else {
                out.push_str(&value);
            }
        },
        &mut out,
    );
    out.into_bytes()
}

/// Checks a template: every `${name}` names a field of the document.
pub fn check_template(template: &str) -> Result<(), String> {
    if template.len() > 16 * 1024 {
        return Err("longer than 16 KiB".into());
    }
    fill(template, |_, _| {}, &mut String::new())
}

/// Copies `template` to `out`, `${name}` replaced through `put`.
fn fill(
    template: &str,
    mut put: impl FnMut(&str, &mut String),
    out: &mut String,
) -> Result<(), String> {
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| "a `${` without its `}`".to_owned())?;
            let name = &inner[..end];
            if !FIELDS.contains(&name) {
                return Err(format!(
                    "`${{{name}}}` is not a field (fields: {})",
                    FIELDS.join(", ")
                ));
            }
            put(name, out);
            rest = &inner[end + 1..];
        } else {
            return Err("a `$` that starts neither `${field}` nor `$$`".into());
        }
    }
    out.push_str(rest);
    Ok(())
}

/// The signature header's value for `body`: `sha256=` and the hex
/// HMAC-SHA256 of the body under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), body);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::NotifyConfig;

    fn webhook(extra: &str) -> Webhook {
        let text = format!("[[webhook]]\nname = \"E01 duty\"\nurl = \"https://h/\"\n{extra}\n");
        let c: NotifyConfig = toml::from_str(&text).expect("toml");
        c.validate(&["E01".to_owned()].into(), |p| p.to_owned(), |_| None)
            .expect("valid")
            .webhooks
            .remove(0)
    }

    fn raised() -> pb::AlarmEvent {
        let mut e = pb::AlarmEvent {
            seq: 1234,
            alarm_id: "T101.LT/HH".into(),
            enterprise: "E01".into(),
            hazard_source: "E01-HS1".into(),
            unit: "T101".into(),
            point: "T101.LT".into(),
            priority: pb::Priority::Critical as i32,
            transition: pb::Transition::Raised as i32,
            escalation_level: pb::EscalationLevel::Enterprise as i32,
            event_time_ms: 1_795_845_785_120,
            value: 19.3,
            limit: 19.0,
            eng_unit: "m".into(),
            ..Default::default()
        };
        let text = Text::new("limit_raised")
            .with("id", "T101.LT")
            .with("what", "level")
            .with("tag", "HH")
            .with("value", "19.300")
            .with("unit", "m")
            .with("limit", "19.000");
        wire::set_text(&mut e, &text);
        e
    }

    #[test]
    fn the_document_in_chinese_and_english() {
        let zh = document("PARK-01", &raised(), &webhook(""));
        assert_eq!(zh["id"], "PARK-01/1234/E01 duty");
        assert_eq!(zh["title"], "【紧急报警】E01 T101.LT/HH");
        assert_eq!(zh["text"], "T101.LT 液位 HH 报警:19.300 m(限值 19.000)");
        assert_eq!(zh["event_time"], "2026-11-28T14:03:05.120+08:00");
        assert_eq!(zh["tag"], "HH");
        assert_eq!(zh["value"], 19.3);
        let en = document(
            "PARK-01",
            &raised(),
            &webhook("lang = \"en\"\ntime_zone = \"+00:00\""),
        );
        assert_eq!(en["title"], "[critical alarm] E01 T101.LT/HH");
        assert_eq!(en["event_time"], "2026-11-28T06:03:05.120+00:00");
        let mut escalated = raised();
        escalated.transition = pb::Transition::Escalated as i32;
        escalated.escalation_level = pb::EscalationLevel::County as i32;
        escalated.value = f64::NAN;
        let doc = document("PARK-01", &escalated, &webhook(""));
        assert_eq!(doc["title"], "【报警已升级至县级】E01 T101.LT/HH");
        assert_eq!(doc["trigger"], "escalated");
        assert_eq!(doc["value"], Value::Null);
        assert_eq!(FIELDS.len(), doc.as_object().map_or(0, |o| o.len()));
        for f in FIELDS {
            assert!(doc.get(*f).is_some(), "{f}");
        }
    }

    #[test]
    fn a_template_fills_in_fields_escaped_for_its_content_type() {
        let sms = webhook(
            r#"template = '{"to": "13800000000", "content": "${title} ${text} $$5", "ref": "${id}"}'"#,
        );
        let mut e = raised();
        e.enterprise = "E01 \"north\"".into();
        let sent = body(&document("P", &e, &sms), &sms);
        let v: Value = serde_json::from_slice(&sent).expect("the filled template is JSON");
        assert_eq!(
            v["content"],
            "【紧急报警】E01 \"north\" T101.LT/HH T101.LT 液位 HH 报警:19.300 m(限值 19.000) $5"
        );
        assert_eq!(v["ref"], "P/1234/E01 duty");
        let plain = webhook(
            "template = \"${title}: ${text}\"\ncontent_type = \"text/plain; charset=utf-8\"",
        );
        let sent = body(&document("P", &raised(), &plain), &plain);
        assert_eq!(
            String::from_utf8(sent).expect("utf-8"),
            "【紧急报警】E01 T101.LT/HH: T101.LT 液位 HH 报警:19.300 m(限值 19.000)"
        );
        for bad in ["${nope}", "${title", "$x"] {
            assert!(check_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
