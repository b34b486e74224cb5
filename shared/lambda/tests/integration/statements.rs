//! Prepared statements: kept per connection, re-prepared when the schema changes under them,
//! and switched off for poolers that cannot keep them.

use serde_json::json;
use test_support::{add_client, new_client, ok, TestDb};

#[tokio::test]
async fn a_statement_prepared_before_a_schema_change_is_prepared_again() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    add_client(&storage, &new_client("https://before", "c1")).await;
    ok(&storage, json!({"op": "listClients"})).await; // prepared on this connection

    // A DBA widens a column: the prepared statement's result type no longer matches.
    db.sql()
        .await
        .batch_execute("ALTER TABLE clients ALTER COLUMN name TYPE varchar(300)")
        .await
        .unwrap();

    let clients = ok(&storage, json!({"op": "listClients"})).await;
    assert_eq!(clients.as_array().unwrap().len(), 1);
    assert_eq!(clients[0]["iss"], "https://before");
}

#[tokio::test]
async fn with_prepared_statements_off_every_operation_still_works() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("PREPARED_STATEMENTS", "false")]);
    let id = add_client(&storage, &new_client("https://unprepared", "c1")).await;
    ok(
        &storage,
        json!({"op": "addDeployment", "clientId": id, "deployment": {"deploymentId": "default"}}),
    )
    .await;
    let config = ok(
        &storage,
        json!({"op": "getLaunchConfig", "iss": "https://unprepared", "clientId": "c1", "deploymentId": "7"}),
    )
    .await;
    assert_eq!(config["deploymentId"], "default");
    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "n", "expiresAt": 4102444800000u64}),
    )
    .await;
    assert_eq!(
        ok(&storage, json!({"op": "validateNonce", "nonce": "n"})).await,
        true
    );
    assert_eq!(
        ok(&storage, json!({"op": "validateNonce", "nonce": "n"})).await,
        false
    );
}
