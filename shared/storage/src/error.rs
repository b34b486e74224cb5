//! The one error type of the crate, and the one place the connection's errors, and the
//! database's among them, are mapped to it.

use std::fmt;

use lambda_postgres::{is_connection_error, OutOfTime};
use tokio_postgres::error::SqlState;

/// The five kinds a caller can act on; they are the `errorType` of a failed invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The call itself is wrong: fix it, do not retry.
    InvalidInput,
    /// The client or deployment named by the call does not exist.
    NotFound,
    /// The call would create a duplicate.
    Conflict,
    /// The op is not answered through the alias the caller invoked.
    Forbidden,
    /// The database could not be reached, did not answer in time, or rolled the call back
    /// over a conflict with a concurrent write: retry later.
    Unavailable,
    /// Anything else: a bug or a database in an unexpected state.
    Internal,
}

impl ErrorKind {
    /// Every kind, in the order of the README's errors table.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Forbidden,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Internal => "Internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a message meant for the tool developer calling the storage.
///
/// Messages never carry SQL, connection strings or the values of the call: they end up in
/// the caller's logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Forbidden, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Conflict of storing a nonce that is already stored.
pub(crate) const NONCE_ALREADY_STORED: &str = "this nonce is already stored";

/// Maps a database error to the caller's terms.
///
/// `what` names the operation's subject in words (e.g. "client") for messages that have no
/// more precise wording. The server's own message is logged, never returned: it can quote the
/// call's values ("Key (nonce)=(...) already exists").
pub(crate) fn from_db(err: tokio_postgres::Error, what: &str) -> Error {
    let Some(db) = err.as_db_error() else {
        if is_connection_error(&err) {
            return Error::unavailable("the database connection was lost; retry the call");
        }
        tracing::error!(error = %err, "database client error");
        return Error::internal(format!("unexpected database client error on {what}"));
    };
    let code = db.code();
    if *code == SqlState::UNIQUE_VIOLATION {
        let message = match db.constraint() {
            Some("iss_client_id_unique") => {
                "a client with this iss and clientId is already registered"
            }
            Some("client_deployment_unique") => {
                "this client already has a deployment with this deploymentId"
            }
            Some("nonces_pkey") => NONCE_ALREADY_STORED,
            _ => return Error::new(ErrorKind::Conflict, format!("this {what} already exists")),
        };
        return Error::new(ErrorKind::Conflict, message);
    }
    if *code == SqlState::FOREIGN_KEY_VIOLATION {
        return Error::not_found("no client with this clientId");
    }
    if *code == SqlState::INVALID_TEXT_REPRESENTATION
        || *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
        || *code == SqlState::UNTRANSLATABLE_CHARACTER
        || *code == SqlState::STRING_DATA_RIGHT_TRUNCATION
        || *code == SqlState::DATETIME_FIELD_OVERFLOW
        || *code == SqlState::INVALID_PARAMETER_VALUE
    {
        return Error::invalid_input(format!(
            "the database rejected a value of this {what} ({})",
            code.code()
        ));
    }
    if *code == SqlState::TOO_MANY_CONNECTIONS {
        return Error::unavailable(
            "the database has too many connections open; retry later or raise max_connections",
        );
    }
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        // The server rolled the call back to let a concurrent transaction through: sent
        // again, it goes through.
        return Error::unavailable(
            "the database rolled the call back over a conflict with a concurrent write \
             (deadlock or serialization failure); retry the call",
        );
    }
    if *code == SqlState::QUERY_CANCELED {
        return Error::unavailable("the database cancelled the query (statement timeout)");
    }
    if is_connection_error(&err) {
        return Error::unavailable("the database is restarting or shutting down; retry the call");
    }
    if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN {
        return Error::internal(
            "the database schema is missing or outdated: apply the migrations (op \"migrate\")",
        );
    }
    // The server's message can quote values of the call: never logged.
    tracing::error!(
        sqlstate = code.code(),
        table = db.table(),
        constraint = db.constraint(),
        "database error"
    );
    Error::internal(format!(
        "the database failed on {what} (SQLSTATE {})",
        code.code()
    ))
}

/// The connection's errors in the caller's terms: what could go on with a retry is
/// Unavailable.
impl From<lambda_postgres::Error> for Error {
    fn from(err: lambda_postgres::Error) -> Self {
        use lambda_postgres::Error as Pg;
        match err {
            Pg::Connect(err) if err.lasting => Error::internal(err.message),
            Pg::Connect(err) => Error::unavailable(err.message),
            Pg::TimedOut(limit) => Error::unavailable(format!(
                "the database did not answer within {} ms",
                limit.as_millis()
            )),
            Pg::Db { err, what } => from_db(err, what),
            Pg::RowCount { found, what } => Error::internal(format!(
                "the database returned {found} rows for {what} where one was expected"
            )),
            Pg::Column { column, what } => Error::internal(format!(
                "a stored {what} could not be read (column {column}); was it written by other \
                 software?"
            )),
            Pg::MigrationsOutOfTime { cause, limit } => {
                let what = match cause {
                    OutOfTime::Lock => {
                        "a lock they need is held by another session (a long transaction, or \
                         another migration)"
                    }
                    OutOfTime::Statement => "a statement ran too long (a large table)",
                };
                Error::unavailable(format!(
                    "the migrations did not finish within {:.0} s and were rolled back, nothing \
                     applied: {what}. Retry later, or run them from a machine that reaches the \
                     database with `DATABASE_URL=... cargo run --release -p storage -- migrate` \
                     (README, \"Database and migrations\"), which waits up to a day",
                    limit.as_secs_f64()
                ))
            }
        }
    }
}
