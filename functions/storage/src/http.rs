//! Function-URL events: put the HTTP request into the shared crate's route table and its
//! response back into the shape Lambda function URLs expect.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::header::{HeaderValue, CONTENT_TYPE};
use base64::Engine;
use lti_storage::access::Surface;
use lti_storage::Error;
use lti_storage_lambda::http::{parse_query, route, Response};
use lti_storage_lambda::Storage;
use serde_json::Value;

/// Whether a payload is an HTTP event rather than a direct invocation.
pub fn is_http_event(payload: &Value) -> bool {
    payload.get("requestContext").is_some() && payload.get("op").is_none()
}

/// An HTTP event answered.
pub struct Answered {
    /// The op the route names, or "invalid".
    pub op: &'static str,
    pub status: u16,
    /// The error the response reports, for the metrics line.
    pub error: Option<Error>,
    /// The response event.
    pub event: Value,
}

/// Answers one HTTP event.
pub async fn handle(storage: &Storage, surface: Surface, payload: Value) -> Answered {
    let (op, mut response) = match serde_json::from_value::<ApiGatewayV2httpRequest>(payload) {
        Ok(request) => answer(storage, surface, request).await,
        Err(_) => (
            "invalid",
            Response::error(&Error::invalid_input(
                "not a function URL (HTTP API v2) event",
            )),
        ),
    };
    Answered {
        op,
        status: response.status,
        error: response.error.take(),
        event: to_event(response),
    }
}

async fn answer(
    storage: &Storage,
    surface: Surface,
    request: ApiGatewayV2httpRequest,
) -> (&'static str, Response) {
    let body = match request_body(&request) {
        Ok(body) => body,
        Err(err) => return ("invalid", Response::error(&err)),
    };
    // The raw query string, not `query_string_parameters`: that map splits values on commas
    // and merges repeated keys.
    let query = match parse_query(request.raw_query_string.as_deref().unwrap_or_default()) {
        Ok(query) => query,
        Err(err) => return ("invalid", Response::error(&err)),
    };
    let method = request.request_context.http.method.as_str();
    let path = request.raw_path.as_deref().unwrap_or("/");
    match route(method, path, &query, body) {
        Err(no_route) => ("invalid", no_route.0),
        Ok(Err(err)) => ("invalid", Response::error(&err)),
        Ok(Ok((request, reply))) => {
            let op = request.op();
            (
                op,
                Response::from_result(reply, storage.handle_on(surface, request).await),
            )
        }
    }
}

/// The JSON body, or `Null` when there is none.
fn request_body(request: &ApiGatewayV2httpRequest) -> Result<Value, Error> {
    let Some(text) = request.body.as_deref().filter(|text| !text.is_empty()) else {
        return Ok(Value::Null);
    };
    let bytes = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| Error::invalid_input("the body is not valid base64"))?
    } else {
        text.as_bytes().to_vec()
    };
    serde_json::from_slice(&bytes)
        .map_err(|err| Error::invalid_input(format!("the body is not valid JSON: {err}")))
}

fn to_event(response: Response) -> Value {
    let mut event = ApiGatewayV2httpResponse::default();
    event.status_code = i64::from(response.status);
    if let Some(body) = response.body {
        event
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        event.body = Some(Body::Text(body.to_string()));
    }
    // A response event is plain strings and numbers; serialising it cannot fail.
    serde_json::to_value(event).unwrap_or_default()
}
