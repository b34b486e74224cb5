//! Nonces (single use, atomic), sessions and registration sessions (the README's
//! operations table), and the session cache (its Design section).

use std::sync::Arc;
use std::time::Duration;

use lti_storage::ErrorKind;
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{epoch_ms_in, fails, ok, TestDb};
use time::OffsetDateTime;
use uuid::Uuid;

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

// ---- nonces --------------------------------------------------------------------------------

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

// ---- sessions ------------------------------------------------------------------------------

fn session(id: &str) -> Value {
    json!({
        "id": id,
        "user": {"id": "user-1", "name": "Ada Lovelace", "roles": ["Instructor"]},
        "context": {"id": "course-42", "title": "Analytical Engines"},
        "platform": {"issuer": "https://canvas.instructure.com", "clientId": "10000000000001"},
        "launch": {"target": "https://tool.example/launch"},
        "customClaims": {"n": 1, "ok": true, "none": null}
    })
}

async fn add_session(storage: &Storage, session: &Value) -> Value {
    ok(storage, json!({"op": "addSession", "session": session})).await
}

async fn get_session(storage: &Storage, id: &str) -> Value {
    ok(storage, json!({"op": "getSession", "sessionId": id})).await
}

#[tokio::test]
async fn add_session_returns_its_id_and_get_session_returns_it() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4().to_string();
    let stored = session(&id);
    assert_eq!(add_session(&storage, &stored).await, json!(id));
    assert_eq!(get_session(&storage, &id).await, stored);
    // Read back by another container (from the database, not this one's cache).
    assert_eq!(get_session(&db.storage(), &id).await, stored);
}

#[tokio::test]
async fn the_data_column_holds_the_session_without_its_id() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4();
    let stored = session(&id.to_string());
    add_session(&storage, &stored).await;
    let data: Value = db
        .sql()
        .await
        .query_one("SELECT data FROM sessions WHERE id = $1", &[&id])
        .await
        .expect("the session row exists under its id")
        .get(0);
    let mut expected = stored.clone();
    expected.as_object_mut().unwrap().remove("id");
    assert_eq!(data, expected);
    assert!(data.get("id").is_none());
}

#[tokio::test]
async fn an_expired_session_is_null() {
    let db = TestDb::migrated().await;
    let id = Uuid::new_v4();
    add_session(&db.storage(), &session(&id.to_string())).await;
    db.sql()
        .await
        .execute(
            "UPDATE sessions SET expires_at = now() - interval '1 hour' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        get_session(&db.storage(), &id.to_string()).await,
        Value::Null
    );
}

#[tokio::test]
async fn a_session_is_null_once_it_expires_even_when_cached() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("SESSION_TTL_SECS", "1")]);
    let id = Uuid::new_v4().to_string();
    add_session(&storage, &session(&id)).await;
    assert_eq!(get_session(&storage, &id).await, session(&id));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get_session(&storage, &id).await, Value::Null);
}

#[tokio::test]
async fn an_unknown_or_non_uuid_session_id_is_null() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    add_session(&storage, &session(&Uuid::new_v4().to_string())).await;
    assert_eq!(
        get_session(&storage, &Uuid::new_v4().to_string()).await,
        Value::Null
    );
    for not_uuid in ["", "session-1", "00000000-0000-0000-0000-00000000000g"] {
        assert_eq!(
            get_session(&storage, not_uuid).await,
            Value::Null,
            "{not_uuid:?}"
        );
    }
}

