//! Property-based tests: arbitrary payloads and HTTP requests against a real, migrated schema.
//! Whatever a caller sends, the storage never panics, never answers with a database failure
//! (Internal or Unavailable) for a healthy database, answers each op with a result of the
//! documented shape, and gives back what it stored. One runtime and one storage instance
//! (one connection, one set of caches) per property, like one warm container.
//! Here: the runner, the world the properties run in, and the checks every answer passes.

mod generators;
mod http;
mod payloads;

use lti_storage::{Error, ErrorKind, Request};
use lti_storage_lambda::Storage;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use test_support::{json_of, TestDb};
use tokio::runtime::Runtime;
use uuid::Uuid;

const CASES: u32 = 1000;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        // Failures are reported with the shrunk input; nothing is written to the tree.
        failure_persistence: None,
        ..Config::default()
    })
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A migrated schema with one client and one deployment whose ids the generators use, so
/// random calls also reach rows that exist.
struct World {
    storage: Storage,
    /// Reads from the database only (no session cache): checks what was really stored.
    reader: Storage,
    ids: Vec<String>,
}

impl World {
    fn new(rt: &Runtime) -> World {
        rt.block_on(async {
            let db = TestDb::migrated().await;
            // Generous time limits: these properties are about input, not a busy machine.
            let patient = [("QUERY_TIMEOUT_MS", "60000"), ("CONNECT_TIMEOUT_MS", "60000")];
            let storage = db.storage_with(&patient);
            let client = storage
                .handle(
                    Request::from_payload(json!({"op": "addClient", "client": {
                        "name": "Canvas", "iss": "https://canvas.instructure.com",
                        "clientId": "10000000000001", "authUrl": "https://a", "tokenUrl": "https://t",
                        "jwksUrl": "https://j"}}))
                    .unwrap(),
                )
                .await
                .unwrap();
            let client = json_of(&client).as_str().unwrap().to_string();
            let deployment = storage
                .handle(
                    Request::from_payload(json!({"op": "addDeployment", "clientId": client,
                        "deployment": {"deploymentId": "default"}}))
                    .unwrap(),
                )
                .await
                .unwrap();
            let deployment = json_of(&deployment).as_str().unwrap().to_string();
            let reader = db.storage_with(&[patient[0], patient[1], ("SESSION_CACHE_CAPACITY", "0")]);
            let mut ids = vec![client, deployment];
            ids.extend((0..4).map(|_| Uuid::new_v4().to_string()));
            World {
                storage,
                reader,
                ids,
            }
        })
    }
}

fn is_uuid(value: &Value) -> bool {
    value.as_str().is_some_and(|s| Uuid::parse_str(s).is_ok())
}

/// An error a healthy database must never give for a caller's input.
fn check_error(context: &str, err: &Error) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(
            err.kind,
            ErrorKind::InvalidInput | ErrorKind::NotFound | ErrorKind::Conflict
        ),
        "{context}: a caller's input gave {err}"
    );
    prop_assert!(!err.message.is_empty(), "{context}: empty error message");
    for sql in ["SELECT ", "INSERT ", "UPDATE ", "DELETE FROM"] {
        prop_assert!(!err.message.contains(sql), "{context}: SQL in {err}");
    }
    Ok(())
}
