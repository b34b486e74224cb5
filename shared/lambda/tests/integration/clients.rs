//! Clients, deployments and launch configs (the README's operations table), and the launch-config
//! cache (the README's Design section), through the same JSON calls an LTI Lambda makes.

use std::time::{Duration, Instant};

use lti_storage::ErrorKind;
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{add_client, client_json, fails, launch_config_json, new_client, ok, TestDb};
use uuid::Uuid;

const ISS: &str = "https://canvas.instructure.com";
const LMS_CLIENT: &str = "10000000000001";

/// Adds a deployment (LMS id `deployment_id`) to a client; returns its internal id.
async fn add_deployment(storage: &Storage, client: &str, deployment_id: &str) -> String {
    let id = ok(
        storage,
        json!({"op": "addDeployment", "clientId": client,
               "deployment": {"deploymentId": deployment_id}}),
    )
    .await;
    id.as_str()
        .unwrap_or_else(|| panic!("addDeployment returned {id}, not a string"))
        .to_owned()
}

async fn launch_config(storage: &Storage, iss: &str, client_id: &str, deployment: &str) -> Value {
    ok(
        storage,
        json!({"op": "getLaunchConfig", "iss": iss, "clientId": client_id,
               "deploymentId": deployment}),
    )
    .await
}

fn uuid_of(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap_or_else(|_| panic!("{id:?} is not a UUID"))
}

// ---- clients -------------------------------------------------------------------------------

#[tokio::test]
async fn add_client_returns_a_uuid_and_stores_the_row() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let id = uuid_of(&id);

    let row = db
        .sql()
        .await
        .query_one(
            "SELECT name, iss, client_id, auth_url, token_url, jwks_url FROM clients WHERE id = $1",
            &[&id],
        )
        .await
        .expect("the client row exists under the returned id");
    let fields: Vec<String> = (0..6).map(|i| row.get(i)).collect();
    assert_eq!(
        fields,
        [
            format!("Platform {LMS_CLIENT}"),
            ISS.to_owned(),
            LMS_CLIENT.to_owned(),
            format!("{ISS}/api/lti/authorize_redirect"),
            format!("{ISS}/login/oauth2/token"),
            format!("{ISS}/api/lti/security/jwks"),
        ]
    );
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
}

#[tokio::test]
async fn duplicate_iss_and_client_id_is_a_conflict_and_no_second_row() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;

    let mut again = client_json(&new_client(ISS, LMS_CLIENT));
    again["name"] = json!("Another name");
    let err = fails(&storage, json!({"op": "addClient", "client": again})).await;
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);

    // Unique is the pair: the same clientId on another issuer, or another clientId on the
    // same issuer, is a different platform.
    add_client(
        &storage,
        &new_client("https://moodle.example.edu", LMS_CLIENT),
    )
    .await;
    add_client(&storage, &new_client(ISS, "10000000000002")).await;
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 3);
}

