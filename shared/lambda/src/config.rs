//! Configuration from environment variables, validated once at init.

use std::time::Duration;

use tracing::level_filters::LevelFilter;

use lambda_postgres_login::{config_error, parse_flag};
pub use lambda_postgres_login::{ConfigError, DatabaseConfig, DatabaseLogin, SslMode};
use lti_storage::config::{CacheConfig, Config as StorageConfig};

/// Everything the functions read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub storage: StorageConfig,
    pub database: DatabaseConfig,
    pub login: DatabaseLogin,
    pub connection: ConnectionConfig,
    pub log_level: LevelFilter,
}

/// How the one connection is used: `lambda_postgres::Settings` without its hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
    /// Whether statements are prepared once per connection (off behind RDS Proxy or
    /// PgBouncer in transaction mode, which cannot keep them).
    pub prepared_statements: bool,
    /// A connection idle this long is pinged before use.
    pub idle_check: Duration,
}

/// The `application_name` of the functions' connections (as `pg_stat_activity` shows them)
/// when DATABASE_URL sets none.
const APPLICATION_NAME: &str = "lti-storage";

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
        let flag = |name, default| parse_flag(name, lookup(name), default);
        let (database, login) = lambda_postgres_login::from_lookup(&lookup, APPLICATION_NAME)?;
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
        let log_level = match lookup("LOG_LEVEL").filter(|level| !level.is_empty()) {
            None => LevelFilter::INFO,
            Some(level) => level.parse().map_err(|_| {
                config_error(
                    "LOG_LEVEL",
                    "must be one of off, error, warn, info, debug, trace",
                )
            })?,
        };
        let connection = ConnectionConfig {
            connect_timeout: millis("CONNECT_TIMEOUT_MS", 5000)?,
            query_timeout: millis("QUERY_TIMEOUT_MS", 5000)?,
            prepared_statements: flag("PREPARED_STATEMENTS", true)?,
            idle_check: number("CONNECTION_IDLE_CHECK_MS", 30_000, 0, MAX_TIME_LIMIT_MS)
                .map(Duration::from_millis)?,
        };
        let storage = StorageConfig {
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
            admin_on_any_qualifier: flag("ADMIN_ON_ANY_QUALIFIER", false)?,
        };
        Ok(Config {
            storage,
            database,
            login,
            connection,
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

#[cfg(test)]
mod tests;
