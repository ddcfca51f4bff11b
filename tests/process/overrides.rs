//! Command-line and environment overrides are checked like the file: an
//! override cannot open what the configuration's checks refuse (issue 15,
//! defect 2: `HAZARDWATCH_GRPC=0.0.0.0:50051` with no tokens used to serve
//! plaintext with every caller an admin).

// Test helpers panic on a broken fixture; that is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use hazardwatch_tests::TEST_PARK;

/// Runs `hazardwatch run` on the test park with `env` set and `args`
/// added; returns its exit success and stderr.
fn run(env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("park.toml");
    std::fs::write(&config, TEST_PARK).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hazardwatch"))
        .args(["run", "--no-metrics", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_override_off_loopback_is_refused_as_the_file_would_be() {
    for (env, args, want) in [
        (
            vec![("HAZARDWATCH_GRPC", "0.0.0.0:0")],
            vec![],
            "grpc.listen 0.0.0.0:0 is not loopback",
        ),
        (
            vec![],
            vec!["--grpc", "0.0.0.0:0"],
            "grpc.listen 0.0.0.0:0 is not loopback",
        ),
        (
            vec![("HAZARDWATCH_MQTT", "0.0.0.0:0")],
            vec![],
            "mqtt.listen 0.0.0.0:0 is not loopback",
        ),
    ] {
        let (ok, stderr) = run(&env, &args);
        assert!(!ok, "{env:?} {args:?} started");
        assert!(stderr.contains(want), "{env:?} {args:?}: {stderr}");
        assert!(stderr.contains("overrides"), "{stderr}");
    }
}
