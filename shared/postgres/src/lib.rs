//! PostgreSQL from a Lambda function: the container's one connection, opened by the first
//! call that needs it and kept across warm invocations (`Database`), and a migration runner
//! (`migrate`). How a connection is made (TLS, the password, a login token) is the caller's
//! `Connect`, as tokio-postgres leaves TLS to a `MakeTlsConnect`.

mod database;
mod migrate;

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{CancelToken, Client, Socket};

pub use database::{column, lock, Connection, Database, Params, QueryError, Settings};
pub use migrate::{migrate, Migrations, OutOfTime};

/// How a new connection is made and logged in, and how a cancel request reaches the server.
pub trait Connect: Send + Sync + 'static {
    /// The stream a connection runs over (a TLS stream, or a plain one).
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// A new connection, logged in, within `limit`; its I/O is driven by `Database`.
    fn connect(
        &self,
        limit: Duration,
    ) -> impl Future<
        Output = Result<(Client, tokio_postgres::Connection<Socket, Self::Stream>), ConnectError>,
    > + Send;

    /// Asks the server to cancel what the connection of `token` is running, over a
    /// connection made as this one makes them (a cancel request carries no password).
    fn cancel(
        &self,
        token: &CancelToken,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send;
}

/// Why no connection could be made, in words for the caller (no password, no URL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub message: String,
    /// Whether it will not fix itself (a refused login, a refused certificate, settings to
    /// change), as opposed to a failure worth retrying (network, time, a busy server).
    pub lasting: bool,
}

impl ConnectError {
    /// A failure a retry may get past.
    pub fn transient(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            lasting: false,
        }
    }

    /// A failure only a change of settings or credentials fixes.
    pub fn lasting(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            lasting: true,
        }
    }
}

/// What a call on the database can fail with. `what` names the subject of the call, as its
/// caller gave it, for the caller's messages. The database's own error is kept whole: its
/// message can quote the call's values, so it is for the caller to map, never to show.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the database did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    #[error("the database failed on {what}")]
    Db {
        err: tokio_postgres::Error,
        what: &'static str,
    },
    #[error("the database returned {found} rows for {what} where one was expected")]
    RowCount { found: usize, what: &'static str },
    #[error("a stored {what} could not be read (column {column})")]
    Column { column: String, what: &'static str },
    #[error("the migrations did not finish within {:.0} s and were rolled back", .limit.as_secs_f64())]
    MigrationsOutOfTime { cause: OutOfTime, limit: Duration },
}

/// Whether a database error means the connection is unusable (so the next call must open a
/// new one, and a call that is safe to repeat may be retried on it).
pub fn is_connection_error(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if err.is_closed() {
        return true;
    }
    match err.code() {
        // The server is shutting down or restarting, or terminated this backend.
        Some(code) => {
            *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
        // No SQLSTATE: an I/O or protocol failure on the socket.
        None => std::error::Error::source(err)
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some()),
    }
}
