//! The trusted edge on the embedded broker, with real rumqttc clients:
//! only registered gateways connect, each only on its own topics; nobody
//! reads telemetry or takes the service's session; a revoked gateway is
//! disconnected.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hazardwatch::config::Config;
use hazardwatch::reload::reload_once;
use hazardwatch_ingest::auth::hash_password;
use hazardwatch_tests::{
    Identity, Mosquitto, MosquittoSecurity, Pki, Probe, TEST_PARK, TestService, now_ms,
};
use rumqttc::SubscribeReasonCode;

mod sparkplug;

const GW1_PASSWORD: &str = "gw1-password-0123456789";
const GW2_PASSWORD: &str = "gw2-password-0123456789";
const E02_PASSWORD: &str = "e02-password-0123456789";

/// [`TEST_PARK`] with a registry: E01-GW1 reports T101, E01-GW2 the gas
/// unit, E02-GW1 all of E02. `drop_gw2` leaves E01-GW2 out (its points go
/// to E01-GW1): a revocation.
fn registered_park(drop_gw2: bool) -> String {
    // Hashed once: a new salt would be a changed credential on reload.
    static HASHES: OnceLock<Vec<(&str, String)>> = OnceLock::new();
    let hashes = HASHES.get_or_init(|| {
        [GW1_PASSWORD, GW2_PASSWORD, E02_PASSWORD]
            .into_iter()
            .map(|p| (p, hash_password(p).unwrap()))
            .collect()
    });
    let gw = |id: &str, units: &str, password: &str| {
        let hash = &hashes.iter().find(|(p, _)| *p == password).unwrap().1;
        format!(
            "[[enterprise.gateway]]\nid = \"{id}\"\nunits = [{units}]\ninterval_s = 1\npassword_hash = \"{hash}\"\n"
        )
    };
    let e01 = if drop_gw2 {
        gw("E01-GW1", "\"T101\", \"E01-GAS\"", GW1_PASSWORD)
    } else {
        gw("E01-GW1", "\"T101\"", GW1_PASSWORD) + &gw("E01-GW2", "\"E01-GAS\"", GW2_PASSWORD)
    };
    let text = TEST_PARK.replacen(
        "\n[[enterprise]]\nid = \"E02\"",
        &format!("\n{e01}\n[[enterprise]]\nid = \"E02\""),
        1,
    );
    assert_ne!(text, TEST_PARK, "the fixture's E02 header moved");
    text + "\n" + &gw("E02-GW1", "\"T201\"", E02_PASSWORD)
}

/// E01-GW1, connected with its password and its last will.
async fn gw1_with_will(host: &str, port: u16) -> Probe {
    Probe::connect(
        host,
        port,
        Identity {
            will: Some("hw/v1/E01/E01-GW1/status"),
            ..login("E01-GW1", GW1_PASSWORD)
        },
    )
    .await
    .unwrap()
}

fn login<'a>(client_id: &'a str, password: &'a str) -> Identity<'a> {
    Identity {
        client_id,
        login: Some((client_id, password)),
        ..Identity::default()
    }
}

