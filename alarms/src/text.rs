//! Alarm messages in Chinese and English: every event carries the key of a
//! message template and its parameters (`AlarmEvent.text_key`,
//! `text_params`), so one event renders in either language, on the
//! console or in any client; `AlarmEvent.message` is its English rendering.
//!
//! A template marks a parameter `{name}`. Numbers and times arrive in the
//! parameters already formatted (they read the same in both languages);
//! words that do need translating (a point's kind, an escalation level, a
//! risk colour) arrive as a [`Term`]'s value and are translated with the
//! template. The flags an event carries (latched, suppressed, backfilled)
//! add their note after the message ([`NOTES`]).
//!
//! ```
//! use hazardwatch_alarms::text::{Lang, Text};
//!
//! let t = Text::new("limit_raised")
//!     .with("id", "T101.PT")
//!     .with("what", "pressure")
//!     .with("tag", "HH")
//!     .with("value", "1.250")
//!     .with("unit", "MPa")
//!     .with("limit", "1.200");
//! assert_eq!(t.render(Lang::En), "T101.PT pressure HH 1.250 MPa (limit 1.200)");
//! assert_eq!(t.render(Lang::Zh), "T101.PT 压力 HH 报警:1.250 MPa(限值 1.200)");
//! ```

use std::collections::HashMap;

/// A language messages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese (zh-CN).
    Zh,
}

/// One message template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// The key events carry.
    pub key: &'static str,
    /// English.
    pub en: &'static str,
    /// Simplified Chinese.
    pub zh: &'static str,
}

/// A parameter value that is a word to translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    /// What it names (see [`TERM_PARAMS`]): `kind` (of a point),
    /// `level` (of escalation), `state` (of a unit), `colour` (of risk).
    pub of: &'static str,
    /// The value events carry.
    pub value: &'static str,
    /// English.
    pub en: &'static str,
    /// Simplified Chinese.
    pub zh: &'static str,
}

const fn t(key: &'static str, en: &'static str, zh: &'static str) -> Template {
    Template { key, en, zh }
}

const fn term(of: &'static str, value: &'static str, en: &'static str, zh: &'static str) -> Term {
    Term { of, value, en, zh }
}

