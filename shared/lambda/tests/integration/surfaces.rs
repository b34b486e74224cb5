//! The runtime alias answers only what an LTI Lambda's launches need (and dynamic
//! registration's calls when enabled); everything else is Forbidden there, and nothing is
//! read or written. The admin alias answers everything, and only it: an invocation of the plain
//! function name, `$LATEST`, a version or another alias gets the runtime surface, unless
//! ADMIN_ON_ANY_QUALIFIER (local runs) opens the admin one to all.

use lti_storage::access::Surface;
use lti_storage::request::{NoArgs, OPS};
use lti_storage::{ErrorKind, Request};
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{json_of, ok, payload_for, TestDb};

async fn on(storage: &Storage, surface: Surface, op: &str) -> Result<Value, lti_storage::Error> {
    let request = Request::from_payload(payload_for(op)).expect("a valid payload");
    storage
        .handle_on(surface, request)
        .await
        .map(|answer| json_of(&answer))
}

const RUNTIME: &[&str] = &[
    "storeNonce",
    "validateNonce",
    "addSession",
    "getSession",
    "getLaunchConfig",
    "saveLaunchConfig",
    "cleanup",
];
const REGISTRATION: &[&str] = &[
    "addClient",
    "addDeployment",
    "setRegistrationSession",
    "getRegistrationSession",
    "deleteRegistrationSession",
];

#[tokio::test]
async fn the_runtime_alias_refuses_what_launches_do_not_need_and_writes_nothing() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = ok(&storage, payload_for("addClient")).await;
    for op in OPS {
        let answer = on(&storage, Surface::Runtime, op).await;
        if RUNTIME.contains(op) {
            assert!(answer.is_ok(), "{op}: {answer:?}");
            continue;
        }
        let err = answer.expect_err(op);
        assert_eq!(err.kind, ErrorKind::Forbidden, "{op}: {err:?}");
        assert!(err.message.starts_with(op), "names the op: {}", err.message);
        assert!(err.message.contains("admin alias"), "{}", err.message);
    }
    // Only the client added through the admin alias above; the refused calls wrote nothing.
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM registration_sessions").await,
        0
    );
    let listed = on(&storage, Surface::Admin, "listClients").await.unwrap();
    assert_eq!(listed[0]["id"], client);
}

#[tokio::test]
async fn with_dynamic_registration_the_runtime_alias_registers_platforms() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("DYNAMIC_REGISTRATION", "true")]);
    for op in OPS {
        let answer = on(&storage, Surface::Runtime, op).await;
        if RUNTIME.contains(op) || REGISTRATION.contains(op) {
            // addDeployment names a client that does not exist: past the surface check.
            let allowed = answer.map_or_else(|err| err.kind == ErrorKind::NotFound, |_| true);
            assert!(allowed, "{op}");
        } else {
            assert_eq!(answer.unwrap_err().kind, ErrorKind::Forbidden, "{op}");
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
}

#[tokio::test]
async fn the_admin_alias_answers_every_op() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    for op in OPS {
        if let Err(err) = on(&storage, Surface::Admin, op).await {
            assert_ne!(err.kind, ErrorKind::Forbidden, "{op}");
        }
    }
    let migrate = storage.handle_on(Surface::Admin, Request::Migrate(NoArgs {}));
    assert_eq!(json_of(&migrate.await.unwrap()), json!({"applied": []}));
}

/// The function's ARN, as Lambda gives it to an invocation that names no qualifier.
const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:lti-storage";

/// Calls `payload` as the function does an invocation of `invoked_arn`.
async fn invoked(
    storage: &Storage,
    invoked_arn: &str,
    payload: Value,
) -> Result<Value, lti_storage::Error> {
    let request = Request::from_payload(payload).expect("a valid payload");
    storage
        .handle_on(storage.surface_of(invoked_arn), request)
        .await
        .map(|answer| json_of(&answer))
}

/// An update of the client's jwksUrl, which a caller able to make it could point at keys of
/// its own.
fn rewrite_jwks_url(client: &Value) -> Value {
    json!({"op": "updateClient", "clientId": client,
           "client": {"jwksUrl": "https://keys.attacker.example/jwks"}})
}

async fn jwks_url(storage: &Storage, client: &Value) -> Value {
    let found = invoked(
        storage,
        &format!("{FUNCTION_ARN}:admin"),
        json!({"op": "getClientById", "clientId": client}),
    )
    .await
    .unwrap();
    found["jwksUrl"].clone()
}

#[tokio::test]
async fn admin_ops_are_forbidden_unless_invoked_through_the_admin_alias() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = ok(&storage, payload_for("addClient")).await;
    let original = jwks_url(&storage, &client).await;
    let qualified = |qualifier: &str| format!("{FUNCTION_ARN}:{qualifier}");
    for arn in [
        FUNCTION_ARN.to_owned(),
        qualified("$LATEST"),
        qualified("12"),
        qualified("runtime"),
        qualified("live"),
    ] {
        for payload in [rewrite_jwks_url(&client), json!({"op": "migrate"})] {
            let err = invoked(&storage, &arn, payload.clone())
                .await
                .expect_err(&arn);
            assert_eq!(err.kind, ErrorKind::Forbidden, "{arn} {payload}: {err:?}");
            assert!(err.message.contains("admin alias"), "{}", err.message);
        }
        // What launches need still works there.
        invoked(&storage, &arn, payload_for("getLaunchConfig"))
            .await
            .unwrap_or_else(|err| panic!("{arn}: {err:?}"));
    }
    assert_eq!(jwks_url(&storage, &client).await, original);

    let admin = qualified("admin");
    invoked(&storage, &admin, rewrite_jwks_url(&client))
        .await
        .unwrap();
    assert_eq!(
        jwks_url(&storage, &client).await,
        "https://keys.attacker.example/jwks"
    );
    let migrated = invoked(&storage, &admin, json!({"op": "migrate"})).await;
    assert_eq!(migrated.unwrap(), json!({"applied": []}));
}

#[tokio::test]
async fn admin_on_any_qualifier_opens_the_admin_ops_to_every_invocation() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("ADMIN_ON_ANY_QUALIFIER", "true")]);
    let client = ok(&storage, payload_for("addClient")).await;
    // `cargo lambda watch` gives every invocation the ARN "function-arn".
    for arn in [
        "function-arn".to_owned(),
        FUNCTION_ARN.to_owned(),
        format!("{FUNCTION_ARN}:$LATEST"),
        format!("{FUNCTION_ARN}:runtime"),
    ] {
        invoked(&storage, &arn, rewrite_jwks_url(&client))
            .await
            .unwrap_or_else(|err| panic!("{arn}: {err:?}"));
        let migrated = invoked(&storage, &arn, json!({"op": "migrate"})).await;
        assert_eq!(migrated.unwrap(), json!({"applied": []}), "{arn}");
    }
}
