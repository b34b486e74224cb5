//! Function-URL events: put the HTTP request into the shared crate's route table and its
//! response back into the shape Lambda function URLs expect, on `aws_lambda_events`' function
//! URL types.
//!
//! Not through lambda_http: its adapter reads every payload as an HTTP event, while this
//! function also takes direct invocations (`{"op": ...}`) and bounds each payload's size before
//! any parser reads it (`payload.rs`); its conversion of the event into an `http::Request`
//! panics on some crafted events (a body flagged base64 that is not, a malformed path or
//! host), which with `panic = "abort"` would end every invocation in flight; and it links
//! `url`, `idna` and `encoding_rs`, 10 % of the binary, for routing that needs a method, a path
//! and a query string.

use aws_lambda_events::http::header::{HeaderValue, CONTENT_TYPE};
use aws_lambda_events::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::Engine;
use lti_storage::access::Surface;
use lti_storage::Error;
use lti_storage_lambda::http::{parse_query, route, Response};
use lti_storage_lambda::Storage;
use serde_json::value::RawValue;
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
    pub event: Box<RawValue>,
}

/// Answers one HTTP event.
pub async fn handle(storage: &Storage, surface: Surface, payload: Value) -> Answered {
    let (op, mut response) = match serde_json::from_value::<LambdaFunctionUrlRequest>(payload) {
        Ok(request) => answer(storage, surface, request).await,
        Err(_) => (
            "invalid",
            Response::error(&Error::invalid_input("not a function URL event")),
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
    request: LambdaFunctionUrlRequest,
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
    let method = request
        .request_context
        .http
        .method
        .as_deref()
        .unwrap_or_default();
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
fn request_body(request: &LambdaFunctionUrlRequest) -> Result<Value, Error> {
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

fn to_event(response: Response) -> Box<RawValue> {
    let mut event = LambdaFunctionUrlResponse::default();
    event.status_code = i64::from(response.status);
    if let Some(body) = response.body {
        event
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        event.body = Some(Box::<str>::from(body).into_string());
    }
    // A response event is plain strings and numbers; serialising it cannot fail.
    serde_json::value::to_raw_value(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Nothing is listening there: these events never reach the database.
    fn offline_storage() -> Storage {
        test_support::storage_at("postgres://nobody@127.0.0.1:1/none", &[])
    }

    #[tokio::test]
    async fn an_event_that_is_no_function_url_event_is_a_400_naming_that() {
        let storage = offline_storage();
        let event = json!({"requestContext": {"http": {"method": 5}}, "rawPath": "/clients"});
        let answered = handle(&storage, Surface::Admin, event).await;
        assert_eq!(answered.status, 400);
        let event: Value = serde_json::from_str(answered.event.get()).unwrap();
        assert_eq!(event["statusCode"], 400);
        let body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["errorType"], "InvalidInput");
        assert_eq!(body["errorMessage"], "not a function URL event");
    }

    #[tokio::test]
    async fn a_body_flagged_base64_that_is_not_is_a_400() {
        let storage = offline_storage();
        let event = json!({
            "version": "2.0", "rawPath": "/nonces", "rawQueryString": "",
            "requestContext": {"http": {"method": "POST"}, "timeEpoch": 0},
            "body": "not base64!", "isBase64Encoded": true,
        });
        let answered = handle(&storage, Surface::Admin, event).await;
        assert_eq!(answered.status, 400);
        assert_eq!(
            answered.error.map(|err| err.message).as_deref(),
            Some("the body is not valid base64")
        );
    }
}
