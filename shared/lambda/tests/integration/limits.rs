//! Size limits: what no caller can store, so no container's memory is at a caller's mercy.

use lti_storage::ErrorKind;
use serde_json::{json, Map, Value};
use test_support::{fails, ok, TestDb};
use uuid::Uuid;

/// A session of about `bytes` bytes of JSON.
fn session_of(bytes: usize) -> Map<String, Value> {
    let mut session = Map::new();
    session.insert("id".into(), json!(Uuid::new_v4().to_string()));
    session.insert("expiresAt".into(), json!(4102444800000u64));
    session.insert(
        "padding".into(),
        json!("p".repeat(bytes.saturating_sub(100))),
    );
    session
}

#[tokio::test]
async fn sessions_over_the_limit_are_refused_naming_the_limit_and_nothing_is_written() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("MAX_SESSION_BYTES", "4096")]);
    ok(
        &storage,
        json!({"op": "addSession", "session": session_of(4000)}),
    )
    .await;
    let big = session_of(5000);
    let id = big["id"].clone();
    for payload in [
        json!({"op": "addSession", "session": big}),
        json!({"op": "setRegistrationSession", "sessionId": id, "session": session_of(5000)}),
    ] {
        let err = fails(&storage, payload).await;
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("session is"), "{}", err.message);
        assert!(
            err.message
                .contains("the limit is 4096 (MAX_SESSION_BYTES)"),
            "{}",
            err.message
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM sessions").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        0
    );
}

#[tokio::test]
async fn the_default_limit_is_64_kib() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    ok(
        &storage,
        json!({"op": "addSession", "session": session_of(60 * 1024)}),
    )
    .await;
    let err = fails(
        &storage,
        json!({"op": "addSession", "session": session_of(70 * 1024)}),
    )
    .await;
    assert!(
        err.message.contains("the limit is 65536"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn urls_over_2048_characters_are_refused_on_add_and_update() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let long = format!("https://platform.example/{}", "é".repeat(2100));
    let client = |jwks_url: &str| {
        json!({"name": "n", "iss": "https://i", "clientId": "c", "authUrl": "https://a",
               "tokenUrl": "https://t", "jwksUrl": jwks_url})
    };
    let err = fails(
        &storage,
        json!({"op": "addClient", "client": client(&long)}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("client.jwksUrl"), "{}", err.message);
    assert!(err.message.contains("the limit is 2048"), "{}", err.message);
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 0);

    let at_limit = "u".repeat(2048);
    let id = ok(
        &storage,
        json!({"op": "addClient", "client": client(&at_limit)}),
    )
    .await;
    let update = json!({"op": "updateClient", "clientId": id, "client": {"authUrl": long}});
    let err = fails(&storage, update).await;
    assert!(err.message.contains("client.authUrl"), "{}", err.message);
    let stored = db
        .count("SELECT count(*) FROM clients WHERE auth_url = 'https://a'")
        .await;
    assert_eq!(stored, 1, "the refused update changed nothing");
}
