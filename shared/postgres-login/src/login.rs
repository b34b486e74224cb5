//! How a new database connection logs in: with DATABASE_URL's password, with a secret read
//! from Secrets Manager at run time (so a rotation needs no deploy), or with an RDS IAM auth
//! token signed for that connection. Neither the secret's value nor a token is ever logged
//! or put in an error message.

use std::time::Duration;

use rustls::CertificateError;
use time::OffsetDateTime;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Client, Connection, Socket};

use crate::config::{ConfigError, DatabaseConfig, DatabaseLogin};
use crate::guard::Guarded;
use crate::secret::SecretLogin;
use crate::tls::{Connector, Refused};
use lambda_aws::{self as aws, AwsAccess};
use lambda_postgres::{Connect, ConnectError};

pub(crate) type Opened = (Client, Connection<Socket, Guarded>);

/// How each new connection logs in: `lambda_postgres::Connect` for the container's
/// connection.
pub enum Login {
    Url(Connector),
    Secret(SecretLogin),
    Iam(IamLogin),
}

pub struct IamLogin {
    connector: Connector,
    access: AwsAccess,
    host: String,
    port: u16,
    user: String,
}

impl Login {
    /// Checks what can be checked before the first connection (TLS set-up, URL).
    pub fn new(database: &DatabaseConfig, login: &DatabaseLogin) -> Result<Login, ConfigError> {
        Ok(match login {
            DatabaseLogin::Url => Login::Url(Connector::new(database)?),
            DatabaseLogin::Secret {
                id,
                access,
                endpoint,
            } => Login::Secret(SecretLogin::new(id, access, endpoint, database)),
            DatabaseLogin::Iam { access } => {
                let postgres = &database.postgres;
                // The configuration checked there is one TCP host and a user.
                let host = match postgres.get_hosts() {
                    [Host::Tcp(host)] => host.clone(),
                    _ => unreachable_config("one TCP host")?,
                };
                let user = match postgres.get_user() {
                    Some(user) => user.to_owned(),
                    None => unreachable_config("a user")?,
                };
                Login::Iam(IamLogin {
                    connector: Connector::new(database)?,
                    access: access.clone(),
                    host,
                    port: postgres.get_ports().first().copied().unwrap_or(5432),
                    user,
                })
            }
        })
    }
}

impl Connect for Login {
    type Stream = Guarded;

    async fn cancel(&self, token: &CancelToken) -> Result<(), tokio_postgres::Error> {
        let current;
        let connector = match self {
            Login::Url(connector) => connector,
            Login::Iam(iam) => &iam.connector,
            Login::Secret(secret) => {
                // A connection to cancel was made with the connector last read.
                current = secret.last_read();
                match &current {
                    Some(connector) => connector,
                    None => return Ok(()),
                }
            }
        };
        connector.cancel(token).await
    }

    /// Within `limit`, reading the secret included.
    async fn connect(&self, limit: Duration) -> Result<Opened, ConnectError> {
        let deadline = Instant::now() + limit;
        match self {
            Login::Url(connector) => by_deadline(deadline, limit, connector.connect())
                .await?
                .map_err(|err| connect_error(err, "DATABASE_URL")),
            Login::Secret(secret) => secret.connect(deadline, limit).await,
            Login::Iam(iam) => {
                let credentials = timeout_at(deadline, iam.access.credentials.current())
                    .await
                    .map_err(|_| {
                        ConnectError::transient(format!(
                            "could not get the function's AWS credentials within {} ms",
                            limit.as_millis()
                        ))
                    })?
                    .map_err(|err| ConnectError::transient(err.to_string()))?;
                let token = aws::rds_auth_token(
                    &credentials,
                    &iam.access.region,
                    &iam.host,
                    iam.port,
                    &iam.user,
                    OffsetDateTime::now_utc(),
                );
                let login = "an IAM auth token (DATABASE_IAM_AUTH=true): the function's role \
                             needs rds-db:connect on this database user, and the user the rds_iam \
                             role";
                by_deadline(deadline, limit, iam.connector.connect_with_password(&token))
                    .await?
                    .map_err(|err| connect_error(err, login))
            }
        }
    }
}

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

/// What `Config` has already refused, as an error rather than a panic.
fn unreachable_config<T>(what: &str) -> Result<T, ConfigError> {
    Err(ConfigError {
        variable: "DATABASE_URL",
        problem: format!("must name {what} with DATABASE_IAM_AUTH=true"),
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