/// Every message template.
pub const TEMPLATES: &[Template] = &[
    // Operator actions and escalation.
    t(
        "acknowledged",
        "{id} {tag} acknowledged by {actor}",
        "{id} {tag} 已由 {actor} 确认",
    ),
    t(
        "reset",
        "{id} {tag} reset by {actor}",
        "{id} {tag} 已由 {actor} 复位",
    ),
    t(
        "shelved",
        "{id} {tag} shelved by {actor} until {until}",
        "{id} {tag} 已由 {actor} 搁置至 {until}",
    ),
    t(
        "shelf_expired",
        "{id} {tag} shelf expired",
        "{id} {tag} 搁置到期",
    ),
    t(
        "unshelved",
        "{id} {tag} unshelved by {actor}",
        "{id} {tag} 已由 {actor} 解除搁置",
    ),
    t(
        "commented",
        "{id} {tag} comment by {actor}",
        "{id} {tag} {actor} 添加了备注",
    ),
    t(
        "removed_from_service",
        "{id} {tag} taken out of service by {actor}",
        "{id} {tag} 已由 {actor} 退出服务",
    ),
    t(
        "returned_to_service",
        "{id} {tag} returned to service by {actor}",
        "{id} {tag} 已由 {actor} 恢复服务",
    ),
    t(
        "escalated",
        "{id} {tag} escalated to the {level} level: no disposal record yet",
        "{id} {tag} 已升级至{level}:尚无处置记录",
    ),
    t(
        "disposed",
        "{id} {tag} disposed by {actor}: cause: {cause}; action: {action}",
        "{id} {tag} 已由 {actor} 处置:原因:{cause};措施:{action}",
    ),
    t(
        "notified",
        "{id} {tag} notification delivered to {actor} (attempt {attempts})",
        "{id} {tag} 通知已送达 {actor}(第 {attempts} 次尝试)",
    ),
    t(
        "notification_failed",
        "{id} {tag} notification to {actor} failed (attempt {attempts}, retrying): {reason}",
        "{id} {tag} 发往 {actor} 的通知失败(第 {attempts} 次尝试,将重试):{reason}",
    ),
    t(
        "notification_abandoned",
        "{id} {tag} notification to {actor} abandoned after {attempts} attempts: {reason}",
        "{id} {tag} 发往 {actor} 的通知已放弃(共尝试 {attempts} 次):{reason}",
    ),
    t(
        "notify_raised",
        "[{priority} alarm] {enterprise} {id}",
        "【{priority}报警】{enterprise} {id}",
    ),
    t(
        "notify_escalated",
        "[escalated to the {level} level] {enterprise} {id}",
        "【报警已升级至{level}】{enterprise} {id}",
    ),
    t(
        "removed_from_model",
        "{id} {tag} returned to normal: removed from the site model",
        "{id} {tag} 恢复正常:已从场站模型中删除",
    ),
    t(
        "ended_at_restart",
        "{id} ended at restart: its count starts again",
        "{id} 重启时结束:重新计数",
    ),
    t(
        "ended_not_in_model",
        "{id} ended at restart: no longer in the site model",
        "{id} 重启时结束:已不在场站模型中",
    ),
    // Gateways, unit rules and the alarm system.
    t(
        "gateway_never_heard",
        "{id} gateway never heard from: nothing for {limit} s since it was expected; every point it reports is unmonitored",
        "{id} 网关从未上线:预期上线后 {limit} 秒无数据;其全部测点失去监测",
    ),
    t(
        "gateway_offline",
        "{id} gateway offline: silent for {value} s (limit {limit} s) or disconnected; every point it reports is unmonitored",
        "{id} 网关离线:{value} 秒无数据(限值 {limit} 秒)或已断开;其全部测点失去监测",
    ),
    t(
        "upstream_lost",
        "park {id} out of reach since {since}: its alarms are not seen here until it is back",
        "园区 {id} 自 {since} 起失联:恢复连接前此处看不到其报警",
    ),
    t(
        "upstream_back",
        "park {id} in reach again: its events since {since} are caught up",
        "园区 {id} 已恢复连接:{since} 以来的事件已补齐",
    ),
    t(
        "upstream_gap",
        "park {id} no longer holds the events after its number {after} that were not yet seen here: they are lost to this feed; its active alarms follow",
        "园区 {id} 已不再保存编号 {after} 之后、此处尚未收到的事件:本级报警流缺失这些事件;以下为其当前报警",
    ),
    t(
        "gateway_online",
        "{id} gateway reporting again",
        "{id} 网关恢复上报",
    ),
    t(
        "voting_raised",
        "{id} leak confirmed: {value} gas detectors at the first level (voting {limit} of N)",
        "{id} 确认泄漏:{value} 个气体探测器达到一级报警(N 取 {limit} 表决)",
    ),
    t(
        "voting_cleared",
        "{id} fewer than {limit} gas detectors at the first level ({value})",
        "{id} 达到一级报警的气体探测器少于 {limit} 个({value})",
    ),
    t(
        "correlation_raised",
        "{id} runaway heating: temperature and pressure rising together ({value}/min, limit {limit}/min)",
        "{id} 疑似飞温:温度与压力同时上升({value}/分钟,限值 {limit}/分钟)",
    ),
    t(
        "correlation_cleared",
        "{id} temperature and pressure no longer rising together",
        "{id} 温度与压力不再同时上升",
    ),
    t(
        "flood_raised",
        "{id} console in alarm flood: {value} alarms in 10 min (more than {limit})",
        "{id} 报警泛滥:10 分钟内 {value} 条报警(超过 {limit} 条)",
    ),
    t(
        "flood_cleared",
        "{id} alarm flood over: {value} alarms raised during it",
        "{id} 报警泛滥结束:期间共 {value} 条报警",
    ),
    t(
        "chattering_raised",
        "{id} alarms chattering: {value} raises in a minute",
        "{id} 报警振荡:1 分钟内触发 {value} 次",
    ),
    t(
        "chattering_cleared",
        "{id} chattering over after {value} raises",
        "{id} 报警振荡结束,共触发 {value} 次",
    ),
    t("raised", "{id} {tag} raised", "{id} {tag} 报警"),
    t("cleared", "{id} {tag} cleared", "{id} {tag} 已恢复"),
    // Points.
    t(
        "rate_raised",
        "{id} {what} changing at {value} {unit}/min (limit {limit} {unit}/min)",
        "{id} {what}变化速率 {value} {unit}/分钟(限值 {limit} {unit}/分钟)",
    ),
    t(
        "rate_cleared",
        "{id} {what} rate back under the limit: {value} {unit}/min",
        "{id} {what}变化速率恢复至限值内:{value} {unit}/分钟",
    ),
    t(
        "predicted_raised",
        "{id} {what} trend reaches {limit_tag} {limit} {unit} at {at} UTC, in {minutes} min (now {value} {unit})",
        "{id} {what}按当前趋势将于 {at} UTC({minutes} 分钟后)达到 {limit_tag} {limit} {unit}(当前 {value} {unit})",
    ),
    t(
        "predicted_raised_soon",
        "{id} {what} trend reaches {limit_tag} {limit} {unit} soon (now {value} {unit})",
        "{id} {what}按当前趋势即将达到 {limit_tag} {limit} {unit}(当前 {value} {unit})",
    ),
    t(
        "predicted_cleared",
        "{id} {what} trend no longer heading for the limit: {value} {unit}",
        "{id} {what}趋势不再趋向限值:{value} {unit}",
    ),
    t(
        "fault_bad_quality",
        "{id} sensor fault: reading of bad quality ({value} {unit})",
        "{id} 传感器故障:读数质量为坏({value} {unit})",
    ),
    t(
        "fault_range",
        "{id} sensor fault: {value} {unit} is outside the instrument range (bound {limit})",
        "{id} 传感器故障:{value} {unit} 超出仪表量程(边界 {limit})",
    ),
    t(
        "fault_cleared",
        "{id} sensor healthy again: {value} {unit}",
        "{id} 传感器恢复正常:{value} {unit}",
    ),
    t(
        "stale_raised",
        "{id} no reading for {limit} s: communication loss (last {value} {unit})",
        "{id} {limit} 秒无读数:通信中断(最后值 {value} {unit})",
    ),
    t(
        "stale_cleared",
        "{id} readings again: {value} {unit}",
        "{id} 恢复读数:{value} {unit}",
    ),
    t(
        "flatline_raised",
        "{id} {what} stuck at {value} {unit} for {limit} s: frozen sensor?",
        "{id} {what}停在 {value} {unit} 已 {limit} 秒:传感器冻结?",
    ),
    t(
        "flatline_cleared",
        "{id} {what} moving again: {value} {unit}",
        "{id} {what}恢复变化:{value} {unit}",
    ),
    t(
        "multivariate_raised",
        "{id} is running unlike its normal operation ({value} times the model's limit), most of all {points}",
        "{id} 运行偏离正常模式(达模型限值的 {value} 倍),主要来自 {points}",
    ),
    t(
        "multivariate_cleared",
        "{id} back to its normal operation",
        "{id} 恢复正常运行模式",
    ),
    t(
        "deviation_raised",
        "{id} {what} has drifted from normal operation: {value} {unit} where it is normally {limit}",
        "{id} {what}偏离正常运行:{value} {unit},正常约为 {limit}",
    ),
    t(
        "deviation_cleared",
        "{id} {what} back to normal operation: {value} {unit}",
        "{id} {what}恢复正常运行:{value} {unit}",
    ),
    t(
        "limit_raised",
        "{id} {what} {tag} {value} {unit} (limit {limit})",
        "{id} {what} {tag} 报警:{value} {unit}(限值 {limit})",
    ),
    t(
        "limit_cleared",
        "{id} {what} back inside {tag} limit: {value} {unit}",
        "{id} {what}恢复至 {tag} 限值内:{value} {unit}",
    ),
    // Units.
    t(
        "unit_state_changed",
        "{id} state {state} (was {was_state}) by {actor}: {comment}",
        "{id} 状态改为{state}(原为{was_state}),操作人 {actor}:{comment}",
    ),
    // Risk colours and why (`SiteService.Risk`'s reason_texts).
    t(
        "risk_grade",
        "grade {grade} (GB 18218)",
        "GB 18218 {grade} 级重大危险源",
    ),
    t("risk_leak", "confirmed leak: {id}", "确认泄漏:{id}"),
    t("risk_runaway", "runaway heating: {id}", "疑似飞温:{id}"),
    t("risk_critical", "critical alarm: {id}", "紧急报警:{id}"),
    t(
        "risk_high",
        "high-priority alarm: {id}",
        "高优先级报警:{id}",
    ),
    t(
        "risk_escalated",
        "escalated to the {level} level: {id}",
        "已升级至{level}:{id}",
    ),
    t(
        "risk_changed",
        "{id} risk {colour} (was {was}): {reasons}",
        "{id} 风险等级{colour}(原为{was}):{reasons}",
    ),
];

