//! Nonces (used once, directly and through the function URL), sessions and registration
//! sessions.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::e2e;
use crate::events::{Events, REGISTRATION_SESSION_ID, SESSION_ID};
use crate::lambda::http_reply;

#[test]
fn a_nonce_is_valid_once_directly_and_over_http() {
    let e2e = e2e();
    let lambda = &e2e.lambda;
    let events = Events::new();
    let store = events.raw("store-nonce.json");
    let validate = events.raw("validate-nonce.json");
    assert_eq!(
        store["nonce"], validate["nonce"],
        "the two examples go together"
    );
    assert_eq!(lambda.ok("storage", "store-nonce", &store), Value::Null);
    assert_eq!(
        lambda.ok("storage", "validate-nonce", &validate),
        json!(true)
    );
    assert_eq!(
        lambda.ok("storage", "validate-nonce again", &validate),
        json!(false)
    );
    let message = lambda.fails("storage", "store-nonce twice", &store, "Conflict");
    let nonce = store["nonce"].as_str().expect("a nonce string");
    assert!(
        !message.contains(nonce),
        "the error message never holds the nonce: {message}"
    );

    // The example's nonce was consumed above by validate-nonce.
    let validate_event = events.raw("http-validate-nonce.json");
    let response = lambda.ok("storage", "http-validate-nonce (used)", &validate_event);
    let (status, body) = http_reply("http-validate-nonce (used)", &response);
    assert_eq!((status, body), (200, json!({"valid": false})), "{response}");
    // A fresh nonce, in the same event.
    let fresh = format!("{}", Uuid::new_v4().simple());
    let mut fresh_store = store.clone();
    fresh_store["nonce"] = json!(fresh);
    lambda.ok("storage", "store a fresh nonce", &fresh_store);
    let fresh_event: Value = serde_json::from_str(
        &events
            .text("http-validate-nonce.json")
            .replace(nonce, &fresh),
    )
    .expect("still JSON");
    let response = lambda.ok("storage", "http-validate-nonce (fresh)", &fresh_event);
    let (status, body) = http_reply("http-validate-nonce (fresh)", &response);
    assert_eq!((status, body), (200, json!({"valid": true})), "{response}");
}

#[test]
fn sessions_and_registration_sessions_are_kept_and_deleted() {
    let e2e = e2e();
    let lambda = &e2e.lambda;
    let events = Events::new();
    let add_session = events.raw("add-session.json");
    let id = lambda.ok("storage", "add-session", &add_session);
    assert_eq!(id, json!(SESSION_ID));
    let session = lambda.ok("storage", "get-session", &events.raw("get-session.json"));
    assert_eq!(session, add_session["session"]);

    let set = events.raw("set-registration-session.json");
    assert_eq!(set["sessionId"], REGISTRATION_SESSION_ID);
    assert_eq!(
        lambda.ok("storage", "set-registration-session", &set),
        Value::Null
    );
    let get = events.raw("get-registration-session.json");
    let found = lambda.ok("storage", "get-registration-session", &get);
    assert_eq!(
        found["openIdConfiguration"],
        set["session"]["openIdConfiguration"]
    );
    assert_eq!(found["expiresAt"], set["session"]["expiresAt"]);
    let delete = events.raw("delete-registration-session.json");
    assert_eq!(
        lambda.ok("storage", "delete-registration-session", &delete),
        Value::Null
    );
    assert_eq!(
        lambda.ok("storage", "get-registration-session after delete", &get),
        Value::Null
    );
}