/// A caller's retry of an add whose answer it lost (as dynamic registration's client makes):
/// with the id the caller chose, the repeat returns the same id and adds nothing; another add
/// under that id is a Conflict; an id that is no UUID is InvalidInput naming it.
#[tokio::test]
async fn an_add_repeated_with_the_callers_id_returns_that_id_and_adds_nothing() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let (client_id, deployment_id) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let client = client_json(&new_client(ISS, LMS_CLIENT));
    let add_client = json!({"op": "addClient", "id": client_id, "client": client});
    let add_deployment = json!({"op": "addDeployment", "clientId": client_id,
        "id": deployment_id, "deployment": {"deploymentId": "default", "name": "Course"}});
    for _ in 0..2 {
        assert_eq!(ok(&storage, add_client.clone()).await, json!(client_id));
        assert_eq!(
            ok(&storage, add_deployment.clone()).await,
            json!(deployment_id)
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 1);
    // What a repeat on another container finds: the row, not its cache.
    let other_container = db.storage();
    assert_eq!(
        ok(&other_container, add_client.clone()).await,
        json!(client_id)
    );

    let mut other_client = add_client.clone();
    other_client["client"]["clientId"] = json!("10000000000002");
    let err = fails(&storage, other_client).await;
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(
        err.message,
        "a different client was already added with this id"
    );
    let mut other_deployment = add_deployment.clone();
    other_deployment["deployment"]["name"] = json!("Another course");
    let err = fails(&storage, other_deployment).await;
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 1);

    let mut not_a_uuid = add_client;
    not_a_uuid["id"] = json!("s3cret");
    let err = fails(&storage, not_a_uuid).await;
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(
        err.message
            .starts_with("addClient: field `id` must be a UUID"),
        "{err}"
    );
    assert!(!err.message.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn get_client_by_id_includes_its_deployments() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let full = ok(
        &storage,
        json!({"op": "addDeployment", "clientId": client,
               "deployment": {"deploymentId": "1:abc", "name": "Main campus",
                              "description": "All courses"}}),
    )
    .await;
    let bare = add_deployment(&storage, &client, "2:def").await;
    // Another client's deployment must not show up.
    let other = add_client(&storage, &new_client(ISS, "other")).await;
    add_deployment(&storage, &other, "9:zzz").await;

    let got = ok(&storage, json!({"op": "getClientById", "clientId": client})).await;
    assert_eq!(got["id"], json!(client));
    assert_eq!(got["name"], json!(format!("Platform {LMS_CLIENT}")));
    assert_eq!(got["iss"], json!(ISS));
    assert_eq!(got["clientId"], json!(LMS_CLIENT));
    assert_eq!(
        got["authUrl"],
        json!(format!("{ISS}/api/lti/authorize_redirect"))
    );
    assert_eq!(got["tokenUrl"], json!(format!("{ISS}/login/oauth2/token")));
    assert_eq!(
        got["jwksUrl"],
        json!(format!("{ISS}/api/lti/security/jwks"))
    );

    let deployments = got["deployments"]
        .as_array()
        .unwrap_or_else(|| panic!("no deployments array in {got}"));
    assert_eq!(deployments.len(), 2, "{got}");
    let find = |lms_id: &str| {
        deployments
            .iter()
            .find(|d| d["deploymentId"] == json!(lms_id))
            .unwrap_or_else(|| panic!("deployment {lms_id} missing from {got}"))
    };
    let first = find("1:abc");
    assert_eq!(first["id"], full);
    assert_eq!(first["name"], json!("Main campus"));
    assert_eq!(first["description"], json!("All courses"));
    assert_eq!(first["clientId"], json!(client));
    let second = find("2:def");
    assert_eq!(second["id"], json!(bare));
    assert_eq!(second.get("name").unwrap_or(&Value::Null), &Value::Null);
    assert_eq!(
        second.get("description").unwrap_or(&Value::Null),
        &Value::Null
    );
    assert_eq!(second["clientId"], json!(client));

    // A client without deployments has an empty array, not a missing key.
    let got = ok(&storage, json!({"op": "getClientById", "clientId": other})).await;
    assert_eq!(got["deployments"].as_array().map(Vec::len), Some(1));
    let lonely = add_client(&storage, &new_client(ISS, "lonely")).await;
    let got = ok(&storage, json!({"op": "getClientById", "clientId": lonely})).await;
    assert_eq!(got["deployments"], json!([]));
}

#[tokio::test]
async fn get_client_by_id_is_null_for_an_unknown_or_non_uuid_id() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let unknown = Uuid::new_v4().to_string();
    assert_eq!(
        ok(
            &storage,
            json!({"op": "getClientById", "clientId": unknown})
        )
        .await,
        Value::Null
    );
    for not_uuid in ["", "10000000000001", "not-a-uuid", "' OR 1=1 --"] {
        assert_eq!(
            ok(
                &storage,
                json!({"op": "getClientById", "clientId": not_uuid})
            )
            .await,
            Value::Null,
            "clientId {not_uuid:?}"
        );
    }
}

