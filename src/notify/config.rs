//! `[notify]` and its `[[notify.webhook]]` recipients, as written and as
//! validated.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use hazardwatch_alarms::access::Level;
use hazardwatch_alarms::text::Lang;
use hazardwatch_proto::{Priority, pb};
use hyper::Uri;
use serde::Deserialize;

pub use crate::config::Secret;
use crate::config::outbound_url;

/// `[notify]` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Seconds one attempt may take (connect, send, answer).
    pub timeout_s: f64,
    /// Seconds before the first retry; each retry waits twice as long as
    /// the one before, up to `retry_max_s`.
    pub retry_min_s: f64,
    /// The longest wait between attempts, seconds.
    pub retry_max_s: f64,
    /// A notification not delivered this many hours after its alarm event
    /// is abandoned (recorded on the alarm's timeline): a page about a
    /// day-old alarm helps nobody, and the control room has seen it.
    pub give_up_h: f64,
    /// The recipients.
    pub webhook: Vec<WebhookSpec>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            timeout_s: 10.0,
            retry_min_s: 1.0,
            retry_max_s: 300.0,
            give_up_h: 24.0,
            webhook: Vec::new(),
        }
    }
}

/// What a recipient is told about.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An alarm raised at or above the recipient's `min_priority` (and
    /// annunciated: not suppressed, shelved or out of service).
    Raised,
    /// An alarm that reached the recipient's `min_escalation` level or one
    /// above it, still without its disposal record.
    Escalated,
}

/// One `[[notify.webhook]]` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// The recipient's name: unique, shown on the alarm's timeline, and
    /// the key of its waiting notifications (renaming a recipient abandons
    /// what waited under the old name).
    pub name: String,
    /// Where to POST: `https://...`, or `http://` on loopback (or anywhere
    /// with `allow_plaintext`).
    pub url: String,
    /// `zh-CN` (default) or `en`: the language of the title and text.
    #[serde(default = "zh_cn")]
    pub lang: String,
    /// Enterprise ids; `["*"]` (default) for every one.
    #[serde(default = "every")]
    pub enterprises: Vec<String>,
    /// What it is told about (default both).
    #[serde(default = "both")]
    pub on: Vec<Trigger>,
    /// Raised alarms of this priority and above (default critical).
    #[serde(default = "critical")]
    pub min_priority: Priority,
    /// Escalations to this level and above (default enterprise: every
    /// escalation).
    #[serde(default = "enterprise")]
    pub min_escalation: Level,
    /// The request body, if not hazardwatch's JSON document: a template in
    /// which `{name}` is replaced by that field of the document (for a
    /// provider's SMS or voice gateway), escaped for JSON when
    /// `content_type` is JSON.
    #[serde(default)]
    pub template: Option<String>,
    /// The body's content type (default `application/json`).
    #[serde(default = "json")]
    pub content_type: String,
    /// An environment variable holding a bearer token to send
    /// (`Authorization: Bearer ...`).
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// An environment variable holding a key to sign the body with
    /// (`X-Hazardwatch-Signature: sha256=<hex HMAC-SHA256>`).
    #[serde(default)]
    pub signing_key_env: Option<String>,
    /// A PEM file of CA certificates to trust for `https` (default: the
    /// system's), relative to the configuration file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The UTC offset of the times in the text and document (default
    /// `+08:00`, China Standard Time).
    #[serde(default = "china")]
    pub time_zone: String,
    /// Allow `http://` to an address that is not loopback: the alarm goes
    /// over the network in clear text.
    #[serde(default)]
    pub allow_plaintext: bool,
}

fn zh_cn() -> String {
    "zh-CN".into()
}
fn every() -> Vec<String> {
    vec!["*".into()]
}
fn both() -> Vec<Trigger> {
    vec![Trigger::Raised, Trigger::Escalated]
}
fn critical() -> Priority {
    Priority::Critical
}
fn enterprise() -> Level {
    Level::Enterprise
}
fn china() -> String {
    "+08:00".into()
}
fn json() -> String {
    "application/json".into()
}

