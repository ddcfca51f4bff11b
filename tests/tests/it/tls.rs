//! gRPC over TLS (rustls): a client that trusts the service's certificate
//! is served; a plaintext client is not; a certificate that does not parse
//! stops the start with a reason; plaintext off loopback is refused.

use hazardwatch::config::Config;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_client::AlarmServiceClient;
use hazardwatch_rules::Source;
use hazardwatch_tests::{TEST_PARK, TestService};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

fn with_tls(cert: &std::path::Path, key: &std::path::Path) -> String {
    TEST_PARK.replace(
        "[grpc]\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[grpc]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}",
            cert.display(),
            key.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_is_served_and_a_plaintext_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = hazardwatch_tests::self_signed_localhost(dir.path()).unwrap();
    let text = with_tls(&cert, &key);
    assert_ne!(text, TEST_PARK);
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .unwrap();
    let port = svc.running.grpc_addr.port();

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&cert).unwrap()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let listed = AlarmServiceClient::new(channel)
        .list_active(pb::ListActiveRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.alarms.is_empty());

    let plain = async {
        let mut client = AlarmServiceClient::connect(format!("http://127.0.0.1:{port}")).await?;
        client
            .list_active(pb::ListActiveRequest::default())
            .await
            .map_err(anyhow::Error::from)
    };
    assert!(plain.await.is_err(), "plaintext must not be served");

    // A key that is not a key: the start fails and says where.
    std::fs::write(&key, "not a key").unwrap();
    let err = TestService::start_text(tempfile::tempdir().unwrap(), &text)
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("grpc.tls"), "{err:#}");
}

#[test]
fn plaintext_off_loopback_is_refused_unless_allowed() {
    let load = |text: String| {
        Config::from_source(&Source {
            path: "park.toml".into(),
            text,
        })
    };
    let open = TEST_PARK.replace(
        "[grpc]\nlisten = \"127.0.0.1:0\"",
        "[grpc]\nlisten = \"0.0.0.0:0\"",
    );
    let err = load(open.clone()).err().unwrap().to_string();
    assert!(err.contains("not loopback"), "{err}");
    let allowed = open.replace(
        "listen = \"0.0.0.0:0\"",
        "listen = \"0.0.0.0:0\"\nallow_plaintext = true",
    );
    // Plaintext allowed, but an open service off loopback still needs tokens.
    let err = load(allowed).err().unwrap().to_string();
    assert!(err.contains("[[access.token]]"), "{err}");
}
