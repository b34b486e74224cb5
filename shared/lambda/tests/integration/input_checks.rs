//! The checks of each argument's value (the README's Direct invocation section): text limits
//! counted in characters, NUL refused, ids that are no UUID, `expiresAt`'s forms; each refused
//! as InvalidInput naming the field, with nothing written.

use lti_storage::{Error, ErrorKind};
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{add_client, call, client_json, new_client, ok, TestDb, ISS, LMS_CLIENT};
use uuid::Uuid;

use crate::invocation::{assert_mentions, store_nonce_ok};

/// The error of a payload that must fail, checked to be InvalidInput.
async fn invalid(storage: &Storage, payload: Value) -> Error {
    let shown = payload.to_string();
    match call(storage, payload).await {
        Ok(value) => panic!("{shown} succeeded with {value}, expected InvalidInput"),
        Err(err) => {
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{shown}: {err}");
            err
        }
    }
}

// ---- text limits and NUL -------------------------------------------------------------------

#[tokio::test]
async fn text_over_255_characters_is_invalid_input_and_writes_nothing() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let long = "a".repeat(256);
    for field in ["name", "iss", "clientId"] {
        let mut client = client_json(&new_client(ISS, LMS_CLIENT));
        client[field] = json!(long);
        let err = invalid(&storage, json!({"op": "addClient", "client": client})).await;
        assert_mentions(&err, &[field]);
    }
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 0);

    // Multi-byte characters count as characters, as PostgreSQL counts them.
    let mut client = client_json(&new_client(ISS, LMS_CLIENT));
    client["name"] = json!("é".repeat(256));
    invalid(&storage, json!({"op": "addClient", "client": client})).await;
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 0);

    let id = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let err = invalid(
        &storage,
        json!({"op": "updateClient", "clientId": id, "client": {"name": long}}),
    )
    .await;
    assert_mentions(&err, &["name"]);
    assert_eq!(
        db.count("SELECT count(*) FROM clients WHERE name = 'Platform 10000000000001'")
            .await,
        1,
        "the client is not changed (nor truncated)"
    );

    let err = invalid(
        &storage,
        json!({"op": "addDeployment", "clientId": id, "deployment": {"deploymentId": long}}),
    )
    .await;
    assert_mentions(&err, &["deploymentId"]);
    invalid(
        &storage,
        json!({"op": "addDeployment", "clientId": id,
               "deployment": {"deploymentId": "1", "name": long}}),
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 0);

    let deployment = ok(
        &storage,
        json!({"op": "addDeployment", "clientId": id, "deployment": {"deploymentId": "1"}}),
    )
    .await;
    invalid(
        &storage,
        json!({"op": "updateDeployment", "clientId": id, "deploymentId": deployment,
               "deployment": {"name": long}}),
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM deployments WHERE name IS NULL")
            .await,
        1
    );

    invalid(
        &storage,
        json!({"op": "storeNonce", "nonce": long, "expiresAt": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM nonces").await, 0);
}

#[tokio::test]
async fn text_of_exactly_255_multi_byte_characters_is_accepted() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let max = "é".repeat(255);
    let mut client = client_json(&new_client(ISS, LMS_CLIENT));
    client["name"] = json!(max);
    client["iss"] = json!(max);
    client["clientId"] = json!(max);
    let id = ok(&storage, json!({"op": "addClient", "client": client})).await;
    ok(
        &storage,
        json!({"op": "addDeployment", "clientId": id,
               "deployment": {"deploymentId": max, "name": max}}),
    )
    .await;
    store_nonce_ok(&storage, &max).await;

    assert_eq!(
        db.count(
            "SELECT count(*) FROM clients WHERE char_length(name) = 255
             AND char_length(iss) = 255 AND char_length(client_id) = 255
             AND name = repeat('é', 255)"
        )
        .await,
        1
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM deployments WHERE deployment_id = repeat('é', 255)
             AND name = repeat('é', 255)"
        )
        .await,
        1
    );
    // And it is found again by the same values.
    let config = ok(
        &storage,
        json!({"op": "getLaunchConfig", "iss": max, "clientId": max, "deploymentId": max}),
    )
    .await;
    assert_eq!(config["deploymentId"], json!(max));
    assert_eq!(
        ok(&storage, json!({"op": "validateNonce", "nonce": max})).await,
        json!(true)
    );
}

