//! Configuration errors name the file, the line and the field.

use hazardwatch::config::Config;
use hazardwatch_rules::Source;
use hazardwatch_tests::TEST_PARK;

fn error_of(text: &str) -> String {
    let src = Source {
        path: "park.toml".into(),
        text: text.into(),
    };
    match Config::from_source(&src) {
        Ok(_) => panic!("accepted an invalid configuration"),
        Err(e) => e.to_string(),
    }
}

/// The line number (1-based) of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

#[test]
fn limit_outside_instrument_range_names_line_and_field() {
    let text = TEST_PARK.replace("hh = 19.0", "hh = 25.0");
    let e = error_of(&text);
    let line = line_of(&text, "hh = 25.0");
    assert!(e.starts_with(&format!("park.toml:{line}:")), "{e}");
    assert!(e.contains("point T101.LT: hh"), "{e}");
    assert!(e.contains("outside the instrument range [0, 20]"), "{e}");
}

#[test]
fn hh_below_h_is_refused() {
    let text = TEST_PARK.replace("hh = 19.0", "hh = 17.0");
    let e = error_of(&text);
    assert!(e.contains("point T101.LT: h"), "{e}");
    assert!(e.contains("H (18) must be below HH (17)"), "{e}");
    assert!(
        e.contains(&format!(":{}:", line_of(&text, "h = 18.0"))),
        "{e}"
    );
}

#[test]
fn duplicate_point_id_is_refused_at_the_second_definition() {
    let text = TEST_PARK.replace("id = \"T101.PT\"", "id = \"T101.LT\"");
    let e = error_of(&text);
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("id = \"T101.LT\""))
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap();
    assert!(e.contains(&format!("park.toml:{second}:")), "{e}");
    assert!(e.contains("duplicate point id `T101.LT`"), "{e}");
}

#[test]
fn unknown_kind_and_unknown_field_are_refused_with_their_line() {
    let text = TEST_PARK.replace("kind = \"pressure\"", "kind = \"flow_rate\"");
    let e = error_of(&text);
    assert!(
        e.contains(&format!("park.toml:{}:", line_of(&text, "flow_rate"))),
        "{e}"
    );
    assert!(e.contains("flow_rate"), "{e}");
    let text = TEST_PARK.replace("eng_unit = \"kPa\"", "eng_unit = \"kPa\"\non_dealy_s = 0");
    let e = error_of(&text);
    assert!(e.contains("on_dealy_s"), "{e}");
    assert!(
        e.contains(&format!("park.toml:{}:", line_of(&text, "on_dealy_s"))),
        "{e}"
    );
}

#[test]
fn every_problem_in_a_file_is_reported_together() {
    let text = TEST_PARK
        .replace("hh = 19.0", "hh = 25.0")
        .replace("grade = 3", "grade = 7");
    let e = error_of(&text);
    assert_eq!(e.lines().count(), 2, "{e}");
    assert!(e.contains("grade"), "{e}");
}

#[test]
fn bad_service_settings_are_named() {
    let text = TEST_PARK.replace("epoch_ms = 50", "epoch_ms = 0");
    let e = error_of(&text);
    assert!(e.contains("park.toml: engine.epoch_ms: 0"), "{e}");
}

#[test]
fn trend_rules_are_validated_with_their_line() {
    let text = TEST_PARK.replace(
        "h = 600.0\n",
        "h = 600.0\npredict = { horizon_s = 60 }\nroc = { limit_per_min = -1 }\n",
    );
    let e = error_of(&text);
    assert!(
        e.contains("point T101.PT: predict: needs an hh or ll limit"),
        "{e}"
    );
    assert!(
        e.contains(&format!("park.toml:{}:", line_of(&text, "predict ="))),
        "{e}"
    );
    assert!(
        e.contains("point T101.PT: roc.limit_per_min: -1 must be a positive number"),
        "{e}"
    );
}

#[test]
fn gas_alarm_levels_above_gbt_50493_are_refused() {
    let gas = r#"
[[enterprise.hazard_source.unit.point]]
id = "T201.GT1"
kind = "combustible_gas"
eng_unit = "%LEL"
range = [0.0, 100.0]
h = 30.0
hh = 60.0
[[enterprise.hazard_source.unit.point]]
id = "T201.AT1"
kind = "toxic_gas"
eng_unit = "ppm"
range = [0.0, 50.0]
h = 10.0
[[enterprise.hazard_source.unit.point]]
id = "T201.AT2"
kind = "toxic_gas"
eng_unit = "ppm"
range = [0.0, 50.0]
oel = 5.0
h = 5.0
hh = 12.0
"#;
    let text = format!("{TEST_PARK}{gas}");
    let e = error_of(&text);
    assert!(e.contains("point T201.GT1: h: 30 is above 25 %LEL"), "{e}");
    assert!(
        e.contains(&format!(":{}:", line_of(&text, "h = 30.0"))),
        "{e}"
    );
    assert!(e.contains("point T201.GT1: hh: 60 is above 50 %LEL"), "{e}");
    assert!(
        e.contains("point T201.AT1: oel: toxic gas alarm levels need"),
        "{e}"
    );
    assert!(
        e.contains("point T201.AT2: hh: 12 is above 200 % of the OEL (5)"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 4, "{e}");
    // Within the limits, it passes.
    let ok = gas
        .replace("h = 30.0", "h = 20.0")
        .replace("hh = 60.0", "hh = 40.0")
        .replace("h = 10.0", "oel = 10.0\nh = 10.0")
        .replace("hh = 12.0", "hh = 10.0");
    let src = hazardwatch_rules::Source {
        path: "park.toml".into(),
        text: format!("{TEST_PARK}{ok}"),
    };
    Config::from_source(&src).unwrap();
}

#[test]
fn a_file_with_many_problems_lists_the_first_hundred_and_counts_the_rest() {
    let mut text = String::from(
        "[park]\nid = \"P\"\n[[enterprise]]\nid = \"E\"\n[[enterprise.hazard_source]]\nid = \"HS\"\ngrade = 2\n[[enterprise.hazard_source.unit]]\nid = \"U\"\n",
    );
    for p in 0..250 {
        text.push_str(&format!(
            "[[enterprise.hazard_source.unit.point]]\nid = \"P{p}\"\nkind = \"level\"\neng_unit = \"m\"\nrange = [0.0, 20.0]\nhh = 25.0\n"
        ));
    }
    let e = error_of(&text);
    assert_eq!(
        e.matches("outside the instrument range").count(),
        100,
        "{e}"
    );
    assert!(
        e.contains("point P99: hh") && !e.contains("point P100: hh"),
        "{e}"
    );
    assert!(
        e.ends_with("park.toml: and 150 more problems like those above"),
        "{e}"
    );
}