#[tokio::test]
async fn list_clients_returns_every_client_without_deployments() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    assert_eq!(ok(&storage, json!({"op": "listClients"})).await, json!([]));

    let a = add_client(&storage, &new_client(ISS, "a")).await;
    let b = add_client(&storage, &new_client("https://moodle.example.edu", "b")).await;
    add_deployment(&storage, &a, "1:abc").await;

    let list = ok(&storage, json!({"op": "listClients"})).await;
    let list = list.as_array().expect("listClients returns an array");
    assert_eq!(list.len(), 2);
    for client in list {
        assert!(
            client.get("deployments").is_none(),
            "listClients must not carry deployments: {client}"
        );
    }
    let by_id = |id: &str| {
        list.iter()
            .find(|c| c["id"] == json!(id))
            .unwrap_or_else(|| panic!("client {id} missing"))
    };
    let mut expected_a = client_json(&new_client(ISS, "a"));
    expected_a["id"] = json!(a);
    assert_eq!(by_id(&a), &expected_a);
    let mut expected_b = client_json(&new_client("https://moodle.example.edu", "b"));
    expected_b["id"] = json!(b);
    assert_eq!(by_id(&b), &expected_b);
}

#[tokio::test]
async fn update_client_changes_only_the_given_fields() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let before = ok(&storage, json!({"op": "getClientById", "clientId": id})).await;

    let result = ok(
        &storage,
        json!({"op": "updateClient", "clientId": id, "client": {"name": "Renamed"}}),
    )
    .await;
    assert_eq!(result, Value::Null);
    let after = ok(&storage, json!({"op": "getClientById", "clientId": id})).await;
    let mut expected = before.clone();
    expected["name"] = json!("Renamed");
    assert_eq!(after, expected);

    ok(
        &storage,
        json!({"op": "updateClient", "clientId": id,
               "client": {"jwksUrl": "https://keys.example/jwks", "clientId": "20000000000002"}}),
    )
    .await;
    let row = db
        .sql()
        .await
        .query_one(
            "SELECT name, iss, client_id, auth_url, token_url, jwks_url FROM clients WHERE id = $1",
            &[&uuid_of(&id)],
        )
        .await
        .unwrap();
    let fields: Vec<String> = (0..6).map(|i| row.get(i)).collect();
    assert_eq!(
        fields,
        [
            "Renamed".to_owned(),
            ISS.to_owned(),
            "20000000000002".to_owned(),
            format!("{ISS}/api/lti/authorize_redirect"),
            format!("{ISS}/login/oauth2/token"),
            "https://keys.example/jwks".to_owned(),
        ]
    );

    // An empty update of an existing client changes nothing and succeeds.
    ok(
        &storage,
        json!({"op": "updateClient", "clientId": id, "client": {}}),
    )
    .await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM clients WHERE name = 'Renamed' AND client_id = '20000000000002'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn update_of_an_unknown_client_is_not_found() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let err = fails(
        &storage,
        json!({"op": "updateClient", "clientId": Uuid::new_v4().to_string(),
               "client": {"name": "x"}}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 0);
}

#[tokio::test]
async fn update_client_onto_another_clients_iss_and_client_id_is_a_conflict() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    add_client(&storage, &new_client(ISS, "a")).await;
    let b = add_client(&storage, &new_client(ISS, "b")).await;
    let err = fails(
        &storage,
        json!({"op": "updateClient", "clientId": b, "client": {"clientId": "a"}}),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_eq!(
        db.count("SELECT count(*) FROM clients WHERE client_id = 'b'")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM clients WHERE client_id = 'a'")
            .await,
        1
    );
}

