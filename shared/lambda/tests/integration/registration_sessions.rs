//! Registration sessions (the README's operations table), for dynamic registration.

use lti_storage::ErrorKind;
use serde_json::{json, Value};
use test_support::{epoch_ms_in, fails, ok, TestDb};
use time::OffsetDateTime;
use uuid::Uuid;

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
