//! Configuration from environment variables, validated once at init.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tracing::level_filters::LevelFilter;

use crate::input;

/// A variable that is missing or malformed. The message names the variable and never repeats
/// its value (it may be a connection string with a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error in {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn config_error(variable: &'static str, problem: impl Into<String>) -> ConfigError {
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
    /// fallback for the root certificate, as in libpq.
    pub fn parse(url: &str, pg_ssl_root_cert: Option<&str>) -> Result<Self, ConfigError> {
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
                    let path = input::percent_decode(value)
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
        if postgres.get_hosts().is_empty() {
            return Err(config_error(VAR, "names no host"));
        }
        if postgres.get_application_name().is_none() {
            postgres.application_name("lti-storage");
        }
        Ok(DatabaseConfig {
            postgres,
            ssl_mode,
            ssl_root_cert,
        })
    }
}

/// Lifetime and size of one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub ttl: Duration,
    /// At most this many entries...
    pub capacity: usize,
    /// ...weighing at most this many bytes in memory, by estimate.
    pub bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
    /// Whether statements are prepared once per connection (off behind RDS Proxy or
    /// PgBouncer in transaction mode, which cannot keep them).
    pub prepared_statements: bool,
    /// A connection idle this long is pinged before use.
    pub connection_idle_check: Duration,
    /// How long a session lives after `addSession`.
    pub session_ttl: Duration,
    /// The largest session or registration session stored, as JSON text.
    pub max_session_bytes: usize,
    pub launch_config_cache: CacheConfig,
    pub session_cache: CacheConfig,
    /// How long a lookup that found nothing is remembered.
    pub miss_ttl: Duration,
    /// How stale a cached launch config may be after a change made through another
    /// container: the bound between two checks of the change counter.
    pub change_check_interval: Duration,
    /// Rows the cleanup deletes per statement.
    pub cleanup_batch_size: u32,
    /// Whether the runtime surface also registers platforms (`addClient`, `addDeployment`,
    /// registration sessions), for tools that use LTI dynamic registration.
    pub dynamic_registration: bool,
    pub log_level: LevelFilter,
}

const SECONDS_IN_A_YEAR: u64 = 365 * 24 * 3600;
/// A cache budget beyond the largest Lambda function's memory (10 GB) is a mistake.
const MAX_CACHE_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Lambda's longest timeout: a time limit beyond it is a mistake.
const MAX_TIME_LIMIT_MS: u64 = 15 * 60 * 1000;

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let url = lookup("DATABASE_URL")
            .filter(|url| !url.is_empty())
            .ok_or_else(|| config_error("DATABASE_URL", "is not set"))?;
        let database = DatabaseConfig::parse(&url, lookup("PGSSLROOTCERT").as_deref())?;
        let number = |name: &'static str, default: u64, min: u64, max: u64| {
            parse_number(name, lookup(name), default, min, max)
        };
        let seconds = |name, default, min| {
            number(name, default, min, SECONDS_IN_A_YEAR).map(Duration::from_secs)
        };
        let millis =
            |name, default| number(name, default, 1, MAX_TIME_LIMIT_MS).map(Duration::from_millis);
        let capacity = |name| number(name, 1000, 0, 1_000_000).map(|n| n as usize);
        let bytes = |name, default| number(name, default, 0, MAX_CACHE_BYTES).map(|n| n as usize);
        let flag = |name, default| match lookup(name).as_deref().map(str::trim) {
            None | Some("") => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(config_error(name, "must be true or false")),
        };
        let log_level = match lookup("LOG_LEVEL").filter(|level| !level.is_empty()) {
            None => LevelFilter::INFO,
            Some(level) => level.parse().map_err(|_| {
                config_error(
                    "LOG_LEVEL",
                    "must be one of off, error, warn, info, debug, trace",
                )
            })?,
        };
        Ok(Config {
            database,
            connect_timeout: millis("CONNECT_TIMEOUT_MS", 5000)?,
            query_timeout: millis("QUERY_TIMEOUT_MS", 5000)?,
            prepared_statements: flag("PREPARED_STATEMENTS", true)?,
            connection_idle_check: number("CONNECTION_IDLE_CHECK_MS", 30_000, 0, MAX_TIME_LIMIT_MS)
                .map(Duration::from_millis)?,
            session_ttl: seconds("SESSION_TTL_SECS", 24 * 3600, 1)?,
            max_session_bytes: number("MAX_SESSION_BYTES", 64 * 1024, 1024, 6 * 1024 * 1024)?
                as usize,
            launch_config_cache: CacheConfig {
                ttl: seconds("LAUNCH_CONFIG_CACHE_TTL_SECS", 15 * 60, 0)?,
                capacity: capacity("LAUNCH_CONFIG_CACHE_CAPACITY")?,
                bytes: bytes("LAUNCH_CONFIG_CACHE_BYTES", 4 * 1024 * 1024)?,
            },
            session_cache: CacheConfig {
                ttl: seconds("SESSION_CACHE_TTL_SECS", 5 * 60, 0)?,
                capacity: capacity("SESSION_CACHE_CAPACITY")?,
                bytes: bytes("SESSION_CACHE_BYTES", 16 * 1024 * 1024)?,
            },
            miss_ttl: seconds("MISS_CACHE_TTL_SECS", 30, 0)?,
            change_check_interval: number("CHANGE_CHECK_INTERVAL_MS", 5000, 0, MAX_TIME_LIMIT_MS)
                .map(Duration::from_millis)?,
            cleanup_batch_size: number("CLEANUP_BATCH_SIZE", 10_000, 1, 1_000_000)? as u32,
            dynamic_registration: flag("DYNAMIC_REGISTRATION", false)?,
            log_level,
        })
    }
}

fn parse_number(
    name: &'static str,
    value: Option<String>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
        return Ok(default);
    };
    let number: u64 = value.trim().parse().map_err(|_| {
        config_error(
            name,
            format!("must be a whole number from {min} to {max}, got {value:?}"),
        )
    })?;
    if !(min..=max).contains(&number) {
        return Err(config_error(
            name,
            format!("must be from {min} to {max}, got {number}"),
        ));
    }
    Ok(number)
}
