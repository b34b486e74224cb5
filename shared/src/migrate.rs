//! Versioned SQL migrations from `migrations/`, applied in order and recorded.

use std::time::Duration;

use tokio_postgres::Client;

use crate::db::{Database, Retry};
use crate::error::Error;

/// Every migration, in order: (version, SQL). The version is the file name without `.sql`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_schema",
        include_str!("../../migrations/0001_schema.sql"),
    ),
    (
        "0002_nonces_used_at",
        include_str!("../../migrations/0002_nonces_used_at.sql"),
    ),
    (
        "0003_change_counter",
        include_str!("../../migrations/0003_change_counter.sql"),
    ),
    (
        "0004_change_counter_any_writer",
        include_str!("../../migrations/0004_change_counter_any_writer.sql"),
    ),
];

/// Serialises runners that start at once (two cold containers, a deploy script).
const LOCK_KEY: i64 = 0x4c54_4931_3353_5447; // "LTI13STG"

/// Time limit of `{"op":"migrate"}`: inside the storage function's 30 s Lambda timeout.
/// `storage migrate` on the command line, for large databases, waits as long as it takes.
pub const INVOCATION_TIME_LIMIT: Duration = Duration::from_secs(25);

/// Applies the migrations the database has not recorded yet, all in one transaction, within
/// `time_limit`, and returns their versions (empty when the schema is current).
pub async fn migrate(db: &Database, time_limit: Duration) -> Result<Vec<String>, Error> {
    db.run_with_time_limit(
        time_limit,
        Retry::Safe,
        "migration",
        |connection| async move {
            let client = connection.client();
            client.batch_execute("BEGIN").await?;
            match apply_missing(client).await {
                Ok(applied) => {
                    client.batch_execute("COMMIT").await?;
                    Ok(applied)
                }
                Err(err) => {
                    // Leave the shared connection usable; the failure to report is `err`.
                    let _ = client.batch_execute("ROLLBACK").await;
                    Err(err)
                }
            }
        },
    )
    .await
}

async fn apply_missing(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({LOCK_KEY});
             CREATE TABLE IF NOT EXISTS lti_storage_migrations (
                 version text PRIMARY KEY,
                 applied_at timestamp with time zone NOT NULL DEFAULT now()
             );"
        ))
        .await?;
    let recorded: Vec<String> = client
        .query("SELECT version FROM lti_storage_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if recorded.iter().any(|done| done == version) {
            continue;
        }
        client.batch_execute(sql).await?;
        client
            .execute(
                "INSERT INTO lti_storage_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
        tracing::info!(version, "migration applied");
        applied.push(version.to_string());
    }
    Ok(applied)
}
