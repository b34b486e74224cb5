//! Log set-up shared by both functions: JSON lines on stdout, which Lambda sends to
//! CloudWatch Logs as they are.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init(level: LevelFilter) {
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(false)
                .with_span_list(false)
                .with_target(false)
                .without_time(), // CloudWatch stamps each line
        )
        .with(filter(level))
        .init();
}

/// `level` for the storage's own lines and its connection's and login's (the functions' metrics line is written whatever the
/// level). Dependencies never log below warnings, whatever `level` says: the runtime crate logs
/// every raw event at trace (nonces, sessions, client data). The runtime's line for a failed
/// invocation repeats the function's own one.
fn filter(level: LevelFilter) -> Targets {
    Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_target("lti_storage", level)
        .with_target("lambda_postgres", level)
        .with_target("lambda_postgres_login", level)
        .with_target("lti_storage_lambda", level)
        .with_target("lambda_runtime::layers::panic", LevelFilter::OFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn dependencies_never_log_below_warnings_and_the_runtime_never_repeats_an_error() {
        let verbose = filter(LevelFilter::TRACE);
        assert!(verbose.would_enable("lti_storage::db", &Level::TRACE));
        assert!(verbose.would_enable("lambda_postgres::database", &Level::INFO));
        assert!(verbose.would_enable("lambda_postgres_login::login", &Level::INFO));
        assert!(!verbose.would_enable("lambda_runtime::layers::api_response", &Level::TRACE));
        assert!(!verbose.would_enable("tokio_postgres::query", &Level::DEBUG));
        assert!(verbose.would_enable("lambda_runtime::layers::api_client", &Level::ERROR));
        assert!(!verbose.would_enable("lambda_runtime::layers::panic", &Level::ERROR));
        let quiet = filter(LevelFilter::ERROR);
        assert!(!quiet.would_enable("lambda_runtime::layers::api_client", &Level::WARN));
        assert!(!quiet.would_enable("lti_storage::db", &Level::WARN));
    }
}
