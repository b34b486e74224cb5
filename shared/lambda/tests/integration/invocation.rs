//! The direct-invocation contract (the README's Direct invocation and Errors sections):
//! payload parsing, error kinds and messages, through `Request::from_payload` +
//! `Storage::handle`. (The checks of each argument's value: `input_checks`.)

use lti_storage::{Error, ErrorKind, Request};
use lti_storage_lambda::{Config, Storage};
use serde_json::{json, Value};
use test_support::{call, client_json, new_client, ok, TestDb, ISS, LMS_CLIENT};
use uuid::Uuid;

/// A payload that `Request::from_payload` itself must refuse (no database needed).
fn refused(payload: Value) -> Error {
    let shown = payload.to_string();
    match Request::from_payload(payload) {
        Ok(request) => panic!("{shown} parsed as {request:?}, expected InvalidInput"),
        Err(err) => {
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{shown}: {err}");
            err
        }
    }
}

/// Asserts that the message of `err` names each of `words`.
pub(crate) fn assert_mentions(err: &Error, words: &[&str]) {
    for word in words {
        assert!(
            err.message.contains(word),
            "the message should name {word:?}: {}",
            err.message
        );
    }
}

/// Stores `nonce` through storeNonce, expiring far in the future.
pub(crate) async fn store_nonce_ok(storage: &Storage, nonce: &str) {
    ok(
        storage,
        json!({"op": "storeNonce", "nonce": nonce, "expiresAt": "2099-01-01T00:00:00.000Z"}),
    )
    .await;
}

// ---- payload shape -------------------------------------------------------------------------

#[test]
fn an_unknown_op_is_invalid_input_naming_it() {
    let err = refused(json!({"op": "frobnicateClients"}));
    assert_mentions(&err, &["frobnicateClients"]);
    // Op names are case-sensitive, as in @lti-tool/core.
    let err = refused(json!({"op": "GetClientById", "clientId": Uuid::new_v4().to_string()}));
    assert_mentions(&err, &["GetClientById"]);
}

#[test]
fn a_payload_that_is_not_an_object_is_invalid_input() {
    for payload in [
        json!(null),
        json!("listClients"),
        json!(["listClients"]),
        json!(42),
        json!(true),
    ] {
        refused(payload);
    }
}

#[test]
fn a_payload_without_op_is_invalid_input() {
    let err = refused(json!({}));
    assert_mentions(&err, &["op"]);
    let err = refused(json!({"clientId": Uuid::new_v4().to_string()}));
    assert_mentions(&err, &["op"]);
}

#[test]
fn an_op_that_is_not_a_string_is_invalid_input() {
    for op in [
        json!(1),
        json!(null),
        json!(["listClients"]),
        json!({"name": "x"}),
    ] {
        let err = refused(json!({"op": op}));
        assert_mentions(&err, &["op"]);
    }
}

#[test]
fn a_missing_field_is_invalid_input_naming_the_op_and_the_field() {
    let err = refused(json!({"op": "getClientById"}));
    assert_mentions(&err, &["getClientById", "clientId"]);
    let err = refused(json!({"op": "storeNonce", "nonce": "n"}));
    assert_mentions(&err, &["storeNonce", "expiresAt"]);
    let err = refused(json!({"op": "getDeployment", "clientId": Uuid::new_v4().to_string()}));
    assert_mentions(&err, &["getDeployment", "deploymentId"]);
    let err = refused(json!({"op": "getLaunchConfig", "iss": ISS, "clientId": "1"}));
    assert_mentions(&err, &["getLaunchConfig", "deploymentId"]);
    let err = refused(json!({"op": "addSession"}));
    assert_mentions(&err, &["addSession", "session"]);
    let err = refused(json!({"op": "saveLaunchConfig"}));
    assert_mentions(&err, &["saveLaunchConfig", "launchConfig"]);

    // Inside an object argument.
    let mut client = client_json(&new_client(ISS, LMS_CLIENT));
    client.as_object_mut().unwrap().remove("jwksUrl");
    let err = refused(json!({"op": "addClient", "client": client}));
    assert_mentions(&err, &["addClient", "jwksUrl"]);
    let err = refused(
        json!({"op": "addDeployment", "clientId": Uuid::new_v4().to_string(),
                             "deployment": {"name": "no id"}}),
    );
    assert_mentions(&err, &["addDeployment", "deploymentId"]);
}

