//! Replay equals live: the example park with its incidents goes through the
//! live service over MQTT; replaying the archive it wrote through the same
//! configuration gives the same alarms (points, kinds, times, values).

use std::collections::BTreeSet;

use hazardwatch::config::Config;
use hazardwatch::service;
use hazardwatch::sim::{DEMO_CREDENTIALS, SimOptions, Simulator, parse_credentials};
use hazardwatch_proto::pb;
use hazardwatch_storage::reader::Range;
use hazardwatch_tests::{Gateway, now_ms};

/// Seconds of the simulated park published.
const SECONDS: i64 = 100;

type Alarm = (String, bool, i64, u64);

/// What one run of the live service gave.
struct LiveRun {
    /// Holds the data directory.
    _data: tempfile::TempDir,
    archive: std::path::PathBuf,
    /// Condition changes the hub journaled.
    live: BTreeSet<Alarm>,
    /// Event time of the first and last reading published.
    t0: i64,
    last: i64,
    published: u64,
}

/// Publishes the last [`SECONDS`] of the simulated park with its
/// incidents to the live service of `config` over MQTT, each registered
/// gateway as itself, and shuts the service down.
async fn live_run(mut config: Config) -> LiveRun {
    let data = tempfile::tempdir().unwrap();
    let s = &mut config.settings;
    s.data_dir = data.path().to_owned();
    s.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    s.grpc.listen = "127.0.0.1:0".parse().unwrap();
    s.metrics.enabled = false;
    // The park's last 100 s are published in a few seconds: a lateness
    // that covers them lets the live rules judge every reading, as a
    // replay does. Several checkpoints, and small row groups, give the
    // range replay below something to prune.
    s.engine.lateness_ms = 200_000;
    s.archive.roll_secs = 1;
    s.archive.row_group_rows = 200;
    let model = config.site.clone();
    let running = service::start(config).await.unwrap();
    let (host, port) = running.mqtt_addr.rsplit_once(':').unwrap();
    let port: u16 = port.parse().unwrap();

    // The example park's registered gateways, each as itself.
    let credentials = parse_credentials(DEMO_CREDENTIALS).unwrap();
    let mut sim = Simulator::new(&model, &SimOptions::default());
    let mut gateways = Vec::new();
    for id in sim.gateways() {
        let password = credentials[id].as_str();
        gateways.push(
            Gateway::connect_as(host, port, id, Some(password), None)
                .await
                .unwrap(),
        );
    }
    let t0 = now_ms() - (SECONDS + 20) * 1000;
    let mut published = 0;
    for s in 0..SECONDS {
        for m in sim.messages(t0 + s * 1000) {
            published += m.readings as u64;
            gateways[m.gateway]
                .publish(&m.topic, m.payload)
                .await
                .unwrap();
        }
        // Spread over checkpoints.
        if s % 20 == 19 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
    }
    for gw in gateways {
        gw.close().await;
    }
    let stats = running.counters.clone();
    hazardwatch_tests::wait_until(std::time::Duration::from_secs(20), || {
        stats.readings_in.load(std::sync::atomic::Ordering::Relaxed) >= published
    })
    .await
    .unwrap();
    let hub = running.hub.clone();
    let archive = running.archive_dir.clone();
    running.shutdown().await.unwrap();

    let last = t0 + (SECONDS - 1) * 1000;
    let changes = [
        pb::Transition::Raised as i32,
        pb::Transition::Cleared as i32,
    ];
    let live: BTreeSet<Alarm> = hub
        .journal_after(0, 1_000_000)
        .unwrap()
        .into_iter()
        .filter(|e| changes.contains(&e.transition) && e.event_time_ms <= last)
        .map(|e| {
            (
                e.alarm_id,
                e.transition == pb::Transition::Raised as i32,
                e.event_time_ms,
                e.value.to_bits(),
            )
        })
        .collect();
    LiveRun {
        _data: data,
        archive,
        live,
        t0,
        last,
        published,
    }
}

/// Replays `run`'s archive through `config`: its condition changes up to
/// the last reading, and the readings judged.
fn replayed(run: &LiveRun, config: &Config) -> (BTreeSet<Alarm>, u64) {
    let model = &config.site;
    let replayed = hazardwatch::replay::replay(
        &run.archive,
        &Range::default(),
        model,
        None,
        &config.settings.engine,
        false,
    )
    .unwrap();
    let alarms = replayed
        .events
        .iter()
        .filter(|e| e.ts_ms <= run.last)
        .map(|e| {
            (
                hazardwatch::replay::alarm_id(&model.catalog, e),
                e.active,
                e.ts_ms,
                e.value.to_bits(),
            )
        })
        .collect();
    (alarms, replayed.readings)
}

