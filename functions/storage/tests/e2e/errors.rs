//! What the storage function refuses: payloads that are no call, and function-URL requests
//! for no route. The function is still there after them.

use serde_json::json;

use crate::e2e;
use crate::events::Events;
use crate::lambda::http_reply;

#[test]
fn invalid_payloads_are_invalid_input_naming_the_problem() {
    let e2e = e2e();
    let lambda = &e2e.lambda;
    let message = lambda.fails(
        "storage",
        "unknown op",
        &json!({"op": "nope"}),
        "InvalidInput",
    );
    assert!(message.contains("nope"), "{message}");
    lambda.fails("storage", "array payload", &json!([1, 2]), "InvalidInput");
    lambda.fails("storage", "no op", &json!({"nonce": "x"}), "InvalidInput");
    let message = lambda.fails(
        "storage",
        "getSession without sessionId",
        &json!({"op": "getSession"}),
        "InvalidInput",
    );
    assert!(
        message.contains("getSession") && message.contains("sessionId"),
        "{message}"
    );
}

#[test]
fn an_unknown_path_is_404_and_a_wrong_method_405() {
    let e2e = e2e();
    let lambda = &e2e.lambda;
    let events = Events::new();
    let mut unknown = events.raw("http-list-clients.json");
    unknown["rawPath"] = json!("/nope");
    unknown["requestContext"]["http"]["path"] = json!("/nope");
    let response = lambda.ok("storage", "HTTP unknown path", &unknown);
    let (status, body) = http_reply("HTTP unknown path", &response);
    assert_eq!(status, 404, "{response}");
    assert_eq!(body["errorType"], "NotFound", "{body}");
    let mut wrong_method = events.raw("http-list-clients.json");
    wrong_method["requestContext"]["http"]["method"] = json!("DELETE");
    let response = lambda.ok("storage", "HTTP wrong method", &wrong_method);
    assert_eq!(
        http_reply("HTTP wrong method", &response).0,
        405,
        "{response}"
    );
}
