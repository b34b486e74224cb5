//! Clients (the README's operations table), through the same JSON calls an LTI Lambda makes.

use lti_storage::ErrorKind;
use serde_json::{json, Value};
use test_support::{
    add_client, add_deployment, client_json, fails, new_client, ok, uuid_of, TestDb, ISS,
    LMS_CLIENT,
};
use uuid::Uuid;

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