#[tokio::test]
async fn nul_characters_are_invalid_input() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    for field in ["name", "iss", "clientId", "authUrl", "tokenUrl", "jwksUrl"] {
        let mut client = client_json(&new_client(ISS, LMS_CLIENT));
        client[field] = json!("before\u{0}after");
        let err = invalid(&storage, json!({"op": "addClient", "client": client})).await;
        assert_mentions(&err, &[field]);
    }
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 0);

    let id = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    invalid(
        &storage,
        json!({"op": "updateClient", "clientId": id, "client": {"authUrl": "x\u{0}"}}),
    )
    .await;
    invalid(
        &storage,
        json!({"op": "addDeployment", "clientId": id,
               "deployment": {"deploymentId": "1", "description": "\u{0}"}}),
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 0);

    invalid(
        &storage,
        json!({"op": "storeNonce", "nonce": "a\u{0}b", "expiresAt": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM nonces").await, 0);

    invalid(
        &storage,
        json!({"op": "addSession",
               "session": {"id": Uuid::new_v4().to_string(), "user": {"name": "\u{0}"}}}),
    )
    .await;
    invalid(
        &storage,
        json!({"op": "addSession",
               "session": {"id": Uuid::new_v4().to_string(), "key\u{0}": 1}}),
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM sessions").await, 0);

    invalid(
        &storage,
        json!({"op": "setRegistrationSession", "sessionId": Uuid::new_v4().to_string(),
               "session": {"expiresAt": 4_000_000_000_000_i64, "token": "\u{0}"}}),
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        0
    );

    // Lookups with a NUL cannot match anything: null / false, never a database error.
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getLaunchConfig", "iss": "a\u{0}", "clientId": "b", "deploymentId": "c"})
        )
        .await,
        Value::Null
    );
    assert_eq!(
        ok(&storage, json!({"op": "validateNonce", "nonce": "a\u{0}b"})).await,
        json!(false)
    );
}

// ---- ids -----------------------------------------------------------------------------------

#[tokio::test]
async fn non_uuid_ids_are_invalid_input_for_writes() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let deployment = ok(
        &storage,
        json!({"op": "addDeployment", "clientId": client, "deployment": {"deploymentId": "1"}}),
    )
    .await;
    let bad = "10000000000001";
    let payloads = [
        json!({"op": "updateClient", "clientId": bad, "client": {"name": "x"}}),
        json!({"op": "deleteClient", "clientId": bad}),
        json!({"op": "listDeployments", "clientId": bad}),
        json!({"op": "addDeployment", "clientId": bad, "deployment": {"deploymentId": "2"}}),
        json!({"op": "updateDeployment", "clientId": bad, "deploymentId": deployment,
               "deployment": {"name": "x"}}),
        json!({"op": "updateDeployment", "clientId": client, "deploymentId": "1",
               "deployment": {"name": "x"}}),
        json!({"op": "deleteDeployment", "clientId": bad, "deploymentId": deployment}),
        json!({"op": "deleteDeployment", "clientId": client, "deploymentId": "1"}),
        json!({"op": "setRegistrationSession", "sessionId": "reg-1",
               "session": {"expiresAt": 4_000_000_000_000_i64}}),
        json!({"op": "deleteRegistrationSession", "sessionId": "reg-1"}),
    ];
    for payload in payloads {
        let op = payload["op"].as_str().unwrap().to_owned();
        let err = invalid(&storage, payload).await;
        assert!(
            err.message.contains("clientId")
                || err.message.contains("deploymentId")
                || err.message.contains("sessionId"),
            "{op}: the message names the id field: {}",
            err.message
        );
    }
    // Nothing was changed.
    assert_eq!(
        db.count("SELECT count(*) FROM clients WHERE name = 'Platform 10000000000001'")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM deployments WHERE name IS NULL")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        0
    );
}

#[tokio::test]
async fn non_uuid_ids_are_null_for_lookups() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    for payload in [
        json!({"op": "getClientById", "clientId": "x"}),
        json!({"op": "getDeployment", "clientId": client, "deploymentId": "1"}),
        json!({"op": "getDeployment", "clientId": "x", "deploymentId": Uuid::new_v4().to_string()}),
        json!({"op": "getSession", "sessionId": "x"}),
        json!({"op": "getRegistrationSession", "sessionId": "x"}),
    ] {
        assert_eq!(ok(&storage, payload).await, Value::Null);
    }
}

// ---- expiresAt -----------------------------------------------------------------------------

#[tokio::test]
async fn an_invalid_expires_at_is_invalid_input_naming_it() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let bad_values = [
        json!("not a date"),
        json!("2030-01-01"),
        json!("2030-01-01 00:00:00"),
        json!("2030-13-01T00:00:00Z"),
        json!(""),
        json!(1.5),
        json!(1_893_456_000_000.0_f64),
        json!(-1),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1e300),
        json!(true),
        json!(null),
        json!({"date": "2030-01-01T00:00:00Z"}),
    ];
    for bad in &bad_values {
        let err = invalid(
            &storage,
            json!({"op": "storeNonce", "nonce": "n", "expiresAt": bad}),
        )
        .await;
        assert_mentions(&err, &["storeNonce", "expiresAt"]);

        let err = invalid(
            &storage,
            json!({"op": "setRegistrationSession", "sessionId": Uuid::new_v4().to_string(),
                   "session": {"expiresAt": bad}}),
        )
        .await;
        assert_mentions(&err, &["expiresAt"]);
    }
    assert_eq!(db.count("SELECT count(*) FROM nonces").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        0
    );
}