/// A JSON batch of one reading, as gateway `gateway`.
fn reading(gateway: &str, point: &str, value: f64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"gateway": gateway, "readings": [
        {"point": point, "ts": now_ms(), "value": value},
    ]}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_registered_gateways_with_their_credential_connect() {
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &registered_park(false))
        .await
        .unwrap();
    let (host, port) = svc.broker();
    let refused = [
        (
            "anonymous",
            Identity {
                client_id: "E01-GW1",
                ..Identity::default()
            },
        ),
        ("wrong password", login("E01-GW1", "not-the-password")),
        ("unknown gateway", login("E09-GW1", GW1_PASSWORD)),
        (
            "another gateway's client id",
            Identity {
                client_id: "E01-GW2",
                login: Some(("E01-GW1", GW1_PASSWORD)),
                ..Identity::default()
            },
        ),
        (
            "a last will on another gateway's status",
            Identity {
                will: Some("hw/v1/E01/E01-GW2/status"),
                ..login("E01-GW1", GW1_PASSWORD)
            },
        ),
    ];
    let n = refused.len() as u64;
    for (what, id) in refused {
        let r = Probe::connect(&host, port, id).await;
        assert!(r.is_err(), "{what}: connected");
    }
    let denied = svc.running.broker().unwrap().denied();
    assert_eq!(denied.connect, n, "{denied:?}");
    // The right credential, its own topic: the reading is ingested.
    let mut gw1 = gw1_with_will(&host, port).await;
    gw1.publish(
        "hw/v1/E01/E01-GW1/telemetry",
        reading("E01-GW1", "T101.LT", 10.0),
    )
    .await
    .unwrap();
    svc.wait_for_readings(1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_may_neither_publish_as_another_nor_read_telemetry_nor_take_the_service_session()
{
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &registered_park(false))
        .await
        .unwrap();
    let (host, port) = svc.broker();
    let broker = svc.running.broker().unwrap();
    // Another gateway's topic, another enterprise's: refused, disconnected.
    for topic in [
        "hw/v1/E01/E01-GW2/telemetry",
        "hw/v1/E02/E02-GW1/telemetry",
        "hw/v1/E01/E01-GW2/status",
    ] {
        let mut gw1 = Probe::connect(&host, port, login("E01-GW1", GW1_PASSWORD))
            .await
            .unwrap();
        let r = gw1
            .publish(topic, reading("E01-GW1", "E01-GT01", 50.0))
            .await;
        assert!(r.is_err(), "{topic}: {r:?}");
    }
    assert_eq!(broker.denied().publish, 3);
    // A subscription to everything, or to telemetry: refused; and nothing
    // arrives when the other gateways publish.
    let mut nosy = Probe::connect(&host, port, login("E01-GW1", GW1_PASSWORD))
        .await
        .unwrap();
    for filter in ["#", "hw/v1/+/+/telemetry", "hw/v1/E01/E01-GW2/#"] {
        let codes = nosy.subscribe(filter).await.unwrap();
        assert_eq!(codes, [SubscribeReasonCode::Failure], "{filter}");
    }
    assert_eq!(broker.denied().subscribe, 3);
    let mut gw2 = Probe::connect(&host, port, login("E01-GW2", GW2_PASSWORD))
        .await
        .unwrap();
    gw2.publish(
        "hw/v1/E01/E01-GW2/telemetry",
        reading("E01-GW2", "E01-GT01", 1.0),
    )
    .await
    .unwrap();
    svc.wait_for_readings(1).await.unwrap();
    match nosy.next(Duration::from_millis(500)).await {
        Ok(None) => {}
        other => panic!("the nosy gateway got {other:?}"),
    }
    // The service's client id, with no password or a guessed one:
    // refused, and the service keeps its session (readings still flow).
    for id in [
        Identity {
            client_id: "hazardwatch",
            ..Identity::default()
        },
        login("hazardwatch", "guess"),
        Identity {
            client_id: "hazardwatch",
            login: Some(("E01-GW1", GW1_PASSWORD)),
            ..Identity::default()
        },
    ] {
        assert!(Probe::connect(&host, port, id).await.is_err());
    }
    gw2.publish(
        "hw/v1/E01/E01-GW2/telemetry",
        reading("E01-GW2", "E01-GT01", 2.0),
    )
    .await
    .unwrap();
    svc.wait_for_readings(2).await.unwrap();
    assert_eq!(svc.running.counters.readings_in.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_gateway_is_disconnected_and_refused_after_a_reload() {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("park.toml");
    std::fs::write(&path, registered_park(false)).unwrap();
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &registered_park(false))
        .await
        .unwrap();
    let (host, port) = svc.broker();
    let mut gw2 = Probe::connect(&host, port, login("E01-GW2", GW2_PASSWORD))
        .await
        .unwrap();
    let mut gw1 = Probe::connect(&host, port, login("E01-GW1", GW1_PASSWORD))
        .await
        .unwrap();
    let file_settings = Config::load(&path).unwrap().settings;
    std::fs::write(&path, registered_park(true)).unwrap();
    reload_once(&path, &file_settings, &svc.running).await;
    // Disconnected at once...
    let mut gone = false;
    for _ in 0..50 {
        if gw2.next(Duration::from_millis(100)).await.is_err() {
            gone = true;
            break;
        }
    }
    assert!(gone, "the revoked gateway is still connected");
    // ... and refused from now on; the unchanged gateway stays connected.
    assert!(
        Probe::connect(&host, port, login("E01-GW2", GW2_PASSWORD))
            .await
            .is_err()
    );
    gw1.publish(
        "hw/v1/E01/E01-GW1/telemetry",
        reading("E01-GW1", "E01-GT01", 3.0),
    )
    .await
    .unwrap();
    svc.wait_for_readings(1).await.unwrap();
    assert_eq!(svc.running.broker().unwrap().denied().connect, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_a_gateway_by_its_certificate_and_refuses_expired_and_unknown_ones() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca_file().unwrap();
    let (server_cert, server_key) = pki
        .issue(
            "broker",
            "broker",
            &["127.0.0.1", "localhost"],
            &pki.ca,
            (2020, 2100),
        )
        .unwrap();
    // E01-GW2 authenticates by certificate alone, E01-GW1 by certificate
    // and password.
    let text = registered_park(false)
        .replacen(
            "id = \"E01-GW2\"\n",
            "id = \"E01-GW2\"\ncert_cn = \"e01-gw2.park.example\"\n",
            1,
        )
        .replacen(
            "id = \"E01-GW1\"\n",
            "id = \"E01-GW1\"\ncert_cn = \"e01-gw1.park.example\"\n",
            1,
        );
    // E01-GW2 has no password in this park.
    let text = {
        let at = text.find("id = \"E01-GW2\"").unwrap();
        let line = text[at..].find("password_hash").unwrap() + at;
        let end = text[line..].find('\n').unwrap() + line + 1;
        format!("{}{}", &text[..line], &text[end..])
    };
    let text = text.replacen(
        "[mqtt]\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[mqtt]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
            server_cert.display(),
            server_key.display(),
            ca.display()
        ),
        1,
    );
    assert!(text.contains("client_ca"));
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let (host, port) = svc.broker();
    let client_tls = |identity: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        hazardwatch_ingest::tls::client_config(
            &ca,
            identity.map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .unwrap()
    };
    let gw2 = pki
        .issue("gw2", "e01-gw2.park.example", &[], &pki.ca, (2020, 2100))
        .unwrap();
    let gw1 = pki
        .issue("gw1", "e01-gw1.park.example", &[], &pki.ca, (2020, 2100))
        .unwrap();
    let expired = pki
        .issue(
            "expired",
            "e01-gw2.park.example",
            &[],
            &pki.ca,
            (2020, 2021),
        )
        .unwrap();
    let foreign = pki
        .issue(
            "foreign",
            "e01-gw2.park.example",
            &[],
            &pki.stranger,
            (2020, 2100),
        )
        .unwrap();
    let as_gw2 = |tls| Identity {
        client_id: "E01-GW2",
        tls: Some(tls),
        ..Identity::default()
    };
    // The right certificate alone is enough for E01-GW2.
    let mut ok = Probe::connect(&host, port, as_gw2(client_tls(Some(&gw2))))
        .await
        .unwrap();
    ok.publish(
        "hw/v1/E01/E01-GW2/telemetry",
        reading("E01-GW2", "E01-GT01", 1.0),
    )
    .await
    .unwrap();
    svc.wait_for_readings(1).await.unwrap();
    // E01-GW1 needs its certificate and its password.
    let gw1_tls = client_tls(Some(&gw1));
    assert!(
        Probe::connect(
            &host,
            port,
            Identity {
                client_id: "E01-GW1",
                tls: Some(gw1_tls.clone()),
                ..Identity::default()
            }
        )
        .await
        .is_err(),
        "certificate without the password"
    );
    Probe::connect(
        &host,
        port,
        Identity {
            tls: Some(gw1_tls),
            ..login("E01-GW1", GW1_PASSWORD)
        },
    )
    .await
    .unwrap();
    // Refused: an expired certificate, one from an unknown CA, none at
    // all, another gateway's, and plaintext.
    for (what, tls) in [
        ("expired", client_tls(Some(&expired))),
        ("unknown CA", client_tls(Some(&foreign))),
        ("no certificate", client_tls(None)),
    ] {
        let r = Probe::connect(&host, port, as_gw2(tls)).await;
        assert!(r.is_err(), "{what}: connected");
    }
    assert!(
        Probe::connect(
            &host,
            port,
            Identity {
                client_id: "E01-GW1",
                tls: Some(client_tls(Some(&gw2))),
                ..Identity::default()
            }
        )
        .await
        .is_err(),
        "another gateway's certificate"
    );
    assert!(
        Probe::connect(&host, port, login("E01-GW1", GW1_PASSWORD))
            .await
            .is_err(),
        "plaintext"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mosquitto_the_generated_acl_binds_gateways_and_the_service_connects_over_tls() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca_file().unwrap();
    let (cert, key) = pki
        .issue(
            "mosquitto",
            "mosquitto",
            &["127.0.0.1"],
            &pki.ca,
            (2020, 2100),
        )
        .unwrap();
    let park = registered_park(false);
    let site = Config::from_source(&hazardwatch_rules::Source {
        path: "park.toml".into(),
        text: park.clone(),
    })
    .unwrap()
    .site;
    let service_password = "service-password-0123456789";
    let security = MosquittoSecurity {
        acl: hazardwatch_ingest::auth::mosquitto_acl(&site.registry, "hw/v1", "hazardwatch"),
        users: vec![
            ("hazardwatch".into(), service_password.into()),
            ("E01-GW1".into(), GW1_PASSWORD.into()),
            ("E01-GW2".into(), GW2_PASSWORD.into()),
        ],
        tls: Some((ca.clone(), cert, key)),
    };
    let Some(broker) = Mosquitto::start_secured(Some(&security)).unwrap() else {
        return;
    };
    let password_file = pki.dir.path().join("service.pass");
    std::fs::write(&password_file, format!("{service_password}\n")).unwrap();
    let text = park.replacen(
        "[mqtt]\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[mqtt]\nlisten = \"127.0.0.1:0\"\nbroker = \"127.0.0.1:{}\"\nbroker_tls = {{ ca = \"{}\" }}\nusername = \"hazardwatch\"\npassword_file = \"{}\"",
            broker.port,
            ca.display(),
            password_file.display()
        ),
        1,
    );
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let port = broker.port;
    let tls = hazardwatch_ingest::tls::client_config(&ca, None).unwrap();
    let over_tls = |id: Identity<'static>| Identity {
        tls: Some(tls.clone()),
        ..id
    };
    // Refused by mosquitto: anonymous, a wrong password, plaintext.
    assert!(
        Probe::connect(
            "127.0.0.1",
            port,
            over_tls(Identity {
                client_id: "x",
                ..Identity::default()
            })
        )
        .await
        .is_err()
    );
    assert!(
        Probe::connect(
            "127.0.0.1",
            port,
            over_tls(login("E01-GW1", "wrong-password"))
        )
        .await
        .is_err()
    );
    assert!(
        Probe::connect("127.0.0.1", port, login("E01-GW1", GW1_PASSWORD))
            .await
            .is_err()
    );
    // A nosy gateway subscribed to everything gets nothing.
    let mut nosy = Probe::connect("127.0.0.1", port, over_tls(login("E01-GW2", GW2_PASSWORD)))
        .await
        .unwrap();
    let _ = nosy.subscribe("#").await.unwrap();
    // Another gateway's topic: refused by the ACL (mosquitto drops the
    // message and the connection). Its own topic: ingested.
    let mut gw1 = Probe::connect("127.0.0.1", port, over_tls(login("E01-GW1", GW1_PASSWORD)))
        .await
        .unwrap();
    let _ = gw1
        .publish(
            "hw/v1/E01/E01-GW2/telemetry",
            reading("E01-GW2", "E01-GT01", 50.0),
        )
        .await;
    let mut gw1 = Probe::connect("127.0.0.1", port, over_tls(login("E01-GW1", GW1_PASSWORD)))
        .await
        .unwrap();
    gw1.publish(
        "hw/v1/E01/E01-GW1/telemetry",
        reading("E01-GW1", "T101.LT", 10.0),
    )
    .await
    .unwrap();
    svc.wait_for_readings(1).await.unwrap();
    // And a point it does not report, on its own topic: quarantined.
    gw1.publish(
        "hw/v1/E01/E01-GW1/telemetry",
        reading("E01-GW1", "E01-GT01", 51.0),
    )
    .await
    .unwrap();
    gw1.publish(
        "hw/v1/E01/E01-GW1/telemetry",
        reading("E01-GW1", "T101.LT", 11.0),
    )
    .await
    .unwrap();
    svc.wait_for_readings(2).await.unwrap();
    match nosy.next(Duration::from_millis(300)).await {
        Ok(None) => {}
        other => panic!("the nosy gateway got {other:?}"),
    }
    // A gateway cannot borrow the service's client id: its user name is
    // its client id. The service's session stays; readings still flow.
    drop(
        Probe::connect(
            "127.0.0.1",
            port,
            over_tls(Identity {
                client_id: "hazardwatch",
                login: Some(("E01-GW2", GW2_PASSWORD)),
                ..Identity::default()
            }),
        )
        .await,
    );
    gw1.publish(
        "hw/v1/E01/E01-GW1/telemetry",
        reading("E01-GW1", "T101.LT", 12.0),
    )
    .await
    .unwrap();
    svc.wait_for_readings(3).await.unwrap();
    assert_eq!(svc.running.counters.readings_in.load(Ordering::Relaxed), 3);
    let quarantine = std::fs::read_to_string(&svc.running.quarantine_file).unwrap();
    assert!(quarantine.contains("wrong_gateway"), "{quarantine}");
    assert_eq!(quarantine.lines().count(), 1, "{quarantine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_reporting_at_half_its_interval_shows_half_completeness() {
    // Every gateway registered to report each point every 0.25 s.
    let text = registered_park(false).replace("interval_s = 1", "interval_s = 0.25");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let (host, port) = svc.broker();
    let mut gw1 = Probe::connect(&host, port, login("E01-GW1", GW1_PASSWORD))
        .await
        .unwrap();
    // E01-GW1 sends both its points every 0.5 s for 4 s: half of what it
    // should.
    let until = std::time::Instant::now() + Duration::from_secs(4);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while std::time::Instant::now() < until {
        tick.tick().await;
        let ts = now_ms();
        let payload = serde_json::to_vec(&serde_json::json!({"gateway": "E01-GW1", "readings": [
            {"point": "T101.LT", "ts": ts, "value": 10.0},
            {"point": "T101.PT", "ts": ts, "value": 300.0},
        ]}))
        .unwrap();
        gw1.publish("hw/v1/E01/E01-GW1/telemetry", payload)
            .await
            .unwrap();
    }
    let mut site = hazardwatch_proto::pb::site_service_client::SiteServiceClient::connect(format!(
        "http://{}",
        svc.running.grpc_addr
    ))
    .await
    .unwrap();
    let got = site
        .gateways(hazardwatch_proto::pb::GatewaysRequest::default())
        .await
        .unwrap()
        .into_inner();
    let gw = |id: &str| got.gateways.iter().find(|g| g.gateway == id).unwrap();
    let gw1 = gw("E01-GW1");
    assert!(
        (0.35..=0.6).contains(&gw1.completeness),
        "about half: {gw1:?}"
    );
    assert!(gw1.online && gw1.online_ratio > 0.7, "{gw1:?}");
    // The others never reported.
    for id in ["E01-GW2", "E02-GW1"] {
        let g = gw(id);
        assert_eq!(
            (g.online, g.received, g.completeness),
            (false, 0, 0.0),
            "{g:?}"
        );
    }
    // Rolled up: E01 is its two gateways, the total all three.
    let e01 = got
        .enterprises
        .iter()
        .find(|e| e.enterprise == "E01")
        .unwrap();
    assert_eq!((e01.gateways, e01.online), (2, 1));
    let total = got.total.unwrap();
    assert_eq!((total.gateways, total.online), (3, 1));
    assert!(total.completeness < gw1.completeness);
    // Scoped like everything else: an enterprise filter narrows it.
    let only_e02 = site
        .gateways(hazardwatch_proto::pb::GatewaysRequest {
            enterprises: vec!["E02".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only_e02.gateways.len(), 1);
    assert_eq!(only_e02.gateways[0].gateway, "E02-GW1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_never_heard_from_or_gone_raises_its_offline_alarm() {
    // Offline after 1 s of silence, for a short test.
    let text =
        registered_park(false).replace("interval_s = 1", "interval_s = 1\noffline_after_s = 1");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let (_alarms, mut stream) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw1 = gw1_with_will(&host, port).await;
    // E01-GW1 reports for 2 s; the other two are never heard from.
    for _ in 0..8 {
        gw1.publish(
            "hw/v1/E01/E01-GW1/telemetry",
            reading("E01-GW1", "T101.LT", 10.0),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut offline = std::collections::BTreeMap::new();
    // (On a loaded machine E01-GW1 itself may miss a beat first.)
    while !(offline.contains_key("E02-GW1/OFFLINE") && offline.contains_key("E01-GW2/OFFLINE")) {
        let e = hazardwatch_tests::next_event(&mut stream).await.unwrap();
        if e.kind == hazardwatch_proto::pb::AlarmKind::Offline as i32 {
            offline.insert(e.alarm_id.clone(), e);
        }
    }
    let never = &offline["E02-GW1/OFFLINE"];
    assert_eq!(never.enterprise, "E02");
    assert!(never.value.is_nan(), "never heard from: {never:?}");
    assert!(
        never.message.contains("never heard from"),
        "{}",
        never.message
    );
    assert!(offline.contains_key("E01-GW2/OFFLINE"));
    // E01-GW1's link drops: its last will makes it offline at once.
    let cut = now_ms();
    drop(gw1);
    let gone = loop {
        let e = hazardwatch_tests::next_event(&mut stream).await.unwrap();
        if e.alarm_id == "E01-GW1/OFFLINE" {
            break e;
        }
    };
    assert_eq!(
        gone.transition,
        hazardwatch_proto::pb::Transition::Raised as i32
    );
    assert!(gone.event_time_ms >= cut - 1_000, "{gone:?}");
    assert_eq!(gone.priority, hazardwatch_proto::pb::Priority::High as i32);
}