#[tokio::test]
async fn delete_client_deletes_its_deployments() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let doomed = add_client(&storage, &new_client(ISS, "doomed")).await;
    add_deployment(&storage, &doomed, "1:abc").await;
    add_deployment(&storage, &doomed, "default").await;
    let kept = add_client(&storage, &new_client(ISS, "kept")).await;
    add_deployment(&storage, &kept, "1:abc").await;

    let result = ok(&storage, json!({"op": "deleteClient", "clientId": doomed})).await;
    assert_eq!(result, Value::Null);

    let sql = db.sql().await;
    let doomed_id = uuid_of(&doomed);
    let clients: i64 = sql
        .query_one("SELECT count(*) FROM clients WHERE id = $1", &[&doomed_id])
        .await
        .unwrap()
        .get(0);
    let deployments: i64 = sql
        .query_one(
            "SELECT count(*) FROM deployments WHERE client_id = $1",
            &[&doomed_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((clients, deployments), (0, 0));
    // The other client and its deployment are untouched.
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 1);
    assert_eq!(
        ok(&storage, json!({"op": "getClientById", "clientId": doomed})).await,
        Value::Null
    );
}

#[tokio::test]
async fn delete_of_an_unknown_client_succeeds() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let result = ok(
        &storage,
        json!({"op": "deleteClient", "clientId": Uuid::new_v4().to_string()}),
    )
    .await;
    assert_eq!(result, Value::Null);
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
}

// ---- deployments ---------------------------------------------------------------------------

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

// ---- launch configs ------------------------------------------------------------------------

#[tokio::test]
async fn get_launch_config_exact_match() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "2:def").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "2:def").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "2:def")
    );
}

#[tokio::test]
async fn get_launch_config_needs_both_iss_and_client_id_to_match() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "default").await;
    let moodle = "https://moodle.example.edu";
    assert_eq!(
        launch_config(&storage, moodle, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, "other", "1:abc").await,
        Value::Null
    );
}

#[tokio::test]
async fn get_launch_config_falls_back_to_the_default_deployment() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "default").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:unregistered").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
}

#[tokio::test]
async fn get_launch_config_is_null_without_the_deployment_or_a_default() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    let client = add_client(&storage, &new_client(ISS, "registered")).await;
    add_deployment(&storage, &client, "2:def").await;
    assert_eq!(
        launch_config(&storage, ISS, "registered", "1:abc").await,
        Value::Null
    );
    // Another client's `default` is no fallback for this one.
    let other = add_client(&storage, &new_client(ISS, "other")).await;
    add_deployment(&storage, &other, "default").await;
    let fresh = db.storage();
    assert_eq!(
        launch_config(&fresh, ISS, "registered", "1:abc").await,
        Value::Null
    );
}

#[tokio::test]
async fn get_launch_config_prefers_the_exact_match_over_default() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    // `default` first, so insertion order cannot explain the result.
    add_deployment(&storage, &client, "default").await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "0:aaa").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "0:aaa").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "0:aaa")
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "9:zzz").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
}

// ---- launch-config cache -------------------------------------------------------------------

/// Changes the client's auth_url behind the storage's back.
async fn change_auth_url_with_sql(db: &TestDb, client_id: &str, auth_url: &str) {
    let changed = db
        .sql()
        .await
        .execute(
            "UPDATE clients SET auth_url = $1 WHERE client_id = $2",
            &[&auth_url, &client_id],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
}

/// A container that never re-checks the database's change counter during a test, so what it
/// answers comes from its own cache rules alone.
fn caching_storage(db: &TestDb, vars: &[(&str, &str)]) -> Storage {
    let mut vars = vars.to_vec();
    vars.push(("CHANGE_CHECK_INTERVAL_MS", "600000"));
    db.storage_with(&vars)
}

#[tokio::test]
async fn a_launch_config_hit_is_served_from_the_cache() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    assert_eq!(
        cached,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );

    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        cached,
        "the same container answers from its cache"
    );
    // The change is real: a fresh container sees it.
    let fresh = db.storage();
    assert_eq!(
        launch_config(&fresh, ISS, LMS_CLIENT, "1:abc").await["authUrl"],
        json!("https://changed.example/auth")
    );
}

