//! The LTI storage as the Lambda functions run it: its configuration read from the
//! environment, the database login (`lambda_postgres_login`) plugged into the connection, log
//! set-up, the metrics line each invocation writes, errors as Lambda answers them, the
//! function URL and the deploy's custom resource. The storage itself is `lti_storage`.

pub mod config;
pub mod custom_resource;
pub mod emf;
pub mod http;
mod logging;

use lambda_postgres_login::Login;
use lti_storage::metrics::Tally;

pub use config::{Config, ConfigError};

/// The storage over the connection the functions make: `DATABASE_URL`, a secret or an IAM
/// token, with TLS as `sslmode` says.
pub type Storage = lti_storage::Storage<Login>;

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
pub fn try_init_from_env() -> Result<Storage, ConfigError> {
    let config = Config::from_env()?;
    logging::init(config.log_level);
    storage(&config)
}

/// The storage `config` describes. Checks the TLS set-up; opens nothing and reads no secret
/// (the first call does).
pub fn storage(config: &Config) -> Result<Storage, ConfigError> {
    let connection = config.connection;
    let settings = lambda_postgres::Settings {
        connect_timeout: connection.connect_timeout,
        query_timeout: connection.query_timeout,
        idle_check_after: connection.idle_check,
        prepared_statements: connection.prepared_statements,
        on_reconnect: Tally::count_reconnect,
    };
    let login = Login::new(&config.database, &config.login)?;
    Ok(Storage::new(
        &config.storage,
        lambda_postgres::Database::new(login, settings),
    ))
}

/// A failed invocation's answer: `errorType` is the kind, `errorMessage` the message.
pub fn diagnostic(err: lti_storage::Error) -> lambda_runtime::Diagnostic {
    lambda_runtime::Diagnostic {
        error_type: err.kind.as_str().to_owned(),
        error_message: err.message,
    }
}

/// Now, in milliseconds since 1970: the time Lambda's deadlines and CloudWatch's timestamps
/// are given in.
pub fn epoch_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_millis() as u64)
}