#[test]
fn a_mistyped_field_is_invalid_input_naming_the_op_and_the_field() {
    let err = refused(json!({"op": "validateNonce", "nonce": 12345}));
    assert_mentions(&err, &["validateNonce", "nonce"]);
    let err = refused(json!({"op": "getClientById", "clientId": ["a"]}));
    assert_mentions(&err, &["getClientById", "clientId"]);
    let err = refused(json!({"op": "getSession", "sessionId": null}));
    assert_mentions(&err, &["getSession", "sessionId"]);
    let err = refused(json!({"op": "addSession", "session": [1, 2]}));
    assert_mentions(&err, &["addSession", "session"]);
    let err = refused(json!({"op": "setRegistrationSession",
                             "sessionId": Uuid::new_v4().to_string(), "session": "x"}));
    assert_mentions(&err, &["setRegistrationSession", "session"]);

    let mut client = client_json(&new_client(ISS, LMS_CLIENT));
    client["name"] = json!(5);
    let err = refused(json!({"op": "addClient", "client": client}));
    assert_mentions(&err, &["addClient", "name"]);
    let err = refused(
        json!({"op": "updateClient", "clientId": Uuid::new_v4().to_string(),
                             "client": {"iss": false}}),
    );
    assert_mentions(&err, &["updateClient", "iss"]);
    let err = refused(
        json!({"op": "updateDeployment", "clientId": Uuid::new_v4().to_string(),
                             "deploymentId": Uuid::new_v4().to_string(),
                             "deployment": {"description": 7}}),
    );
    assert_mentions(&err, &["updateDeployment", "description"]);
}

/// What TypeScript callers pass by habit: whole objects with `id`, `deployments`, a
/// deployment's `clientId`, and fields a newer `@lti-tool/core` may add.
#[tokio::test]
async fn fields_the_storage_does_not_keep_are_ignored_and_not_stored() {
    let db = TestDb::migrated().await;
    let storage = db.storage();

    let mut whole_client = client_json(&new_client(ISS, LMS_CLIENT));
    whole_client["id"] = json!("not-the-id-it-gets");
    whole_client["deployments"] = json!([{"id": "x", "deploymentId": "ignored"}]);
    whole_client["addedInAFutureVersion"] = json!({"nested": [1, 2]});
    let id = ok(
        &storage,
        json!({"op": "addClient", "client": whole_client, "requestId": "abc"}),
    )
    .await;
    let id = id
        .as_str()
        .expect("addClient returns the new id")
        .to_owned();
    Uuid::parse_str(&id).expect("the id is the storage's own UUID");

    let deployment_id = ok(
        &storage,
        json!({"op": "addDeployment", "clientId": id, "traceId": 7,
               "deployment": {"deploymentId": "default", "name": "Default", "id": "x",
                              "clientId": "not-a-uuid", "colour": "red"}}),
    )
    .await;
    let deployment_id = deployment_id
        .as_str()
        .expect("addDeployment returns the id");

    // Updates with the whole object read back, as an admin UI would send them.
    let mut read_back = ok(&storage, json!({"op": "getClientById", "clientId": id})).await;
    read_back["name"] = json!("Canvas (renamed)");
    ok(
        &storage,
        json!({"op": "updateClient", "clientId": id, "client": read_back}),
    )
    .await;
    ok(
        &storage,
        json!({"op": "updateDeployment", "clientId": id, "deploymentId": deployment_id,
               "deployment": {"id": deployment_id, "clientId": id, "description": "main",
                              "addedInAFutureVersion": true}}),
    )
    .await;

    let mut expected = client_json(&new_client(ISS, LMS_CLIENT));
    expected["id"] = json!(id);
    expected["name"] = json!("Canvas (renamed)");
    expected["deployments"] = json!([{"id": deployment_id, "deploymentId": "default",
        "name": "Default", "description": "main", "clientId": id}]);
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getClientById", "clientId": id, "includeDeleted": true})
        )
        .await,
        expected,
        "exactly the kept fields, nothing the caller added"
    );
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 1);

    // Extra fields at the top level of ops with and without arguments.
    ok(&storage, json!({"op": "listClients", "limit": 10})).await;
    let config = ok(
        &storage,
        json!({"op": "getLaunchConfig", "iss": ISS, "clientId": LMS_CLIENT,
               "deploymentId": "1:abc", "cache": false}),
    )
    .await;
    assert_eq!(
        config["jwksUrl"],
        client_json(&new_client(ISS, LMS_CLIENT))["jwksUrl"],
        "resolved through `default`"
    );
}

/// Ignoring a field never relaxes the checks on the fields that are kept.
#[test]
fn kept_fields_are_still_checked_inside_whole_objects() {
    let mut client = client_json(&new_client(ISS, LMS_CLIENT));
    client["deployments"] = json!([]);
    client["jwksUrl"] = json!(42);
    let err = refused(json!({"op": "addClient", "client": client}));
    assert_mentions(&err, &["addClient", "jwksUrl", "string"]);

    let err = refused(
        json!({"op": "addDeployment", "clientId": Uuid::new_v4().to_string(),
                             "deployment": {"id": "x", "name": "no deploymentId"}}),
    );
    assert_mentions(&err, &["addDeployment", "deploymentId"]);

    let err = Request::from_args("listClients", json!("x")).expect_err("not an object");
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert_mentions(&err, &["listClients", "object"]);
}

// ---- error messages ------------------------------------------------------------------------

