//! Who is calling: the interceptor that authenticates every request by its
//! bearer token ([`Access`]) and attaches the [`Caller`], and the handlers'
//! way to read it back.

use std::sync::Arc;

use hazardwatch_alarms::{Access, Caller};
use tonic::{Request, Status};

use super::status::IntoStatus;

/// A tonic interceptor that authenticates every request and attaches the
/// [`Caller`].
pub fn interceptor(
    access: Arc<Access>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let caller = access.authenticate(header).into_status()?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The caller of a request (the interceptor put it there).
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("request not authenticated"))
}
