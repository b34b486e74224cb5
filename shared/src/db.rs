//! The container's one database connection (`lambda_postgres`), made as
//! `lambda_postgres_login` makes them.

use crate::config::{Config, ConfigError};
use crate::metrics::Tally;
use lambda_postgres_login::Login;

pub use lambda_postgres::{column, Connection, Params, QueryError};

pub type Database = lambda_postgres::Database<Login>;

/// Checks the TLS set-up; opens nothing and reads no secret (the first call does).
pub fn database(config: &Config) -> Result<Database, ConfigError> {
    let settings = lambda_postgres::Settings {
        connect_timeout: config.connect_timeout,
        query_timeout: config.query_timeout,
        idle_check_after: config.connection_idle_check,
        prepared_statements: config.prepared_statements,
        on_reconnect: || Tally::count(|tally| tally.reconnects += 1),
    };
    Ok(Database::new(
        Login::new(&config.database, &config.login)?,
        settings,
    ))
}
