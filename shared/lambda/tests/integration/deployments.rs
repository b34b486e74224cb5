//! The deployments of a client (the README's operations table), through the same JSON calls
//! an LTI Lambda makes.

use lti_storage::ErrorKind;
use serde_json::{json, Value};
use test_support::{
    add_client, add_deployment, fails, new_client, ok, uuid_of, TestDb, ISS, LMS_CLIENT,
};
use uuid::Uuid;

#[tokio::test]
async fn deployments_add_list_get_update_delete() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    assert_eq!(
        ok(
            &storage,
            json!({"op": "listDeployments", "clientId": client})
        )
        .await,
        json!([])
    );

    let id = ok(
        &storage,
        json!({"op": "addDeployment", "clientId": client,
               "deployment": {"deploymentId": "1:abc", "name": "Main", "description": "Desc"}}),
    )
    .await;
    let id = id
        .as_str()
        .expect("addDeployment returns a string")
        .to_owned();
    let row = db
        .sql()
        .await
        .query_one(
            "SELECT deployment_id, name, description, client_id FROM deployments WHERE id = $1",
            &[&uuid_of(&id)],
        )
        .await
        .expect("the deployment row exists under the returned id");
    assert_eq!(row.get::<_, String>(0), "1:abc");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("Main"));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("Desc"));
    assert_eq!(row.get::<_, Uuid>(3), uuid_of(&client));

    let expected = json!({"id": id, "deploymentId": "1:abc", "name": "Main",
                          "description": "Desc", "clientId": client});
    assert_eq!(
        ok(
            &storage,
            json!({"op": "listDeployments", "clientId": client})
        )
        .await,
        json!([expected])
    );
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getDeployment", "clientId": client, "deploymentId": id})
        )
        .await,
        expected
    );

    // Partial update: only the description changes.
    let result = ok(
        &storage,
        json!({"op": "updateDeployment", "clientId": client, "deploymentId": id,
               "deployment": {"description": "New description"}}),
    )
    .await;
    assert_eq!(result, Value::Null);
    let mut updated = expected.clone();
    updated["description"] = json!("New description");
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getDeployment", "clientId": client, "deploymentId": id})
        )
        .await,
        updated
    );
    // The LMS deploymentId can be changed too.
    ok(
        &storage,
        json!({"op": "updateDeployment", "clientId": client, "deploymentId": id,
               "deployment": {"deploymentId": "1:xyz"}}),
    )
    .await;
    updated["deploymentId"] = json!("1:xyz");
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getDeployment", "clientId": client, "deploymentId": id})
        )
        .await,
        updated
    );

    let result = ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": client, "deploymentId": id}),
    )
    .await;
    assert_eq!(result, Value::Null);
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 0);
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getDeployment", "clientId": client, "deploymentId": id})
        )
        .await,
        Value::Null
    );
    assert_eq!(
        ok(
            &storage,
            json!({"op": "listDeployments", "clientId": client})
        )
        .await,
        json!([])
    );
    // The client itself stays.
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
}

