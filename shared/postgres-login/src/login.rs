//! How a new database connection logs in: with DATABASE_URL's password, with a secret read
//! from Secrets Manager at run time (so a rotation needs no deploy), or with an RDS IAM auth
//! token signed for that connection. Neither the secret's value nor a token is ever logged
//! or put in an error message.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::config::Host;
use tokio_postgres::CancelToken;

use crate::attempt::{by_deadline, connect_error, Opened};
use crate::config::{ConfigError, DatabaseConfig, DatabaseLogin};
use crate::guard::Guarded;
use crate::secret::SecretLogin;
use crate::tls::Connector;
use lambda_aws::{self as aws, AwsAccess};
use lambda_postgres::{Connect, ConnectError};

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

/// What `Config` has already refused, as an error rather than a panic.
fn unreachable_config<T>(what: &str) -> Result<T, ConfigError> {
    Err(ConfigError {
        variable: "DATABASE_URL",
        problem: format!("must name {what} with DATABASE_IAM_AUTH=true"),
    })
}
