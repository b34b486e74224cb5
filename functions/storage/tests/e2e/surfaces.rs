//! Which ops an invocation may call, through `cargo lambda watch` as it really invokes: it gives
//! the function the invoked ARN "function-arn" whatever the Invoke API call named (the function
//! alone, or a `Qualifier`), so locally no invocation names the admin alias and only
//! ADMIN_ON_ANY_QUALIFIER=true (as scripts/run-local.sh and the other tests set it) opens the
//! admin ops. The ARNs Lambda gives are checked in shared/lambda/tests/integration/surfaces.rs.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::e2e;
use crate::lambda::{Lambda, Outcome};

/// Admin ops: one that rewrites a platform's keys, one that changes the schema.
fn admin_ops() -> [Value; 2] {
    [
        json!({"op": "updateClient", "clientId": Uuid::new_v4().to_string(),
               "client": {"jwksUrl": "https://keys.attacker.example/jwks"}}),
        json!({"op": "migrate"}),
    ]
}

/// The Invoke API calls of the storage function: unqualified, and with each `Qualifier`.
const QUALIFIERS: [Option<&str>; 5] = [
    None,
    Some("$LATEST"),
    Some("3"),
    Some("runtime"),
    Some("admin"),
];

#[test]
fn without_the_local_setting_no_invocation_gets_the_admin_ops() {
    let e2e = e2e();
    let strict = Lambda::start(&e2e.db.url, &[("ADMIN_ON_ANY_QUALIFIER", "false")]);
    for qualifier in QUALIFIERS {
        for payload in admin_ops() {
            match strict.invoke_qualified("storage", qualifier, &payload) {
                Outcome::Failed(error_type, message) => {
                    assert_eq!(
                        error_type, "Forbidden",
                        "{qualifier:?} {payload}: {message}"
                    );
                    assert!(message.contains("admin alias"), "{message}");
                }
                Outcome::Ok(value) => {
                    panic!("{qualifier:?} {payload}: answered {value}, expected Forbidden")
                }
            }
        }
    }
    // What launches need is answered.
    let session = json!({"op": "getSession", "sessionId": Uuid::new_v4().to_string()});
    assert_eq!(strict.ok("storage", "getSession", &session), Value::Null);
}

#[test]
fn with_the_local_setting_every_invocation_gets_the_admin_ops() {
    let e2e = e2e();
    for qualifier in QUALIFIERS {
        let migrate = e2e
            .lambda
            .invoke_qualified("storage", qualifier, &json!({"op": "migrate"}));
        assert!(
            matches!(&migrate, Outcome::Ok(applied) if *applied == json!({"applied": []})),
            "{qualifier:?}: {migrate:?}"
        );
    }
}