async fn seconds_to_expiry(db: &TestDb, id: Uuid) -> f64 {
    db.sql()
        .await
        .query_one(
            "SELECT extract(epoch FROM expires_at - now())::float8 FROM sessions WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sessions_expire_the_configured_time_after_add_session() {
    let db = TestDb::migrated().await;
    let id = Uuid::new_v4();
    add_session(
        &db.storage_with(&[("SESSION_TTL_SECS", "600")]),
        &session(&id.to_string()),
    )
    .await;
    let left = seconds_to_expiry(&db, id).await;
    assert!((590.0..=601.0).contains(&left), "expires in {left} s");

    // Default: 24 hours.
    let id = Uuid::new_v4();
    add_session(&db.storage(), &session(&id.to_string())).await;
    let left = seconds_to_expiry(&db, id).await;
    assert!((86_390.0..=86_401.0).contains(&left), "expires in {left} s");
}

#[tokio::test]
async fn adding_the_identical_session_twice_is_fine_a_different_one_is_a_conflict() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4().to_string();
    let first = session(&id);
    assert_eq!(add_session(&storage, &first).await, json!(id));
    assert_eq!(add_session(&storage, &first).await, json!(id));
    assert_eq!(db.count("SELECT count(*) FROM sessions").await, 1);

    let mut different = first.clone();
    different["user"]["name"] = json!("Charles Babbage");
    let err = fails(&storage, json!({"op": "addSession", "session": different})).await;
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert!(
        !err.message.contains("Babbage") && !err.message.contains("Lovelace"),
        "the message must not carry session contents: {}",
        err.message
    );
    // The stored session is unchanged, here and in a fresh container.
    assert_eq!(get_session(&storage, &id).await, first);
    assert_eq!(get_session(&db.storage(), &id).await, first);
    assert_eq!(db.count("SELECT count(*) FROM sessions").await, 1);
}

#[tokio::test]
async fn a_session_without_a_uuid_id_is_invalid_input() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let mut without_id = session("unused");
    without_id.as_object_mut().unwrap().remove("id");
    for bad in [
        without_id,
        session("not-a-uuid"),
        session(""),
        json!({"id": 42, "user": {}}),
        json!({"id": null}),
    ] {
        let err = fails(&storage, json!({"op": "addSession", "session": bad})).await;
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{bad}: {err}");
    }
    assert_eq!(db.count("SELECT count(*) FROM sessions").await, 0);
}

// ---- session cache -------------------------------------------------------------------------

#[tokio::test]
async fn a_session_hit_is_served_from_the_cache() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4();
    let stored = session(&id.to_string());
    add_session(&storage, &stored).await;
    assert_eq!(get_session(&storage, &id.to_string()).await, stored);

    db.sql()
        .await
        .execute(
            "UPDATE sessions SET data = '{\"changed\": true}' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(get_session(&storage, &id.to_string()).await, stored);
    assert_eq!(
        get_session(&db.storage(), &id.to_string()).await,
        json!({"id": id.to_string(), "changed": true})
    );
}

#[tokio::test]
async fn a_cached_session_expires_after_the_session_cache_ttl() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("SESSION_CACHE_TTL_SECS", "1")]);
    let id = Uuid::new_v4();
    add_session(&storage, &session(&id.to_string())).await;
    db.sql()
        .await
        .execute(
            "UPDATE sessions SET data = '{\"changed\": true}' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        get_session(&storage, &id.to_string()).await,
        json!({"id": id.to_string(), "changed": true})
    );
}

#[tokio::test]
async fn a_cached_session_miss_is_answered_at_once_by_add_session_here() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4().to_string();
    assert_eq!(get_session(&storage, &id).await, Value::Null);
    add_session(&storage, &session(&id)).await;
    assert_eq!(get_session(&storage, &id).await, session(&id));
}

#[tokio::test]
async fn the_session_cache_never_exceeds_its_capacity() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("SESSION_CACHE_CAPACITY", "10")]);
    for n in 0..100 {
        let id = Uuid::new_v4().to_string();
        if n % 2 == 0 {
            add_session(&storage, &session(&id)).await;
            assert_eq!(get_session(&storage, &id).await, session(&id));
        } else {
            assert_eq!(get_session(&storage, &id).await, Value::Null);
        }
        let (_, entries) = storage.cached_entries();
        assert!(entries <= 10, "{entries} sessions cached, capacity 10");
    }
    assert!(storage.cached_entries().1 > 0, "the cache is in use");
}

// ---- registration sessions -----------------------------------------------------------------