/// The notes an event's flags add after its message.
pub const NOTES: &[Template] = &[
    t(
        "latched",
        " [latched: reset when checked]",
        "【闭锁:检查后复位】",
    ),
    t(
        "suppressed",
        " [suppressed: unit stopped or in overhaul]",
        "【已抑制:装置停车或检修】",
    ),
    t(
        "backfilled",
        " [backfilled: judged from readings that arrived late]",
        "【补判:依据迟到的读数判定】",
    ),
];

/// The parameters whose values are [`Term`]s, and what they name.
pub const TERM_PARAMS: &[(&str, &str)] = &[
    ("what", "kind"),
    ("level", "level"),
    ("state", "state"),
    ("was_state", "state"),
    ("colour", "colour"),
    ("was", "colour"),
    ("priority", "priority"),
];

/// Every translated parameter value.
pub const TERMS: &[Term] = &[
    term("kind", "temperature", "temperature", "温度"),
    term("kind", "level", "level", "液位"),
    term("kind", "pressure", "pressure", "压力"),
    term("kind", "combustible_gas", "combustible gas", "可燃气体"),
    term("kind", "toxic_gas", "toxic gas", "有毒气体"),
    term("kind", "measurement", "measurement", "过程测量值"),
    term("level", "enterprise", "enterprise", "企业级"),
    term("level", "park", "park", "园区级"),
    term("level", "county", "county", "县级"),
    term("level", "city", "city", "市级"),
    term("level", "province", "province", "省级"),
    term("state", "running", "running", "运行"),
    term("state", "stopped", "stopped", "停车"),
    term("state", "overhaul", "overhaul", "检修"),
    term("state", "trial", "trial", "试运行"),
    term("colour", "red", "red", "红色"),
    term("colour", "orange", "orange", "橙色"),
    term("colour", "yellow", "yellow", "黄色"),
    term("colour", "blue", "blue", "蓝色"),
    term("colour", "-", "-", "无"),
    term("priority", "low", "low-priority", "低优先级"),
    term("priority", "medium", "medium-priority", "中优先级"),
    term("priority", "high", "high-priority", "高优先级"),
    term("priority", "critical", "critical", "紧急"),
];