/// A validated recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Its name.
    pub name: String,
    /// Where to POST.
    pub url: Uri,
    /// Its language.
    pub lang: Lang,
    /// Its enterprises; `None` for all.
    pub enterprises: Option<BTreeSet<String>>,
    /// What it is told about.
    pub on: BTreeSet<Trigger>,
    /// Lowest priority of a raised alarm it is told about.
    pub min_priority: Priority,
    /// Lowest level of an escalation it is told about.
    pub min_escalation: pb::EscalationLevel,
    /// The body template, if any.
    pub template: Option<String>,
    /// The body's content type.
    pub content_type: String,
    /// The bearer token (from the environment).
    pub bearer: Option<Secret>,
    /// The signing key (from the environment).
    pub signing_key: Option<Secret>,
    /// Extra CA certificates for `https`, if not the system's.
    pub ca_file: Option<PathBuf>,
    /// The UTC offset of its times.
    pub time_zone: chrono::FixedOffset,
}

/// The validated `[notify]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// Per-attempt time limit.
    pub timeout: Duration,
    /// First back-off.
    pub retry_min: Duration,
    /// Longest back-off.
    pub retry_max: Duration,
    /// Age (from the alarm event's wall time) at which a notification is
    /// abandoned.
    pub give_up_ms: i64,
    /// The recipients.
    pub webhooks: Vec<Webhook>,
}

impl Default for Notify {
    fn default() -> Self {
        NotifyConfig::default()
            .validate(&BTreeSet::new(), |p| p.to_owned(), |_| None)
            .expect("the defaults are valid")
    }
}

impl NotifyConfig {
    /// Validates the section against the site's enterprises; `beside`
    /// resolves a file named in it (relative to the configuration file),
    /// `env` reads an environment variable. Errors name the field.
    pub fn validate(
        &self,
        enterprises: &BTreeSet<String>,
        beside: impl Fn(&std::path::Path) -> PathBuf,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Notify, String> {
        let seconds = |field: &str, v: f64, max: f64| {
            if v.is_finite() && v > 0.0 && v <= max {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!(
                    "notify.{field}: {v} must be more than 0 and at most {max}"
                ))
            }
        };
        let timeout = seconds("timeout_s", self.timeout_s, 120.0)?;
        let retry_min = seconds("retry_min_s", self.retry_min_s, 3_600.0)?;
        let retry_max = seconds("retry_max_s", self.retry_max_s, 86_400.0)?;
        if retry_max < retry_min {
            return Err(format!(
                "notify.retry_max_s: {} is less than retry_min_s ({})",
                self.retry_max_s, self.retry_min_s
            ));
        }
        let give_up = seconds("give_up_h", self.give_up_h, 24.0 * 30.0)?.as_secs_f64() * 3_600.0;
        let mut names = BTreeSet::new();
        let mut webhooks = Vec::new();
        for (i, spec) in self.webhook.iter().enumerate() {
            let at = format!("notify.webhook[{i}]");
            let name = spec.name.trim();
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err(format!(
                    "{at}.name: required, at most 128 bytes, no control characters"
                ));
            }
            if !names.insert(name.to_owned()) {
                return Err(format!("{at}.name: `{name}` is used twice"));
            }
            let at = format!("notify.webhook `{name}`");
            webhooks.push(spec.validate(&at, enterprises, &beside, &env)?);
        }
        Ok(Notify {
            timeout,
            retry_min,
            retry_max,
            give_up_ms: (give_up * 1_000.0).round() as i64,
            webhooks,
        })
    }
}

