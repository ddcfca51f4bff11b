//! A webhook receiver for notification tests: a real HTTP/1.1 server on a
//! loopback port that answers 503 to its first attempts, can go down and
//! come back on the same port, and keeps every notification it accepted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// One notification the receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its `Idempotency-Key` header.
    pub key: String,
    /// Its body, as JSON.
    pub body: serde_json::Value,
    /// Its `X-Hazardwatch-Signature` header, if any.
    pub signature: Option<String>,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Attempts still to refuse with 503.
    refuse: usize,
    /// Every request, accepted or not.
    attempts: usize,
    accepted: Vec<Received>,
}

/// The receiver (see the module docs).
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    serving: Option<JoinSet<()>>,
}

impl Receiver {
    /// Starts on a free loopback port; the first `refuse` attempts get 503.
    pub async fn start(refuse: usize) -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut r = Receiver {
            addr: listener.local_addr()?,
            state: Arc::new(Mutex::new(State {
                refuse,
                ..State::default()
            })),
            serving: None,
        };
        r.serve(listener);
        Ok(r)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Stops listening and drops every connection: attempts are refused
    /// at connect.
    pub async fn down(&mut self) {
        if let Some(mut set) = self.serving.take() {
            set.shutdown().await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    /// What it accepted, in order.
    pub fn accepted(&self) -> Vec<Received> {
        self.lock().accepted.clone()
    }

    /// How many requests it has had (accepted or refused).
    pub fn attempts(&self) -> usize {
        self.lock().attempts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serve(&mut self, listener: TcpListener) {
        let mut set = JoinSet::new();
        let state = self.state.clone();
        set.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| answer(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        self.serving = Some(set);
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (key, signature, authorization) = (
        header("idempotency-key").unwrap_or_default(),
        header("x-hazardwatch-signature"),
        header("authorization"),
    );
    let body = req.into_body().collect().await?.to_bytes();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.attempts += 1;
    let status = if s.refuse > 0 {
        s.refuse -= 1;
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => {
                s.accepted.push(Received {
                    key,
                    body,
                    signature,
                    authorization,
                });
                StatusCode::NO_CONTENT
            }
            Err(_) => StatusCode::BAD_REQUEST,
        }
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"")));
    *response.status_mut() = status;
    Ok(response)
}