#[tokio::test]
async fn error_messages_never_contain_nonces() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let nonce = "n0nce-SECRET-4f9c2b";
    store_nonce_ok(&storage, nonce).await;

    let err = call(
        &storage,
        json!({"op": "storeNonce", "nonce": nonce, "expiresAt": "2099-01-01T00:00:00Z"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert!(!err.message.contains(nonce), "{}", err.message);

    for payload in [
        json!({"op": "storeNonce", "nonce": nonce, "expiresAt": "SECRET-date"}),
        json!({"op": "storeNonce", "nonce": nonce, "expiresAt": 1.5}),
        json!({"op": "storeNonce", "nonce": format!("{nonce}\u{0}"), "expiresAt": 1}),
        json!({"op": "storeNonce", "nonce": format!("{nonce}{}", "x".repeat(300)),
               "expiresAt": "2099-01-01T00:00:00Z"}),
        json!({"op": "storeNonce", "nonce": nonce}),
        json!({"op": "storeNonce", "nonce": nonce, "expiresAt": 1, "extra": nonce}),
        json!({"op": "validateNonce", "nonce": [nonce]}),
    ] {
        let shown = payload.to_string();
        let err = call(&storage, payload).await.unwrap_err();
        assert!(
            !err.message.contains("SECRET"),
            "{shown}: the message quotes a value of the call: {}",
            err.message
        );
    }
}

#[tokio::test]
async fn error_messages_never_contain_session_contents() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4().to_string();
    let session = json!({"id": id, "accessToken": "SECRET-token"});
    ok(&storage, json!({"op": "addSession", "session": session})).await;

    for payload in [
        // Conflict: different content under the same id.
        json!({"op": "addSession", "session": {"id": id, "accessToken": "SECRET-other"}}),
        // Not an object.
        json!({"op": "addSession", "session": "SECRET-session-string"}),
        // A bad id inside the session.
        json!({"op": "addSession", "session": {"id": "SECRET-id", "accessToken": "x"}}),
        json!({"op": "addSession", "session": {"id": 5, "accessToken": "SECRET-token"}}),
        json!({"op": "addSession", "session": {"accessToken": "SECRET-token"}}),
        json!({"op": "addSession", "session": {"id": Uuid::new_v4().to_string(),
                                               "accessToken": "SECRET\u{0}"}}),
        json!({"op": "setRegistrationSession", "sessionId": Uuid::new_v4().to_string(),
               "session": {"expiresAt": "SECRET-expiry", "token": "SECRET-token"}}),
        json!({"op": "setRegistrationSession", "sessionId": Uuid::new_v4().to_string(),
               "session": "SECRET-registration"}),
        json!({"op": "getSession", "sessionId": {"SECRET-lookup": 1}}),
    ] {
        let shown = payload.to_string();
        let err = call(&storage, payload).await.unwrap_err();
        assert!(
            !err.message.contains("SECRET"),
            "{shown}: the message quotes a value of the call: {}",
            err.message
        );
    }
}

#[tokio::test]
async fn a_missing_schema_is_internal_without_sql_in_the_message() {
    let db = TestDb::empty().await;
    let storage = db.storage();
    let err = call(&storage, json!({"op": "listClients"}))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal, "{err}");
    let lower = err.message.to_lowercase();
    for sql in ["select", "from clients", "relation"] {
        assert!(!lower.contains(sql), "SQL in the message: {}", err.message);
    }
    assert!(err.message.contains("migrat"), "{}", err.message);
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_without_the_password() {
    // Port 1 on localhost: nothing listens, the connection is refused at once.
    let url = "postgres://lti:pa55-SECRET@127.0.0.1:1/lti?sslmode=disable";
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.to_owned()),
        "CONNECT_TIMEOUT_MS" => Some("2000".to_owned()),
        _ => None,
    })
    .expect("valid configuration");
    let storage = lti_storage_lambda::storage(&config).expect("storage builds without connecting");
    for payload in [
        json!({"op": "listClients"}),
        json!({"op": "validateNonce", "nonce": "n"}),
    ] {
        let err = call(&storage, payload).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
        assert!(!err.message.contains("SECRET"), "{}", err.message);
        assert!(!err.message.contains(url), "{}", err.message);
    }
}

// ---- saveLaunchConfig ----------------------------------------------------------------------

#[tokio::test]
async fn save_launch_config_returns_null_and_stores_nothing() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let result = ok(
        &storage,
        json!({"op": "saveLaunchConfig", "launchConfig": {
            "iss": ISS, "clientId": "1", "deploymentId": "1:abc",
            "authUrl": "https://a", "tokenUrl": "https://t", "jwksUrl": "https://j"}}),
    )
    .await;
    assert_eq!(result, Value::Null);
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 0);
}

/// A server embedding the crate runs calls on a multi-thread runtime: their futures must be
/// `Send` (this fails to compile otherwise) and calls on one storage may overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_can_be_spawned_and_overlap_on_one_storage() {
    let db = TestDb::migrated().await;
    let storage = std::sync::Arc::new(db.storage());
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let payload = json!({"op": "storeNonce", "nonce": format!("spawned-{i}"),
                                     "expiresAt": "2099-01-01T00:00:00Z"});
                storage
                    .handle(Request::from_payload(payload).unwrap())
                    .await
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().get(), "null");
    }
    let stored: i64 = db
        .sql()
        .await
        .query_one(
            "SELECT count(*) FROM nonces WHERE nonce LIKE 'spawned-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 8);
}