impl WebhookSpec {
    fn validate(
        &self,
        at: &str,
        enterprises: &BTreeSet<String>,
        beside: &impl Fn(&std::path::Path) -> PathBuf,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Webhook, String> {
        let url = outbound_url(&format!("{at}.url"), &self.url, self.allow_plaintext)?;
        let lang = match self.lang.as_str() {
            "zh-CN" | "zh" => Lang::Zh,
            "en" => Lang::En,
            other => return Err(format!("{at}.lang: `{other}`: use zh-CN or en")),
        };
        let enterprises = if self.enterprises == ["*"] {
            None
        } else {
            if self.enterprises.is_empty() {
                return Err(format!(
                    "{at}.enterprises: list the enterprises, or [\"*\"] for all"
                ));
            }
            for e in &self.enterprises {
                if !enterprises.contains(e) {
                    return Err(format!("{at}.enterprises: no enterprise `{e}` in the site"));
                }
            }
            Some(self.enterprises.iter().cloned().collect())
        };
        if self.on.is_empty() {
            return Err(format!(
                "{at}.on: empty: list \"raised\", \"escalated\" or both"
            ));
        }
        if self.content_type.trim().is_empty()
            || hyper::header::HeaderValue::from_str(&self.content_type).is_err()
        {
            return Err(format!(
                "{at}.content_type: `{}` is not a header value",
                self.content_type
            ));
        }
        if let Some(t) = &self.template {
            crate::notify::render::check_template(t).map_err(|e| format!("{at}.template: {e}"))?;
        }
        let time_zone = self.time_zone.parse::<chrono::FixedOffset>().map_err(|e| {
            format!(
                "{at}.time_zone: `{}`: {e} (write it as +08:00)",
                self.time_zone
            )
        })?;
        let ca_file = self.ca_file.as_deref().map(beside);
        if let Some(ca) = &ca_file
            && !ca.is_file()
        {
            return Err(format!("{at}.ca_file: {} is not a file", ca.display()));
        }
        Ok(Webhook {
            name: self.name.trim().to_owned(),
            url,
            lang,
            enterprises,
            on: self.on.iter().copied().collect(),
            min_priority: self.min_priority,
            min_escalation: pb::EscalationLevel::try_from(self.min_escalation as i32 + 1)
                .unwrap_or(pb::EscalationLevel::Enterprise),
            template: self.template.clone(),
            content_type: self.content_type.clone(),
            bearer: Secret::from_env(
                &format!("{at}.bearer_token_env"),
                self.bearer_token_env.as_deref(),
                true,
                env,
            )?,
            signing_key: Secret::from_env(
                &format!("{at}.signing_key_env"),
                self.signing_key_env.as_deref(),
                false,
                env,
            )?,
            ca_file,
            time_zone,
        })
    }
}

impl Webhook {
    /// True when `event` is something this recipient is told about.
    pub fn wants(&self, event: &pb::AlarmEvent) -> bool {
        let ours = self
            .enterprises
            .as_ref()
            .is_none_or(|e| e.contains(&event.enterprise));
        let trigger = match pb::Transition::try_from(event.transition) {
            Ok(pb::Transition::Raised) => {
                let annunciated =
                    !event.suppressed && event.shelved_until_ms == 0 && !event.out_of_service;
                annunciated
                    && event.priority >= pb::Priority::from(self.min_priority) as i32
                    && self.on.contains(&Trigger::Raised)
            }
            Ok(pb::Transition::Escalated) => {
                event.escalation_level >= self.min_escalation as i32
                    && self.on.contains(&Trigger::Escalated)
            }
            _ => false,
        };
        ours && trigger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Notify, String> {
        let c: NotifyConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let enterprises = ["E01".to_owned(), "E02".to_owned()].into();
        c.validate(
            &enterprises,
            |p| p.to_owned(),
            |var| match var {
                "HOOK_TOKEN" => Some("s3cret".to_owned()),
                "TWO_LINES" => Some("s3cret\nX-Other: injected".to_owned()),
                _ => None,
            },
        )
    }

    #[test]
    fn a_recipient_is_checked_field_by_field() {
        let ok = parse(
            r#"
            [[webhook]]
            name = "E01 duty"
            url = "http://127.0.0.1:9000/hook"
            enterprises = ["E01"]
            bearer_token_env = "HOOK_TOKEN"
            "#,
        )
        .expect("valid");
        let w = &ok.webhooks[0];
        assert_eq!(w.lang, Lang::Zh);
        assert_eq!(w.bearer, Some(Secret("s3cret".into())));
        assert!(
            !format!("{w:?}").contains("s3cret"),
            "secrets are not printed"
        );
        for (text, says) in [
            ("url = \"http://10.0.0.9/hook\"", "allow_plaintext"),
            ("url = \"ftp://127.0.0.1/\"", "http or https"),
            (
                "url = \"https://h/\"\nenterprises = [\"E09\"]",
                "no enterprise `E09`",
            ),
            ("url = \"https://h/\"\nlang = \"fr\"", "zh-CN or en"),
            ("url = \"https://h/\"\non = []", "on: empty"),
            (
                "url = \"https://h/\"\nsigning_key_env = \"NOPE\"",
                "NOPE is not set",
            ),
            (
                "url = \"https://h/\"\nbearer_token_env = \"TWO_LINES\"",
                "a header cannot carry",
            ),
            ("url = \"https://h/\"\ntemplate = \"${nope}\"", "template"),
        ] {
            let err = parse(&format!("[[webhook]]\nname = \"w\"\n{text}\n")).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
        let twice = "[[webhook]]\nname = \"w\"\nurl = \"https://h/\"\n";
        let err = parse(&format!("{twice}{twice}")).expect_err("a name twice");
        assert!(err.contains("used twice"), "{err}");
        assert_eq!(ok.give_up_ms, 24 * 3_600_000);
        let err = parse("retry_min_s = 10\nretry_max_s = 5\n").expect_err("max < min");
        assert!(err.contains("retry_max_s"), "{err}");
    }

    #[test]
    fn the_example_configuration_s_recipients_are_valid() {
        #[derive(Deserialize)]
        struct File {
            notify: NotifyConfig,
        }
        let block: Vec<&str> = crate::config::EXAMPLE_CONFIG
            .lines()
            .skip_while(|l| *l != "# [notify]")
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim_start())
            .collect();
        let file: File = toml::from_str(&block.join("\n")).expect("the commented example parses");
        let enterprises = ["E01".to_owned()].into();
        let n = file
            .notify
            .validate(
                &enterprises,
                |p| p.to_owned(),
                |_| Some("from-the-env".into()),
            )
            .expect("valid");
        assert_eq!(n.webhooks.len(), 2);
        assert!(n.webhooks[1].template.is_some());
    }

    #[test]
    fn routing_by_enterprise_priority_and_level() {
        let n = parse(
            r#"
            [[webhook]]
            name = "county"
            url = "https://county.example/hook"
            enterprises = ["E01"]
            on = ["escalated"]
            min_escalation = "county"
            [[webhook]]
            name = "park"
            url = "https://park.example/hook"
            min_priority = "high"
            "#,
        )
        .expect("valid");
        let (county, park) = (&n.webhooks[0], &n.webhooks[1]);
        let event =
            |t: pb::Transition, p: pb::Priority, level: pb::EscalationLevel| pb::AlarmEvent {
                enterprise: "E01".into(),
                transition: t as i32,
                priority: p as i32,
                escalation_level: level as i32,
                ..Default::default()
            };
        use pb::{EscalationLevel as L, Priority as P, Transition as T};
        let high_raise = event(T::Raised, P::High, L::Enterprise);
        assert!(park.wants(&high_raise));
        assert!(!county.wants(&high_raise), "escalations only");
        let mut shelved = high_raise.clone();
        shelved.shelved_until_ms = 1;
        assert!(!park.wants(&shelved), "not annunciated");
        assert!(!park.wants(&event(T::Raised, P::Medium, L::Enterprise)));
        assert!(!park.wants(&event(T::Cleared, P::Critical, L::Enterprise)));
        assert!(!county.wants(&event(T::Escalated, P::High, L::Park)));
        assert!(county.wants(&event(T::Escalated, P::High, L::County)));
        assert!(county.wants(&event(T::Escalated, P::High, L::Province)));
        let mut elsewhere = event(T::Escalated, P::High, L::City);
        elsewhere.enterprise = "E02".into();
        assert!(!county.wants(&elsewhere));
        assert!(park.wants(&elsewhere));
    }
}
