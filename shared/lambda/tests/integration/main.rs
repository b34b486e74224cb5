//! The storage on a real PostgreSQL: one test binary (one link, one parallel run) whose
//! modules are the areas tested, e.g. `cargo test -p lti-storage-lambda --test integration clients::`.
//! Each test works in a schema of its own (test_support::TestDb) on the server named by
//! TEST_DATABASE_URL: `scripts/with-postgres.sh cargo test -p lti-storage-lambda`.

mod change_counter;
mod cleanup;
mod clients;
mod concurrency;
mod custom_resource;
mod deployments;
mod faults;
mod fuzz;
mod http;
mod http_errors;
mod http_routes;
mod iam_auth;
mod input_checks;
mod invocation;
mod launch_config_cache;
mod launch_configs;
mod limits;
mod metrics;
mod nonces;
mod pooler;
mod readme;
mod registration_sessions;
mod schema;
mod secret_login;
mod secrets;
mod session_values;
mod sessions;
mod statements;
mod stored_rows;
mod surfaces;
mod template;
mod tls;
mod values;
