//! `hazardwatch learn` (issue 17): models of normal operation fitted from
//! an archive written by the service's own archive writer: a reactor whose
//! temperature, pressure and cooling flow move together, a point with too
//! little data, and a unit of one point.

use hazardwatch::config::Config;
use hazardwatch::learn::{self, Options};
use hazardwatch_proto::{Quality, Reading};
use hazardwatch_rules::monitor::Models;
use hazardwatch_storage::reader::Range;
use hazardwatch_storage::{ArchiveConfig, ArchiveWriter};

/// A park of a reactor with a measurement point and a tank (also the
/// import tests').
pub(crate) const PARK: &str = r#"
[park]
id = "P"

[[enterprise]]
id = "E01"
[[enterprise.hazard_source]]
id = "E01-HS1"
grade = 2

[[enterprise.hazard_source.unit]]
id = "R1"
[[enterprise.hazard_source.unit.point]]
id = "R1.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 200.0]
[[enterprise.hazard_source.unit.point]]
id = "R1.PT"
kind = "pressure"
eng_unit = "kPa"
range = [0.0, 1000.0]
[[enterprise.hazard_source.unit.point]]
id = "R1.FT"
kind = "measurement"
eng_unit = "m3/h"
range = [0.0, 100.0]
[[enterprise.hazard_source.unit.point]]
id = "R1.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]

[[enterprise.hazard_source.unit]]
id = "T2"
[[enterprise.hazard_source.unit.point]]
id = "T2.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 200.0]
"#;

/// Three hours at 1 Hz from `t0`: the reactor's load swings slowly, and
/// temperature, pressure and cooling flow follow it (with noise); the level
/// reports for ten minutes only; T2.TE on its own.
fn history(config: &Config, t0: i64) -> Vec<Reading> {
    let id = |name: &str| config.site.catalog.lookup(name).unwrap();
    let (te, pt, ft, lt, t2) = (
        id("R1.TE"),
        id("R1.PT"),
        id("R1.FT"),
        id("R1.LT"),
        id("T2.TE"),
    );
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut out = Vec::new();
    for s in 0..3 * 3600 {
        let ts_ms = t0 + s * 1000;
        let load = (s as f64 / 1200.0).sin() + 0.3 * (s as f64 / 317.0).sin();
        let mut push = |point, value| {
            out.push(Reading {
                point,
                ts_ms,
                value,
                quality: Quality::Good,
            })
        };
        push(te, 80.0 + 5.0 * load + noise());
        push(pt, 400.0 + 40.0 * load + 4.0 * noise());
        push(ft, 50.0 + 10.0 * load + noise());
        push(t2, 25.0 + 2.0 * noise());
        if s < 600 {
            push(lt, 10.0 + noise());
        }
    }
    out
}

