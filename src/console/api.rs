//! `POST /api/v1/{Service}/{Method}`: a gRPC method of the alarm, site or
//! telemetry service, its request and response in the protobuf JSON
//! mapping (field names as in the `.proto` files, enums by name, 64-bit
//! integers as strings). An empty body is the default request.
//!
//! The call goes to the same implementation gRPC serves, with the caller
//! the console authenticated ([`super::session::caller`]), so roles,
//! scopes, validation and rate limits are gRPC's own. A server stream
//! (`TelemetryService/Query`) is answered whole, up to
//! [`MAX_QUERY_READINGS`]; `AlarmService/Subscribe` is the feed
//! ([`super::feed`]).

use std::future::Future;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hazardwatch_alarms::Caller;
use hazardwatch_proto::pb;
use hazardwatch_proto::pb::alarm_service_server::AlarmService;
use hazardwatch_proto::pb::site_service_server::SiteService;
use hazardwatch_proto::pb::telemetry_service_server::TelemetryService;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_stream::StreamExt;
use tonic::{Code, Status};

use super::Console;
use super::session::{caller, check_change};
use crate::grpc::status::alarms_status;

/// Readings one `TelemetryService/Query` answers at most: about 16 MB of
/// JSON, a day of one point at 1 s twice over.
pub const MAX_QUERY_READINGS: usize = 200_000;

/// An error as the console answers it: an HTTP status and
/// `{"code": "NOT_FOUND", "message": "..."}` (gRPC's code names).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with its HTTP status and gRPC code name.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A request that cannot be understood.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    /// A caller who must log in.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    /// Our fault.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }

    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its JSON body: `{"code": ..., "message": ...}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code, "message": self.message })
    }
}

impl From<Status> for ApiError {
    fn from(s: Status) -> ApiError {
        let (status, code) = match s.code() {
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            Code::OutOfRange => (StatusCode::BAD_REQUEST, "OUT_OF_RANGE"),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Code::FailedPrecondition => (StatusCode::CONFLICT, "FAILED_PRECONDITION"),
            Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
            Code::Aborted => (StatusCode::CONFLICT, "ABORTED"),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
            Code::Unimplemented => (StatusCode::NOT_FOUND, "UNIMPLEMENTED"),
            Code::Cancelled => (StatusCode::SERVICE_UNAVAILABLE, "CANCELLED"),
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL")
            }
        };
        ApiError::new(status, code, s.message())
    }
}

impl From<hazardwatch_alarms::Error> for ApiError {
    fn from(e: hazardwatch_alarms::Error) -> ApiError {
        ApiError::from(alarms_status(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The request of a method: `body` as `Req` (empty: the default), with
/// the caller attached as the gRPC interceptor would.
pub fn request<Req: DeserializeOwned + Default>(
    caller: Caller,
    body: &[u8],
) -> Result<tonic::Request<Req>, ApiError> {
    let message = if body.iter().all(u8::is_ascii_whitespace) {
        Req::default()
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("request body: {e}")))?
    };
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(caller);
    Ok(request)
}

async fn unary<Req, Resp, F, Fut>(
    caller: Caller,
    body: &[u8],
    method: F,
) -> Result<Response, ApiError>
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let response = method(request(caller, body)?).await?;
    Ok(Json(response.into_inner()).into_response())
}

/// `POST /api/v1/{service}/{method}`.
pub async fn call(
    State(console): State<Console>,
    Path((service, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match dispatch(&console, &service, &method, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(
    console: &Console,
    service: &str,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    check_change(headers)?;
    let c = caller(console, headers)?;
    let alarms = &*console.services.alarms;
    let site = &*console.services.site;
    let telemetry = &*console.services.telemetry;
    match (service, method) {
        ("AlarmService", "ListActive") => unary(c, body, |r| alarms.list_active(r)).await,
        ("AlarmService", "Acknowledge") => unary(c, body, |r| alarms.acknowledge(r)).await,
        ("AlarmService", "Reset") => unary(c, body, |r| alarms.reset(r)).await,
        ("AlarmService", "Shelve") => unary(c, body, |r| alarms.shelve(r)).await,
        ("AlarmService", "Unshelve") => unary(c, body, |r| alarms.unshelve(r)).await,
        ("AlarmService", "Comment") => unary(c, body, |r| alarms.comment(r)).await,
        ("AlarmService", "SetOutOfService") => {
            unary(c, body, |r| alarms.set_out_of_service(r)).await
        }
        ("AlarmService", "Dispose") => unary(c, body, |r| alarms.dispose(r)).await,
        ("AlarmService", "History") => unary(c, body, |r| alarms.history(r)).await,
        ("AlarmService", "Stats") => unary(c, body, |r| alarms.stats(r)).await,
        ("SiteService", "Risk") => unary(c, body, |r| site.risk(r)).await,
        ("SiteService", "SetUnitState") => unary(c, body, |r| site.set_unit_state(r)).await,
        ("SiteService", "Gateways") => unary(c, body, |r| site.gateways(r)).await,
        ("SiteService", "Describe") => unary(c, body, |r| site.describe(r)).await,
        ("TelemetryService", "Latest") => unary(c, body, |r| telemetry.latest(r)).await,
        ("TelemetryService", "Query") => {
            let answer = TelemetryService::query(telemetry, request(c, body)?).await?;
            let mut pages = answer.into_inner();
            let mut readings = Vec::new();
            while let Some(page) = pages.next().await {
                readings.extend(page?.readings);
                if readings.len() > MAX_QUERY_READINGS {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RESOURCE_EXHAUSTED",
                        format!(
                            "more than {MAX_QUERY_READINGS} readings: ask for a shorter range or fewer points"
                        ),
                    ));
                }
            }
            Ok(Json(pb::QueryResponse { readings }).into_response())
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "UNIMPLEMENTED",
            format!(
                "no method {service}/{method} (the alarm feed is GET /api/v1/AlarmService/Subscribe)"
            ),
        )),
    }
}
