//! Log set-up shared by both functions: JSON lines on stdout, which Lambda sends to
//! CloudWatch Logs as they are.

use tracing::level_filters::LevelFilter;

pub fn init(level: LevelFilter) {
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time() // CloudWatch stamps each line
        .init();
}