impl Template {
    fn in_lang(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => self.en,
            Lang::Zh => self.zh,
        }
    }
}

/// A message: a template's key and its parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Text {
    /// The template ([`TEMPLATES`]).
    pub key: &'static str,
    /// Parameters by name.
    pub params: Vec<(&'static str, String)>,
}

impl Text {
    /// The message of template `key`, no parameters yet.
    pub fn new(key: &'static str) -> Self {
        Text {
            key,
            params: Vec::new(),
        }
    }

    /// Sets parameter `name` (replacing a value it had).
    pub fn with(mut self, name: &'static str, value: impl ToString) -> Self {
        let value = value.to_string();
        match self.params.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.params.push((name, value)),
        }
        self
    }

    /// The parameters as the wire carries them.
    pub fn wire_params(&self) -> HashMap<String, String> {
        self.params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// The message in `lang`.
    pub fn render(&self, lang: Lang) -> String {
        render(
            self.key,
            |name| {
                self.params
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.as_str())
            },
            lang,
        )
    }
}

/// Renders template `key` in `lang`, each `{name}` replaced by
/// `param(name)` (translated if it is a [`Term`]); an unknown key renders
/// as the key and its parameters, a missing parameter as `{name}`.
pub fn render<'a>(key: &str, param: impl Fn(&str) -> Option<&'a str>, lang: Lang) -> String {
    let Some(template) = TEMPLATES.iter().find(|t| t.key == key) else {
        return key.to_owned();
    };
    let mut out = String::new();
    let mut rest = template.in_lang(lang);
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            rest = &rest[open..];
            break;
        };
        let name = &after[..close];
        match param(name) {
            Some(value) => out.push_str(translate(name, value, lang)),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// `value` of parameter `name` in `lang`: its [`Term`], or itself.
fn translate<'a>(name: &str, value: &'a str, lang: Lang) -> &'a str {
    let Some(&(_, of)) = TERM_PARAMS.iter().find(|(p, _)| *p == name) else {
        return value;
    };
    TERMS
        .iter()
        .find(|t| t.of == of && t.value == value)
        .map_or(value, |t| match lang {
            Lang::En => t.en,
            Lang::Zh => t.zh,
        })
}

