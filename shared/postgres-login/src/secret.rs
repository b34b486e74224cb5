//! Login with a Secrets Manager secret, read when the first connection opens and again when
//! the database refuses its password (it was rotated): its value (a URL, or the JSON RDS
//! writes) completed by DATABASE_URL. The value is never logged or put in a message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{timeout_at, Instant};
use tokio_postgres::error::SqlState;

use crate::attempt::{by_deadline, connect_error, Opened};
use crate::config::{percent_encode, DatabaseConfig};
use crate::tls::Connector;
use lambda_aws::{self as aws, AwsAccess, Endpoint, SecretError};
use lambda_postgres::{lock, ConnectError};

pub struct SecretLogin {
    id: String,
    access: AwsAccess,
    endpoint: Endpoint,
    /// DATABASE_URL: what the secret does not say (options such as sslmode, or the host).
    base: DatabaseConfig,
    /// Built from the value last read; `None` until the first connection.
    current: Mutex<Option<Arc<Connector>>>,
}

impl SecretLogin {
    pub(crate) fn new(
        id: &str,
        access: &AwsAccess,
        endpoint: &Endpoint,
        base: &DatabaseConfig,
    ) -> SecretLogin {
        SecretLogin {
            id: id.to_owned(),
            access: access.clone(),
            endpoint: endpoint.clone(),
            base: base.clone(),
            current: Mutex::new(None),
        }
    }

    /// The connector built from the value last read, which made the open connections.
    pub(crate) fn last_read(&self) -> Option<Arc<Connector>> {
        lock(&self.current).clone()
    }

    pub(crate) async fn connect(
        &self,
        deadline: Instant,
        limit: Duration,
    ) -> Result<Opened, ConnectError> {
        let cached = lock(&self.current).clone();
        let fresh = cached.is_none();
        let connector = match cached {
            Some(connector) => connector,
            None => self.read(deadline, limit).await?,
        };
        let login = format!("the database secret {}", self.id);
        match by_deadline(deadline, limit, connector.connect()).await? {
            // Rotated since it was read: read it again, once.
            Err(err) if !fresh && err.code() == Some(&SqlState::INVALID_PASSWORD) => {
                tracing::info!(
                    secret = %self.id,
                    "the database refused the password; reading the database secret again"
                );
                let connector = self.read(deadline, limit).await?;
                by_deadline(deadline, limit, connector.connect())
                    .await?
                    .map_err(|err| connect_error(err, &login))
            }
            result => result.map_err(|err| connect_error(err, &login)),
        }
    }

    /// Reads the secret and builds the connector its value describes, kept for the
    /// connections after this one.
    async fn read(
        &self,
        deadline: Instant,
        limit: Duration,
    ) -> Result<Arc<Connector>, ConnectError> {
        let started = Instant::now();
        let id = &self.id;
        let value = timeout_at(
            deadline,
            aws::get_secret_string(&self.access, &self.endpoint, id),
        )
        .await
        .map_err(|_| {
            ConnectError::transient(format!(
                "could not read the database secret {id} from Secrets Manager ({}) within {} ms \
                 (in a VPC, the function needs a Secrets Manager VPC endpoint or a NAT gateway)",
                self.endpoint,
                limit.as_millis()
            ))
        })?
        .map_err(|err| self.secret_error(err))?;
        let config = merge(&value, &self.base).map_err(|problem| {
            ConnectError::lasting(format!("the database secret {id} {problem}"))
        })?;
        let connector = Connector::new(&config).map_err(|err| {
            ConnectError::lasting(format!(
                "the database secret {id} gives a connection that cannot be set up: {}",
                err.problem
            ))
        })?;
        tracing::info!(
            secret = %id,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read the database secret"
        );
        let connector = Arc::new(connector);
        *lock(&self.current) = Some(connector.clone());
        Ok(connector)
    }

