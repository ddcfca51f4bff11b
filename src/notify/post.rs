//! One attempt: an HTTP/1.1 POST to a recipient, over TLS for `https`,
//! within a time limit; the answer classified.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HOST, HeaderValue, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::config::Webhook;

/// Most of an answer's body kept for the timeline.
const ANSWER_EXCERPT: usize = 200;

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered,
    /// Worth trying again: no connection, no answer in time, 408, 429 or
    /// a 5xx. Says what happened.
    Retry(String),
    /// The recipient refused it (another status, e.g. 400, 401, 404, or a
    /// redirect, which is not followed): trying again will not help.
    Refused(String),
}

/// The TLS client of a recipient: its `ca_file`, or the system's CAs.
pub fn tls_for(to: &Webhook) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    if to.url.scheme_str() != Some("https") {
        return Ok(None);
    }
    if let Some(ca) = &to.ca_file {
        let config = hazardwatch_ingest::tls::client_config(ca, None)
            .map_err(|e| anyhow::anyhow!("notify.webhook `{}`.ca_file: {e}", to.name))?;
        return Ok(Some(config));
    }
    let config = hazardwatch_ingest::tls::system_client_config()
        .map_err(|e| anyhow::anyhow!("notify.webhook `{}` ({}): {e}", to.name, to.url))?;
    Ok(Some(config))
}

/// POSTs `body` to `to.url` with `headers`, within `timeout`.
pub async fn post(
    to: &Webhook,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Outcome {
    match tokio::time::timeout(timeout, attempt(&to.url, tls, headers, body)).await {
        Err(_) => Outcome::Retry(format!("no answer within {} s", timeout.as_secs_f64())),
        Ok(Err(e)) => Outcome::Retry(e),
        Ok(Ok((status, answer))) => classify(status, &answer),
    }
}

/// What a status means for the notification.
fn classify(status: u16, answer: &str) -> Outcome {
    let said = if answer.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {answer}")
    };
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry(said),
        _ => Outcome::Refused(said),
    }
}

async fn attempt(
    url: &Uri,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let host = url.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = url
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = TcpStream::connect((bare, port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let authority = url.authority().map_or(host, |a| a.as_str());
    let mut request = Request::post(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(HOST, authority)
        .header(
            USER_AGENT,
            concat!("hazardwatch/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("building the request: {e}"))?;
    match tls {
        None => exchange(TokioIo::new(tcp), request).await,
        Some(config) => {
            let name = ServerName::try_from(bare.to_owned())
                .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            exchange(TokioIo::new(stream), request).await
        }
    }
}

async fn exchange<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<(u16, String), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let connection = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status().as_u16();
        // A bounded look at the answer, for the record of a failure.
        let answer = Limited::new(response.into_body(), 4 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let answer: String = String::from_utf8_lossy(&answer)
            .chars()
            .filter(|c| !c.is_control())
            .take(ANSWER_EXCERPT)
            .collect();
        Ok((status, answer.trim().to_owned()))
    }
    .await;
    connection.abort();
    result
}

/// The headers of a notification: its content type and id, and the
/// recipient's bearer token and signature.
pub fn headers(to: &Webhook, id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("content-type", to.content_type.clone()),
        ("idempotency-key", header_safe(id)),
    ];
    if let Some(token) = &to.bearer {
        headers.push(("authorization", format!("Bearer {}", token.0)));
    }
    if let Some(key) = &to.signing_key {
        headers.push((
            "x-hazardwatch-signature",
            super::render::signature(key.0.as_bytes(), body),
        ));
    }
    headers
}

/// `text` as a header value: bytes other than printable ASCII and space,
/// and `%`, percent-encoded (a recipient's name may be Chinese).
fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_header_values() {
        assert_eq!(header_safe("P/12/E01 duty"), "P/12/E01 duty");
        assert_eq!(header_safe("P/12/值班"), "P/12/%E5%80%BC%E7%8F%AD");
        assert!(HeaderValue::from_str(&header_safe("P/1/\n%值")).is_ok());
    }

    #[test]
    fn statuses_are_delivered_retried_or_refused() {
        assert_eq!(classify(204, ""), Outcome::Delivered);
        assert_eq!(
            classify(503, "busy"),
            Outcome::Retry("HTTP 503: busy".into())
        );
        assert_eq!(classify(429, ""), Outcome::Retry("HTTP 429".into()));
        assert_eq!(
            classify(400, "bad"),
            Outcome::Refused("HTTP 400: bad".into())
        );
        assert_eq!(classify(302, ""), Outcome::Refused("HTTP 302".into()));
    }
}
