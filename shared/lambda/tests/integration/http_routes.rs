//! Every route of the function URL (the README's HTTP section, the route table in
//! `lti_storage::request::ROUTES`): its status and body, and the errors of its operation as
//! `{errorType, errorMessage}`.

use lti_storage::request::ROUTES;
use lti_storage_lambda::http::{route, NoRoute};
use serde_json::{json, Value};
use test_support::{client_json, launch_config_json, new_client, TestDb};
use uuid::Uuid;

use crate::http::{
    add_deployment, created_id, failure, http, post_client, success, ISS, LMS_CLIENT,
    LMS_DEPLOYMENT,
};

#[tokio::test]
async fn client_routes_answer_with_the_documented_statuses() {
    let db = TestDb::migrated().await;
    let storage = db.storage();

    let listed = success(
        "GET /clients (empty)",
        http(&storage, "GET", "/clients", &[], Value::Null).await,
        200,
    );
    assert_eq!(listed, json!([]));

    let id = post_client(&storage).await;

    let listed = success(
        "GET /clients",
        http(&storage, "GET", "/clients", &[], Value::Null).await,
        200,
    );
    let listed = listed.as_array().expect("GET /clients gives an array");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["clientId"], LMS_CLIENT);
    assert!(
        listed[0].get("deployments").is_none(),
        "listClients has no deployments: {listed:?}"
    );

    let path = format!("/clients/{id}");
    let client = success(
        "GET /clients/{id}",
        http(&storage, "GET", &path, &[], Value::Null).await,
        200,
    );
    assert_eq!(client["iss"], ISS);
    assert_eq!(client["deployments"], json!([]));

    let patched = http(
        &storage,
        "PATCH",
        &path,
        &[],
        json!({"name": "Canvas LMS (production)"}),
    )
    .await;
    success("PATCH /clients/{id}", patched, 204);
    let client = success(
        "GET /clients/{id} after PATCH",
        http(&storage, "GET", &path, &[], Value::Null).await,
        200,
    );
    assert_eq!(client["name"], "Canvas LMS (production)");
    assert_eq!(client["clientId"], LMS_CLIENT, "PATCH keeps other fields");

    // Errors.
    let duplicate = http(
        &storage,
        "POST",
        "/clients",
        &[],
        client_json(&new_client(ISS, LMS_CLIENT)),
    )
    .await;
    failure("POST /clients duplicate", duplicate, 409, "Conflict");

    let mut incomplete = client_json(&new_client(ISS, "10000000000002"));
    incomplete.as_object_mut().unwrap().remove("jwksUrl");
    let message = failure(
        "POST /clients without jwksUrl",
        http(&storage, "POST", "/clients", &[], incomplete).await,
        400,
        "InvalidInput",
    );
    assert!(message.contains("jwksUrl"), "names the field: {message}");

    let no_body = http(&storage, "POST", "/clients", &[], Value::Null).await;
    failure("POST /clients without a body", no_body, 400, "InvalidInput");

    let unknown = format!("/clients/{}", Uuid::new_v4());
    failure(
        "GET unknown client",
        http(&storage, "GET", &unknown, &[], Value::Null).await,
        404,
        "NotFound",
    );
    failure(
        "GET /clients/not-a-uuid",
        http(&storage, "GET", "/clients/not-a-uuid", &[], Value::Null).await,
        404,
        "NotFound",
    );
    failure(
        "PATCH unknown client",
        http(&storage, "PATCH", &unknown, &[], json!({"name": "x"})).await,
        404,
        "NotFound",
    );
    success(
        "PATCH with a field the storage does not keep",
        http(&storage, "PATCH", &path, &[], json!({"colour": "red"})).await,
        204,
    );

    success(
        "DELETE /clients/{id}",
        http(&storage, "DELETE", &path, &[], Value::Null).await,
        204,
    );
    success(
        "DELETE /clients/{id} again",
        http(&storage, "DELETE", &path, &[], Value::Null).await,
        204,
    );
    failure(
        "GET deleted client",
        http(&storage, "GET", &path, &[], Value::Null).await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn deployment_routes_answer_with_the_documented_statuses() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = post_client(&storage).await;
    let list_path = format!("/clients/{client}/deployments");

    let listed = success(
        "GET deployments (empty)",
        http(&storage, "GET", &list_path, &[], Value::Null).await,
        200,
    );
    assert_eq!(listed, json!([]));

    let id = add_deployment(&storage, &client, LMS_DEPLOYMENT).await;
    let listed = success(
        "GET deployments",
        http(&storage, "GET", &list_path, &[], Value::Null).await,
        200,
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["deploymentId"], LMS_DEPLOYMENT);

    let path = format!("{list_path}/{id}");
    let deployment = success(
        "GET deployment",
        http(&storage, "GET", &path, &[], Value::Null).await,
        200,
    );
    assert_eq!(deployment["deploymentId"], LMS_DEPLOYMENT);
    assert_eq!(deployment["name"], "Biology department");
    assert_eq!(deployment["clientId"], client.as_str());

    let patched = http(
        &storage,
        "PATCH",
        &path,
        &[],
        json!({"description": "All biology courses"}),
    )
    .await;
    success("PATCH deployment", patched, 204);
    let deployment = success(
        "GET deployment after PATCH",
        http(&storage, "GET", &path, &[], Value::Null).await,
        200,
    );
    assert_eq!(deployment["description"], "All biology courses");
    assert_eq!(deployment["name"], "Biology department");

    // Errors.
    let duplicate = http(
        &storage,
        "POST",
        &list_path,
        &[],
        json!({"deploymentId": LMS_DEPLOYMENT}),
    )
    .await;
    failure("POST duplicate deployment", duplicate, 409, "Conflict");
    let message = failure(
        "POST deployment without deploymentId",
        http(&storage, "POST", &list_path, &[], json!({"name": "x"})).await,
        400,
        "InvalidInput",
    );
    assert!(
        message.contains("deploymentId"),
        "names the field: {message}"
    );
    let other_client = format!("/clients/{}/deployments", Uuid::new_v4());
    let orphan = http(
        &storage,
        "POST",
        &other_client,
        &[],
        json!({"deploymentId": "2:abc"}),
    )
    .await;
    failure("POST deployment of unknown client", orphan, 404, "NotFound");

    let unknown = format!("{list_path}/{}", Uuid::new_v4());
    failure(
        "GET unknown deployment",
        http(&storage, "GET", &unknown, &[], Value::Null).await,
        404,
        "NotFound",
    );
    failure(
        "PATCH unknown deployment",
        http(&storage, "PATCH", &unknown, &[], json!({"name": "x"})).await,
        404,
        "NotFound",
    );
    // A deployment is only reachable under its own client.
    let second = http(
        &storage,
        "POST",
        "/clients",
        &[],
        client_json(&new_client(
            "https://canvas.test.instructure.com",
            LMS_CLIENT,
        )),
    )
    .await;
    let second = created_id("POST second client", second);
    let foreign = format!("/clients/{second}/deployments/{id}");
    failure(
        "GET deployment under another client",
        http(&storage, "GET", &foreign, &[], Value::Null).await,
        404,
        "NotFound",
    );

    success(
        "DELETE deployment",
        http(&storage, "DELETE", &path, &[], Value::Null).await,
        204,
    );
    success(
        "DELETE deployment again",
        http(&storage, "DELETE", &path, &[], Value::Null).await,
        204,
    );
    failure(
        "GET deleted deployment",
        http(&storage, "GET", &path, &[], Value::Null).await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn nonce_routes_store_and_validate_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let nonce = "7c1f2b8e9d4a4f3c8e6b5a4d3c2b1a09";
    let body = json!({"nonce": nonce, "expiresAt": "2030-01-01T00:00:00.000Z"});

    let stored = http(&storage, "POST", "/nonces", &[], body.clone()).await;
    success("POST /nonces", stored, 201);
    let again = http(&storage, "POST", "/nonces", &[], body).await;
    failure("POST /nonces again", again, 409, "Conflict");

    let validate = format!("/nonces/{nonce}/validate");
    let first = http(&storage, "POST", &validate, &[], Value::Null).await;
    assert_eq!(success("validate", first, 200), json!({"valid": true}));
    let second = http(&storage, "POST", &validate, &[], Value::Null).await;
    assert_eq!(
        success("validate again", second, 200),
        json!({"valid": false})
    );
    let unknown = http(
        &storage,
        "POST",
        "/nonces/never-stored/validate",
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(
        success("validate unknown", unknown, 200),
        json!({"valid": false})
    );

    // Epoch milliseconds are accepted too.
    let millis = http(
        &storage,
        "POST",
        "/nonces",
        &[],
        json!({"nonce": "by-millis", "expiresAt": 1_893_456_000_000_i64}),
    )
    .await;
    success("POST /nonces with epoch ms", millis, 201);

    let message = failure(
        "POST /nonces with a bad expiresAt",
        http(
            &storage,
            "POST",
            "/nonces",
            &[],
            json!({"nonce": "n2", "expiresAt": "tomorrow"}),
        )
        .await,
        400,
        "InvalidInput",
    );
    assert!(message.contains("expiresAt"), "names the field: {message}");
    let message = failure(
        "POST /nonces without expiresAt",
        http(&storage, "POST", "/nonces", &[], json!({"nonce": "n3"})).await,
        400,
        "InvalidInput",
    );
    assert!(message.contains("expiresAt"), "names the field: {message}");
}

#[tokio::test]
async fn session_routes_answer_with_the_documented_statuses() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = "33333333-3333-4333-8333-333333333333";
    let session = json!({
        "id": id,
        "user": {"id": "a6d5c443", "name": "Jane Doe", "roles": ["Learner"]},
        "context": {"id": "4dde05e8", "label": "BIO101"},
    });

    let created = http(&storage, "POST", "/sessions", &[], session.clone()).await;
    assert_eq!(created_id("POST /sessions", created), id);
    let path = format!("/sessions/{id}");
    let found = http(&storage, "GET", &path, &[], Value::Null).await;
    assert_eq!(success("GET /sessions/{id}", found, 200), session);

    // Ask a fresh instance too, so the answer comes from the database, not the cache.
    let fresh = db.storage();
    let found = http(&fresh, "GET", &path, &[], Value::Null).await;
    assert_eq!(success("GET /sessions/{id} (fresh)", found, 200), session);

    let unknown = format!("/sessions/{}", Uuid::new_v4());
    failure(
        "GET unknown session",
        http(&storage, "GET", &unknown, &[], Value::Null).await,
        404,
        "NotFound",
    );
    failure(
        "GET /sessions/not-a-uuid",
        http(&storage, "GET", "/sessions/not-a-uuid", &[], Value::Null).await,
        404,
        "NotFound",
    );
    let message = failure(
        "POST /sessions without id",
        http(&storage, "POST", "/sessions", &[], json!({"user": {}})).await,
        400,
        "InvalidInput",
    );
    assert!(message.contains("id"), "names the field: {message}");
    failure(
        "POST /sessions with a non-object body",
        http(&storage, "POST", "/sessions", &[], json!([1, 2])).await,
        400,
        "InvalidInput",
    );
}

#[tokio::test]
async fn launch_config_routes_answer_with_the_documented_statuses() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let query = [
        ("iss", ISS),
        ("clientId", LMS_CLIENT),
        ("deploymentId", LMS_DEPLOYMENT),
    ];

    let missing = http(&storage, "GET", "/launch-config", &query, Value::Null).await;
    failure(
        "GET /launch-config (nothing registered)",
        missing,
        404,
        "NotFound",
    );

    let client = post_client(&storage).await;
    add_deployment(&storage, &client, LMS_DEPLOYMENT).await;
    let found = http(&storage, "GET", "/launch-config", &query, Value::Null).await;
    assert_eq!(
        success("GET /launch-config", found, 200),
        launch_config_json(&new_client(ISS, LMS_CLIENT), LMS_DEPLOYMENT)
    );

    let other_iss = [
        ("iss", "https://canvas.beta.instructure.com"),
        ("clientId", LMS_CLIENT),
        ("deploymentId", LMS_DEPLOYMENT),
    ];
    let other = http(&storage, "GET", "/launch-config", &other_iss, Value::Null).await;
    failure("GET /launch-config, other iss", other, 404, "NotFound");

    // Each missing parameter is named.
    for (i, (field, _)) in query.iter().enumerate() {
        let mut partial = query.to_vec();
        partial.remove(i);
        let response = http(&storage, "GET", "/launch-config", &partial, Value::Null).await;
        let message = failure(
            &format!("GET /launch-config without {field}"),
            response,
            400,
            "InvalidInput",
        );
        assert!(message.contains(field), "names {field}: {message}");
    }
    let mut extra = query.to_vec();
    extra.push(("colour", "red"));
    let response = http(&storage, "GET", "/launch-config", &extra, Value::Null).await;
    success(
        "GET /launch-config with a parameter the storage does not use",
        response,
        200,
    );

    let saved = http(
        &storage,
        "PUT",
        "/launch-config",
        &[],
        json!({
            "iss": ISS,
            "clientId": LMS_CLIENT,
            "deploymentId": LMS_DEPLOYMENT,
            "authUrl": "https://sso.canvaslms.com/api/lti/authorize_redirect",
            "tokenUrl": "https://sso.canvaslms.com/login/oauth2/token",
            "jwksUrl": "https://sso.canvaslms.com/api/lti/security/jwks",
        }),
    )
    .await;
    success("PUT /launch-config", saved, 204);
}

