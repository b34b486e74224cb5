//! What the function URL answers to requests no route takes or cannot read: unknown paths
//! (404) and methods (405), and %-decoding of path segments.

use serde_json::{json, Value};
use test_support::TestDb;
use uuid::Uuid;

use crate::http::{failure, http, post_client, success};

#[tokio::test]
async fn percent_encoded_path_segments_are_decoded() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    // A base64 nonce: '/', '+' and '=' must arrive %-encoded in a path segment.
    let nonce = "q1w2/e3r4+t5y6==";
    let stored = http(
        &storage,
        "POST",
        "/nonces",
        &[],
        json!({"nonce": nonce, "expiresAt": "2030-01-01T00:00:00.000Z"}),
    )
    .await;
    success("POST /nonces", stored, 201);

    let encoded = "/nonces/q1w2%2Fe3r4%2Bt5y6%3D%3D/validate";
    let first = http(&storage, "POST", encoded, &[], Value::Null).await;
    assert_eq!(
        success("validate %-encoded", first, 200),
        json!({"valid": true}),
        "the segment is decoded before it is used"
    );
    let lower = "/nonces/q1w2%2fe3r4%2bt5y6%3d%3d/validate";
    let second = http(&storage, "POST", lower, &[], Value::Null).await;
    assert_eq!(
        success("validate lower-case escapes", second, 200),
        json!({"valid": false}),
        "same nonce (lower-case hex), already used"
    );

    // Unencoded, the '/' splits the path: a different (unknown) resource.
    let split = http(
        &storage,
        "POST",
        "/nonces/q1w2/e3r4+t5y6==/validate",
        &[],
        Value::Null,
    )
    .await;
    failure("unencoded '/'", split, 404, "NotFound");

    // Ids are decoded too.
    let client = post_client(&storage).await;
    let encoded_id = client.replace('-', "%2D");
    let found = http(
        &storage,
        "GET",
        &format!("/clients/{encoded_id}"),
        &[],
        Value::Null,
    )
    .await;
    assert_eq!(success("GET %-encoded client id", found, 200)["id"], client);

    let malformed = http(
        &storage,
        "POST",
        "/nonces/abc%zz/validate",
        &[],
        Value::Null,
    )
    .await;
    failure("malformed escape", malformed, 400, "InvalidInput");
    let not_utf8 = http(
        &storage,
        "POST",
        "/nonces/abc%FF/validate",
        &[],
        Value::Null,
    )
    .await;
    failure("escape that is not UTF-8", not_utf8, 400, "InvalidInput");
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = Uuid::new_v4();
    for path in [
        "/".to_string(),
        "/nope".to_string(),
        "/client".to_string(),
        format!("/clients/{id}/deployments/{id}/extra"),
        "/nonces/abc".to_string(),
        "/nonces/abc/validate/again".to_string(),
        "/registration-sessions".to_string(),
    ] {
        let response = http(&storage, "GET", &path, &[], Value::Null).await;
        failure(&format!("GET {path}"), response, 404, "NotFound");
    }
    for (method, path) in [
        ("DELETE", "/clients".to_string()),
        ("PUT", "/clients".to_string()),
        ("POST", format!("/clients/{id}")),
        ("PUT", format!("/clients/{id}")),
        ("DELETE", format!("/clients/{id}/deployments")),
        ("POST", format!("/clients/{id}/deployments/{id}")),
        ("GET", "/nonces".to_string()),
        ("GET", "/nonces/abc/validate".to_string()),
        // Decoded, this segment holds a '/': still one segment, so still this route.
        ("GET", "/nonces/a%2Fb/validate".to_string()),
        ("DELETE", format!("/sessions/{id}")),
        ("GET", "/sessions".to_string()),
        ("POST", "/launch-config".to_string()),
        ("DELETE", "/launch-config".to_string()),
        ("POST", format!("/registration-sessions/{id}")),
        ("GET", "/migrate".to_string()),
        ("HEAD", "/clients".to_string()),
        ("OPTIONS", "/clients".to_string()),
    ] {
        let response = http(&storage, method, &path, &[], Value::Null).await;
        let message = failure(&format!("{method} {path}"), response, 405, "InvalidInput");
        assert!(message.contains(method), "names the method: {message}");
    }
}
