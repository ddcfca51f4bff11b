//! Errors of the alarm service. Each says what is wrong in words a caller
//! can act on; the edges (gRPC, HTTP) map the variants to their own status
//! codes, so this crate knows no transport.

use crate::table::ActionError;

/// Why the alarm service refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field holds a value that is not allowed (gRPC
    /// `INVALID_ARGUMENT`).
    #[error("{0}")]
    InvalidArgument(String),
    /// No credential, or one nobody issued (`UNAUTHENTICATED`).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller's role or scope does not allow this (`PERMISSION_DENIED`).
    #[error("{0}")]
    PermissionDenied(String),
    /// The named thing does not exist for this caller (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// An operator action the alarm's state does not allow
    /// (`NOT_FOUND` for an alarm that is not there, else
    /// `FAILED_PRECONDITION`).
    #[error("alarm `{alarm_id}`: {source}")]
    Action {
        /// The alarm acted on.
        alarm_id: String,
        /// Why the table refused.
        source: ActionError,
    },
    /// A resume point ahead of every event this service has numbered (its
    /// journal was replaced since the subscriber's last event). The
    /// subscriber must resynchronise (ListActive, then subscribe from its
    /// `as_of_seq`) rather than be served a stream with a hole in it
    /// (`OUT_OF_RANGE`).
    #[error(
        "resume point {requested} is ahead of the newest event {newest} (was the journal replaced?); call ListActive and resume from its as_of_seq"
    )]
    ResumeAhead {
        /// The resume point asked for.
        requested: u64,
        /// The newest sequence number.
        newest: u64,
    },
    /// A resume point before the oldest event the journal still holds
    /// (older ones were pruned after archiving, see `journal.retention_days`)
    /// (`OUT_OF_RANGE`).
    #[error(
        "resume point {requested} is before the oldest event the journal keeps ({first}; older events are in the Parquet archive); call ListActive and resume from its as_of_seq"
    )]
    ResumePruned {
        /// The resume point asked for.
        requested: u64,
        /// The oldest sequence number held.
        first: u64,
    },
    /// Too many operator actions from one token (`RESOURCE_EXHAUSTED`; see
    /// [`crate::rate`]).
    #[error(
        "token `{who}` is acting faster than operator actions are allowed; try again in {retry_after_ms} ms"
    )]
    RateLimited {
        /// The token.
        who: String,
        /// When the next action is allowed.
        retry_after_ms: u64,
    },
    /// A configuration section (`[access]`, `[[escalation]]`) is invalid.
    #[error("{field}: {message}")]
    Config {
        /// The field, as written in the file (`access.token[2].enterprises`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The alarm journal could not be read or written (`UNAVAILABLE`).
    #[error("alarm journal: {0}")]
    Journal(#[from] hazardwatch_storage::Error),
    /// An operator action on a regional instance: alarms are acted on at
    /// their park (`FAILED_PRECONDITION`).
    #[error(
        "alarm `{alarm_id}` is handled at park `{park}`: act on it there (a regional instance shows what the park records)"
    )]
    ActAtPark {
        /// The alarm.
        alarm_id: String,
        /// Its park.
        park: String,
    },
    /// Earlier events still wait for the journal (it failed to write them),
    /// so later ones cannot be written yet (`UNAVAILABLE`).
    #[error("alarm journal: {0} earlier events are still waiting to be written")]
    JournalBehind(usize),
}

impl Error {
    /// A configuration error of `field`.
    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The alarm service's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