#[tokio::test]
async fn list_deployments_lists_only_that_clients_deployments() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let a = add_client(&storage, &new_client(ISS, "a")).await;
    let b = add_client(&storage, &new_client(ISS, "b")).await;
    let a1 = add_deployment(&storage, &a, "1").await;
    let a2 = add_deployment(&storage, &a, "2").await;
    add_deployment(&storage, &b, "3").await;
    let list = ok(&storage, json!({"op": "listDeployments", "clientId": a})).await;
    let mut ids: Vec<&str> = list
        .as_array()
        .expect("an array")
        .iter()
        .map(|d| d["id"].as_str().expect("an id"))
        .collect();
    ids.sort();
    let mut expected = vec![a1.as_str(), a2.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn duplicate_deployment_id_for_one_client_is_a_conflict() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let err = fails(
        &storage,
        json!({"op": "addDeployment", "clientId": client,
               "deployment": {"deploymentId": "1:abc", "name": "again"}}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 1);

    // Renaming another deployment onto it is a Conflict as well.
    let other = add_deployment(&storage, &client, "2:def").await;
    let err = fails(
        &storage,
        json!({"op": "updateDeployment", "clientId": client, "deploymentId": other,
               "deployment": {"deploymentId": "1:abc"}}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(
        db.count("SELECT count(*) FROM deployments WHERE deployment_id = '2:def'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_same_deployment_id_on_two_clients_is_fine() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let a = add_client(&storage, &new_client(ISS, "a")).await;
    let b = add_client(&storage, &new_client(ISS, "b")).await;
    let da = add_deployment(&storage, &a, "1:abc").await;
    let db_ = add_deployment(&storage, &b, "1:abc").await;
    assert_ne!(da, db_);
    assert_eq!(
        db.count("SELECT count(*) FROM deployments WHERE deployment_id = '1:abc'")
            .await,
        2
    );
}

#[tokio::test]
async fn add_deployment_to_an_unknown_client_is_not_found() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let err = fails(
        &storage,
        json!({"op": "addDeployment", "clientId": Uuid::new_v4().to_string(),
               "deployment": {"deploymentId": "1:abc"}}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 0);
}

#[tokio::test]
async fn deployment_operations_only_touch_the_named_clients_deployments() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let owner = add_client(&storage, &new_client(ISS, "owner")).await;
    let stranger = add_client(&storage, &new_client(ISS, "stranger")).await;
    let deployment = add_deployment(&storage, &owner, "1:abc").await;

    assert_eq!(
        ok(
            &storage,
            json!({"op": "getDeployment", "clientId": stranger, "deploymentId": deployment})
        )
        .await,
        Value::Null
    );
    let err = fails(
        &storage,
        json!({"op": "updateDeployment", "clientId": stranger, "deploymentId": deployment,
               "deployment": {"name": "hijacked"}}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": stranger, "deploymentId": deployment}),
    )
    .await;

    // The owner's deployment is intact.
    let row = db
        .sql()
        .await
        .query_one(
            "SELECT name, client_id FROM deployments WHERE id = $1",
            &[&uuid_of(&deployment)],
        )
        .await
        .expect("the deployment still exists");
    assert_eq!(row.get::<_, Option<String>>(0), None);
    assert_eq!(row.get::<_, Uuid>(1), uuid_of(&owner));
}

#[tokio::test]
async fn update_deployment_with_name_null_clears_it() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let id = ok(
        &storage,
        json!({"op": "addDeployment", "clientId": client,
               "deployment": {"deploymentId": "1:abc", "name": "Main", "description": "Desc"}}),
    )
    .await;
    ok(
        &storage,
        json!({"op": "updateDeployment", "clientId": client, "deploymentId": id,
               "deployment": {"name": null}}),
    )
    .await;
    let row = db
        .sql()
        .await
        .query_one(
            "SELECT deployment_id, name, description FROM deployments WHERE id = $1",
            &[&uuid_of(id.as_str().unwrap())],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "1:abc");
    assert_eq!(row.get::<_, Option<String>>(1), None, "name is cleared");
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("Desc"),
        "description is left as it was"
    );
    let got = ok(
        &storage,
        json!({"op": "getDeployment", "clientId": client, "deploymentId": id}),
    )
    .await;
    assert_eq!(got.get("name").unwrap_or(&Value::Null), &Value::Null);
    assert_eq!(got["description"], json!("Desc"));
}

#[tokio::test]
async fn update_of_an_unknown_deployment_is_not_found() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let err = fails(
        &storage,
        json!({"op": "updateDeployment", "clientId": client,
               "deploymentId": Uuid::new_v4().to_string(),
               "deployment": {"name": "x"}}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(
        db.count("SELECT count(*) FROM deployments WHERE name IS NOT NULL")
            .await,
        0
    );
}

#[tokio::test]
async fn delete_of_an_unknown_deployment_succeeds() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let result = ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": client,
               "deploymentId": Uuid::new_v4().to_string()}),
    )
    .await;
    assert_eq!(result, Value::Null);
    // Also for a client that does not exist.
    ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": Uuid::new_v4().to_string(),
               "deploymentId": Uuid::new_v4().to_string()}),
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 1);
}
