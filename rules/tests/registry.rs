//! The gateway registry in the site model: what `check-config` accepts and
//! refuses, each refusal naming its line and field.

use hazardwatch_rules::site::NO_GATEWAY;
use hazardwatch_rules::{SiteModel, Source};

/// A syntactically valid argon2id PHC string (the checks parse it; they do
/// not verify a password).
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

/// Two enterprises: E (unit T1 with two points, T2 with one), then
/// `e_gateways`; F (unit U1 with one point), then `f_gateways`.
fn park(e_gateways: &str, f_gateways: &str) -> Result<SiteModel, String> {
    parse(park_text(e_gateways, f_gateways))
}

fn parse(text: String) -> Result<SiteModel, String> {
    let src = Source {
        path: "park.toml".into(),
        text,
    };
    SiteModel::parse(&src).map_err(|e| e.to_string())
}

fn park_text(e_gateways: &str, f_gateways: &str) -> String {
    format!(
        r#"
park = {{ id = "P" }}
[[enterprise]]
id = "E"
[[enterprise.hazard_source]]
id = "HS"
grade = 2
[[enterprise.hazard_source.unit]]
id = "T1"
[[enterprise.hazard_source.unit.point]]
id = "T1.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
[[enterprise.hazard_source.unit.point]]
id = "T1.TE"
kind = "temperature"
eng_unit = "degC"
range = [0.0, 100.0]
[[enterprise.hazard_source.unit]]
id = "T2"
[[enterprise.hazard_source.unit.point]]
id = "T2.LT"
kind = "level"
eng_unit = "m"
range = [0.0, 20.0]
{e_gateways}
[[enterprise]]
id = "F"
[[enterprise.hazard_source]]
id = "HSF"
grade = 3
[[enterprise.hazard_source.unit]]
id = "U1"
[[enterprise.hazard_source.unit.point]]
id = "U1.PT"
kind = "pressure"
eng_unit = "kPa"
range = [0.0, 1000.0]
{f_gateways}
"#
    )
}

/// One `[[enterprise.gateway]]` entry with `body` after its id.
fn gateway(id: &str, body: &str) -> String {
    format!("[[enterprise.gateway]]\nid = \"{id}\"\n{body}\n")
}

/// F's one gateway, valid.
fn f_gateway() -> String {
    gateway(
        "F-GW1",
        &format!("units = [\"U1\"]\ninterval_s = 5\npassword_hash = \"{HASH}\""),
    )
}

#[test]
fn no_gateways_is_the_open_registry() {
    let m = park("", "").unwrap();
    assert!(m.registry.is_open());
    assert_eq!(m.registry.owner(0), NO_GATEWAY);
}

#[test]
fn a_full_registry_maps_every_point_to_its_gateway() {
    let e = gateway(
        "E-GW1",
        &format!("units = [\"T1\"]\ninterval_s = 1\npassword_hash = \"{HASH}\""),
    ) + &gateway(
        "E-GW2",
        "points = [\"T2.LT\"]\ninterval_s = 10\noffline_after_s = 60\ncert_cn = \"e-gw2.example\"",
    );
    let m = park(&e, &f_gateway()).unwrap();
    let r = &m.registry;
    assert!(!r.is_open());
    let owner = |point: &str| {
        let g = r.owner(m.catalog.lookup(point).unwrap());
        r.gateway(g).id.as_str()
    };
    assert_eq!(owner("T1.LT"), "E-GW1");
    assert_eq!(owner("T1.TE"), "E-GW1");
    assert_eq!(owner("T2.LT"), "E-GW2");
    assert_eq!(owner("U1.PT"), "F-GW1");
    let gw1 = r.gateway(r.lookup("E-GW1").unwrap());
    assert_eq!(gw1.enterprise, "E");
    assert_eq!(gw1.interval_ms, 1000);
    assert_eq!(
        gw1.offline_after_ms, 10_000,
        "three intervals, at least 10 s"
    );
    let gw2 = r.gateway(r.by_cert_cn("e-gw2.example").unwrap());
    assert_eq!(gw2.id, "E-GW2");
    assert_eq!(gw2.offline_after_ms, 60_000);
    assert_eq!(gw2.credential.password_hash, None);
    assert_eq!(
        r.gateway(r.lookup("F-GW1").unwrap()).offline_after_ms,
        15_000
    );
}

