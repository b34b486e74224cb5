//! Requests for the HTTP tests (`http_routes`, `http_errors`), routed as the storage function
//! routes a function-URL event once it has taken the event apart (`route` + `Storage::handle` +
//! `Response::from_result`), and assertions on the responses.

use lti_storage_lambda::http::{route, NoRoute, Response};
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{client_json, json_of, new_client};
use uuid::Uuid;

pub const ISS: &str = "https://canvas.instructure.com";
pub const LMS_CLIENT: &str = "10000000000001";
pub const LMS_DEPLOYMENT: &str = "1:8865aa05b4b79b64a91a86042e43af5ea8ae79eb";

/// One HTTP request: `path` still %-encoded, `query` decoded (as function URLs give
/// `queryStringParameters`), `body` `Null` when there is none.
pub async fn http(
    storage: &Storage,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Value,
) -> Response {
    let query: Vec<(String, String)> = query
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    match route(method, path, &query, body) {
        Err(NoRoute(response)) => response,
        Ok(Err(err)) => Response::error(&err),
        Ok(Ok((request, reply))) => Response::from_result(reply, storage.handle(request).await),
    }
}

/// Asserts a success status; returns the body (`Null` when there is none).
pub fn success(what: &str, response: Response, status: u16) -> Value {
    assert_eq!(
        response.status, status,
        "{what}: expected {status}, got {response:?}"
    );
    match status {
        201 | 204 if response.body.is_none() => Value::Null,
        204 => panic!("{what}: 204 must have no body, got {response:?}"),
        _ => json_of(
            &response
                .body
                .unwrap_or_else(|| panic!("{what}: {status} without a body")),
        ),
    }
}

/// Asserts an error response: the status, and a body of exactly `errorType` and a non-empty
/// `errorMessage`; returns the message.
pub fn failure(what: &str, response: Response, status: u16, error_type: &str) -> String {
    assert_eq!(
        response.status, status,
        "{what}: expected {status} {error_type}, got {response:?}"
    );
    let body = json_of(
        &response
            .body
            .unwrap_or_else(|| panic!("{what}: error {status} without a body")),
    );
    let fields = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error body {body} is not an object"));
    let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["errorMessage", "errorType"], "{what}: body {body}");
    assert_eq!(body["errorType"], error_type, "{what}: body {body}");
    let message = body["errorMessage"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: errorMessage of {body} is not a string"));
    assert!(!message.is_empty(), "{what}: empty errorMessage");
    message.to_owned()
}

/// The `id` of a `201 {"id": ...}` answer, checked to be a UUID.
pub fn created_id(what: &str, response: Response) -> String {
    let body = success(what, response, 201);
    let id = body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: 201 body {body} has no string id"));
    Uuid::parse_str(id).unwrap_or_else(|_| panic!("{what}: id {id} is not a UUID"));
    assert_eq!(body.as_object().map(|b| b.len()), Some(1), "{what}: {body}");
    id.to_owned()
}

/// Registers a platform through `POST /clients`; returns its id.
pub async fn post_client(storage: &Storage) -> String {
    let response = http(
        storage,
        "POST",
        "/clients",
        &[],
        client_json(&new_client(ISS, LMS_CLIENT)),
    )
    .await;
    created_id("POST /clients", response)
}

pub async fn add_deployment(storage: &Storage, client: &str, deployment_id: &str) -> String {
    let response = http(
        storage,
        "POST",
        &format!("/clients/{client}/deployments"),
        &[],
        json!({"deploymentId": deployment_id, "name": "Biology department"}),
    )
    .await;
    created_id("POST /clients/{id}/deployments", response)
}
