//! Nonces (the README's operations table): stored once, valid once and only until they expire,
//! consumed by exactly one of many containers at once.

use std::sync::Arc;
use std::time::Duration;

use lti_storage::ErrorKind;
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{fails, ok, TestDb};
use time::OffsetDateTime;

const FUTURE: &str = "2099-01-01T00:00:00.000Z";

async fn store_nonce(storage: &Storage, nonce: &str, expires_at: Value) {
    let result = ok(
        storage,
        json!({"op": "storeNonce", "nonce": nonce, "expiresAt": expires_at}),
    )
    .await;
    assert_eq!(result, Value::Null, "storeNonce returns null");
}

async fn validate_nonce(storage: &Storage, nonce: &str) -> Value {
    ok(storage, json!({"op": "validateNonce", "nonce": nonce})).await
}

async fn nonce_expires_at(db: &TestDb, nonce: &str) -> OffsetDateTime {
    db.sql()
        .await
        .query_one("SELECT expires_at FROM nonces WHERE nonce = $1", &[&nonce])
        .await
        .expect("the nonce row exists")
        .get(0)
}

#[tokio::test]
async fn a_stored_nonce_validates_exactly_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    store_nonce(&storage, "n-0S6_WzA2Mj", json!(FUTURE)).await;
    assert_eq!(validate_nonce(&storage, "n-0S6_WzA2Mj").await, json!(true));
    assert_eq!(validate_nonce(&storage, "n-0S6_WzA2Mj").await, json!(false));
    // Nor from another container.
    assert_eq!(
        validate_nonce(&db.storage(), "n-0S6_WzA2Mj").await,
        json!(false)
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM nonces WHERE nonce = 'n-0S6_WzA2Mj' AND used_at IS NOT NULL"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn storing_an_existing_nonce_is_a_conflict() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    store_nonce(&storage, "dup-nonce", json!(FUTURE)).await;
    let err = fails(
        &storage,
        json!({"op": "storeNonce", "nonce": "dup-nonce", "expiresAt": "2098-06-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(db.count("SELECT count(*) FROM nonces").await, 1);
    // The first row is kept as it was.
    assert_eq!(
        nonce_expires_at(&db, "dup-nonce").await,
        OffsetDateTime::from_unix_timestamp(4_070_908_800).unwrap()
    );

    // Even a used nonce cannot be stored again (that would re-arm it).
    assert_eq!(validate_nonce(&storage, "dup-nonce").await, json!(true));
    let err = fails(
        &storage,
        json!({"op": "storeNonce", "nonce": "dup-nonce", "expiresAt": FUTURE}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(validate_nonce(&storage, "dup-nonce").await, json!(false));
}

#[tokio::test]
async fn an_expired_nonce_does_not_validate() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    store_nonce(&storage, "old", json!("2020-01-01T00:00:00.000Z")).await;
    let a_second_ago = OffsetDateTime::now_utc().unix_timestamp() * 1000 - 1000;
    store_nonce(&storage, "just-expired", json!(a_second_ago)).await;
    assert_eq!(validate_nonce(&storage, "old").await, json!(false));
    assert_eq!(validate_nonce(&storage, "just-expired").await, json!(false));
    assert_eq!(
        db.count("SELECT count(*) FROM nonces WHERE used_at IS NOT NULL")
            .await,
        0
    );
}

#[tokio::test]
async fn an_unknown_nonce_does_not_validate() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    store_nonce(&storage, "known", json!(FUTURE)).await;
    assert_eq!(validate_nonce(&storage, "unknown").await, json!(false));
    assert_eq!(validate_nonce(&storage, "KNOWN").await, json!(false));
    assert_eq!(validate_nonce(&storage, "").await, json!(false));
    // A value that could never have been stored is just false too.
    assert_eq!(
        validate_nonce(&storage, &"x".repeat(300)).await,
        json!(false)
    );
    assert_eq!(validate_nonce(&storage, "known").await, json!(true));
}

#[tokio::test]
async fn expires_at_accepts_rfc3339_strings_and_epoch_millis() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let new_year_2030 = OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap();

    store_nonce(&storage, "js-date", json!("2030-01-01T00:00:00.000Z")).await;
    assert_eq!(nonce_expires_at(&db, "js-date").await, new_year_2030);

    store_nonce(&storage, "offset", json!("2030-01-01T01:00:00+01:00")).await;
    assert_eq!(nonce_expires_at(&db, "offset").await, new_year_2030);

    store_nonce(&storage, "millis", json!(1_893_456_000_123_i64)).await;
    assert_eq!(
        nonce_expires_at(&db, "millis").await.unix_timestamp_nanos(),
        1_893_456_000_123_000_000
    );

    store_nonce(&storage, "fraction", json!("2030-01-01T00:00:00.250Z")).await;
    assert_eq!(
        nonce_expires_at(&db, "fraction").await,
        new_year_2030 + Duration::from_millis(250)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_50_concurrent_validations_from_50_containers_exactly_one_succeeds() {
    let db = TestDb::migrated().await;
    store_nonce(&db.storage(), "replayed-nonce", json!(FUTURE)).await;

    let containers: Vec<Arc<Storage>> = (0..50).map(|_| Arc::new(db.storage())).collect();
    // Open every container's connection first, so the 50 validations really overlap.
    for storage in &containers {
        assert_eq!(validate_nonce(storage, "warm-up").await, json!(false));
    }
    // The storage's futures are not `Send` (so not `tokio::spawn`-able): each container gets a
    // thread of its own that drives its call on this multi-thread runtime.
    let runtime = tokio::runtime::Handle::current();
    let start = Arc::new(std::sync::Barrier::new(containers.len()));
    let tasks: Vec<_> = containers
        .iter()
        .cloned()
        .map(|storage| {
            let start = start.clone();
            let runtime = runtime.clone();
            tokio::task::spawn_blocking(move || {
                start.wait();
                runtime.block_on(validate_nonce(&storage, "replayed-nonce"))
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("the task completes") {
            Value::Bool(true) => accepted += 1,
            Value::Bool(false) => {}
            other => panic!("validateNonce returned {other}"),
        }
    }
    assert_eq!(
        accepted, 1,
        "exactly one of 50 concurrent validations is true"
    );
    assert_eq!(
        validate_nonce(&containers[0], "replayed-nonce").await,
        json!(false)
    );
}
