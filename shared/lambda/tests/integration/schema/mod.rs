//! Migrations: the schema they lay out is exactly `@lti-tool/postgresql`'s, checked from the
//! catalog; they are idempotent, safe to start twice at once, keep every row of a database
//! the TypeScript package already created, and give up within their time limit. Here: what
//! these tests share.

mod runs;
mod spec;
mod time_limit;
mod typescript;

use lti_storage::migrate::{INVOCATION_TIME_LIMIT, MIGRATIONS};
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{ok, TestDb};

/// The tables of `@lti-tool/postgresql`'s schema.
const TABLES: &[&str] = &[
    "clients",
    "deployments",
    "nonces",
    "registration_sessions",
    "sessions",
];

/// Where the migrations record what they applied.
const MIGRATIONS_TABLE: &str = "lti_storage_migrations";

/// Runs the migrations as `{"op":"migrate"}` does.
async fn migrate(storage: &Storage) -> lti_storage::Result<Vec<String>> {
    lti_storage::migrate::migrate(storage.database(), INVOCATION_TIME_LIMIT).await
}

fn versions() -> Vec<String> {
    MIGRATIONS.iter().map(|(v, _)| v.to_string()).collect()
}

async fn recorded_versions(db: &TestDb) -> Vec<String> {
    db.sql()
        .await
        .query(
            &format!("SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version"),
            &[],
        )
        .await
        .expect("read the migrations record")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every row of `table` as JSON, in key order, without `used_at` when `without_used_at`.
async fn rows(sql: &tokio_postgres::Client, table: &str, without_used_at: bool) -> Value {
    let minus = if without_used_at { " - 'used_at'" } else { "" };
    sql.query_one(
        &format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t){minus} ORDER BY t::text), '[]')
             FROM {table} t"
        ),
        &[],
    )
    .await
    .unwrap_or_else(|err| panic!("read {table}: {err}"))
    .get(0)
}

async fn all_rows(sql: &tokio_postgres::Client, without_used_at: bool) -> Vec<Value> {
    let mut all = Vec::new();
    for table in TABLES {
        all.push(rows(sql, table, without_used_at).await);
    }
    all
}

async fn validate_nonce(storage: &Storage, nonce: &str) -> bool {
    ok(storage, json!({"op": "validateNonce", "nonce": nonce}))
        .await
        .as_bool()
        .expect("validateNonce returns a boolean")
}
