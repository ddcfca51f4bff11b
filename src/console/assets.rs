//! The console's page, script and styles, embedded in the binary (nothing
//! is fetched from elsewhere at run time), and the alarm message texts the
//! page renders events with.
//!
//! Assets are revalidated on every load (`no-cache` with an `ETag`), so a
//! new binary's page is never mixed with an old script.

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hazardwatch_alarms::text::{NOTES, TEMPLATES, TERM_PARAMS, TERMS};
use hazardwatch_rules::SitePlan;

use super::Console;
use super::api::ApiError;
use super::session::caller;

/// An embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// `web/NAME`, embedded, with the media type its extension says.
macro_rules! asset {
    ($name:literal) => {
        Asset {
            name: $name,
            content_type: media_type($name),
            body: include_str!(concat!("web/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html"),
    asset!("style.css"),
    asset!("icon.svg"),
    asset!("core.js"),
    asset!("labels.js"),
    asset!("app.js"),
    asset!("trend.js"),
    asset!("kpi.js"),
    asset!("regulator.js"),
];

/// The media type of an asset by its extension.
const fn media_type(name: &str) -> &'static str {
    let b = name.as_bytes();
    match b {
        [.., b'.', b'h', b't', b'm', b'l'] => "text/html; charset=utf-8",
        [.., b'.', b'c', b's', b's'] => "text/css; charset=utf-8",
        [.., b'.', b's', b'v', b'g'] => "image/svg+xml",
        _ => "text/javascript; charset=utf-8",
    }
}

/// Every asset's ETag, by position in [`ASSETS`].
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = twox_hash::XxHash3_64::oneshot(a.body.as_bytes());
                format!("\"{hash:016x}\"")
            })
            .collect()
    })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let (asset, tag) = (&ASSETS[i], &etags()[i]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /assets/{file}`.
pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// `GET /api/plan`: the park's site plan drawing, to a caller who may see
/// the site. An SVG is an image here; opened on its own it may run nothing.
pub async fn plan(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Err(e) = caller(&console, &headers) {
        return e.into_response();
    }
    let Some(plan) = console.services.site.plan() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "the park has no site plan",
        )
        .into_response();
    };
    let read = async {
        let len = tokio::fs::metadata(&plan.file).await?.len();
        if len > SitePlan::MAX_BYTES {
            return Err(std::io::Error::other(format!(
                "{len} bytes, more than {}",
                SitePlan::MAX_BYTES
            )));
        }
        tokio::fs::read(&plan.file).await
    };
    match read.await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, plan.media_type()),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; sandbox",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(file = %plan.file.display(), error = %e, "the site plan cannot be read");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the site plan cannot be read",
            )
            .into_response()
        }
    }
}

/// `GET /api/text`: the alarm message templates, the notes of an event's
/// flags and the translated terms (`hazardwatch_alarms::text`), so the
/// page renders any event in either language.
pub async fn texts() -> Response {
    let pair = |en: &str, zh: &str| serde_json::json!({ "en": en, "zh": zh });
    let templates: serde_json::Map<String, serde_json::Value> = TEMPLATES
        .iter()
        .map(|t| (t.key.to_owned(), pair(t.en, t.zh)))
        .collect();
    let notes: serde_json::Map<String, serde_json::Value> = NOTES
        .iter()
        .map(|t| (t.key.to_owned(), pair(t.en, t.zh)))
        .collect();
    let terms: Vec<serde_json::Value> = TERMS
        .iter()
        .map(|t| serde_json::json!({ "of": t.of, "value": t.value, "en": t.en, "zh": t.zh }))
        .collect();
    let term_params: serde_json::Map<String, serde_json::Value> = TERM_PARAMS
        .iter()
        .map(|(p, of)| ((*p).to_owned(), serde_json::Value::from(*of)))
        .collect();
    axum::Json(serde_json::json!({
        "templates": templates,
        "notes": notes,
        "terms": terms,
        "term_params": term_params,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_and_revalidated_by_its_etag() {
        for a in ASSETS {
            let r = serve(a.name, &HeaderMap::new());
            assert_eq!(r.status(), StatusCode::OK, "{}", a.name);
            let tag = r.headers()[header::ETAG].clone();
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, tag);
            assert_eq!(serve(a.name, &h).status(), StatusCode::NOT_MODIFIED);
        }
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn media_types_follow_the_extension() {
        assert_eq!(media_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(media_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(media_type("icon.svg"), "image/svg+xml");
        assert_eq!(media_type("app.js"), "text/javascript; charset=utf-8");
    }
}