    fn secret_error(&self, err: SecretError) -> ConnectError {
        let id = &self.id;
        match err {
            SecretError::Transport(err) => ConnectError::transient(format!(
                "could not read the database secret {id} from Secrets Manager ({}): {err}",
                self.endpoint
            )),
            SecretError::Credentials(err) => {
                ConnectError::transient(format!("could not read the database secret {id}: {err}"))
            }
            SecretError::NoString => ConnectError::lasting(format!(
                "the database secret {id} has no SecretString (a binary secret?); store the \
                 connection URL or the JSON of an RDS secret as text"
            )),
            SecretError::Refused { status, kind } => {
                let message = match kind.as_str() {
                    "ResourceNotFoundException" => format!(
                        "the database secret {id} does not exist in region {} (or has no \
                         current version)",
                        self.access.region
                    ),
                    "AccessDeniedException" | "AccessDenied" => format!(
                        "the function's role may not read the database secret {id}: it needs \
                         secretsmanager:GetSecretValue on it (and kms:Decrypt on its key when it \
                         is a customer-managed key)"
                    ),
                    "DecryptionFailure" => format!(
                        "Secrets Manager could not decrypt the database secret {id}: the \
                         function's role needs kms:Decrypt on the secret's KMS key"
                    ),
                    "ThrottlingException" | "InternalServiceError" => {
                        return ConnectError::transient(format!(
                            "Secrets Manager answered {kind} reading the database secret {id}; \
                             retry"
                        ))
                    }
                    _ if status >= 500 => {
                        return ConnectError::transient(format!(
                            "Secrets Manager answered HTTP {status} reading the database secret \
                             {id}; retry"
                        ))
                    }
                    "" => format!(
                        "Secrets Manager answered HTTP {status} reading the database secret {id}"
                    ),
                    _ => format!(
                        "Secrets Manager refused to read the database secret {id}: {kind} \
                         (HTTP {status})"
                    ),
                };
                ConnectError::lasting(message)
            }
        }
    }
}

/// What a secret's value gives: a whole URL, or the fields of the JSON that RDS and Secrets
/// Manager's rotation write.
#[derive(Debug, PartialEq)]
enum SecretValue<'a> {
    Url(&'a str),
    Fields {
        username: String,
        password: String,
        host: Option<String>,
        port: Option<u16>,
        dbname: Option<String>,
    },
}

/// The problems are worded for "the database secret ID ..." and never quote the value.
fn parse_secret(value: &str) -> Result<SecretValue<'_>, &'static str> {
    let value = value.trim();
    if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        return Ok(SecretValue::Url(value));
    }
    const SHAPES: &str = "is neither a postgres:// URL nor a JSON object with username and \
                          password (as RDS and Secrets Manager rotation write)";
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(value) else {
        return Err(SHAPES);
    };
    let text = |name: &'static str| match fields.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(name),
    };
    let wrong = |name: &'static str| match name {
        "username" => "has a \"username\" that is not a string",
        "password" => "has a \"password\" that is not a string",
        "host" => "has a \"host\" that is not a string",
        "dbname" => "has a \"dbname\" that is not a string",
        _ => "has an \"engine\" that is not a string",
    };
    if let Some(engine) = text("engine").map_err(wrong)? {
        if !engine.contains("postgres") {
            return Err("is for another database engine (\"engine\" is not postgres)");
        }
    }
    let username = text("username")
        .map_err(wrong)?
        .ok_or("has no \"username\"")?;
    let password = text("password")
        .map_err(wrong)?
        .ok_or("has no \"password\"")?;
    let host = text("host").map_err(wrong)?;
    let valid_host = |host: &String| {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
    };
    if host.as_ref().is_some_and(|host| !valid_host(host)) {
        return Err("has a \"host\" that is not a host name or address");
    }
    // RDS writes the port as a number; people write it as text too.
    let port = match fields.get("port") {
        None | Some(serde_json::Value::Null) => None,
        Some(port) => {
            let port = match port {
                serde_json::Value::Number(port) => {
                    port.as_u64().and_then(|port| u16::try_from(port).ok())
                }
                serde_json::Value::String(port) => port.parse().ok(),
                _ => None,
            };
            Some(
                port.filter(|port| *port != 0)
                    .ok_or("has a \"port\" that is not a port number")?,
            )
        }
    };
    Ok(SecretValue::Fields {
        username,
        password,
        host,
        port,
        dbname: text("dbname").map_err(wrong)?,
    })
}

