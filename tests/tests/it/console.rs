//! The console's HTTP side against the real service: its page and assets,
//! logging in, the JSON API over the gRPC services' own methods (same
//! scopes, same refusals), and the alarm feed as Server-Sent Events that
//! resumes after the last event id without missing or repeating one. (The
//! page itself is tested in a real browser: `tests/browser/`.)

use std::net::SocketAddr;
use std::time::Duration;

use hazardwatch_proto::pb;
use hazardwatch_tests::http::{self, Sse, post_json};
use hazardwatch_tests::{Gateway, TEST_PARK, TestService, now_ms};
use serde_json::{Value, json};

const CONSOLE: &str = "\n[console]\nlisten = \"127.0.0.1:0\"\n";

const TOKENS: &str = r#"
[[access.token]]
name = "E01 control room"
token = "e01-operator-0123456789"
role = "operator"
enterprises = ["E01"]

[[access.token]]
name = "E01 viewer"
token = "e01-viewer-0123456789"
role = "viewer"
enterprises = ["E01"]
"#;

async fn start(extra: &str) -> (TestService, SocketAddr) {
    let text = format!("{TEST_PARK}{extra}{CONSOLE}");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let addr = svc.running.console_addr.expect("the console is on");
    (svc, addr)
}

/// Raises T101.LT/H (E01) and T201.TE/H (E02).
async fn raise_both(svc: &TestService) {
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-console").await.unwrap();
    gw.publish_json(
        "E02",
        json!([{"point": "T201.TE", "ts": now_ms(), "value": 50.0}]),
    )
    .await
    .unwrap();
    gw.publish_json(
        "E01",
        json!([{"point": "T101.LT", "ts": now_ms(), "value": 18.5}]),
    )
    .await
    .unwrap();
}

