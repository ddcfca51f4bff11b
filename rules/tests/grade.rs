//! GB 18218-2018 grading of hazard sources from their substances.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use hazardwatch_rules::{SiteModel, Source};

fn park(hazard_source: &str) -> Result<SiteModel, String> {
    let text = format!(
        r#"
park = {{ id = "P" }}
[[enterprise]]
id = "E"
[[enterprise.hazard_source]]
id = "HS"
{hazard_source}
"#
    );
    SiteModel::parse(&Source {
        path: "park.toml".into(),
        text,
    })
    .map_err(|e| e.to_string())
}

#[test]
fn the_grade_is_computed_from_the_substances() {
    // Benzene 400 t of 50 t critical (β 1), chlorine 10 t of 5 t (β 4),
    // 60 people nearby (α 1.5): R = 1.5 · (8 + 8) = 24, grade 3.
    let m = park(
        r#"
alpha = 1.5
substance = [
  { name = "benzene", quantity_t = 400.0, critical_t = 50.0 },
  { name = "chlorine", quantity_t = 10.0, critical_t = 5.0, beta = 4.0 },
]
"#,
    )
    .unwrap();
    let hs = &m.enterprises[0].hazard_sources[0];
    assert_eq!(hs.grade, 3);
    assert!((hs.r_value.unwrap() - 24.0).abs() < 1e-9);
    // A hand grade that agrees is fine; one that does not is refused.
    assert!(park("grade = 3\nalpha = 1.5\nsubstance = [{ name = \"b\", quantity_t = 800.0, critical_t = 50.0 }]").is_ok());
    let err =
        park("grade = 1\nsubstance = [{ name = \"b\", quantity_t = 800.0, critical_t = 50.0 }]")
            .unwrap_err();
    assert!(err.contains("park.toml:7:"), "{err}");
    assert!(err.contains("R = 16.0 is grade 3"), "{err}");
}

#[test]
fn bad_substances_and_missing_grades_are_refused_with_their_place() {
    let cases = [
        ("", "give `grade`"),
        ("alpha = 3.0\ngrade = 2", "from 0.5 to 2.0"),
        (
            "substance = [{ name = \"b\", quantity_t = 10.0, critical_t = 50.0 }]",
            "not a major hazard source",
        ),
        (
            "substance = [{ name = \"b\", quantity_t = 100.0, critical_t = 0.0 }]",
            "critical_t must be more than 0",
        ),
        (
            "substance = [{ name = \"b\", quantity_t = 100.0, critical_t = 5.0, beta = 50.0 }]",
            "beta must be from 1 to 20",
        ),
    ];
    for (text, want) in cases {
        let err = park(text).unwrap_err();
        assert!(err.contains(want), "{text}: {err}");
        assert!(err.contains("hazard source HS"), "{err}");
    }
}
