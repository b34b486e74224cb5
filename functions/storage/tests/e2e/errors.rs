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

/// Payloads the runtime's own parser would refuse, or that are too large to be worth parsing,
/// reach the storage as bytes and are answered InvalidInput naming the problem (and the
/// argument, where the storage knows it), never quoting the caller's data.
#[test]
fn payloads_no_parser_can_read_are_invalid_input_without_their_contents() {
    let e2e = e2e();
    let lambda = &e2e.lambda;
    let session = |inner: &str| {
        format!(
            r#"{{"op":"addSession","session":{{"id":"{}","secret":{inner}}}}}"#,
            uuid::Uuid::new_v4()
        )
        .into_bytes()
    };
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    // 6 MB, the most Lambda passes on: about 3 million values once parsed.
    let huge = format!("[{}0]", "0,".repeat(3_000_000));
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("malformed JSON", br#"{"op":"storeNonce","nonce":"s3cret"#.to_vec(), "the payload is not JSON the storage can read: EOF while parsing"),
        ("a lone surrogate", session(r#""s3cret \ud83d""#), "the payload is not JSON the storage can read: argument `session`: "),
        ("nesting 1000 deep", session(&deep), "the payload is not JSON the storage can read: argument `session`: recursion limit exceeded"),
        ("not UTF-8", b"{\"op\":\"getSession\",\"sessionId\":\"s3cret\xff\"}".to_vec(), "the payload is not UTF-8 text"),
        ("6 MB", session(&huge), "the storage reads at most 196608 (twice MAX_SESSION_BYTES"),
        ("trailing bytes", br#"{"op":"listClients"} s3cret"#.to_vec(), "trailing characters"),
    ];
    for (what, payload, expected) in cases {
        let message = lambda.fails_with_bytes("storage", what, payload, "InvalidInput");
        assert!(message.contains(expected), "{what}: {message}");
        assert!(
            !message.contains("s3cret") && !message.contains("secret"),
            "{what}: {message}"
        );
    }
    lambda.ok(
        "storage",
        "a call after them",
        &json!({"op": "listClients"}),
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
