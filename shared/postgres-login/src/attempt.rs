//! One connection attempt, whatever the login: within its deadline, and its failure as the
//! caller's error (retryable or lasting), naming where the credentials came from but never
//! the password, a secret or a token.

use std::time::Duration;

use rustls::CertificateError;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Connection, Socket};

use crate::guard::{Guarded, Refused};
use lambda_postgres::ConnectError;

/// A connection made: its client, and the connection to drive.
pub(crate) type Opened = (Client, Connection<Socket, Guarded>);

/// The outcome of `connecting`, or the time limit's error when `deadline` comes first.
pub(crate) async fn by_deadline(
    deadline: Instant,
    limit: Duration,
    connecting: impl std::future::Future<Output = Result<Opened, tokio_postgres::Error>>,
) -> Result<Result<Opened, tokio_postgres::Error>, ConnectError> {
    timeout_at(deadline, connecting).await.map_err(|_| {
        ConnectError::transient(format!(
            "could not connect to the database within {} ms",
            limit.as_millis()
        ))
    })
}

/// Connect failures: retryable ones are Unavailable; a refused login or a missing database
/// will not fix themselves, so they are Internal with a message pointing at `login`, where
/// the credentials came from (DATABASE_URL, a secret, an IAM token).
pub(crate) fn connect_error(err: tokio_postgres::Error, login: &str) -> ConnectError {
    if let Some(code) = err.code() {
        if *code == SqlState::TOO_MANY_CONNECTIONS {
            return ConnectError::transient(
                "the database refused the connection: too many connections (raise max_connections or use a proxy)",
            );
        }
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return ConnectError::lasting(format!(
                "the database refused the user or password given in {login}"
            ));
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return ConnectError::lasting(format!("the database named in {login} does not exist"));
        }
        if *code == SqlState::CANNOT_CONNECT_NOW || *code == SqlState::ADMIN_SHUTDOWN {
            return ConnectError::transient("the database is starting up or shutting down; retry");
        }
    }
    match Refused::of(&err) {
        Some(Refused::ServerWithoutTls) => {
            return ConnectError::lasting(
                "the database server does not support TLS, but DATABASE_URL asks for it \
                 (sslmode=require, verify-ca or verify-full)",
            )
        }
        Some(Refused::PasswordRevealed(method)) => {
            return ConnectError::lasting(format!(
                "the database asked for the password in {method} over a connection that does \
                 not verify its certificate; it was not sent: use sslmode=verify-full in \
                 DATABASE_URL (Amazon RDS, Aurora and RDS Proxy need no root certificate)"
            ))
        }
        None => {}
    }
    // No SQLSTATE: network or TLS. tokio-postgres' text names only the kind of failure
    // ("error performing TLS handshake"); the reason is its source. Neither names the
    // password nor the query.
    let cause = std::error::Error::source(&err);
    // A refused certificate, or a server without TLS, will not fix itself: the settings
    // must change.
    let certificate = cause
        .and_then(|cause| cause.downcast_ref::<std::io::Error>())
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .filter(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
    if let Some(refused) = certificate {
        // rustls names the hosts and certificate names: for the log, not for the caller.
        tracing::error!(error = %refused, "the database's TLS certificate was refused");
        let reason = match refused {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => "it is for another host name",
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                "it does not chain to a trusted root"
            }
            rustls::Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => "it has expired or is not yet valid",
            _ => "see the function's log",
        };
        return ConnectError::lasting(format!(
            "the database's TLS certificate was refused: {reason}; check sslmode in \
             DATABASE_URL and the root certificate (PGSSLROOTCERT or sslrootcert=)"
        ));
    }
    // Network failures: the details (addresses, the resolver's words) go to the log only.
    tracing::warn!(error = %err, cause = ?cause.map(ToString::to_string), "could not connect to the database");
    ConnectError::transient(
        "could not connect to the database (network failure; details in the function's log)",
    )
}