/// Feed events until `id` shows in state `state`, collecting them all.
async fn until(sse: &mut Sse, seen: &mut Vec<Value>, id: &str, state: &str) {
    loop {
        let e = sse
            .next(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("the feed goes on");
        assert_eq!(e.event, "alarm", "{e:?}");
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(e.id, v["seq"].as_str().unwrap(), "the event id is its seq");
        let done = v["alarm_id"] == id && v["state"] == state;
        seen.push(v);
        if done {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let (_svc, addr) = start("").await;
    let page = http::request(addr, "GET", "/", &[], b"").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    assert!(
        page.header("content-security-policy")
            .contains("default-src 'self'"),
        "{:?}",
        page.headers
    );
    let html = String::from_utf8(page.body).unwrap();
    for asset in ["/assets/app.js", "/assets/style.css"] {
        assert!(html.contains(asset), "{asset}");
        let r = http::request(addr, "GET", asset, &[], b"").await.unwrap();
        assert_eq!(r.status, 200, "{asset}");
        // Revalidated by its ETag: unchanged, nothing sent again.
        let tag = r.header("etag").to_owned();
        let again = http::request(addr, "GET", asset, &[("if-none-match", &tag)], b"")
            .await
            .unwrap();
        assert_eq!(again.status, 304, "{asset}");
    }
    let missing = http::request(addr, "GET", "/assets/..%2FCargo.toml", &[], b"")
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    // The message texts, both languages, for the page to render events.
    let texts = http::request(addr, "GET", "/api/text", &[], b"")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        texts["templates"]["acknowledged"]["zh"],
        "{id} {tag} 已由 {actor} 确认"
    );
    // An open service (no tokens, loopback): everyone is its admin.
    let me = http::request(addr, "GET", "/api/whoami", &[], b"")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(me["open"], true);
    assert_eq!(me["role"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_must_be_json_from_the_page_and_well_formed() {
    let (_svc, addr) = start("").await;
    let list = "/api/v1/AlarmService/ListActive";
    let r = http::request(addr, "POST", list, &[("content-type", "text/plain")], b"{}")
        .await
        .unwrap();
    assert_eq!(r.status, 415);
    let r = post_json(
        addr,
        list,
        &[("origin", "https://elsewhere.example")],
        &json!({}),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json().unwrap()["code"], "PERMISSION_DENIED");
    let r = http::request(
        addr,
        "POST",
        list,
        &[("content-type", "application/json")],
        b"{\"filter\": 7}",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json().unwrap()["code"], "INVALID_ARGUMENT");
    let r = post_json(addr, "/api/v1/AlarmService/Nonsense", &[], &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    // Larger than any request needs: refused before it is read whole.
    let big = "x".repeat(200_000);
    let r = post_json(addr, list, &[], &json!({ "pad": big }))
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    // The method's own validation answers as gRPC would.
    let r = post_json(
        addr,
        "/api/v1/AlarmService/Shelve",
        &[],
        &json!({"alarm_id": "T101.LT/H", "comment": "", "duration_s": 60}),
    )
    .await
    .unwrap();
    assert!(matches!(r.status, 400 | 404), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_session_sees_only_its_enterprise_and_acts_as_over_grpc() {
    let (svc, addr) = start(TOKENS).await;
    // Nothing without logging in.
    let r = http::request(addr, "GET", "/api/whoami", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = post_json(addr, "/api/v1/SiteService/Describe", &[], &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let feed = Sse::open(addr, "/api/v1/AlarmService/Subscribe", &[])
        .await
        .unwrap();
    assert_eq!(feed.status, 401);
    let r = post_json(
        addr,
        "/api/login",
        &[],
        &json!({"token": "wrong-token-0123456789"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_empty());

    // Log in: a session cookie, HttpOnly and SameSite=Strict.
    let r = post_json(
        addr,
        "/api/login",
        &[],
        &json!({"token": "e01-operator-0123456789"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let set = r.header("set-cookie").to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains("e01-operator"),
        "the token never goes into the cookie"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let me = r.json().unwrap();
    assert_eq!(me["name"], "E01 control room");
    assert_eq!(me["enterprises"], json!(["E01"]));
    let auth = [("cookie", cookie.as_str())];

    // The site as E01 sees it: E01 only.
    let site = post_json(addr, "/api/v1/SiteService/Describe", &auth, &json!({}))
        .await
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&str> = site["enterprises"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["E01"]);
    let point = &site["enterprises"][0]["hazard_sources"][0]["units"][0]["points"][0];
    assert_eq!(point["id"], "T101.LT");
    assert_eq!(point["h"], 18.0);
    assert_eq!(point["ll"], Value::Null, "a limit it does not have");

    // The feed, opened before the alarms.
    let mut feed = Sse::open(addr, "/api/v1/AlarmService/Subscribe", &auth)
        .await
        .unwrap();
    assert_eq!(feed.status, 200);
    raise_both(&svc).await;
    let mut seen = Vec::new();
    until(
        &mut feed,
        &mut seen,
        "T101.LT/H",
        "ALARM_STATE_UNACKED_ACTIVE",
    )
    .await;

    // E02 exists nowhere for this session: not in the list, not in the
    // telemetry, not in a filter, not on the feed (checked at the end).
    let list = post_json(addr, "/api/v1/AlarmService/ListActive", &auth, &json!({}))
        .await
        .unwrap()
        .json()
        .unwrap();
    let listed: Vec<&str> = list["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alarm_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["T101.LT/H"]);
    for (method, body) in [
        ("TelemetryService/Latest", json!({"points": ["T201.TE"]})),
        (
            "TelemetryService/Query",
            json!({"points": ["T201.TE"], "from_ms": now_ms() - 60_000, "to_ms": now_ms()}),
        ),
    ] {
        let r = post_json(addr, &format!("/api/v1/{method}"), &auth, &body)
            .await
            .unwrap();
        assert_eq!(r.status, 404, "{method}: {r:?}");
    }
    let r = post_json(
        addr,
        "/api/v1/AlarmService/ListActive",
        &auth,
        &json!({"filter": {"enterprises": ["E02"]}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    let risk = post_json(addr, "/api/v1/SiteService/Risk", &auth, &json!({}))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(risk["enterprises"].as_array().unwrap().len(), 1);
    let gateways = post_json(addr, "/api/v1/SiteService/Gateways", &auth, &json!({}))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert!(
        gateways["gateways"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["enterprise"] == "E01")
    );
    let query = post_json(
        addr,
        "/api/v1/TelemetryService/Query",
        &auth,
        &json!({"points": ["T101.LT"], "from_ms": now_ms() - 60_000, "to_ms": now_ms() + 1_000}),
    )
    .await
    .unwrap()
    .json()
    .unwrap();
    let values: Vec<&Value> = query["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["value"])
        .collect();
    assert!(values.contains(&&json!(18.5)), "{query}");

    // A viewer may not act; the operator may, and gRPC sees it.
    let viewer = post_json(
        addr,
        "/api/login",
        &[],
        &json!({"token": "e01-viewer-0123456789"}),
    )
    .await
    .unwrap();
    let viewer_cookie = viewer
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let ack = json!({"alarm_id": "T101.LT/H", "operator": "Li Wei", "comment": ""});
    let r = post_json(
        addr,
        "/api/v1/AlarmService/Acknowledge",
        &[("cookie", &viewer_cookie)],
        &ack,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    let r = post_json(addr, "/api/v1/AlarmService/Acknowledge", &auth, &ack)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json().unwrap()["event"]["state"],
        "ALARM_STATE_ACKED_ACTIVE"
    );
    until(
        &mut feed,
        &mut seen,
        "T101.LT/H",
        "ALARM_STATE_ACKED_ACTIVE",
    )
    .await;
    let mut grpc = svc.alarms_as("e01-operator-0123456789").await.unwrap();
    let active = grpc
        .list_active(pb::ListActiveRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.alarms[0].state, pb::AlarmState::AckedActive as i32);
    // Acknowledging an E02 alarm: it does not exist for this session.
    let r = post_json(
        addr,
        "/api/v1/AlarmService/Acknowledge",
        &auth,
        &json!({"alarm_id": "T201.TE/H", "operator": "Li Wei"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    assert!(
        seen.iter().all(|e| e["enterprise"] == "E01"),
        "E02 on E01's feed: {seen:?}"
    );

    // Logged out: the cookie opens nothing any more.
    let r = post_json(addr, "/api/logout", &auth, &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = post_json(addr, "/api/v1/SiteService/Describe", &auth, &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    // A bearer token works without a session (scripts).
    let r = post_json(
        addr,
        "/api/v1/AlarmService/ListActive",
        &[("authorization", "Bearer e01-viewer-0123456789")],
        &json!({}),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_resumes_after_the_last_event_id_without_a_gap_or_a_repeat() {
    let (svc, addr) = start("").await;
    let list = post_json(addr, "/api/v1/AlarmService/ListActive", &[], &json!({}))
        .await
        .unwrap()
        .json()
        .unwrap();
    let as_of = list["as_of_seq"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/AlarmService/Subscribe?after={as_of}");
    let mut feed = Sse::open(addr, &path, &[]).await.unwrap();
    raise_both(&svc).await;
    let first = feed.next(Duration::from_secs(10)).await.unwrap().unwrap();
    // The connection drops after the first event; more happen meanwhile.
    drop(feed);
    let (host, port) = svc.broker();
    let mut gw = Gateway::connect(&host, port, "gw-console-2").await.unwrap();
    gw.publish_json(
        "E01",
        json!([{"point": "T101.PT", "ts": now_ms(), "value": 700.0}]),
    )
    .await
    .unwrap();
    // The browser reconnects with the last id it saw.
    let mut again = Sse::open(addr, &path, &[("last-event-id", &first.id)])
        .await
        .unwrap();
    let mut seqs = vec![first.id.parse::<u64>().unwrap()];
    loop {
        let e = again.next(Duration::from_secs(10)).await.unwrap().unwrap();
        let v: Value = serde_json::from_str(&e.data).unwrap();
        seqs.push(e.id.parse().unwrap());
        if v["alarm_id"] == "T101.PT/H" {
            break;
        }
    }
    // Nothing else is filtered out of this feed, so its sequence numbers
    // run on without a gap from the list's.
    let from: u64 = as_of.parse().unwrap();
    let want: Vec<u64> = (from + 1..from + 1 + seqs.len() as u64).collect();
    assert_eq!(seqs, want, "every event once, in order, across the drop");
    // A Last-Event-ID that is not a sequence number is refused.
    let bad = Sse::open(addr, &path, &[("last-event-id", "yesterday")])
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_plan_is_served_to_callers_only_and_may_run_nothing() {
    let data = tempfile::tempdir().unwrap();
    let svg = "<svg xmlns='http://www.w3.org/2000/svg' width='800' height='500'/>";
    std::fs::write(data.path().join("plan.svg"), svg).unwrap();
    let text = format!("{TEST_PARK}{TOKENS}{CONSOLE}").replace(
        "[park]\nid = \"TEST\"",
        "[park]\nid = \"TEST\"\nplan = { file = \"plan.svg\", width = 800, height = 500 }",
    );
    assert!(
        text.contains("plan.svg"),
        "the fixture's [park] table moved"
    );
    // The plan is found beside the configuration file.
    let src = hazardwatch_rules::Source {
        path: data.path().join("park.toml"),
        text,
    };
    let mut config = hazardwatch::config::Config::from_source(&src).unwrap();
    config.settings.data_dir = data.path().join("data");
    let running = hazardwatch::service::start(config).await.unwrap();
    let addr = running.console_addr.unwrap();
    let r = http::request(addr, "GET", "/api/plan", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let auth = [("authorization", "Bearer e01-viewer-0123456789")];
    let r = http::request(addr, "GET", "/api/plan", &auth, b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "image/svg+xml");
    assert!(r.header("content-security-policy").contains("sandbox"));
    assert_eq!(r.body, svg.as_bytes());
    let site = post_json(addr, "/api/v1/SiteService/Describe", &auth, &json!({}))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(site["plan"]["width"], 800.0);
    assert_eq!(site["plan"]["media_type"], "image/svg+xml");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_console_serves_https_only_and_its_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = hazardwatch_tests::self_signed_localhost(dir.path()).unwrap();
    let tls = format!(
        "\n[console]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n",
        cert.display(),
        key.display()
    );
    let text = format!("{TEST_PARK}{TOKENS}{tls}");
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let addr = svc.running.console_addr.unwrap();
    let ca = std::fs::read_to_string(&cert).unwrap();
    let trust = (ca.as_str(), "localhost");
    let page = http::request_tls(addr, trust, "GET", "/", &[], b"")
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    let login = serde_json::to_vec(&json!({"token": "e01-operator-0123456789"})).unwrap();
    let r = http::request_tls(
        addr,
        trust,
        "POST",
        "/api/login",
        &[("content-type", "application/json")],
        &login,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").contains("; Secure"), "{r:?}");
    // Plain HTTP gets nothing.
    let plain = http::request(addr, "GET", "/", &[], b"").await;
    assert!(plain.is_err(), "{plain:?}");
    // A key that is not a key: the start fails and says where.
    std::fs::write(&key, "not a key").unwrap();
    let err = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("console.tls"), "{err:#}");
}
