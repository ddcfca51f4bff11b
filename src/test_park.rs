//! The unit tests' park: one enterprise, one level point `T101.LT` with H
//! at 18 m, no on- or off-delay, no stale limit; a test changes what it
//! needs with [`site`].

#![allow(clippy::unwrap_used)]

use hazardwatch_rules::{SiteModel, Source};

const PARK: &str = r#"
park = { id = "P" }
[[enterprise]]
id = "E01"
[[enterprise.hazard_source]]
id = "HS1"
grade = 2
[[enterprise.hazard_source.unit]]
id = "T101"
[[enterprise.hazard_source.unit.point]]
id = "T101.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
h = 18.0
on_delay_s = 0
off_delay_s = 0
stale_s = 0
"#;

/// The park with each `(setting, value)` of its point changed, e.g.
/// `("stale_s", "5")`.
pub(crate) fn site(changes: &[(&str, &str)]) -> SiteModel {
    let mut text = PARK.to_owned();
    for (setting, value) in changes {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{setting} =")))
            .unwrap_or_else(|| panic!("the test park has no {setting}"))
            .to_owned();
        text = text.replace(&line, &format!("{setting} = {value}"));
    }
    SiteModel::parse(&Source {
        path: "park.toml".into(),
        text,
    })
    .unwrap()
}
