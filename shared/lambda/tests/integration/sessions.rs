//! Sessions (the README's operations table) and the session cache (its Design section).

use std::time::Duration;

use lti_storage::ErrorKind;
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{fails, ok, TestDb};
use uuid::Uuid;

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
async fn a_row_whose_data_holds_an_id_is_answered_with_the_rows_id_once() {
    let db = TestDb::migrated().await;
    let id = Uuid::new_v4();
    // As other software might write it: the id inside the data too, and another one.
    db.sql()
        .await
        .execute(
            "INSERT INTO sessions (id, data, expires_at)
             VALUES ($1, '{\"id\": \"not-this-one\", \"user\": 1}', now() + interval '1 hour')",
            &[&id],
        )
        .await
        .expect("a session row");
    let request = lti_storage::Request::from_payload(
        json!({"op": "getSession", "sessionId": id.to_string()}),
    )
    .unwrap();
    let text = db.storage().handle(request).await.expect("found");
    assert_eq!(text.get().matches("\"id\"").count(), 1, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(text.get()).unwrap(),
        json!({"id": id.to_string(), "user": 1})
    );
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

    change_behind_the_storage(&db, id).await;
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
    change_behind_the_storage(&db, id).await;
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

/// Rewrites the stored session `id` to `{"changed": true}`, behind the storage's back.
async fn change_behind_the_storage(db: &TestDb, id: Uuid) {
    db.sql()
        .await
        .execute(
            "UPDATE sessions SET data = '{\"changed\": true}' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
}
