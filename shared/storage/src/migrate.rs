//! Versioned SQL migrations from `migrations/`, applied in order and recorded.

use std::time::Duration;

use lambda_postgres::Migrations;

use crate::db::{Connect, Database};
use crate::error::Error;

/// Every migration, in order: (version, SQL). The version is the file name without `.sql`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_schema",
        include_str!("../../../migrations/0001_schema.sql"),
    ),
    (
        "0002_nonces_used_at",
        include_str!("../../../migrations/0002_nonces_used_at.sql"),
    ),
    (
        "0003_change_counter",
        include_str!("../../../migrations/0003_change_counter.sql"),
    ),
    (
        "0004_change_counter_any_writer",
        include_str!("../../../migrations/0004_change_counter_any_writer.sql"),
    ),
    (
        "0005_change_counter_owner_only",
        include_str!("../../../migrations/0005_change_counter_owner_only.sql"),
    ),
    (
        "0006_change_counter_per_statement",
        include_str!("../../../migrations/0006_change_counter_per_statement.sql"),
    ),
];

/// The advisory lock that serialises runners starting at once (two cold containers, a deploy
/// script). A session holding it keeps the migrations out.
pub const LOCK_KEY: i64 = 0x4c54_4931_3353_5447; // "LTI13STG"

/// Time limit of `{"op":"migrate"}`: inside the storage function's 30 s Lambda timeout.
/// `storage migrate` on the command line, for large databases, waits up to a day; a deploy's
/// custom resource gets the cleanup function's time (`lti_storage_lambda::custom_resource`).
pub const INVOCATION_TIME_LIMIT: Duration = Duration::from_secs(25);

/// Applies the migrations the database has not recorded yet, all in one transaction, within
/// `time_limit`, and returns their versions (empty when the schema is current); see
/// `lambda_postgres::migrate`.
pub async fn migrate<C: Connect>(
    db: &Database<C>,
    time_limit: Duration,
) -> Result<Vec<String>, Error> {
    let migrations = Migrations {
        list: MIGRATIONS,
        table: "lti_storage_migrations",
        lock_key: LOCK_KEY,
    };
    Ok(lambda_postgres::migrate(db, &migrations, time_limit).await?)
}
