//! The storage operations as HTTP resources (the function URL). Routing only: each route is
//! declared with its operation (`request::ROUTES`, the README's HTTP table) and becomes the
//! same `Request` a direct invocation makes; replies are shaped from the same results, so no
//! operation logic lives here.
//!
//! Errors: 400 InvalidInput, 404 NotFound, 409 Conflict, 403 Forbidden, 503 Unavailable,
//! 500 Internal, with body `{"errorType": ..., "errorMessage": ...}`; an unknown path is 404
//! NotFound, a known path with another method 405 InvalidInput.

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use lti_storage::input;
use lti_storage::request::{Request, ROUTES};
use lti_storage::route::{Input, Reply, Route};
use lti_storage::{Answer, Error, ErrorKind, Result};

/// A response before it is put in the shape of the event source.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The body's JSON text.
    pub body: Option<Box<RawValue>>,
    /// The error the body reports, kept as it is for the invocation's metrics line.
    pub error: Option<Error>,
}

pub fn status_of(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidInput => 400,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::Forbidden => 403,
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
            body: Some(json_text(
                &json!({"errorType": err.kind.as_str(), "errorMessage": err.message}),
            )),
            error: Some(err.clone()),
        }
    }

    /// The response for an operation's outcome (its answer's JSON text).
    pub fn from_result(reply: Reply, result: Result<Answer>) -> Response {
        let answer = match result {
            Ok(answer) => answer,
            Err(err) => return Response::error(&err),
        };
        let (status, body) = match reply {
            Reply::Found(missing) if answer.get() == "null" => {
                return Response::error(&Error::not_found(missing))
            }
            Reply::Found(_) | Reply::Ok => (200, Some(answer.into_owned())),
            Reply::CreatedId => (201, Some(json_text(&json!({ "id": answer })))),
            Reply::Created => (201, None),
            Reply::NoContent => (204, None),
            Reply::Valid => (200, Some(json_text(&json!({ "valid": answer })))),
        };
        Response {
            status,
            body,
            error: None,
        }
    }
}

/// A routing failure that is not an operation's: unknown path (404) or method (405).
#[derive(Debug, Clone)]
pub struct NoRoute(pub Response);

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Finds the operation for `method` and `path` (still %-encoded), with the decoded query
/// parameters and the JSON body (`Value::Null` when there is none).
pub fn route(
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: Value,
) -> std::result::Result<Result<(Request, Reply)>, NoRoute> {
    let Some(segments) = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(input::percent_decode)
        .collect::<Option<Vec<String>>>()
    else {
        return Ok(Err(Error::invalid_input(
            "the path has a malformed %-escape",
        )));
    };
    let Some((op, route, path_args)) = find(method, &segments) else {
        return Err(no_route(method, &segments));
    };
    let mut args = match route.input {
        Input::None => Map::new(),
        Input::Body(field) => Map::from_iter([(field.to_owned(), body)]),
        Input::WholeBody => match body {
            Value::Object(fields) => fields,
            other => {
                return Ok(Err(Error::invalid_input(format!(
                    "{op}: the body must be a JSON object, got {}",
                    input::json_type(&other)
                ))))
            }
        },
        Input::Query => match query_args(op, query) {
            Ok(args) => args,
            Err(err) => return Ok(Err(err)),
        },
    };
    args.extend(path_args);
    Ok(Request::from_args(op, Value::Object(args)).map(|request| (request, route.reply)))
}

/// The route for `method` and `segments`, with the arguments its path holds.
fn find(method: &str, segments: &[String]) -> Option<(&'static str, Route, Map<String, Value>)> {
    ROUTES.iter().find_map(|(op, route)| {
        if route.method != method {
            return None;
        }
        let pattern: Vec<&str> = route.path.split('/').filter(|s| !s.is_empty()).collect();
        if pattern.len() != segments.len() {
            return None;
        }
        let mut args = Map::new();
        for (part, segment) in pattern.iter().zip(segments) {
            match part
                .strip_prefix('{')
                .and_then(|part| part.strip_suffix('}'))
            {
                Some(field) => {
                    args.insert(field.to_owned(), Value::String(segment.clone()));
                }
                None if part == segment => {}
                None => return None,
            }
        }
        Some((*op, *route, args))
    })
}

fn no_route(method: &str, segments: &[String]) -> NoRoute {
    // Same path under any method that has a route: the method is what is wrong.
    let path_exists = METHODS
        .iter()
        .any(|other| *other != method && find(other, segments).is_some());
    NoRoute(if path_exists {
        Response::error_with_status(
            405,
            &Error::invalid_input(format!("method {method} is not allowed on this path")),
        )
    } else {
        Response::error(&Error::not_found(
            "no such resource; see the HTTP route table in the README",
        ))
    })
}

/// Query parameters as arguments, each value whole; a key given twice is ambiguous.
fn query_args(op: &str, query: &[(String, String)]) -> Result<Map<String, Value>> {
    let mut args = Map::new();
    for (key, value) in query {
        if args
            .insert(key.clone(), Value::String(value.clone()))
            .is_some()
        {
            return Err(Error::invalid_input(format!(
                "{op}: a query parameter is given more than once"
            )));
        }
    }
    Ok(args)
}

/// The decoded `(key, value)` pairs of a raw query string (`a=1&b=x%2Cy`), in order. Values
/// are kept whole (commas included); `+` is a space, as in HTML forms.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| input::percent_decode(&text.replace('+', " "));
            match (decode(key), decode(value)) {
                (Some(key), Some(value)) => Ok((key, value)),
                _ => Err(Error::invalid_input(
                    "the query string has a malformed %-escape",
                )),
            }
        })
        .collect()
}

/// `value` as JSON text. Built from JSON already: writing it cannot fail.
fn json_text(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_default()
}