/// A `postgres://` URL in its parts, as written (%-encoded).
struct UrlParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    hosts: &'a str,
    dbname: Option<&'a str>,
    query: Vec<&'a str>,
}

impl<'a> UrlParts<'a> {
    /// `url` is known to start with postgres:// or postgresql://.
    fn split(url: &'a str) -> UrlParts<'a> {
        let (scheme, rest) = url.split_at(url.find("://").map_or(0, |at| at + 3));
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, dbname) = match rest.split_once('/') {
            Some((authority, dbname)) => (authority, Some(dbname)),
            None => (rest, None),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        UrlParts {
            scheme,
            userinfo,
            hosts,
            dbname,
            query: query.split('&').filter(|pair| !pair.is_empty()).collect(),
        }
    }

    fn join(&self) -> String {
        let mut url = self.scheme.to_owned();
        if let Some(userinfo) = self.userinfo {
            url.push_str(userinfo);
            url.push('@');
        }
        url.push_str(self.hosts);
        if let Some(dbname) = self.dbname {
            url.push('/');
            url.push_str(dbname);
        }
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(&self.query.join("&"));
        }
        url
    }
}

fn key(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(key, _)| key)
}

/// The connection the secret's `value` describes, completed by DATABASE_URL (`base`): a URL
/// secret is taken whole, with the options of DATABASE_URL it does not set; the JSON's
/// fields replace DATABASE_URL's user, password, and host, port and database when given.
fn merge(value: &str, base: &DatabaseConfig) -> Result<DatabaseConfig, String> {
    let base_parts = UrlParts::split(&base.url);
    let (userinfo, hosts, dbname);
    let mut parts = match parse_secret(value)? {
        SecretValue::Url(url) => {
            let mut parts = UrlParts::split(url);
            let given: Vec<&str> = parts.query.iter().map(|pair| key(pair)).collect();
            let added = base_parts
                .query
                .iter()
                .filter(|pair| !given.contains(&key(pair)));
            parts.query.extend(added);
            parts
        }
        SecretValue::Fields {
            username,
            password,
            host,
            port,
            dbname: name,
        } => {
            userinfo = format!(
                "{}:{}",
                percent_encode(&username),
                percent_encode(&password)
            );
            let bracket = |host: &str| match host.contains(':') {
                true => format!("[{host}]"),
                false => host.to_owned(),
            };
            hosts = match (host, port) {
                (Some(host), Some(port)) => format!("{}:{port}", bracket(&host)),
                (Some(host), None) => bracket(&host),
                // DATABASE_URL's host names, each at the secret's port.
                (None, Some(port)) => base_parts
                    .hosts
                    .split(',')
                    .map(|host| {
                        let name = host
                            .rsplit_once(':')
                            .filter(|(_, port)| !port.contains(']'))
                            .map_or(host, |(name, _)| name);
                        format!("{name}:{port}")
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                (None, None) => base_parts.hosts.to_owned(),
            };
            dbname = name.map(|name| percent_encode(&name));
            UrlParts {
                scheme: base_parts.scheme,
                userinfo: Some(&userinfo),
                hosts: &hosts,
                dbname: dbname.as_deref().or(base_parts.dbname),
                query: base_parts.query.clone(),
            }
        }
    };
    if parts.scheme.is_empty() {
        parts.scheme = "postgres://";
    }
    let url = parts.join();
    let root = base.ssl_root_cert.as_deref().and_then(|path| path.to_str());
    let config =
        DatabaseConfig::parse(&url, root, &base.default_application_name).map_err(|err| {
            format!(
                "gives a connection URL (with DATABASE_URL's options) that is not valid: {}",
                err.problem
            )
        })?;
    if config.postgres.get_hosts().is_empty() {
        return Err("names no host, and DATABASE_URL names none".to_owned());
    }
    Ok(config)
}

#[cfg(test)]
mod tests;
