//! Parsing a payload: error messages name the op and the argument, never a value.

use super::*;
use serde_json::json;

#[test]
fn type_errors_keep_the_kind_of_value_never_the_value() {
    for (payload, kind) in [
        (json!(42), "integer"),
        (json!(-7), "integer"),
        (json!(1.5), "floating point"),
        (json!(true), "boolean"),
    ] {
        let args = json!({ "sessionId": payload });
        let err = Request::from_args("getSession", args).unwrap_err();
        assert_eq!(
            err.message,
            format!("getSession: field `sessionId`: invalid type: {kind}, expected a string")
        );
    }
    let err = Request::from_args("getSession", json!({ "sessionId": [1] })).unwrap_err();
    assert!(err
        .message
        .ends_with("invalid type: sequence, expected a string"));
    let secret = json!({ "session": "s3cret\", expected a map" });
    let err = Request::from_args("addSession", secret).unwrap_err();
    assert_eq!(
        err.message,
        "addSession: field `session`: invalid type: string, expected a map"
    );
}

#[test]
fn unreadable_json_is_invalid_input_naming_the_argument_never_its_contents() {
    let deep = format!(
        r#"{{"op":"addSession","session":{{"id":"x","deep":{}{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for (text, expected) in [
        (
            r#"{"op":"addSession","session":{"secret":"s3cret \ud83d"}}"#,
            "argument `session`: unexpected end of hex escape",
        ),
        (
            deep.as_str(),
            "argument `session`: recursion limit exceeded",
        ),
        (r#"{"op":"storeNonce","nonce":"s3cret"#, "EOF while parsing"),
        (
            "{\"op\":\"getSession\",\"sessionId\":\"s3cret\u{1}\"}",
            "control character",
        ),
        (r#"{"op":"getSession"} trailing"#, "trailing characters"),
    ] {
        let err = payload_from_json(text).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::InvalidInput, "{text}");
        assert!(
            err.message
                .starts_with("the payload is not JSON the storage can read: "),
            "{}",
            err.message
        );
        assert!(err.message.contains(expected), "{}", err.message);
        for value in ["s3cret", "secret", "deep"] {
            assert!(!err.message.contains(value), "{}", err.message);
        }
    }
    let readable = payload_from_json(r#"{"op":"getSession","sessionId":"\ud83d\ude00"}"#);
    assert_eq!(readable, Ok(json!({"op": "getSession", "sessionId": "😀"})));
}

#[test]
fn an_unknown_op_is_named_only_when_short_and_printable() {
    let named = Request::from_args("getSesion", json!({})).unwrap_err();
    assert!(named
        .message
        .starts_with("unknown op \"getSesion\"; expected one of listClients"));
    for op in [
        "a".repeat(33),
        "get session".into(),
        "nonce\u{0}".into(),
        "é".into(),
    ] {
        let err = Request::from_args(&op, json!({})).unwrap_err();
        assert!(
            err.message.starts_with("unknown op; expected one of"),
            "{op:?}"
        );
    }
}

#[test]
fn arguments_must_be_an_object_even_for_ops_without_any() {
    let err = Request::from_args("listClients", json!([])).unwrap_err();
    assert_eq!(
        err.message,
        "listClients: arguments must be an object, got an array"
    );
    let ok = Request::from_args("listClients", json!({ "extra": 1 }));
    assert_eq!(ok, Ok(Request::ListClients(NoArgs {})));
}
