//! Where and how the database is reached: DATABASE_URL (with libpq's five `sslmode`s and a
//! root certificate), and where the password comes from (the URL, a Secrets Manager secret,
//! an RDS IAM token), read from the environment and checked once at init.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use lambda_aws::{AwsAccess, CredentialSource, Credentials, CredentialsEndpoint, Endpoint};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// A variable that is missing or malformed. The message names the variable and never repeats
/// its value (it may be a connection string with a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error in {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

pub fn config_error(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// How much the connection trusts the server, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where and how to connect; `Debug` never shows the password.
#[derive(Clone)]
pub struct DatabaseConfig {
    pub postgres: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    /// Root certificates (PEM) that verify the server, e.g. the Amazon RDS bundle.
    pub ssl_root_cert: Option<PathBuf>,
    /// The URL this was parsed from, which a database secret completes.
    pub(crate) url: String,
    /// The `application_name` the server is given when the URL sets none (the caller's
    /// name, as `pg_stat_activity` shows it); a secret's URL gets it too.
    pub(crate) default_application_name: String,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("hosts", &self.postgres.get_hosts())
            .field("ports", &self.postgres.get_ports())
            .field("dbname", &self.postgres.get_dbname())
            .field("user", &self.postgres.get_user())
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .finish_non_exhaustive()
    }
}

