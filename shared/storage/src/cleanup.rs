//! Deletes expired nonces, sessions and registration sessions in bounded batches, stopping
//! in time before a deadline; the next run finishes the rest.

use std::time::{Duration, Instant};

use postgres_types::Type;

use crate::db::{column, Connect};
use crate::error::Result;
use crate::model::CleanupCounts;
use crate::storage::Storage;

/// Time the `cleanup` op of the storage function gives a run: inside its 30 s Lambda timeout.
/// The next run (or the cleanup function's schedule) finishes what is left.
pub const INVOCATION_TIME_LIMIT: Duration = Duration::from_secs(20);

/// Time kept in hand before the deadline, beyond twice the slowest batch so far.
const SAFETY_MARGIN: Duration = Duration::from_secs(1);

/// Each table with its key. One statement per batch: pick up to $1 expired rows (skipping
/// rows another run holds), delete them, count them; only the count comes back.
const TABLES: [(&str, &str); 3] = [
    ("nonces", "nonce"),
    ("sessions", "id"),
    ("registration_sessions", "id"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupOutcome {
    pub counts: CleanupCounts,
    /// False when the deadline stopped the run with expired rows possibly left.
    pub finished: bool,
}

/// Deletes expired rows until none are left or `deadline` is near.
pub async fn cleanup<C: Connect>(
    storage: &Storage<C>,
    deadline: Instant,
) -> Result<CleanupOutcome> {
    let batch_size = i64::from(storage.cleanup_batch_size());
    let mut deleted = [0u64; 3];
    let mut slowest = Duration::ZERO;
    let mut finished = true;
    'tables: for (index, (table, key)) in TABLES.iter().enumerate() {
        let sql = format!(
            "WITH doomed AS (SELECT {key} FROM {table} WHERE expires_at < now()
                             LIMIT $1 FOR UPDATE SKIP LOCKED),
                  gone AS (DELETE FROM {table} t USING doomed WHERE t.{key} = doomed.{key}
                           RETURNING 1)
             SELECT count(*) AS deleted FROM gone"
        );
        loop {
            if Instant::now() + slowest * 2 + SAFETY_MARGIN >= deadline {
                finished = false;
                break 'tables;
            }
            let started = Instant::now();
            let sql = &sql;
            let row = storage
                .database()
                .run("cleanup", |db| async move {
                    db.query_one(sql, &[(&batch_size, Type::INT8)]).await
                })
                .await?;
            slowest = slowest.max(started.elapsed());
            let count: i64 = column(&row, 0, "cleanup count")?;
            deleted[index] += count as u64;
            if count < batch_size {
                break;
            }
        }
    }
    let [nonces_deleted, sessions_deleted, registration_sessions_deleted] = deleted;
    Ok(CleanupOutcome {
        counts: CleanupCounts {
            nonces_deleted,
            sessions_deleted,
            registration_sessions_deleted,
        },
        finished,
    })
}
