//! The expiry cleanup: deletes exactly the expired rows of nonces, sessions and registration
//! sessions, in batches, stops before its deadline, and reports exact counts.

use std::time::{Duration, Instant};

use lti_storage::cleanup::{cleanup, CleanupOutcome};
use lti_storage::model::CleanupCounts;
use lti_storage_lambda::Storage;
use serde_json::json;
use test_support::TestDb;

/// A deadline as far away as a Lambda's longest timeout.
fn generous_deadline() -> Instant {
    Instant::now() + Duration::from_secs(15 * 60)
}

fn counts(nonces: u64, sessions: u64, registration_sessions: u64) -> CleanupCounts {
    CleanupCounts {
        nonces_deleted: nonces,
        sessions_deleted: sessions,
        registration_sessions_deleted: registration_sessions,
    }
}

async fn run(storage: &Storage, deadline: Instant) -> CleanupOutcome {
    cleanup(storage, deadline).await.expect("cleanup runs")
}

/// The keys left in `table`, sorted.
async fn keys(sql: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let key = if table == "nonces" {
        "nonce"
    } else {
        "id::text"
    };
    sql.query(&format!("SELECT {key} FROM {table} ORDER BY 1"), &[])
        .await
        .unwrap_or_else(|err| panic!("read {table}: {err}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The rows in `table`, as the cleanup counts them.
async fn rows(db: &TestDb, table: &str) -> u64 {
    db.count(&format!("SELECT count(*) FROM {table}")).await as u64
}

/// `n` expired nonces, sessions and registration sessions with generated keys.
async fn insert_expired(sql: &tokio_postgres::Client, nonces: u32, sessions: u32, regs: u32) {
    sql.batch_execute(&format!(
        "INSERT INTO nonces (nonce, expires_at)
           SELECT 'expired-' || i, now() - interval '1 hour' - i * interval '1 second'
           FROM generate_series(1, {nonces}) AS i;
         INSERT INTO sessions (data, expires_at)
           SELECT jsonb_build_object('n', i), now() - interval '1 hour'
           FROM generate_series(1, {sessions}) AS i;
         INSERT INTO registration_sessions (data, expires_at)
           SELECT jsonb_build_object('n', i), now() - interval '1 hour'
           FROM generate_series(1, {regs}) AS i;"
    ))
    .await
    .expect("insert expired rows");
}

const LIVE_SESSION: &str = "11111111-1111-4111-8111-111111111111";
const LIVE_REGISTRATION: &str = "22222222-2222-4222-8222-222222222222";
const OTHER_LIVE_REGISTRATION: &str = "33333333-3333-4333-8333-333333333333";

/// Unexpired rows in every table, including a used nonce (used is not expired).
async fn insert_unexpired(sql: &tokio_postgres::Client) {
    sql.batch_execute(&format!(
        "INSERT INTO nonces (nonce, expires_at, used_at) VALUES
           ('live-unused', now() + interval '10 minutes', NULL),
           ('live-used', now() + interval '10 minutes', now());
         INSERT INTO sessions (id, data, expires_at) VALUES
           ('{LIVE_SESSION}', '{{\"user\":\"u\"}}', now() + interval '1 day');
         INSERT INTO registration_sessions (id, data, expires_at) VALUES
           ('{LIVE_REGISTRATION}', '{{}}', now() + interval '1 hour'),
           ('{OTHER_LIVE_REGISTRATION}', '{{}}', now() + interval '2 minutes');"
    ))
    .await
    .expect("insert unexpired rows");
}

/// Records the size of every DELETE statement on `table` in `{table}_batches`, after
/// sleeping `sleep_ms` in it (a slow database).
async fn record_batches(db: &TestDb, table: &str, sleep_ms: u32) {
    let schema = &db.schema;
    db.sql()
        .await
        .batch_execute(&format!(
            "CREATE TABLE {schema}.{table}_batches (n bigint NOT NULL);
             CREATE FUNCTION {schema}.record_{table}_batch() RETURNS trigger
             LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM pg_sleep({sleep_ms} / 1000.0);
                 INSERT INTO {schema}.{table}_batches SELECT count(*) FROM gone;
                 RETURN NULL;
             END
             $$;
             CREATE TRIGGER record_batch AFTER DELETE ON {schema}.{table}
                 REFERENCING OLD TABLE AS gone
                 FOR EACH STATEMENT EXECUTE FUNCTION {schema}.record_{table}_batch();"
        ))
        .await
        .expect("create the batch recorder");
}

/// The sizes of the DELETE statements recorded on `table` that deleted something.
async fn batches(sql: &tokio_postgres::Client, table: &str) -> Vec<i64> {
    sql.query(&format!("SELECT n FROM {table}_batches WHERE n > 0"), &[])
        .await
        .expect("read the batches")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn assert_only_unexpired_left(sql: &tokio_postgres::Client) {
    assert_eq!(keys(sql, "nonces").await, ["live-unused", "live-used"]);
    assert_eq!(keys(sql, "sessions").await, [LIVE_SESSION]);
    assert_eq!(
        keys(sql, "registration_sessions").await,
        [LIVE_REGISTRATION, OTHER_LIVE_REGISTRATION]
    );
}

#[tokio::test]
async fn expired_rows_go_and_unexpired_rows_stay() {
    let db = TestDb::migrated().await;
    let sql = db.sql().await;
    insert_expired(&sql, 3, 4, 2).await;
    // A nonce that expired a moment ago, and one used before it expired.
    sql.batch_execute(
        "INSERT INTO nonces (nonce, expires_at, used_at) VALUES
           ('just-expired', now() - interval '1 millisecond', NULL),
           ('used-then-expired', now() - interval '1 minute', now() - interval '2 minutes')",
    )
    .await
    .expect("insert");
    insert_unexpired(&sql).await;

    let storage = db.storage();
    let outcome = run(&storage, generous_deadline()).await;
    assert_eq!(
        outcome,
        CleanupOutcome {
            counts: counts(5, 4, 2),
            finished: true
        }
    );
    assert_only_unexpired_left(&sql).await;

    // Nothing left to do: a second run deletes nothing.
    let again = run(&storage, generous_deadline()).await;
    assert_eq!(
        again,
        CleanupOutcome {
            counts: counts(0, 0, 0),
            finished: true
        }
    );
    assert_only_unexpired_left(&sql).await;
}

#[tokio::test]
async fn an_empty_database_is_cleaned_without_error() {
    let db = TestDb::migrated().await;
    let outcome = run(&db.storage(), generous_deadline()).await;
    assert_eq!(
        outcome,
        CleanupOutcome {
            counts: counts(0, 0, 0),
            finished: true
        }
    );
}

#[tokio::test]
async fn many_batches_delete_every_expired_row() {
    let db = TestDb::migrated().await;
    let sql = db.sql().await;
    // 200 registration sessions: exactly two full batches, then an empty one.
    insert_expired(&sql, 1050, 250, 200).await;
    insert_unexpired(&sql).await;

    for table in ["nonces", "sessions", "registration_sessions"] {
        record_batches(&db, table, 0).await;
    }

    let storage = db.storage_with(&[("CLEANUP_BATCH_SIZE", "100")]);
    assert_eq!(storage.cleanup_batch_size(), 100);
    let outcome = run(&storage, generous_deadline()).await;
    assert_eq!(
        outcome,
        CleanupOutcome {
            counts: counts(1050, 250, 200),
            finished: true
        }
    );
    assert_only_unexpired_left(&sql).await;

    // Bounded batches: no statement deleted more than 100 rows.
    for (table, total) in [
        ("nonces", 1050),
        ("sessions", 250),
        ("registration_sessions", 200),
    ] {
        let sizes = batches(&sql, table).await;
        assert!(sizes.iter().all(|&n| n <= 100), "{table}: {sizes:?}");
        assert_eq!(sizes.iter().sum::<i64>(), total, "{table}: {sizes:?}");
    }
}

#[tokio::test]
async fn a_run_with_slow_batches_stops_before_its_deadline() {
    let db = TestDb::migrated().await;
    let sql = db.sql().await;
    insert_expired(&sql, 2000, 0, 0).await;
    // Every batch takes at least 300 ms.
    record_batches(&db, "nonces", 300).await;
    let storage = db.storage_with(&[("CLEANUP_BATCH_SIZE", "100")]);

    let deadline = Instant::now() + Duration::from_secs(3);
    let first = run(&storage, deadline).await;
    assert!(
        Instant::now() < deadline,
        "the run returned after its deadline"
    );
    assert!(!first.finished, "{first:?}");
    assert!(
        first.counts.nonces_deleted > 0,
        "it used the time it had: {first:?}"
    );
    assert!(first.counts.nonces_deleted < 2000, "{first:?}");
    assert_eq!(
        rows(&db, "nonces").await,
        2000 - first.counts.nonces_deleted
    );
}

#[tokio::test]
async fn a_deadline_already_reached_stops_the_run_and_the_next_run_finishes() {
    let db = TestDb::migrated().await;
    let sql = db.sql().await;
    insert_expired(&sql, 1050, 250, 30).await;
    insert_unexpired(&sql).await;
    let expired_total = 1050 + 250 + 30;
    let storage = db.storage_with(&[("CLEANUP_BATCH_SIZE", "100")]);

    // The Lambda has (nearly) no time left.
    let started = Instant::now();
    let first = run(&storage, Instant::now() + Duration::from_millis(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a run with no time left returns at once, took {:?}",
        started.elapsed()
    );
    assert!(!first.finished, "{first:?}");
    let first_total = first.counts.nonces_deleted
        + first.counts.sessions_deleted
        + first.counts.registration_sessions_deleted;
    assert!(
        first_total <= 100,
        "at most one batch with no time left: {first:?}"
    );
    let left = rows(&db, "nonces").await
        + rows(&db, "sessions").await
        + rows(&db, "registration_sessions").await;
    assert_eq!(left, expired_total + 5 - first_total, "the counts are true");

    let second = run(&storage, generous_deadline()).await;
    assert!(second.finished, "{second:?}");
    assert_eq!(
        first.counts.nonces_deleted + second.counts.nonces_deleted,
        1050
    );
    assert_eq!(
        first.counts.sessions_deleted + second.counts.sessions_deleted,
        250
    );
    assert_eq!(
        first.counts.registration_sessions_deleted + second.counts.registration_sessions_deleted,
        30
    );
    assert_only_unexpired_left(&sql).await;
}

#[tokio::test]
async fn a_deadline_in_the_past_deletes_nothing() {
    let db = TestDb::migrated().await;
    let sql = db.sql().await;
    insert_expired(&sql, 5, 5, 5).await;
    let storage = db.storage();
    let past = Instant::now()
        .checked_sub(Duration::from_secs(1))
        .expect("an instant a second ago");
    let outcome = run(&storage, past).await;
    assert_eq!(
        outcome,
        CleanupOutcome {
            counts: counts(0, 0, 0),
            finished: false
        }
    );
    assert_eq!(rows(&db, "nonces").await, 5);
    assert_eq!(rows(&db, "sessions").await, 5);
    assert_eq!(rows(&db, "registration_sessions").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_delete_each_row_once() {
    // An overrunning run and the next scheduled one overlap.
    let db = TestDb::migrated().await;
    let sql = db.sql().await;
    insert_expired(&sql, 1050, 250, 120).await;
    insert_unexpired(&sql).await;
    let a = db.storage_with(&[("CLEANUP_BATCH_SIZE", "100")]);
    let b = db.storage_with(&[("CLEANUP_BATCH_SIZE", "100")]);
    let (ra, rb) = tokio::join!(
        cleanup(&a, generous_deadline()),
        cleanup(&b, generous_deadline())
    );
    let (ra, rb) = (ra.expect("first run"), rb.expect("second run"));
    assert!(ra.finished && rb.finished, "{ra:?} {rb:?}");
    assert_eq!(ra.counts.nonces_deleted + rb.counts.nonces_deleted, 1050);
    assert_eq!(ra.counts.sessions_deleted + rb.counts.sessions_deleted, 250);
    assert_eq!(
        ra.counts.registration_sessions_deleted + rb.counts.registration_sessions_deleted,
        120
    );
    assert_only_unexpired_left(&sql).await;
}

#[tokio::test]
async fn the_counts_serialize_as_the_spec_says() {
    let db = TestDb::migrated().await;
    let sql = db.sql().await;
    insert_expired(&sql, 2, 1, 3).await;
    let outcome = run(&db.storage(), generous_deadline()).await;
    assert_eq!(
        serde_json::to_value(outcome.counts).expect("counts serialize"),
        json!({"noncesDeleted": 2, "sessionsDeleted": 1, "registrationSessionsDeleted": 3})
    );
}
