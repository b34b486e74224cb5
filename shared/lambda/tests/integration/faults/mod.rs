//! Faults reproduced for real: a PostgreSQL that restarts or is down, a backend that is
//! terminated, a proxy that goes silent or loses an answer, a server out of connections.
//! Nothing is lost, nothing is applied twice, and no call waits past its time limits.
//! Here: what the fault tests share (and the nonce row locks the concurrency and migration
//! tests take too).

mod connection;
mod load;
mod lost_answers;
mod nonce_races;

use std::time::{Duration, Instant};

use lti_storage_lambda::Storage;
use serde_json::{json, Map, Value};
use test_support::proxy::Proxy;
use test_support::{storage_at, TestDb};
use time::OffsetDateTime;

/// A small session with the id `id`, as addSession takes it.
fn session(id: &str) -> Map<String, Value> {
    let Value::Object(map) = json!({"id": id, "user": {"name": "Ada"}, "roles": ["Learner"]})
    else {
        unreachable!()
    };
    map
}

/// A storage whose connection goes through `proxy` to the test's schema.
fn storage_via(db: &TestDb, proxy: &Proxy, vars: &[(&str, &str)]) -> Storage {
    storage_at(&proxy.redirect(&db.url), vars)
}

/// The nonce's row as a user would look at it: (expires_at, used_at).
async fn nonce_row(db: &TestDb, nonce: &str) -> Option<(OffsetDateTime, Option<OffsetDateTime>)> {
    db.sql()
        .await
        .query_opt(
            "SELECT expires_at, used_at FROM nonces WHERE nonce = $1",
            &[&nonce],
        )
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get(1)))
}

/// Waits until `count` backends whose `application_name` starts with `prefix` wait on a lock,
/// or one of `calls` has ended (while the row's lock is held, only by failing).
pub(super) async fn until_waiting_on_a_lock<T>(
    admin: &tokio_postgres::Client,
    prefix: &str,
    count: i64,
    calls: &[tokio::task::JoinHandle<T>],
) {
    let started = Instant::now();
    loop {
        if calls.iter().any(tokio::task::JoinHandle::is_finished) {
            return;
        }
        let waiting = waiting_on_a_lock(admin, prefix).await;
        if waiting == count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{waiting} backends of {prefix} wait on a lock, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many backends whose `application_name` starts with `prefix` wait on a lock now.
pub(super) async fn waiting_on_a_lock(admin: &tokio_postgres::Client, prefix: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE starts_with(application_name, $1) AND wait_event_type = 'Lock'",
            &[&prefix],
        )
        .await
        .unwrap()
        .get(0)
}

/// A transaction holding the lock of a nonce's row, so that calls consuming it queue up.
pub(super) async fn lock_nonce(db: &TestDb, nonce: &str) -> tokio_postgres::Client {
    let holder = db.sql().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM nonces WHERE nonce = $1 FOR UPDATE",
            &[&nonce],
        )
        .await
        .unwrap();
    holder
}

pub(super) async fn store_for_an_hour(db: &TestDb, nonce: &str) {
    db.sql()
        .await
        .execute(
            "INSERT INTO nonces (nonce, expires_at) VALUES ($1, now() + interval '1 hour')",
            &[&nonce],
        )
        .await
        .unwrap();
}
