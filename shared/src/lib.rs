//! LTI 1.3 storage over PostgreSQL for AWS Lambda: configuration, the container's database
//! connection (`lambda_postgres`, logged in by `lambda_postgres_login`) and caches, the
//! storage operations, migrations and the expiry cleanup.

pub mod access;
mod cache;
pub mod cleanup;
pub mod config;
pub mod custom_resource;
pub mod db;
pub mod error;
pub mod http;
pub mod input;
mod logging;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod request;
pub mod storage;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use request::Request;
pub use storage::Storage;

/// What each function does once at init: read the configuration, start logging, build the
/// storage (no connection yet). A missing or malformed variable stops the process with a
/// message naming it, so Lambda reports an init error instead of serving calls.
pub fn init_from_env() -> Storage {
    try_init_from_env().unwrap_or_else(|err| {
        eprintln!("{err}");
        std::process::exit(2)
    })
}

/// `init_from_env` that hands the configuration error back instead of stopping, for a
/// function that must still answer its invocations (the cleanup function answers
/// CloudFormation).
pub fn try_init_from_env() -> Result<Storage, config::ConfigError> {
    let config = Config::from_env()?;
    logging::init(config.log_level);
    Storage::new(&config)
}