#[tokio::test]
async fn a_default_fallback_is_cached_under_the_key_it_was_asked_with() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "default").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    assert_eq!(
        cached,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
    assert_eq!(storage.cached_entries().0, 1);

    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        cached
    );
    let fresh = db.storage();
    assert_eq!(
        launch_config(&fresh, ISS, LMS_CLIENT, "1:abc").await["authUrl"],
        json!("https://changed.example/auth")
    );
}

#[tokio::test]
async fn a_launch_config_miss_is_cached() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[]);
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    // Registered behind this container's back (another container, or psql).
    let other = db.storage();
    let client = add_client(&other, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&other, &client, "1:abc").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null,
        "the miss is remembered for the miss TTL (30 s by default)"
    );
    assert_eq!(
        launch_config(&db.storage(), ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
}

#[tokio::test]
async fn update_client_iss_makes_the_old_launch_config_unavailable_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "default").await;
    // Cache an exact hit and a fallback hit.
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "1:abc")
        .await
        .is_null());
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "7:fallback")
        .await
        .is_null());

    let new_iss = "https://canvas.test.instructure.com";
    ok(
        &storage,
        json!({"op": "updateClient", "clientId": client, "client": {"iss": new_iss}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "7:fallback").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, new_iss, LMS_CLIENT, "1:abc").await["iss"],
        json!(new_iss)
    );
}

#[tokio::test]
async fn update_client_client_id_and_urls_are_seen_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    // A miss cached under the new clientId must not hide the renamed client.
    assert_eq!(
        launch_config(&storage, ISS, "renamed", "1:abc").await,
        Value::Null
    );
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "1:abc")
        .await
        .is_null());

    ok(
        &storage,
        json!({"op": "updateClient", "clientId": client,
               "client": {"authUrl": "https://new.example/auth"}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await["authUrl"],
        json!("https://new.example/auth")
    );

    ok(
        &storage,
        json!({"op": "updateClient", "clientId": client, "client": {"clientId": "renamed"}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, "renamed", "1:abc").await["clientId"],
        json!("renamed")
    );
}

#[tokio::test]
async fn delete_client_is_seen_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "default").await;
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "1:abc")
        .await
        .is_null());
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "2:other")
        .await
        .is_null());
    ok(&storage, json!({"op": "deleteClient", "clientId": client})).await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "2:other").await,
        Value::Null
    );
}

#[tokio::test]
async fn delete_deployment_is_seen_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let exact = add_deployment(&storage, &client, "1:abc").await;
    let default = add_deployment(&storage, &client, "default").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await["deploymentId"],
        json!("1:abc")
    );

    ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": client, "deploymentId": exact}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await["deploymentId"],
        json!("default"),
        "with the exact deployment gone, the lookup falls back to default"
    );

    ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": client, "deploymentId": default}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
}

#[tokio::test]
async fn update_deployment_is_seen_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let deployment = add_deployment(&storage, &client, "1:abc").await;
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "1:abc")
        .await
        .is_null());
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:xyz").await,
        Value::Null
    );

    ok(
        &storage,
        json!({"op": "updateDeployment", "clientId": client, "deploymentId": deployment,
               "deployment": {"deploymentId": "1:xyz"}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:xyz").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:xyz")
    );

    // Renamed to `default`: the old key now resolves through the fallback.
    ok(
        &storage,
        json!({"op": "updateDeployment", "clientId": client, "deploymentId": deployment,
               "deployment": {"deploymentId": "default"}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
}

#[tokio::test]
async fn a_cached_miss_is_answered_at_once_by_a_client_added_here() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
}

#[tokio::test]
async fn a_cached_miss_is_answered_at_once_by_a_default_deployment_added_here() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "2:def").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    add_deployment(&storage, &client, "default").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
}

