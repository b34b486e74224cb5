//! The way into PostgreSQL for `lambda_postgres`: where the database is and how much its
//! certificate is trusted (DATABASE_URL, libpq's five `sslmode`s), TLS that never reveals the
//! password to a server whose identity was not checked, and the login (the URL's password, a
//! Secrets Manager secret read at run time, an RDS IAM token). `Login` is the
//! `lambda_postgres::Connect` the functions plug in.

mod attempt;
mod config;
mod guard;
mod login;
mod secret;
mod tls;

pub use config::{
    config_error, from_lookup, parse_flag, ConfigError, DatabaseConfig, DatabaseLogin, SslMode,
};
pub use guard::Guarded;
pub use login::Login;
