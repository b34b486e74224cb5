//! The runtime alias answers only what an LTI Lambda's launches need (and dynamic
//! registration's calls when enabled); everything else is Forbidden there, and nothing is
//! read or written. The admin alias answers everything.

use lti_storage::access::Surface;
use lti_storage::request::{NoArgs, OPS};
use lti_storage::{ErrorKind, Request, Storage};
use serde_json::{json, Value};
use test_support::{ok, payload_for, TestDb};

async fn on(storage: &Storage, surface: Surface, op: &str) -> Result<Value, lti_storage::Error> {
    let request = Request::from_payload(payload_for(op)).expect("a valid payload");
    storage.handle_on(surface, request).await
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
    assert_eq!(migrate.await.unwrap(), json!({"applied": []}));
}
