//! Where hazard sources sit on the park map, and their camera feeds.

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use hazardwatch_rules::{Position, SiteModel, Source};

fn park(first: &str, second: &str) -> Result<SiteModel, String> {
    let text = format!(
        r#"
park = {{ id = "P" }}
[[enterprise]]
id = "E"
[[enterprise.hazard_source]]
id = "HS1"
grade = 2
{first}
[[enterprise.hazard_source]]
id = "HS2"
grade = 3
{second}
"#
    );
    SiteModel::parse(&Source {
        path: "park.toml".into(),
        text,
    })
    .map_err(|e| e.to_string())
}

#[test]
fn positions_and_cameras_are_optional_and_kept() {
    let m = park(
        "position = { x = 120.5, y = 40 }\ncamera = \"rtsp://cam.example/hs1\"",
        "position = { x = 300, y = 210 }",
    )
    .unwrap();
    let hs = &m.enterprises[0].hazard_sources;
    assert_eq!(hs[0].position, Some(Position::Plan { x: 120.5, y: 40.0 }));
    assert_eq!(hs[0].camera.as_deref(), Some("rtsp://cam.example/hs1"));
    assert_eq!(hs[1].position, Some(Position::Plan { x: 300.0, y: 210.0 }));
    assert_eq!(hs[1].camera, None);
    let m = park("position = { lon = 118.79, lat = 32.06 }", "").unwrap();
    let hs = &m.enterprises[0].hazard_sources;
    assert_eq!(
        hs[0].position,
        Some(Position::Geo {
            lon: 118.79,
            lat: 32.06
        })
    );
    assert_eq!(hs[1].position, None);
}

#[test]
fn bad_positions_and_cameras_are_refused_with_their_place() {
    let cases = [
        ("position = { x = 1 }", "", "one pair only"),
        ("position = { x = 1, y = 2, lat = 3 }", "", "one pair only"),
        ("position = { lon = 200, lat = 10 }", "", "from -180 to 180"),
        ("position = { x = nan, y = 1 }", "", "finite numbers"),
        (
            "position = { x = 1, y = 2 }",
            "position = { lon = 118, lat = 32 }",
            "not some of each",
        ),
        ("camera = \"file:///etc/passwd\"", "", "rtsp://"),
        ("camera = \"https://cam example\"", "", "without spaces"),
        ("position = { x = 1, y = 2, z = 3 }", "", "unknown field"),
    ];
    for (first, second, want) in cases {
        let err = park(first, second).unwrap_err();
        assert!(err.contains(want), "{first} / {second}: {err}");
        assert!(err.contains("park.toml:"), "{err}");
    }
}

fn with_plan(plan: &str, dir: &std::path::Path) -> Result<SiteModel, String> {
    let text = format!(
        r#"
park = {{ id = "P", plan = {plan} }}
[[enterprise]]
id = "E"
[[enterprise.hazard_source]]
id = "HS1"
grade = 2
position = {{ x = 120, y = 40 }}
"#
    );
    SiteModel::parse(&Source {
        path: dir.join("park.toml"),
        text,
    })
    .map_err(|e| e.to_string())
}

#[test]
fn a_site_plan_is_an_image_beside_the_file_that_holds_the_positions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.svg"),
        "<svg xmlns='http://www.w3.org/2000/svg'/>",
    )
    .unwrap();
    let m = with_plan(
        r#"{ file = "plan.svg", width = 800, height = 500 }"#,
        dir.path(),
    )
    .unwrap();
    let plan = m.plan.unwrap();
    assert_eq!(plan.file, dir.path().join("plan.svg"));
    assert_eq!(plan.size, (800.0, 500.0));
    assert_eq!(plan.media_type(), "image/svg+xml");
    let cases = [
        (
            r#"{ file = "missing.svg", width = 800, height = 500 }"#,
            "missing.svg",
        ),
        (
            r#"{ file = "plan.exe", width = 800, height = 500 }"#,
            "must be an .svg",
        ),
        (
            r#"{ file = "plan.svg", width = 0, height = 500 }"#,
            "above 0",
        ),
        (
            r#"{ file = "plan.svg", width = 100, height = 500 }"#,
            "not on the 100 x 500 plan",
        ),
    ];
    for (plan, want) in cases {
        let err = with_plan(plan, dir.path()).unwrap_err();
        assert!(err.contains(want), "{plan}: {err}");
    }
}