#[test]
fn models_are_fitted_from_a_period_of_the_archive() {
    let config = Config::from_source(&hazardwatch_rules::Source {
        path: "learn.toml".into(),
        text: PARK.into(),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let (mut writer, _) =
        ArchiveWriter::open(&root, config.site.catalog.clone(), ArchiveConfig::default()).unwrap();
    let t0 = 1_767_225_600_000;
    let readings = history(&config, t0);
    writer.append(&readings, t0, &vec![false; readings.len()]);
    writer.checkpoint(1, &[]).unwrap();

    let range = Range {
        from_ms: Some(t0),
        to_ms: Some(t0 + 3 * 3_600_000),
        ..Range::default()
    };
    let options = Options::default();
    let models = learn::learn(
        &[&root],
        &range,
        &config.site,
        &options,
        "learn.toml",
        false,
    )
    .unwrap();
    assert_eq!(models.trained.readings, readings.len() as u64);
    assert_eq!(
        (models.trained.from_ms, models.trained.park.as_str()),
        (t0, "P")
    );

    // Per point: the centre and spread of the one-minute means.
    let te = &models.points["R1.TE"];
    assert_eq!(
        (te.kind.as_str(), te.eng_unit.as_str(), te.samples),
        ("temperature", "degC", 180)
    );
    // The median of the minute means, worked out here on its own.
    let te_idx = config.site.catalog.lookup("R1.TE").unwrap();
    let mut minutes = vec![(0.0, 0.0); 180];
    for r in readings.iter().filter(|r| r.point == te_idx) {
        let m = &mut minutes[((r.ts_ms - t0) / 60_000) as usize];
        *m = (m.0 + r.value, m.1 + 1.0);
    }
    let mut means: Vec<f64> = minutes.iter().map(|(sum, n)| sum / n).collect();
    means.sort_by(f64::total_cmp);
    let median = (means[89] + means[90]) / 2.0;
    assert!(
        (te.robust.centre - median).abs() < 1e-9,
        "{te:?} vs {median}"
    );
    assert!(te.robust.spread > 1.0 && te.robust.spread < 6.0, "{te:?}");
    assert!(te.cusum.h > 5.0, "tuned for a long in-control run: {te:?}");
    let flat = &models.points["T2.TE"];
    assert!(
        flat.robust.spread < 0.5,
        "minute means of noise alone: {flat:?}"
    );
    assert!(
        models.skipped["R1.LT"].contains("10 grid means"),
        "{:?}",
        models.skipped
    );

    // Per unit: one load drives three points, so one component explains
    // most of their variance; T2 has one point and no model.
    let r1 = &models.units["R1"];
    assert_eq!(r1.points, ["R1.TE", "R1.PT", "R1.FT"]);
    assert_eq!(r1.pca.loadings.len(), 1, "{:?}", r1.pca.variances);
    assert!(r1.pca.explained > 0.9);
    assert_eq!(r1.pca.rows, 180);
    assert!(r1.pca.t2_limit.is_finite() && r1.pca.spe_limit > 0.0);
    assert!(!models.units.contains_key("T2"));

    // The file: versioned JSON, read back as written.
    let out = dir.path().join("models.json");
    learn::write(&out, &models).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let back: Models = serde_json::from_str(&text).unwrap();
    assert_eq!(back, models);
    assert_eq!(
        (back.format.as_str(), back.version),
        (Models::FORMAT, Models::VERSION)
    );

    // The park names its models; they are checked against its points.
    let with = |text: &str| {
        let path = dir.path().join("park.toml");
        std::fs::write(
            &path,
            text.replacen(
                "[park]\nid = \"P\"",
                "[park]\nid = \"P\"\nmodels = \"models.json\"",
                1,
            ),
        )
        .unwrap();
        Config::load(&path).map_err(|e| e.to_string())
    };
    let loaded = with(PARK).unwrap();
    assert_eq!(loaded.site.models.as_deref(), Some(&models));
    let err = with(&PARK.replacen("eng_unit = \"m3/h\"", "eng_unit = \"t/h\"", 1)).unwrap_err();
    assert!(
        err.contains("park.toml")
            && err.contains("park: models")
            && err.contains(
                "point R1.FT was fitted as measurement in m3/h; it is measurement in t/h now"
            ),
        "{err}"
    );
    let err = with(&PARK.replacen("id = \"T2.TE\"", "id = \"T2.TT\"", 1)).unwrap_err();
    assert!(err.contains("point T2.TE is not in the park"), "{err}");
    let err = with(&PARK.replacen(
        "id = \"R1.PT\"\nkind = \"pressure\"",
        "id = \"R1.PT\"\nkind = \"level\"",
        1,
    ))
    .unwrap_err();
    assert!(
        err.contains("point R1.PT was fitted as pressure in kPa; it is level in kPa now"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("models.json"),
        "{\"format\": \"something else\"}",
    )
    .unwrap();
    let err = with(PARK).unwrap_err();
    assert!(err.contains("is not a models file"), "{err}");
    std::fs::remove_file(dir.path().join("models.json")).unwrap();
    let err = with(PARK).unwrap_err();
    assert!(
        err.contains("models.json") && err.contains("park: models"),
        "{err}"
    );

    // A period with nothing in it fits nothing and says why.
    let empty = Range {
        from_ms: Some(t0 - 7_200_000),
        to_ms: Some(t0 - 3_600_000),
        ..Range::default()
    };
    let none = learn::learn(
        &[&root],
        &empty,
        &config.site,
        &options,
        "learn.toml",
        false,
    )
    .unwrap();
    assert!(none.points.is_empty() && none.units.is_empty());
    assert_eq!(none.skipped.len(), 6, "{:?}", none.skipped);
    // Bad options are refused by name.
    let bad = Options {
        confidence: 1.0,
        ..Options::default()
    };
    let err = learn::learn(&[&root], &range, &config.site, &bad, "learn.toml", false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--confidence"), "{err}");
}