impl DatabaseConfig {
    /// Parses a `postgres://` URL. `sslmode` (all five libpq modes) and `sslrootcert` are
    /// handled here because tokio-postgres knows only three modes; `PGSSLROOTCERT` is the
    /// fallback for the root certificate, as in libpq. The URL may leave out the host (a
    /// database secret can give it): callers check. `default_application_name` is the
    /// `application_name` when the URL sets none (none when it is empty).
    pub fn parse(
        url: &str,
        pg_ssl_root_cert: Option<&str>,
        default_application_name: &str,
    ) -> Result<Self, ConfigError> {
        const VAR: &str = "DATABASE_URL";
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(config_error(
                VAR,
                "must be a URL starting with postgres:// or postgresql://",
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ssl_mode = SslMode::Prefer;
        let mut ssl_root_cert = pg_ssl_root_cert
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => ssl_mode = match value {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    _ => return Err(config_error(
                        VAR,
                        "sslmode must be one of disable, prefer, require, verify-ca, verify-full",
                    )),
                },
                "sslrootcert" => {
                    let path = percent_decode(value)
                        .ok_or_else(|| config_error(VAR, "sslrootcert has a malformed %-escape"))?;
                    ssl_root_cert = Some(PathBuf::from(path));
                }
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        // tokio-postgres' messages name the option, never its value.
        let mut postgres = tokio_postgres::Config::from_str(&rest)
            .map_err(|err| config_error(VAR, format!("not a valid connection URL: {err}")))?;
        postgres.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if postgres.get_application_name().is_none() && !default_application_name.is_empty() {
            postgres.application_name(default_application_name);
        }
        Ok(DatabaseConfig {
            postgres,
            ssl_mode,
            ssl_root_cert,
            url: url.to_owned(),
            default_application_name: default_application_name.to_owned(),
        })
    }
}

/// Where the database's credentials come from.
#[derive(Debug, Clone)]
pub enum DatabaseLogin {
    /// DATABASE_URL (local runs, databases outside AWS).
    Url,
    /// A Secrets Manager secret, read when the first connection opens and again when the
    /// database refuses its password (it was rotated).
    Secret {
        /// The ARN or name, as given.
        id: String,
        access: AwsAccess,
        endpoint: Endpoint,
    },
    /// RDS IAM authentication: a token signed with the role's credentials for each new
    /// connection, as the password of DATABASE_URL's user.
    Iam { access: AwsAccess },
}

/// The database's place and login, read through `lookup` (the environment, or a map in
/// tests): DATABASE_URL, PGSSLROOTCERT, DATABASE_SECRET_ARN, DATABASE_IAM_AUTH and, for a
/// secret or a token, the AWS variables Lambda sets. `default_application_name` names the
/// caller to the server (`pg_stat_activity`) when DATABASE_URL (or the secret) sets no
/// `application_name`.
pub fn from_lookup(
    lookup: &impl Fn(&str) -> Option<String>,
    default_application_name: &str,
) -> Result<(DatabaseConfig, DatabaseLogin), ConfigError> {
    let flag = |name, default| parse_flag(name, lookup(name), default);
    let secret = lookup("DATABASE_SECRET_ARN").filter(|id| !id.is_empty());
    let url = match (
        lookup("DATABASE_URL").filter(|url| !url.is_empty()),
        &secret,
    ) {
        (Some(url), _) => url,
        // The secret holds the whole URL, or the host and credentials.
        (None, Some(_)) => "postgres://".to_owned(),
        (None, None) => {
            return Err(config_error(
                "DATABASE_URL",
                "is not set (nor is DATABASE_SECRET_ARN)",
            ))
        }
    };
    let database = DatabaseConfig::parse(
        &url,
        lookup("PGSSLROOTCERT").as_deref(),
        default_application_name,
    )?;
    if secret.is_none() && database.postgres.get_hosts().is_empty() {
        return Err(config_error("DATABASE_URL", "names no host"));
    }
    let login = match (secret, flag("DATABASE_IAM_AUTH", false)?) {
        (Some(_), true) => {
            return Err(config_error(
                "DATABASE_IAM_AUTH",
                "cannot be true when DATABASE_SECRET_ARN is set: choose one",
            ))
        }
        (Some(id), false) => {
            refuse_password(&database, "the secret's (DATABASE_SECRET_ARN)")?;
            secret_login(lookup, id)?
        }
        (None, true) => {
            check_iam_url(&database)?;
            DatabaseLogin::Iam {
                access: aws_access(lookup)?,
            }
        }
        (None, false) => DatabaseLogin::Url,
    };
    Ok((database, login))
}

/// A variable that is true or false; unset or blank is `default`.
pub fn parse_flag(
    name: &'static str,
    value: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(config_error(name, "must be true or false")),
    }
}

/// The secret's ARN or name checked, with what reading it takes.
fn secret_login(
    lookup: &impl Fn(&str) -> Option<String>,
    id: String,
) -> Result<DatabaseLogin, ConfigError> {
    // What Secrets Manager allows in names and ARNs.
    let valid = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c);
    if id.len() > 2048 || !id.chars().all(valid) {
        return Err(config_error(
            "DATABASE_SECRET_ARN",
            "must be a Secrets Manager secret's ARN or name (letters, digits and /_+=.@-:)",
        ));
    }
    let access = aws_access(lookup)?;
    // As the AWS SDKs: the service's own variable first, then the general one.
    let endpoint = ["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"]
        .into_iter()
        .find_map(|name| Some((name, lookup(name).filter(|url| !url.is_empty())?)));
    let endpoint = match endpoint {
        Some((name, url)) => {
            Endpoint::parse(&url).map_err(|problem| config_error(name, problem))?
        }
        None => access.secrets_manager(),
    };
    Ok(DatabaseLogin::Secret {
        id,
        access,
        endpoint,
    })
}

/// DATABASE_URL as IAM authentication needs it: one host, the user, no password, and
/// `verify-full` (the token opens connections for 15 minutes to whoever holds it).
fn check_iam_url(database: &DatabaseConfig) -> Result<(), ConfigError> {
    const VAR: &str = "DATABASE_URL";
    let postgres = &database.postgres;
    if postgres.get_hosts().len() != 1 || postgres.get_ports().len() > 1 {
        return Err(config_error(
            VAR,
            "must name one host and port with DATABASE_IAM_AUTH=true (the token is signed for them)",
        ));
    }
    if postgres.get_user().is_none() {
        return Err(config_error(
            VAR,
            "names no user; DATABASE_IAM_AUTH=true connects as the URL's user",
        ));
    }
    refuse_password(database, "an IAM auth token (DATABASE_IAM_AUTH=true)")?;
    // TLS always, and the host name checked: without it any holder of a certificate from a
    // trusted CA (any RDS instance, under Amazon's bundle) would get the token.
    if database.ssl_mode != SslMode::VerifyFull {
        return Err(config_error(
            "DATABASE_IAM_AUTH",
            "needs sslmode=verify-full in DATABASE_URL: the token is sent only to a server \
             whose certificate names the host (require or verify-ca, even with a root \
             certificate, check no host name)",
        ));
    }
    Ok(())
}

