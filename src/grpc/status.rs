//! The one place where errors become gRPC status codes.

use hazardwatch_alarms::Error as AlarmsError;
use hazardwatch_alarms::table::ActionError;
use tonic::Status;

use crate::telemetry::QueryError;

/// The status of an alarm-service error.
pub fn alarms_status(e: AlarmsError) -> Status {
    let message = e.to_string();
    match e {
        AlarmsError::InvalidArgument(_) | AlarmsError::Config { .. } => {
            Status::invalid_argument(message)
        }
        AlarmsError::Unauthenticated(_) => Status::unauthenticated(message),
        AlarmsError::PermissionDenied(_) => Status::permission_denied(message),
        AlarmsError::NotFound(_)
        | AlarmsError::Action {
            source: ActionError::NotFound,
            ..
        } => Status::not_found(message),
        AlarmsError::Action { .. } | AlarmsError::ActAtPark { .. } => {
            Status::failed_precondition(message)
        }
        AlarmsError::ResumeAhead { .. } | AlarmsError::ResumePruned { .. } => {
            Status::out_of_range(message)
        }
        AlarmsError::RateLimited { .. } => Status::resource_exhausted(message),
        AlarmsError::Journal(_) | AlarmsError::JournalBehind(_) => Status::unavailable(message),
    }
}

/// The status of a telemetry query error.
pub fn query_status(e: QueryError) -> Status {
    let message = e.to_string();
    match e {
        QueryError::InvalidArgument(_) => Status::invalid_argument(message),
        QueryError::NoPoint(_) => Status::not_found(message),
        QueryError::TooMany | QueryError::TooWide(_) => Status::resource_exhausted(message),
        QueryError::Busy | QueryError::Stopping => Status::unavailable(message),
        QueryError::Archive(_) => Status::internal(message),
    }
}

/// `Result<T, E>` to `Result<T, Status>`, for the errors this edge maps.
pub trait IntoStatus<T> {
    /// The result with its error as a gRPC status.
    fn into_status(self) -> Result<T, Status>;
}

impl<T> IntoStatus<T> for Result<T, AlarmsError> {
    fn into_status(self) -> Result<T, Status> {
        self.map_err(alarms_status)
    }
}

impl<T> IntoStatus<T> for Result<T, QueryError> {
    fn into_status(self) -> Result<T, Status> {
        self.map_err(query_status)
    }
}