/// The note of flag `key` ([`NOTES`]) in `lang`.
pub fn note(key: &str, lang: Lang) -> &'static str {
    NOTES
        .iter()
        .find(|t| t.key == key)
        .map_or("", |t| t.in_lang(lang))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `{name}` of a template's English is in its Chinese, and the
    /// other way round: a translation never drops or invents a parameter.
    #[test]
    fn both_languages_use_the_same_parameters() {
        fn names(s: &str) -> Vec<&str> {
            let mut v: Vec<&str> = s
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(n, _)| n))
                .collect();
            v.sort_unstable();
            v
        }
        for t in TEMPLATES {
            assert_eq!(names(t.en), names(t.zh), "{}", t.key);
        }
        let mut keys: Vec<_> = TEMPLATES.iter().map(|t| t.key).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "keys are unique");
    }

    #[test]
    fn terms_are_translated_and_missing_parameters_shown() {
        let t = Text::new("escalated")
            .with("id", "T101.LT")
            .with("tag", "HH")
            .with("level", "county");
        assert_eq!(
            t.render(Lang::En),
            "T101.LT HH escalated to the county level: no disposal record yet"
        );
        assert_eq!(t.render(Lang::Zh), "T101.LT HH 已升级至县级:尚无处置记录");
        assert_eq!(
            Text::new("raised").with("id", "X").render(Lang::En),
            "X {tag} raised"
        );
        assert_eq!(Text::new("no_such_key").render(Lang::Zh), "no_such_key");
        // Two parameters naming the same kind of thing share its terms.
        let risk = Text::new("risk_changed")
            .with("id", "HS1")
            .with("colour", "red")
            .with("was", "-")
            .with("reasons", "r");
        assert_eq!(risk.render(Lang::Zh), "HS1 风险等级红色(原为无):r");
        assert_eq!(note("latched", Lang::Zh), "【闭锁:检查后复位】");
    }
}
