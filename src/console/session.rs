//! Who calls the console: a session opened by logging in with a token (an
//! `HttpOnly`, `SameSite=Strict` cookie that names it; the token itself
//! never reaches the browser's storage), or a bearer token on the request
//! (scripts), or nobody on an open service (no tokens: loopback only).
//!
//! A request that changes anything must be JSON and, when it says where it
//! comes from (`Origin`), come from this server: another site's page can
//! neither send the cookie (`SameSite`) nor a JSON body without asking.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hazardwatch_alarms::{Caller, Scope};
use serde::Deserialize;

use super::Console;
use super::api::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "hw_session";
/// A session ends after this long unused (a long shift).
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at once; past it, the least recently used ends.
pub const MAX_SESSIONS: usize = 4_096;
/// How long a refused login waits before answering, so that guessing
/// tokens over one connection is slow.
pub const REFUSAL_DELAY: Duration = Duration::from_millis(500);

struct Session {
    caller: Caller,
    used: Instant,
}

/// The open sessions, by their random id.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `caller`; returns its id.
    fn open(&self, caller: Caller) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ApiError::internal(format!("no randomness for a session id: {e}")))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut open = self.lock();
        open.retain(|_, s| now.duration_since(s.used) < IDLE);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone())
        {
            open.remove(&oldest);
        }
        open.insert(id.clone(), Session { caller, used: now });
        Ok(id)
    }

    /// The caller of session `id`, if it is open (and now used).
    fn get(&self, id: &str) -> Option<Caller> {
        let now = Instant::now();
        let mut open = self.lock();
        let session = open.get_mut(id)?;
        if now.duration_since(session.used) >= IDLE {
            open.remove(id);
            return None;
        }
        session.used = now;
        Some(session.caller.clone())
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session id the request's cookie names.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, id)| id)
}

/// The caller of a request: its bearer token, else its session, else the
/// open service's caller; `UNAUTHENTICATED` when none applies.
pub fn caller(console: &Console, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let access = &console.services.access;
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let auth = auth
            .to_str()
            .map_err(|_| ApiError::unauthenticated("the authorization header is not text"))?;
        return access.authenticate(Some(auth)).map_err(ApiError::from);
    }
    if let Some(caller) = session_id(headers).and_then(|id| console.sessions.get(id)) {
        return Ok(caller);
    }
    access
        .authenticate(None)
        .map_err(|_| ApiError::unauthenticated("log in with a token"))
}

/// Refuses a request that changes something unless its body is JSON and
/// it comes from this server's own page (when it says where from).
pub fn check_change(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_ARGUMENT",
            "send the request as content-type: application/json",
        ));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "requests that change something must come from the console's own page",
        )),
    }
}

/// Who a caller is, as the page shows it.
fn whoami_json(caller: &Caller, open: bool) -> serde_json::Value {
    let enterprises: Vec<&str> = match &caller.scope {
        Scope::All => vec!["*"],
        Scope::Only(set) => set.iter().map(String::as_str).collect(),
    };
    serde_json::json!({
        "name": caller.name,
        "role": caller.role.as_str(),
        "level": caller.level.as_str(),
        "enterprises": enterprises,
        "open": open,
    })
}

/// `GET /api/whoami`: the caller, or 401 when the page must log in.
pub async fn whoami(State(console): State<Console>, headers: HeaderMap) -> Response {
    match caller(&console, &headers) {
        Ok(c) => axum::Json(whoami_json(&c, console.services.access.is_open())).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: String,
}

/// `POST /api/login` with `{"token": "..."}`: opens a session and sets its
/// cookie; answers who the token belongs to.
pub async fn login(State(console): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    match open_session(&console, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn open_session(
    console: &Console,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    check_change(headers)?;
    let login: Login = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("expected {{\"token\": \"...\"}}: {e}")))?;
    let access = &console.services.access;
    let caller = match access.authenticate(Some(&format!("Bearer {}", login.token))) {
        Ok(c) => c,
        Err(e) => {
            metrics::counter!("hazardwatch_console_logins_total", "result" => "refused")
                .increment(1);
            tracing::warn!("console login refused: unknown token");
            tokio::time::sleep(REFUSAL_DELAY).await;
            return Err(ApiError::from(e));
        }
    };
    metrics::counter!("hazardwatch_console_logins_total", "result" => "accepted").increment(1);
    tracing::info!(token = %caller.name, "console login");
    let body = axum::Json(whoami_json(&caller, access.is_open()));
    if access.is_open() {
        return Ok(body.into_response());
    }
    let id = console.sessions.open(caller)?;
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        IDLE.as_secs(),
        if console.tls { "; Secure" } else { "" }
    );
    let mut response = body.into_response();
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::internal(format!("session cookie: {e}")))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `POST /api/logout`: ends the session and clears its cookie.
pub async fn logout(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Err(e) = check_change(&headers) {
        return e.into_response();
    }
    if let Some(id) = session_id(&headers) {
        console.sessions.close(id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("hw_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hazardwatch_alarms::{Level, Role};

    fn caller(name: &str) -> Caller {
        Caller {
            name: name.into(),
            role: Role::Viewer,
            level: Level::Enterprise,
            scope: Scope::All,
            parks: Scope::All,
        }
    }

    #[test]
    fn sessions_are_found_by_id_and_end_when_closed() {
        let s = Sessions::default();
        let a = s.open(caller("a")).unwrap();
        let b = s.open(caller("b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(s.get(&a).unwrap().name, "a");
        assert_eq!(s.get(&b).unwrap().name, "b");
        assert!(s.get("0000").is_none());
        s.close(&a);
        assert!(s.get(&a).is_none());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn past_the_cap_the_least_recently_used_session_ends() {
        let s = Sessions::default();
        let first = s.open(caller("first")).unwrap();
        let second = s.open(caller("second")).unwrap();
        for i in 2..MAX_SESSIONS {
            s.open(caller(&i.to_string())).unwrap();
        }
        // `first` is used again, so `second` is now the oldest.
        assert!(s.get(&first).is_some());
        s.open(caller("one more")).unwrap();
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first).is_some());
        assert!(s.get(&second).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; hw_session=abc123; x=y"),
        );
        assert_eq!(session_id(&h), Some("abc123"));
        assert_eq!(session_id(&HeaderMap::new()), None);
    }

    #[test]
    fn changes_must_be_json_from_this_server() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8480"));
        assert!(check_change(&h).is_err(), "no content type");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(check_change(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8480"),
        );
        assert!(check_change(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(check_change(&h).is_err());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.remove(header::ORIGIN);
        assert!(check_change(&h).is_err());
    }
}
