//! Versioned SQL migrations, applied in order and recorded.

use std::time::{Duration, Instant};

use tokio::time::timeout_at;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::{Connect, Database, Error};

/// A schema's migrations and where their runs are recorded. The names are the caller's own
/// constants, put into SQL as they are.
#[derive(Debug, Clone, Copy)]
pub struct Migrations<'a> {
    /// Every migration, in order: (version, SQL).
    pub list: &'a [(&'a str, &'a str)],
    /// The table recording the versions applied.
    pub table: &'a str,
    /// The advisory lock that serialises runners starting at once (two cold containers, a
    /// deploy script). A session holding it keeps the migrations out.
    pub lock_key: i64,
}

/// Why migrations stopped before finishing (`Error::MigrationsOutOfTime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfTime {
    /// A lock they need is held by another session.
    Lock,
    /// A statement ran too long.
    Statement,
}

/// Applies the migrations the database has not recorded yet, all in one transaction, within
/// `time_limit`, and returns their versions (empty when the schema is current).
///
/// On a connection of its own, closed afterwards: the container's shared connection carries
/// the calls in flight beside this one (Lambda Managed Instances), which would otherwise run
/// inside the migrations' transaction, and an error of one of them (a Conflict) would roll
/// back both the migrations and writes already answered.
///
/// The server itself gives up before `time_limit` (lock and statement timeouts, which it
/// counts per statement), so it rolls back and releases every lock even if this side is gone
/// by then; closing the connection rolls back whatever is left. Never repeated: DDL sent
/// again on a fresh connection could queue behind the first attempt's locks.
pub async fn migrate<C: Connect>(
    db: &Database<C>,
    migrations: &Migrations<'_>,
    time_limit: Duration,
) -> Result<Vec<String>, Error> {
    // From before the connect, which counts against the limit too (a secret's read, a login).
    let ends = tokio::time::Instant::now() + time_limit;
    let limits = Limits::new(time_limit);
    let client = db.connect_own().await?;
    let out_of_time = |cause| Error::MigrationsOutOfTime {
        cause,
        limit: time_limit,
    };
    match timeout_at(ends, apply_missing(&client, migrations, limits)).await {
        Ok(Ok(applied)) => Ok(applied),
        Ok(Err(err)) => Err(match limits.exceeded(&err) {
            Some(cause) => out_of_time(cause),
            None => Error::Db {
                err,
                what: "migration",
            },
        }),
        // The server's own timeouts end first; this is a server that stopped answering.
        Err(_) => Err(out_of_time(OutOfTime::Statement)),
    }
}

/// When the server stops waiting for locks and stops running statements.
#[derive(Clone, Copy)]
struct Limits {
    locks_until: Instant,
    statements_until: Instant,
}

impl Limits {
    /// Lock waits end first (and say so); a long statement gets half the margin more; the
    /// other half leaves time for the error and the rollback to come back.
    fn new(time_limit: Duration) -> Limits {
        let margin = (time_limit / 5).min(Duration::from_secs(2));
        let started = Instant::now();
        Limits {
            locks_until: started + time_limit - margin,
            statements_until: started + time_limit - margin / 2,
        }
    }

    /// `SET LOCAL`s bounding what follows in the transaction by these limits.
    fn set_local(&self) -> String {
        format!(
            "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {};",
            millis_until(self.locks_until),
            millis_until(self.statements_until)
        )
    }

    /// Whether `err` is one of these limits running out. Not before its time: a query
    /// cancelled by hand comes back sooner.
    fn exceeded(&self, err: &tokio_postgres::Error) -> Option<OutOfTime> {
        let now = Instant::now();
        match err.code() {
            Some(code) if *code == SqlState::LOCK_NOT_AVAILABLE && now >= self.locks_until => {
                Some(OutOfTime::Lock)
            }
            Some(code) if *code == SqlState::QUERY_CANCELED && now >= self.statements_until => {
                Some(OutOfTime::Statement)
            }
            _ => None,
        }
    }
}

/// Milliseconds from now to `until` for a server timeout: rounded up, so the server never
/// gives up before `until`, and at least 1 (0 turns the timeout off).
fn millis_until(until: Instant) -> u128 {
    (until.saturating_duration_since(Instant::now()).as_millis() + 1).min(i32::MAX as u128)
}

async fn apply_missing(
    client: &Client,
    migrations: &Migrations<'_>,
    limits: Limits,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let Migrations {
        list,
        table,
        lock_key,
    } = migrations;
    client
        .batch_execute(&format!(
            "BEGIN;
             {}
             SELECT pg_advisory_xact_lock({lock_key});
             CREATE TABLE IF NOT EXISTS {table} (
                 version text PRIMARY KEY,
                 applied_at timestamp with time zone NOT NULL DEFAULT now()
             );",
            limits.set_local()
        ))
        .await?;
    let recorded: Vec<String> = client
        .query(&format!("SELECT version FROM {table}"), &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, sql) in list.iter() {
        if recorded.iter().any(|done| done == version) {
            continue;
        }
        // Set again before each file: each of its statements gets what was left when the file
        // began, not the whole limit.
        client
            .batch_execute(&format!("{}\n{sql}", limits.set_local()))
            .await?;
        client
            .execute(
                &format!("INSERT INTO {table} (version) VALUES ($1)"),
                &[version],
            )
            .await?;
        tracing::info!(version, "migration applied");
        applied.push(version.to_string());
    }
    client.batch_execute("COMMIT").await?;
    Ok(applied)
}
