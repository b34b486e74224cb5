//! The storage operations as HTTP resources (the function URL). Routing only: each route
//! becomes the same `Request` a direct invocation makes, and replies are shaped from the same
//! results, so no operation logic lives here.
//!
//! | method | path                                         | op                        | success |
//! |--------|----------------------------------------------|---------------------------|---------|
//! | GET    | /clients                                     | listClients               | 200     |
//! | POST   | /clients                                     | addClient                 | 201 {id}|
//! | GET    | /clients/{clientId}                          | getClientById             | 200/404 |
//! | PATCH  | /clients/{clientId}                          | updateClient              | 204     |
//! | DELETE | /clients/{clientId}                          | deleteClient              | 204     |
//! | GET    | /clients/{clientId}/deployments              | listDeployments           | 200     |
//! | POST   | /clients/{clientId}/deployments              | addDeployment             | 201 {id}|
//! | GET    | /clients/{clientId}/deployments/{id}         | getDeployment             | 200/404 |
//! | PATCH  | /clients/{clientId}/deployments/{id}         | updateDeployment          | 204     |
//! | DELETE | /clients/{clientId}/deployments/{id}         | deleteDeployment          | 204     |
//! | POST   | /nonces                                      | storeNonce                | 201     |
//! | POST   | /nonces/{nonce}/validate                     | validateNonce             | 200 {valid} |
//! | POST   | /sessions                                    | addSession                | 201 {id}|
//! | GET    | /sessions/{sessionId}                        | getSession                | 200/404 |
//! | GET    | /launch-config?iss=&clientId=&deploymentId=  | getLaunchConfig           | 200/404 |
//! | PUT    | /launch-config                               | saveLaunchConfig          | 204     |
//! | PUT    | /registration-sessions/{sessionId}           | setRegistrationSession    | 204     |
//! | GET    | /registration-sessions/{sessionId}           | getRegistrationSession    | 200/404 |
//! | DELETE | /registration-sessions/{sessionId}           | deleteRegistrationSession | 204     |
//! | POST   | /migrate                                     | migrate                   | 200     |
//!
//! Errors: 400 InvalidInput, 404 NotFound, 409 Conflict, 503 Unavailable, 500 Internal, with
//! body `{"errorType": ..., "errorMessage": ...}`; an unknown path is 404, a known path with
//! another method 405 (both errorType InvalidInput).

use serde_json::{json, Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::input;
use crate::request::Request;

/// How a route turns the operation's result into a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 200 with the result; a `null` result is 404 with this message.
    Found(&'static str),
    /// 200 with the result as it is.
    Ok,
    /// 201 with `{"id": result}`.
    CreatedId,
    /// 201, no body.
    Created,
    /// 204, no body.
    NoContent,
    /// 200 with `{"valid": result}`.
    Valid,
}

/// A response before it is put in the shape of the event source.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Option<Value>,
}

pub fn status_of(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidInput => 400,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::Unavailable => 503,
        ErrorKind::Internal => 500,
    }
}

impl Response {
    pub fn error(err: &Error) -> Response {
        Response::error_with_status(status_of(err.kind), err)
    }

    fn error_with_status(status: u16, err: &Error) -> Response {
        Response {
            status,
            body: Some(json!({"errorType": err.kind.as_str(), "errorMessage": err.message})),
        }
    }

    /// The response for an operation's outcome.
    pub fn from_result(reply: Reply, result: Result<Value>) -> Response {
        let value = match result {
            Ok(value) => value,
            Err(err) => return Response::error(&err),
        };
        let (status, body) = match reply {
            Reply::Found(missing) if value.is_null() => {
                return Response::error(&Error::not_found(missing))
            }
            Reply::Found(_) | Reply::Ok => (200, Some(value)),
            Reply::CreatedId => (201, Some(json!({ "id": value }))),
            Reply::Created => (201, None),
            Reply::NoContent => (204, None),
            Reply::Valid => (200, Some(json!({ "valid": value }))),
        };
        Response { status, body }
    }
}

/// A routing failure that is not an operation's: unknown path (404) or method (405).
#[derive(Debug, Clone, PartialEq)]
pub struct NoRoute(pub Response);