#[tokio::test]
async fn a_miss_cached_in_one_container_expires_after_the_miss_ttl() {
    let db = TestDb::migrated().await;
    let a = db.storage_with(&[("MISS_CACHE_TTL_SECS", "1")]);
    let b = db.storage();
    assert_eq!(
        launch_config(&a, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    let missed_at = Instant::now();

    let client = add_client(&b, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&b, &client, "1:abc").await;
    let still_cached = launch_config(&a, ISS, LMS_CLIENT, "1:abc").await;
    if missed_at.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            still_cached,
            Value::Null,
            "within the miss TTL container A still answers from its cache"
        );
    }

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        launch_config(&a, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
}

#[tokio::test]
async fn hits_outlive_the_miss_ttl() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[("MISS_CACHE_TTL_SECS", "1")]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        cached,
        "a hit is kept for the launch-config TTL (15 min), not the miss TTL"
    );
}

#[tokio::test]
async fn two_instances_on_two_schemas_never_share_entries() {
    let db1 = TestDb::migrated().await;
    let db2 = TestDb::migrated().await;
    let s1 = db1.storage();
    let s2 = db2.storage();
    let client = add_client(&s1, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&s1, &client, "1:abc").await;

    // A miss cached by instance 2 must not answer instance 1 ...
    assert_eq!(
        launch_config(&s2, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&s1, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
    // ... nor a hit cached by instance 1 answer instance 2.
    assert_eq!(
        launch_config(&s2, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );

    // The same platform on both databases with different URLs: each sees its own.
    let mut different = client_json(&new_client(ISS, LMS_CLIENT));
    different["authUrl"] = json!("https://db2.example/auth");
    let writer = db2.storage();
    let id2 = ok(&writer, json!({"op": "addClient", "client": different})).await;
    add_deployment(&writer, id2.as_str().unwrap(), "2:def").await;
    let fresh2 = db2.storage();
    assert_eq!(
        launch_config(&fresh2, ISS, LMS_CLIENT, "2:def").await["authUrl"],
        json!("https://db2.example/auth")
    );
    assert_eq!(
        launch_config(&s1, ISS, LMS_CLIENT, "2:def").await,
        Value::Null
    );
}

#[tokio::test]
async fn the_launch_config_cache_never_exceeds_its_capacity() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("LAUNCH_CONFIG_CACHE_CAPACITY", "10")]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let client = uuid_of(&client);
    // 100 registered deployments (hits) and 100 unknown ones (misses).
    db.sql()
        .await
        .execute(
            "INSERT INTO deployments (deployment_id, client_id)
             SELECT 'd' || n, $1 FROM generate_series(0, 99) n",
            &[&client],
        )
        .await
        .unwrap();
    let mut hits = 0;
    for n in 0..200 {
        let deployment = format!("d{n}");
        let found = launch_config(&storage, ISS, LMS_CLIENT, &deployment).await;
        if !found.is_null() {
            hits += 1;
            assert_eq!(found["deploymentId"], json!(deployment));
        }
        let (entries, _) = storage.cached_entries();
        assert!(
            entries <= 10,
            "{entries} launch configs cached after {} lookups, capacity 10",
            n + 1
        );
    }
    assert_eq!(hits, 100);
    assert!(storage.cached_entries().0 > 0, "the cache is in use");
}

#[tokio::test]
async fn a_change_made_elsewhere_is_seen_within_the_change_check_interval() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("CHANGE_CHECK_INTERVAL_MS", "300")]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    assert_eq!(
        cached,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );

    // Another container (or psql, or @lti-tool/postgresql) changes the platform.
    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await["authUrl"],
        json!("https://changed.example/auth")
    );
    // And a deletion made elsewhere too.
    db.sql()
        .await
        .batch_execute("DELETE FROM deployments; DELETE FROM clients;")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
}

#[tokio::test]
async fn a_hit_expires_after_the_launch_config_ttl() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[("LAUNCH_CONFIG_CACHE_TTL_SECS", "1")]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let fresh = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    assert_ne!(fresh, cached);
    assert_eq!(fresh["authUrl"], json!("https://changed.example/auth"));
}