#[test]
fn registry_mistakes_are_refused_with_their_place() {
    let ok_e = |body: &str| {
        gateway(
            "E-GW1",
            &format!("units = [\"T1\", \"T2\"]\ninterval_s = 1\n{body}"),
        )
    };
    let hash = format!("password_hash = \"{HASH}\"");
    let cases: Vec<(String, String, &str)> = vec![
        (
            gateway(
                "E-GW1",
                &format!("units = [\"T9\"]\ninterval_s = 1\n{hash}"),
            ),
            f_gateway(),
            "gateway E-GW1: units: unknown unit `T9`",
        ),
        (
            gateway(
                "E-GW1",
                &format!("units = [\"T1\", \"T2\", \"U1\"]\ninterval_s = 1\n{hash}"),
            ),
            f_gateway(),
            "unit `U1` belongs to enterprise F, not E",
        ),
        (
            gateway(
                "E-GW1",
                &format!("units = [\"T1\", \"T2\"]\npoints = [\"NOPE\"]\ninterval_s = 1\n{hash}"),
            ),
            f_gateway(),
            "unknown point `NOPE`",
        ),
        (
            ok_e(&hash)
                + &gateway(
                    "E-GW2",
                    &format!("points = [\"T2.LT\"]\ninterval_s = 1\n{hash}"),
                ),
            f_gateway(),
            "point `T2.LT` is already reported by gateway E-GW1",
        ),
        (
            gateway(
                "E-GW1",
                &format!("units = [\"T1\"]\ninterval_s = 1\n{hash}"),
            ),
            f_gateway(),
            "1 point(s) are reported by no gateway: T2.LT",
        ),
        (ok_e(&hash), String::new(), "reported by no gateway: U1.PT"),
        (
            gateway(
                "E-GW1",
                &format!("units = [\"T1\", \"T2\"]\ninterval_s = 0\n{hash}"),
            ),
            f_gateway(),
            "gateway E-GW1: interval_s: 0 must be more than 0",
        ),
        (
            ok_e(&format!("{hash}\noffline_after_s = 0.5")),
            f_gateway(),
            "offline_after_s: 0.5 must be at least interval_s",
        ),
        (
            ok_e("password_hash = \"hunter2\""),
            f_gateway(),
            "gateway E-GW1: password_hash: not a PHC password hash",
        ),
        (
            ok_e(
                "password_hash = \"$pbkdf2-sha256$i=1000$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG\"",
            ),
            f_gateway(),
            "is not argon2id",
        ),
        (ok_e(""), f_gateway(), "a gateway needs a credential"),
        (
            ok_e("cert_cn = \"same\""),
            gateway(
                "F-GW1",
                "units = [\"U1\"]\ninterval_s = 5\ncert_cn = \"same\"",
            ),
            "`same` is already the certificate of gateway E-GW1",
        ),
        (
            ok_e(&hash),
            gateway(
                "E-GW1",
                &format!("units = [\"U1\"]\ninterval_s = 5\n{hash}"),
            ),
            "duplicate gateway id `E-GW1`",
        ),
        (
            gateway(
                "E/GW1",
                &format!("units = [\"T1\", \"T2\"]\ninterval_s = 1\n{hash}"),
            ),
            f_gateway(),
            "gateway id: `E/GW1` must be 1-64 characters",
        ),
    ];
    for (e, f, want) in cases {
        let err = park(&e, &f).unwrap_err();
        assert!(err.contains(want), "want `{want}` in:\n{err}");
        assert!(err.contains("park.toml:"), "{err}");
    }
}

#[test]
fn a_reload_keeps_each_point_with_its_gateway() {
    let e = gateway(
        "E-GW1",
        &format!("units = [\"T1\", \"T2\"]\ninterval_s = 1\npassword_hash = \"{HASH}\""),
    );
    let running = park(&e, &f_gateway()).unwrap();
    // The reloaded file has a new first point: every index shifts until
    // the model is rebased onto the running catalog.
    let text = park_text(&e, &f_gateway()).replacen(
        "id = \"T1\"\n",
        "id = \"T1\"\n[[enterprise.hazard_source.unit.point]]\nid = \"T1.PT\"\nkind = \"pressure\"\neng_unit = \"kPa\"\nrange = [0.0, 10.0]\n",
        1,
    );
    let mut reloaded = parse(text).unwrap();
    assert_eq!(reloaded.catalog.lookup("T1.PT"), Some(0));
    let (added, removed) = reloaded.rebase(&running.catalog);
    assert_eq!((added.len(), removed.len()), (1, 0));
    let new = reloaded.catalog.lookup("T1.PT").unwrap();
    assert_eq!(
        reloaded.registry.gateway(reloaded.registry.owner(new)).id,
        "E-GW1"
    );
    for (p, meta) in running.catalog.iter() {
        let want = running
            .registry
            .gateway(running.registry.owner(p))
            .id
            .clone();
        let got = reloaded
            .registry
            .gateway(reloaded.registry.owner(p))
            .id
            .clone();
        assert_eq!(got, want, "{}", meta.id);
    }
}
