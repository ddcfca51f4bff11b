//! gRPC requests as a client could send them: the `authorization` header
//! through the token check, then a request message of arbitrary bytes
//! decoded and handed to the real alarm and telemetry handlers (over a
//! journal in a temporary directory). Never a panic: a response or a
//! status with a message.
#![no_main]

use std::sync::{Arc, OnceLock};

use hazardwatch::grpc::alarms::Alarms;
use hazardwatch::telemetry::{Latest, Telemetry};
use hazardwatch_alarms::{Access, AlarmHub, Caller, Filter, RiskModel};
use hazardwatch_fuzz::{NOW_MS, example, parts};
use hazardwatch_proto::clock::SettableClock;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_server::AlarmService;
use hazardwatch_proto::pb::telemetry_service_server::TelemetryService;
use hazardwatch_storage::AlarmJournal;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::Request;

struct Services {
    runtime: tokio::runtime::Runtime,
    hub: Arc<AlarmHub>,
    access: Access,
    alarms: Alarms,
    telemetry: Telemetry,
    _dir: tempfile::TempDir,
}

fn services() -> &'static Services {
    static S: OnceLock<Services> = OnceLock::new();
    S.get_or_init(|| {
        let config = example();
        let site = &config.site;
        let dir = hazardwatch_fuzz::scratch().expect("a temporary directory");
        let journal = AlarmJournal::open(&dir.path().join("alarms.redb")).expect("a journal");
        let (hub, _) = AlarmHub::open(
            site.catalog.clone(),
            journal,
            config.settings.escalation.clone(),
            RiskModel::from_site(site),
            NOW_MS,
        )
        .expect("a hub");
        let clock = Arc::new(SettableClock::new(NOW_MS));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (_, catalog) = tokio::sync::watch::channel(site.catalog.clone());
        // Nobody answers snapshots: a query that passes validation is told
        // the service is stopping.
        let (snapshots, _) = crossbeam_channel::bounded(1);
        let access = {
            let text = format!(
                "{}\n[[access.token]]\nname = \"county\"\ntoken = \"county-viewer-0123456789\"\nrole = \"viewer\"\nlevel = \"county\"\nenterprises = [\"E01\"]\n",
                hazardwatch::config::EXAMPLE_CONFIG
            );
            let src = hazardwatch_rules::Source {
                path: "fuzz.toml".into(),
                text,
            };
            hazardwatch::config::Config::from_source(&src)
                .expect("the example with a token is valid")
                .settings
                .access
        };
        Services {
            alarms: Alarms::new(
                hub.clone(),
                clock,
                tokio_util::sync::CancellationToken::new(),
            ),
            telemetry: Telemetry::new(Arc::new(Latest::default()), catalog, snapshots),
            access,
            hub,
            runtime,
            _dir: dir,
        }
    })
}

fn request<T>(message: T, caller: &Caller) -> Request<T> {
    let mut r = Request::new(message);
    r.extensions_mut().insert(caller.clone());
    r
}

fuzz_target!(|data: &[u8]| {
    let s = services();
    let [header, body] = match parts(data, 2)[..] {
        [h, b] => [h, b],
        _ => return,
    };
    let header = String::from_utf8_lossy(header);
    let caller = s
        .access
        .authenticate(Some(&header))
        .unwrap_or_else(|_| Caller::open());
    let Some((&which, body)) = body.split_first() else {
        return;
    };
    s.runtime.block_on(async {
        let a = &s.alarms;
        let t = &s.telemetry;
        let status = match which % 10 {
            0 => match pb::ListActiveRequest::decode(body) {
                Ok(m) => a.list_active(request(m, &caller)).await.err(),
                Err(_) => None,
            },
            1 => match pb::HistoryRequest::decode(body) {
                Ok(m) => a.history(request(m, &caller)).await.err(),
                Err(_) => None,
            },
            2 => match pb::StatsRequest::decode(body) {
                Ok(m) => a.stats(request(m, &caller)).await.err(),
                Err(_) => None,
            },
            3 => match pb::AcknowledgeRequest::decode(body) {
                Ok(m) => a.acknowledge(request(m, &caller)).await.err(),
                Err(_) => None,
            },
            4 => match pb::ShelveRequest::decode(body) {
                Ok(m) => a.shelve(request(m, &caller)).await.err(),
                Err(_) => None,
            },
            5 => match pb::ActionRequest::decode(body) {
                Ok(m) => a.comment(request(m, &caller)).await.err(),
                Err(_) => None,
            },
            6 => match pb::DisposeRequest::decode(body) {
                Ok(m) => a.dispose(request(m, &caller)).await.err(),
                Err(_) => None,
            },
            // Subscribe's checks, without starting a feed that would
            // outlive the input.
            7 => match pb::SubscribeRequest::decode(body) {
                Ok(m) => Filter::for_caller(m.filter, &caller)
                    .and_then(|_| s.hub.check_resume(m.resume_after))
                    .err()
                    .map(hazardwatch::grpc::status::alarms_status),
                Err(_) => None,
            },
            8 => match pb::LatestRequest::decode(body) {
                Ok(m) => t.latest(request(m, &caller)).await.err(),
                Err(_) => None,
            },
            _ => match pb::QueryRequest::decode(body) {
                Ok(m) => TelemetryService::query(t, request(m, &caller)).await.err(),
                Err(_) => None,
            },
        };
        if let Some(status) = status {
            assert!(!status.message().is_empty(), "{status:?}");
            assert_ne!(status.code(), tonic::Code::Internal, "{status:?}");
        }
    });
});
