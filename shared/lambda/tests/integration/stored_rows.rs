//! Rows written by other software (or an operator) that the storage would not write itself:
//! each call that meets one answers (an error of that call at worst), and the same process
//! serves the next call.

use serde_json::{json, Value};
use test_support::{add_client, call, new_client, ok, TestDb};
use uuid::Uuid;

const ISS: &str = "https://canvas.example.edu";

async fn register_platform(db: &TestDb) {
    let storage = db.storage();
    let id = add_client(&storage, &new_client(ISS, "c1")).await;
    let deployment = json!({"deploymentId": "default"});
    ok(
        &storage,
        json!({"op": "addDeployment", "clientId": id, "deployment": deployment}),
    )
    .await;
}

fn get_launch_config() -> Value {
    json!({"op": "getLaunchConfig", "iss": ISS, "clientId": "c1", "deploymentId": "d1"})
}

#[tokio::test]
async fn without_the_change_counter_row_launch_configs_are_read_and_never_cached() {
    let db = TestDb::migrated().await;
    register_platform(&db).await;
    let sql = db.sql().await;
    sql.batch_execute("DELETE FROM lti_storage_changes")
        .await
        .unwrap();

    // A change check on every cached read, so a cached config would be visible at once.
    let storage = db.storage_with(&[("CHANGE_CHECK_INTERVAL_MS", "0")]);
    let found = ok(&storage, get_launch_config()).await;
    assert_eq!(
        found["authUrl"],
        format!("{ISS}/api/lti/authorize_redirect")
    );

    // Another writer changes the platform; with no counter, only a fresh read can see it.
    sql.batch_execute("UPDATE clients SET auth_url = 'https://auth2'")
        .await
        .unwrap();
    let found = ok(&storage, get_launch_config()).await;
    assert_eq!(found["authUrl"], "https://auth2", "not served from a cache");

    sql.batch_execute("DELETE FROM lti_storage_changes")
        .await
        .unwrap();
    sql.batch_execute("DELETE FROM deployments").await.unwrap();
    sql.batch_execute("DELETE FROM lti_storage_changes")
        .await
        .unwrap();
    assert_eq!(ok(&storage, get_launch_config()).await, Value::Null);
}

#[tokio::test]
async fn sessions_with_expiries_beyond_what_the_storage_writes_are_served() {
    let db = TestDb::migrated().await;
    let sql = db.sql().await;
    let storage = db.storage();
    for expires_at in ["infinity", "10000-01-01 00:00:00+00"] {
        let id = Uuid::new_v4();
        sql.execute(
            "INSERT INTO sessions (id, data, expires_at) VALUES ($1, '{\"user\": 1}', $2::text::timestamptz)",
            &[&id, &expires_at],
        )
        .await
        .unwrap();
        let get = json!({"op": "getSession", "sessionId": id.to_string()});
        let expected = json!({"id": id.to_string(), "user": 1});
        assert_eq!(ok(&storage, get.clone()).await, expected, "{expires_at}");
        assert_eq!(ok(&storage, get).await, expected, "{expires_at}, again");
    }
}

#[tokio::test]
async fn a_row_the_storage_cannot_read_fails_only_its_own_call() {
    let db = TestDb::migrated().await;
    register_platform(&db).await;
    let sql = db.sql().await;
    // Another schema owner relaxed a column and wrote what the storage never writes.
    sql.batch_execute(
        "ALTER TABLE clients ALTER COLUMN jwks_url DROP NOT NULL;
         UPDATE clients SET jwks_url = NULL",
    )
    .await
    .unwrap();
    let storage = db.storage();
    let err = call(&storage, json!({"op": "listClients"}))
        .await
        .unwrap_err();
    assert_eq!(err.kind, lti_storage::ErrorKind::Internal);
    assert!(err.message.contains("could not be read"), "{}", err.message);
    let err = call(&storage, get_launch_config()).await.unwrap_err();
    assert_eq!(err.kind, lti_storage::ErrorKind::Internal);
    // The same storage, on the same connection, still serves what it can read.
    let nonce = json!({"op": "storeNonce", "nonce": "n1", "expiresAt": 4102444800000u64});
    ok(&storage, nonce).await;
    let valid = ok(&storage, json!({"op": "validateNonce", "nonce": "n1"})).await;
    assert_eq!(valid, json!(true));
}
