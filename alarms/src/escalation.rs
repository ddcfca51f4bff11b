//! Escalation chains: which alarms must be closed with a disposal record,
//! and how long each level of the chain (enterprise duty officer, park,
//! county, city, province) has before an alarm still waiting for one moves
//! up to the next.
//!
//! ```toml
//! [[escalation]]
//! enterprises = ["*"]      # or a list; an enterprise's own entry beats "*"
//! min_priority = "high"    # alarms of this priority and above (default high)
//! park_min = 10            # minutes after the raise: to the park
//! county_min = 30          # ... to the county
//! city_min = 60
//! province_min = 120
//! ```
//!
//! An enterprise without an entry has no closed loop: its alarms close when
//! normal and acknowledged, and never escalate.

use std::collections::{BTreeMap, BTreeSet};

use hazardwatch_proto::Priority;
use serde::Deserialize;

use crate::error::{Error, Result};

/// One `[[escalation]]` as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EscalationSpec {
    /// Enterprise ids, or `["*"]` for every enterprise without its own.
    pub enterprises: Vec<String>,
    /// Lowest priority that needs a disposal record.
    #[serde(default = "high")]
    pub min_priority: Priority,
    /// Minutes from the raise to the park.
    pub park_min: f64,
    /// ... to the county.
    pub county_min: f64,
    /// ... to the city.
    pub city_min: f64,
    /// ... to the province.
    pub province_min: f64,
}

fn high() -> Priority {
    Priority::High
}

/// One enterprise's validated chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chain {
    /// Lowest priority that needs a disposal record.
    pub min_priority: Priority,
    /// Milliseconds after the raise at which the alarm leaves level `i`
    /// (enterprise, park, county, city).
    pub after_ms: [i64; 4],
}

/// The chains by enterprise.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EscalationPolicy {
    chains: BTreeMap<String, Chain>,
    default: Option<Chain>,
}

impl EscalationPolicy {
    /// Validates the `[[escalation]]` entries against the site's
    /// enterprises, naming the entry and field that is wrong.
    pub fn new(
        specs: &[EscalationSpec],
        enterprises: &BTreeSet<String>,
    ) -> Result<EscalationPolicy> {
        let mut policy = EscalationPolicy::default();
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("escalation[{i}]");
            let minutes = [
                ("park_min", spec.park_min),
                ("county_min", spec.county_min),
                ("city_min", spec.city_min),
                ("province_min", spec.province_min),
            ];
            let mut after_ms = [0i64; 4];
            let mut before = 0.0;
            for (j, (field, m)) in minutes.into_iter().enumerate() {
                if !m.is_finite() || m <= before || m > 7.0 * 24.0 * 60.0 {
                    return Err(Error::config(
                        format!("{at}.{field}"),
                        format!(
                            "{m} must be more than the level before ({before}) and at most a week"
                        ),
                    ));
                }
                before = m;
                after_ms[j] = (m * 60_000.0).round() as i64;
            }
            let chain = Chain {
                min_priority: spec.min_priority,
                after_ms,
            };
            if spec.enterprises == ["*"] {
                if policy.default.replace(chain).is_some() {
                    return Err(Error::config(
                        format!("{at}.enterprises"),
                        "a second [\"*\"] entry",
                    ));
                }
                continue;
            }
            if spec.enterprises.is_empty() {
                return Err(Error::config(
                    format!("{at}.enterprises"),
                    "list the enterprises, or [\"*\"] for all",
                ));
            }
            for e in &spec.enterprises {
                if !enterprises.contains(e) {
                    return Err(Error::config(
                        format!("{at}.enterprises"),
                        format!("no enterprise `{e}` in the site"),
                    ));
                }
                if policy.chains.insert(e.clone(), chain).is_some() {
                    return Err(Error::config(
                        format!("{at}.enterprises"),
                        format!("`{e}` has a chain already"),
                    ));
                }
            }
        }
        Ok(policy)
    }

    /// The chain of an enterprise, if it has one.
    pub fn chain(&self, enterprise: &str) -> Option<&Chain> {
        self.chains.get(enterprise).or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(enterprises: &[&str], minutes: [f64; 4]) -> EscalationSpec {
        EscalationSpec {
            enterprises: enterprises.iter().map(|e| e.to_string()).collect(),
            min_priority: Priority::High,
            park_min: minutes[0],
            county_min: minutes[1],
            city_min: minutes[2],
            province_min: minutes[3],
        }
    }

    #[test]
    fn an_enterprise_entry_beats_the_default_and_bad_times_are_refused() {
        let site: BTreeSet<String> = ["E01", "E02"].iter().map(|e| e.to_string()).collect();
        let p = EscalationPolicy::new(
            &[
                spec(&["*"], [10.0, 30.0, 60.0, 120.0]),
                spec(&["E02"], [5.0, 15.0, 30.0, 60.0]),
            ],
            &site,
        )
        .unwrap();
        assert_eq!(p.chain("E01").unwrap().after_ms[0], 600_000);
        assert_eq!(p.chain("E02").unwrap().after_ms[3], 3_600_000);
        let err = EscalationPolicy::new(&[spec(&["E01"], [10.0, 5.0, 60.0, 120.0])], &site)
            .unwrap_err()
            .to_string();
        assert!(err.contains("escalation[0].county_min"), "{err}");
        let err = EscalationPolicy::new(&[spec(&["E09"], [1.0, 2.0, 3.0, 4.0])], &site)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no enterprise `E09`"), "{err}");
        assert!(
            EscalationPolicy::new(&[], &site)
                .unwrap()
                .chain("E01")
                .is_none()
        );
    }
}