/// Finds the operation for `method` and `path` (still %-encoded), with the decoded query
/// parameters and the JSON body (`Value::Null` when there is none).
pub fn route(
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Value,
) -> std::result::Result<Result<(Request, Reply)>, NoRoute> {
    let segments = match path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(input::percent_decode)
        .collect::<Option<Vec<String>>>()
    {
        Some(segments) => segments,
        None => {
            return Ok(Err(Error::invalid_input(
                "the path has a malformed %-escape",
            )))
        }
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match find(method, &segments, query, body) {
        Some((op, reply, args)) => Ok(Request::from_args(op, args).map(|request| (request, reply))),
        None => Err(no_route(method, &segments)),
    }
}

/// The route table: (op, reply, arguments); the arguments are the payload fields of a direct
/// invocation.
fn find(
    method: &str,
    segments: &[&str],
    query: &[(String, String)],
    body: Value,
) -> Option<(&'static str, Reply, Value)> {
    match (method, segments) {
        ("GET", ["clients"]) => Some(("listClients", Reply::Ok, json!({}))),
        ("POST", ["clients"]) => Some(("addClient", Reply::CreatedId, json!({ "client": body }))),
        ("GET", ["clients", id]) => Some((
            "getClientById",
            Reply::Found("no client with this id"),
            json!({ "clientId": id }),
        )),
        ("PATCH", ["clients", id]) => Some((
            "updateClient",
            Reply::NoContent,
            json!({ "clientId": id, "client": body }),
        )),
        ("DELETE", ["clients", id]) => {
            Some(("deleteClient", Reply::NoContent, json!({ "clientId": id })))
        }
        ("GET", ["clients", id, "deployments"]) => {
            Some(("listDeployments", Reply::Ok, json!({ "clientId": id })))
        }
        ("POST", ["clients", id, "deployments"]) => Some((
            "addDeployment",
            Reply::CreatedId,
            json!({ "clientId": id, "deployment": body }),
        )),
        ("GET", ["clients", id, "deployments", deployment]) => Some((
            "getDeployment",
            Reply::Found("this client has no deployment with this id"),
            json!({ "clientId": id, "deploymentId": deployment }),
        )),
        ("PATCH", ["clients", id, "deployments", deployment]) => Some((
            "updateDeployment",
            Reply::NoContent,
            json!({ "clientId": id, "deploymentId": deployment, "deployment": body }),
        )),
        ("DELETE", ["clients", id, "deployments", deployment]) => Some((
            "deleteDeployment",
            Reply::NoContent,
            json!({ "clientId": id, "deploymentId": deployment }),
        )),
        ("POST", ["nonces"]) => Some(("storeNonce", Reply::Created, body)),
        ("POST", ["nonces", nonce, "validate"]) => {
            Some(("validateNonce", Reply::Valid, json!({ "nonce": nonce })))
        }
        ("POST", ["sessions"]) => {
            Some(("addSession", Reply::CreatedId, json!({ "session": body })))
        }
        ("GET", ["sessions", id]) => Some((
            "getSession",
            Reply::Found("no session with this id, or it has expired"),
            json!({ "sessionId": id }),
        )),
        ("GET", ["launch-config"]) => Some((
            "getLaunchConfig",
            Reply::Found("no launch config for this iss, clientId and deploymentId"),
            Value::Object(query_args(query)),
        )),
        ("PUT", ["launch-config"]) => Some((
            "saveLaunchConfig",
            Reply::NoContent,
            json!({ "launchConfig": body }),
        )),
        ("PUT", ["registration-sessions", id]) => Some((
            "setRegistrationSession",
            Reply::NoContent,
            json!({ "sessionId": id, "session": body }),
        )),
        ("GET", ["registration-sessions", id]) => Some((
            "getRegistrationSession",
            Reply::Found("no registration session with this id, or it has expired"),
            json!({ "sessionId": id }),
        )),
        ("DELETE", ["registration-sessions", id]) => Some((
            "deleteRegistrationSession",
            Reply::NoContent,
            json!({ "sessionId": id }),
        )),
        ("POST", ["migrate"]) => Some(("migrate", Reply::Ok, json!({}))),
        _ => None,
    }
}

fn no_route(method: &str, segments: &[&str]) -> NoRoute {
    // Same path under any method that has a route: the method is what is wrong.
    let path_exists = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .filter(|other| **other != method)
        .any(|other| find(other, segments, &[], Value::Null).is_some());
    let (status, message) = if path_exists {
        (405, format!("method {method} is not allowed on this path"))
    } else {
        (
            404,
            "no such resource; see the route table in the README".to_string(),
        )
    };
    NoRoute(Response::error_with_status(
        status,
        &Error::invalid_input(message),
    ))
}

fn query_args(query: &[(String, String)]) -> Map<String, Value> {
    query
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect()
}