/// DATABASE_URL without a password when the password is `source` (the secret or a token):
/// one in the URL would win over the secret's, rotated or not, or over the token.
fn refuse_password(database: &DatabaseConfig, source: &str) -> Result<(), ConfigError> {
    match database.postgres.get_password() {
        None => Ok(()),
        Some(_) => Err(config_error(
            "DATABASE_URL",
            format!(
                "holds a password (user:password@ or password=), but the password is \
                 {source}: remove it"
            ),
        )),
    }
}

/// The region and credentials Lambda gives the function: AWS_REGION, and AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or, without them, a container credentials endpoint
/// (AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN), as the AWS SDKs
/// look for them.
fn aws_access(lookup: &impl Fn(&str) -> Option<String>) -> Result<AwsAccess, ConfigError> {
    let set = |name: &'static str| lookup(name).filter(|value| !value.is_empty());
    let required = |name: &'static str| {
        set(name).ok_or_else(|| {
            config_error(
                name,
                "is not set (Lambda sets it; elsewhere set it to reach AWS)",
            )
        })
    };
    // Header values: printable ASCII without spaces, so nothing can break the request.
    let check = |name: &'static str, value: String| {
        if value.chars().all(|c| c.is_ascii_graphic()) {
            Ok(value)
        } else {
            Err(config_error(name, "must be printable ASCII without spaces"))
        }
    };
    let region = required("AWS_REGION")?;
    if !region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(config_error(
            "AWS_REGION",
            "must be a region name such as eu-west-1",
        ));
    }
    const FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    const TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
    let full_uri = set(FULL_URI);
    let token = set(TOKEN).map(|token| check(TOKEN, token)).transpose()?;
    let credentials = match (set("AWS_ACCESS_KEY_ID"), full_uri) {
        (None, Some(url)) => {
            let (endpoint, path) = Endpoint::parse_with_path(&url)
                .map_err(|problem| config_error(FULL_URI, problem))?;
            CredentialSource::Endpoint(Arc::new(CredentialsEndpoint::new(endpoint, path, token)))
        }
        (key_id, _) => CredentialSource::Fixed(Credentials {
            access_key_id: check(
                "AWS_ACCESS_KEY_ID",
                key_id.ok_or_else(|| {
                    config_error(
                        "AWS_ACCESS_KEY_ID",
                        "is not set, nor is AWS_CONTAINER_CREDENTIALS_FULL_URI (Lambda sets \
                         one; elsewhere set it to reach AWS)",
                    )
                })?,
            )?,
            secret_access_key: check("AWS_SECRET_ACCESS_KEY", required("AWS_SECRET_ACCESS_KEY")?)?,
            session_token: set("AWS_SESSION_TOKEN")
                .map(|token| check("AWS_SESSION_TOKEN", token))
                .transpose()?,
        }),
    };
    Ok(AwsAccess {
        region,
        credentials,
    })
}

/// Every byte but the unreserved ones (letters, digits, `-_.~`).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// %-encodes every byte but the unreserved ones, as URL user names and passwords need.
pub(crate) fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// Decodes %-escapes; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let well_formed = text.split('%').skip(1).all(|after| {
        after
            .get(..2)
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encode_keeps_only_unreserved_bytes_and_round_trips() {
        assert_eq!(percent_encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(
            percent_encode("p@ss:w/rd é+="),
            "p%40ss%3Aw%2Frd%20%C3%A9%2B%3D"
        );
        let text = "x%y?z#&=é";
        assert_eq!(percent_decode(&percent_encode(text)).as_deref(), Some(text));
    }
}
