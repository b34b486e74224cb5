//! Session JSON comes back exactly as it went in: nested objects, unicode keys, escapes,
//! extreme numbers and a 1 MB string; a number stored beyond what a double holds is an error,
//! never a panic.

use lti_storage::ErrorKind;
use serde_json::{json, Map, Value};
use test_support::{fails, json_of, listed_clients, ok, TestDb};

use crate::values::NASTY;

/// A session that exercises everything JSON can hold.
fn rich_session(id: &str) -> Value {
    let mut keys = Map::new();
    for (i, text) in NASTY.iter().enumerate() {
        keys.insert(text.to_string(), json!(i));
    }
    let mut deep = json!("bottom");
    for level in 0..60 {
        deep = if level % 2 == 0 {
            json!([deep, level])
        } else {
            json!({ "level": level, "inner": deep })
        };
    }
    json!({
        "id": id,
        "user": {"name": "Ada Lovelace", "roles": ["Learner", "Instructor"], "email": null},
        "strings": NASTY,
        "escapes": "quote\" backslash\\ slash/ newline\n return\r tab\t backspace\u{8} formfeed\u{c} unit\u{1f} del\u{7f} </script> \u{2028}\u{2029}",
        "keys": keys,
        "ключ": "значение", "键": "值", "🔑": "🔓", "": "empty key", " ": "space key",
        "numbers": {
            "zero": 0, "one": 1, "minus_one": -1,
            "u64_max": u64::MAX, "i64_min": i64::MIN, "i64_max": i64::MAX,
            "one_point_zero": 1.0, "tenth": 0.1, "third": 1.0 / 3.0,
            "big": 1e308, "f64_max": f64::MAX, "f64_min": f64::MIN,
            "tiny": 5e-324, "f64_min_positive": f64::MIN_POSITIVE,
            "negative_zero": -0.0, "exp": 6.02214076e23, "neg_exp": -1.602176634e-19,
            // jsonb gives it back as exact decimal text, which a sloppy parser rounds wrong.
            "near_min": 1.936425737738182e-308,
            "integral_float": 1.2e17,
        },
        "booleans": [true, false],
        "empty": {"object": {}, "array": [], "string": ""},
        "mixed": [null, 1, "two", [3], {"four": 4}],
        "deep": deep,
    })
}

/// `session` as jsonb gives it back: equal in every string, key and number value; JSON does
/// not tell 1.2e17 from 120000000000000000, and neither does jsonb (serde_json does).
fn as_stored(session: &Value) -> Value {
    let mut stored = session.clone();
    stored["numbers"]["integral_float"] = json!(120_000_000_000_000_000u64);
    stored
}

#[tokio::test]
async fn session_json_round_trips_exactly() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = uuid::Uuid::new_v4().to_string();
    let session = rich_session(&id);

    let stored = ok(&storage, json!({"op": "addSession", "session": session})).await;
    assert_eq!(stored, json!(id));
    // Through this instance's cache, and from the database by another instance.
    let cached = ok(&storage, json!({"op": "getSession", "sessionId": id})).await;
    assert_eq!(cached, session);
    let fresh = ok(&db.storage(), json!({"op": "getSession", "sessionId": id})).await;
    assert_eq!(fresh, as_stored(&session));

    // Numbers keep the kind serde_json gave them.
    let numbers = &fresh["numbers"];
    assert_eq!(numbers["u64_max"].as_u64(), Some(u64::MAX));
    assert_eq!(numbers["i64_min"].as_i64(), Some(i64::MIN));
    assert!(numbers["one_point_zero"].is_f64(), "1.0 stays a float");
    assert!(numbers["one"].is_u64(), "1 stays an integer");
    for name in [
        "big",
        "f64_max",
        "f64_min",
        "tiny",
        "third",
        "tenth",
        "exp",
        "neg_exp",
        "near_min",
        "integral_float",
    ] {
        assert_eq!(
            numbers[name].as_f64().map(f64::to_bits),
            session["numbers"][name].as_f64().map(f64::to_bits),
            "{name} came back as {}",
            numbers[name]
        );
    }
    assert!(numbers["integral_float"].is_u64());
    // jsonb stores numbers as numeric, which has no negative zero: -0.0 comes back as a
    // zero (equal, as serde_json compares numbers).
    assert_eq!(numbers["negative_zero"].as_f64(), Some(0.0));

    // Storing the identical session again is not a conflict: it is recognised as the same.
    assert_eq!(
        ok(&storage, json!({"op": "addSession", "session": session})).await,
        json!(id)
    );
}

#[tokio::test]
async fn a_one_megabyte_session_string_round_trips_with_the_size_limit_raised() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("MAX_SESSION_BYTES", "6291456")]);
    let id = uuid::Uuid::new_v4().to_string();
    let big: String = "aé東🎓\"\\\n"
        .repeat(1 << 20)
        .chars()
        .take(1 << 20)
        .collect();
    let session = json!({"id": id, "big": big, "after": "end"});
    ok(&storage, json!({"op": "addSession", "session": session})).await;
    let fresh = json_of(&db.storage().get_session(&id).await.unwrap().unwrap());
    assert_eq!(fresh["big"].as_str().map(str::len), Some(big.len()));
    assert_eq!(fresh, session);
}

#[tokio::test]
async fn registration_session_json_round_trips_exactly() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let id = uuid::Uuid::new_v4().to_string();
    let mut session = rich_session("not-a-session-id: registration sessions keep every key");
    session["expiresAt"] = json!(4102444800000u64);
    ok(
        &storage,
        json!({"op": "setRegistrationSession", "sessionId": id, "session": session}),
    )
    .await;
    let got = ok(
        &db.storage(),
        json!({"op": "getRegistrationSession", "sessionId": id}),
    )
    .await;
    assert_eq!(got, as_stored(&session));
}

#[tokio::test]
async fn a_stored_number_beyond_a_double_is_an_error_never_a_panic() {
    // jsonb holds any numeric; other software (or a DBA) can store what JSON in JavaScript
    // or Rust cannot hold.
    let db = TestDb::migrated().await;
    let id = uuid::Uuid::new_v4();
    let sql = db.sql().await;
    for table in ["sessions", "registration_sessions"] {
        sql.execute(
            &format!(
                "INSERT INTO {table} (id, data, expires_at)
                 VALUES ($1, '{{\"n\": 1e400, \"m\": -1e400}}', now() + interval '1 hour')"
            ),
            &[&id],
        )
        .await
        .unwrap();
    }
    let storage = db.storage();
    for op in ["getSession", "getRegistrationSession"] {
        let err = fails(&storage, json!({"op": op, "sessionId": id.to_string()})).await;
        assert_eq!(err.kind, ErrorKind::Internal, "{op}: {err}");
        assert!(err.message.contains("stored"), "{op}: {err}");
    }
    // The storage goes on serving.
    assert_eq!(listed_clients(&storage).await.unwrap(), vec![]);
}
