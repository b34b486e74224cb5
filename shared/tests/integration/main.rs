//! The storage on a real PostgreSQL: one test binary (one link, one parallel run) whose
//! modules are the areas tested, e.g. `cargo test -p lti-storage --test integration clients::`.
//! Each test works in a schema of its own (test_support::TestDb) on the server named by
//! TEST_DATABASE_URL: `scripts/with-postgres.sh cargo test -p lti-storage`.

mod cleanup;
mod clients;
mod faults;
mod fuzz;
mod http;
mod invocation;
mod nonces_sessions;
mod schema;
mod secrets;
mod statements;
mod tls;
mod values;