fn registration(expires_at: Value) -> Value {
    json!({
        "id": "ignored-by-storage",
        "openIdConfiguration": {"issuer": "https://moodle.example.edu",
                                "registration_endpoint": "https://moodle.example.edu/register"},
        "registrationToken": "token-abc",
        "expiresAt": expires_at
    })
}

#[tokio::test]
async fn registration_sessions_set_get_delete() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4();
    let expires = epoch_ms_in(600);
    let stored = registration(json!(expires));
    let result = ok(
        &storage,
        json!({"op": "setRegistrationSession", "sessionId": id.to_string(), "session": stored}),
    )
    .await;
    assert_eq!(result, Value::Null);
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getRegistrationSession", "sessionId": id.to_string()})
        )
        .await,
        stored
    );
    let row = db
        .sql()
        .await
        .query_one(
            "SELECT data, expires_at FROM registration_sessions WHERE id = $1",
            &[&id],
        )
        .await
        .expect("the row exists");
    assert_eq!(row.get::<_, Value>(0), stored);
    let expires_at: OffsetDateTime = row.get(1);
    assert_eq!(expires_at.unix_timestamp() * 1000, expires);

    let result = ok(
        &storage,
        json!({"op": "deleteRegistrationSession", "sessionId": id.to_string()}),
    )
    .await;
    assert_eq!(result, Value::Null);
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getRegistrationSession", "sessionId": id.to_string()})
        )
        .await,
        Value::Null
    );
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        0
    );
}

#[tokio::test]
async fn an_expired_registration_session_is_null() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4().to_string();
    ok(
        &storage,
        json!({"op": "setRegistrationSession", "sessionId": id,
               "session": registration(json!(epoch_ms_in(-1)))}),
    )
    .await;
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getRegistrationSession", "sessionId": id})
        )
        .await,
        Value::Null
    );
}

#[tokio::test]
async fn an_unknown_or_non_uuid_registration_session_is_null() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    for id in [Uuid::new_v4().to_string(), "reg-1".to_owned()] {
        assert_eq!(
            ok(
                &storage,
                json!({"op": "getRegistrationSession", "sessionId": id})
            )
            .await,
            Value::Null
        );
    }
}

#[tokio::test]
async fn setting_a_registration_session_twice_replaces_it() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4().to_string();
    ok(
        &storage,
        json!({"op": "setRegistrationSession", "sessionId": id,
               "session": registration(json!(epoch_ms_in(600)))}),
    )
    .await;
    let mut second = registration(json!(epoch_ms_in(1200)));
    second["registrationToken"] = json!("token-xyz");
    ok(
        &storage,
        json!({"op": "setRegistrationSession", "sessionId": id, "session": second}),
    )
    .await;
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getRegistrationSession", "sessionId": id})
        )
        .await,
        second
    );
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        1
    );
    let left: f64 = db
        .sql()
        .await
        .query_one(
            "SELECT extract(epoch FROM expires_at - now())::float8 FROM registration_sessions",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((1190.0..=1201.0).contains(&left), "expires in {left} s");
}

#[tokio::test]
async fn a_registration_session_without_expires_at_is_invalid_input() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let mut without = registration(json!(0));
    without.as_object_mut().unwrap().remove("expiresAt");
    let err = fails(
        &storage,
        json!({"op": "setRegistrationSession", "sessionId": Uuid::new_v4().to_string(),
               "session": without}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("expiresAt"), "{}", err.message);
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        0
    );
}

#[tokio::test]
async fn deleting_an_unknown_registration_session_succeeds() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let kept = Uuid::new_v4().to_string();
    ok(
        &storage,
        json!({"op": "setRegistrationSession", "sessionId": kept,
               "session": registration(json!(epoch_ms_in(600)))}),
    )
    .await;
    let result = ok(
        &storage,
        json!({"op": "deleteRegistrationSession", "sessionId": Uuid::new_v4().to_string()}),
    )
    .await;
    assert_eq!(result, Value::Null);
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        1
    );
}