/// Fails with the differences unless the two sets are equal.
fn assert_same(live: &BTreeSet<Alarm>, again: &BTreeSet<Alarm>) {
    let only_live: Vec<_> = live.difference(again).collect();
    let only_replay: Vec<_> = again.difference(live).collect();
    assert!(
        only_live.is_empty() && only_replay.is_empty(),
        "live only: {only_live:?}\nreplay only: {only_replay:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_archive_gives_the_alarms_the_live_service_raised() {
    let config = Config::example();
    let model = config.site.clone();
    let engine = config.settings.engine.clone();
    let run = live_run(config.clone()).await;
    let (archive, t0, published) = (run.archive.clone(), run.t0, run.published);
    assert!(
        run.live.len() >= 10,
        "the incidents raise alarms: {:?}",
        run.live
    );
    let (again, readings) = replayed(&run, &config);
    assert_eq!(readings, published);
    assert_same(&run.live, &again);

    // What-if: T101.LT without its H limit (the overfill still reaches
    // HH), on the same history. Only T101.LT/H changes: it is gone.
    let text = hazardwatch::config::EXAMPLE_CONFIG.replacen("h = 18.0\nhh = 19.0", "hh = 19.0", 1);
    assert_ne!(text, hazardwatch::config::EXAMPLE_CONFIG);
    let other = Config::from_source(&hazardwatch_rules::Source {
        path: "what-if.toml".into(),
        text,
    })
    .unwrap()
    .site;
    let both = hazardwatch::replay::replay(
        &archive,
        &Range::default(),
        &model,
        Some(&other),
        &engine,
        false,
    )
    .unwrap();
    let before = hazardwatch::replay::raises(&model.catalog, &both.events);
    let after = hazardwatch::replay::raises(&other.catalog, both.compared.as_ref().unwrap());
    assert!(
        before.get("T101.LT/H").is_some_and(|&n| n > 0),
        "{before:?}"
    );
    for (id, n) in &before {
        if id != "T101.LT/H" {
            assert_eq!(after.get(id), Some(n), "{id}");
        }
    }
    assert_eq!(after.get("T101.LT/H"), None);
    let table = hazardwatch::replay::compare_table(
        &model.catalog,
        &both.events,
        &other.catalog,
        both.compared.as_ref().unwrap(),
        both.span_ms,
    );
    assert!(
        table.contains("T101.LT/H") && table.contains("EEMUA 191 rate"),
        "{table}"
    );

    // A range replay reads only what it needs: one enterprise's partition,
    // the row groups of the points asked for, in the time asked for.
    let range = Range {
        from_ms: Some(t0 + 30_000),
        to_ms: Some(t0 + 60_000),
        enterprises: vec!["E01".into()],
        points: Some("T101.*".into()),
    };
    let part = hazardwatch::replay::replay(&archive, &range, &model, None, &engine, false).unwrap();
    let plan = &part.plan;
    assert!(plan.partitions_skipped >= 2, "{plan:?}");
    assert!(plan.parts.len() < plan.row_groups_total, "{plan:?}");
    let t101 = model
        .catalog
        .iter()
        .filter(|(_, m)| m.id.starts_with("T101."))
        .count() as u64;
    assert_eq!(part.readings, t101 * 30, "30 s of the T101 points");
    assert!(
        part.span_ms
            .is_some_and(|(a, b)| a >= t0 + 30_000 && b < t0 + 60_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_learned_models_replaying_gives_the_alarms_the_live_service_raised() {
    // Models of the example park learned from half an hour of simulated
    // normal operation on a one-second grid, so that the 100 s of the
    // incidents are a hundred cells of the learned rules; every modelled
    // point and unit given them.
    let dir = tempfile::tempdir().unwrap();
    let plain = Config::example();
    let learn_root = dir.path().join("normal");
    let from = now_ms() - 3 * 3_600_000;
    let normal = SimOptions {
        seed: 5,
        incidents: false,
        ..SimOptions::default()
    };
    hazardwatch::sim::write_archive(
        &plain.site,
        &normal,
        &learn_root,
        from,
        1800,
        &plain.settings.archive,
        false,
    )
    .unwrap();
    let options = hazardwatch::learn::Options {
        grid_s: 1,
        ..hazardwatch::learn::Options::default()
    };
    let range = Range {
        from_ms: Some(from),
        to_ms: Some(from + 1_800_000),
        ..Range::default()
    };
    let models = hazardwatch::learn::learn(
        &[learn_root.as_path()],
        &range,
        &plain.site,
        &options,
        "example-park.toml",
        false,
    )
    .unwrap();
    hazardwatch::learn::write(&dir.path().join("models.json"), &models).unwrap();
    let text = hazardwatch::evaluate::with_learned_rules(
        hazardwatch::config::EXAMPLE_CONFIG,
        "models.json",
    )
    .unwrap();
    let path = dir.path().join("park.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();

    let run = live_run(config.clone()).await;
    for kind in ["/DEV", "/MV"] {
        assert!(
            run.live.iter().any(|a| a.0.ends_with(kind) && a.1),
            "the incidents raise {kind} warnings: {:?}",
            run.live
        );
    }
    let (again, readings) = replayed(&run, &config);
    assert_eq!(readings, run.published);
    assert_same(&run.live, &again);
}