#[tokio::test]
async fn registration_session_routes_answer_with_the_documented_statuses() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = "44444444-4444-4444-8444-444444444444";
    let path = format!("/registration-sessions/{id}");
    let session = json!({
        "openIdConfiguration": {"issuer": ISS},
        "registrationToken": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        "expiresAt": 4_102_444_800_000_i64,
    });

    failure(
        "GET before PUT",
        http(&storage, "GET", &path, &[], Value::Null).await,
        404,
        "NotFound",
    );
    let stored = http(&storage, "PUT", &path, &[], session.clone()).await;
    success("PUT registration session", stored, 204);
    let found = http(&storage, "GET", &path, &[], Value::Null).await;
    let found = success("GET registration session", found, 200);
    assert_eq!(found["registrationToken"], session["registrationToken"]);
    assert_eq!(found["openIdConfiguration"], session["openIdConfiguration"]);

    let expired = http(
        &storage,
        "PUT",
        &path,
        &[],
        json!({"openIdConfiguration": {}, "expiresAt": 1_000}),
    )
    .await;
    success("PUT (replace with an expired one)", expired, 204);
    failure(
        "GET expired registration session",
        http(&storage, "GET", &path, &[], Value::Null).await,
        404,
        "NotFound",
    );

    let message = failure(
        "PUT without expiresAt",
        http(
            &storage,
            "PUT",
            &path,
            &[],
            json!({"openIdConfiguration": {}}),
        )
        .await,
        400,
        "InvalidInput",
    );
    assert!(message.contains("expiresAt"), "names the field: {message}");
    failure(
        "PUT under a non-UUID id",
        http(
            &storage,
            "PUT",
            "/registration-sessions/abc",
            &[],
            session.clone(),
        )
        .await,
        400,
        "InvalidInput",
    );

    success(
        "PUT again",
        http(&storage, "PUT", &path, &[], session).await,
        204,
    );
    success(
        "DELETE registration session",
        http(&storage, "DELETE", &path, &[], Value::Null).await,
        204,
    );
    success(
        "DELETE registration session again",
        http(&storage, "DELETE", &path, &[], Value::Null).await,
        204,
    );
    failure(
        "GET deleted registration session",
        http(&storage, "GET", &path, &[], Value::Null).await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn migrate_route_reports_what_it_applied() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let response = http(&storage, "POST", "/migrate", &[], Value::Null).await;
    assert_eq!(
        success("POST /migrate", response, 200),
        json!({"applied": []}),
        "an up-to-date schema has nothing to apply"
    );
}

/// Every route, with its `{field}` segments filled in, reaches its own op.
#[test]
fn every_route_reaches_its_op() {
    let id = Uuid::new_v4().to_string();
    for (op, route_of_op) in ROUTES {
        let path = route_of_op
            .path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    id.as_str()
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let query: Vec<(String, String)> = ["iss", "clientId", "deploymentId"]
            .iter()
            .map(|key| (key.to_string(), "x".to_string()))
            .collect();
        match route(route_of_op.method, &path, &query, Value::Null) {
            Ok(Ok((request, reply))) => {
                assert_eq!(request.op(), *op, "{path}");
                assert_eq!(reply, route_of_op.reply, "{path}");
            }
            // A body-taking route rejects the missing body: it still reached its op.
            Ok(Err(err)) => assert!(err.message.starts_with(op), "{path}: {err:?}"),
            Err(NoRoute(response)) => panic!("{path}: no route: {response:?}"),
        }
    }
}
