//! Secrets stay secret: the database password never appears in an error message (Display or
//! Debug) or a log line, on any path that can fail; nor do the values of a call (nonces,
//! session contents) appear in error messages. Every log line of a test is captured, at
//! TRACE level, as the functions write them (JSON).

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use lti_storage::input::Timestamp;
use lti_storage::model::NewClient;
use lti_storage::ErrorKind;
use serde_json::{json, Map, Value};
use test_support::cluster::Cluster;
use test_support::{call, config_at, free_port, listed_clients, new_client, with_password, TestDb};
use tracing::subscriber::DefaultGuard;

const PASSWORD: &str = "Zq8-hunter2-SECRET-pw";
const NONCE: &str = "nonce-value-XYZ";
const SESSION_SECRET: &str = "session-contents-ABC";
const OTHER_SESSION_SECRET: &str = "session-contents-DEF";

/// Every log line written while it is installed on this thread.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures every event and span field at TRACE level, as JSON lines like the functions'.
    /// `#[tokio::test]` runs the test and its spawned tasks on this thread.
    pub(crate) fn capture() -> (Logs, DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("log lines are UTF-8")
    }

    /// Asserts no line holds `secret`; returns the lines.
    pub(crate) fn assert_without(&self, secret: &str) -> String {
        let text = self.text();
        for line in text.lines() {
            serde_json::from_str::<Value>(line).expect("every log line is JSON");
            assert!(
                !line.contains(secret),
                "a log line shows {secret:?}: {line}"
            );
        }
        text
    }
}

/// Asserts that neither the Display nor the Debug of `err` holds any of `secrets`.
pub(crate) fn assert_error_without(
    err: &(impl std::fmt::Display + std::fmt::Debug),
    secrets: &[&str],
) {
    let shown = format!("{err} | {err:?} | {err:#?}");
    for secret in secrets {
        assert!(
            !shown.contains(secret),
            "an error shows {secret:?}: {shown}"
        );
    }
}

fn object(value: Value) -> Map<String, Value> {
    let Value::Object(map) = value else {
        panic!("not an object")
    };
    map
}

#[test]
fn malformed_configuration_never_shows_the_password() {
    let (logs, _guard) = Logs::capture();
    let host = format!("postgres://postgres:{PASSWORD}@127.0.0.1");
    let cases = [
        (format!("{host}:notaport/postgres"), "DATABASE_URL"),
        (format!("{host}:99999/postgres"), "DATABASE_URL"),
        (
            format!("{host}:5432/postgres?sslmode=sometimes"),
            "DATABASE_URL",
        ),
        (
            format!("{host}:5432/postgres?sslmode={PASSWORD}"),
            "DATABASE_URL",
        ),
        (
            format!("{host}:5432/postgres?sslrootcert=%zz"),
            "DATABASE_URL",
        ),
        (format!("{host}:5432/postgres?frobnicate=1"), "DATABASE_URL"),
        (
            format!("{host}:5432/postgres?connect_timeout=soon"),
            "DATABASE_URL",
        ),
        (
            format!("mysql://postgres:{PASSWORD}@127.0.0.1/postgres"),
            "DATABASE_URL",
        ),
        (
            format!("postgres://postgres:{PASSWORD}@/postgres"),
            "DATABASE_URL",
        ),
        (PASSWORD.to_string(), "DATABASE_URL"),
    ];
    for (url, variable) in &cases {
        let err = config_at(url, &[]).expect_err(url);
        assert_eq!(err.variable, *variable, "{err}");
        assert!(err.to_string().contains(variable), "{err}");
        assert_error_without(&err, &[PASSWORD]);
    }
    // A bad variable beside a valid URL with a password: the message names the variable.
    for (name, value) in [
        ("QUERY_TIMEOUT_MS", "soon"),
        ("LOG_LEVEL", "loud"),
        ("SESSION_TTL_SECS", "-1"),
    ] {
        let err = config_at(&format!("{host}:5432/postgres"), &[(name, value)]).unwrap_err();
        assert_eq!(err.variable, name);
        assert_error_without(&err, &[PASSWORD]);
    }
    // A root certificate that cannot be read stops the storage at init.
    let url = format!("{host}:5432/postgres?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
    let Err(err) = lti_storage_lambda::storage(&config_at(&url, &[]).unwrap()) else {
        panic!("an unreadable root certificate must stop the storage");
    };
    assert_eq!(err.variable, "PGSSLROOTCERT");
    assert_error_without(&err, &[PASSWORD]);
    logs.assert_without(PASSWORD);
}

#[test]
fn debug_of_a_valid_config_never_shows_the_password() {
    let url = format!(
        "postgres://postgres:{PASSWORD}@db.example.internal:6432/lti?sslmode=verify-full&application_name=tool"
    );
    let config = config_at(&url, &[]).unwrap();
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        // It still shows what a user needs to check the set-up.
        assert!(shown.contains("db.example.internal"), "{shown}");
        assert!(shown.contains("6432"), "{shown}");
        assert!(shown.contains("VerifyFull"), "{shown}");
    }
    let shown = format!("{:?}", config.database);
    assert!(!shown.contains(PASSWORD), "{shown}");
}

#[tokio::test]
async fn a_refused_connection_never_shows_the_password() {
    let (logs, _guard) = Logs::capture();
    let url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
        free_port()
    );
    let storage = lti_storage_lambda::storage(&config_at(&url, &[]).unwrap()).unwrap();

    let err = listed_clients(&storage).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("could not connect"), "{err}");
    // The address and the operating system's words are for the log only.
    assert_error_without(&err, &[PASSWORD, "127.0.0.1", "refused"]);
    logs.assert_without(PASSWORD);
}

#[tokio::test]
async fn a_connect_timeout_never_shows_the_password() {
    let (logs, _guard) = Logs::capture();
    // Accepts connections (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres");
    let storage =
        lti_storage_lambda::storage(&config_at(&url, &[("CONNECT_TIMEOUT_MS", "300")]).unwrap())
            .unwrap();

    let err = listed_clients(&storage).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("300 ms"), "{err}");
    assert_error_without(&err, &[PASSWORD]);
    logs.assert_without(PASSWORD);
}

#[tokio::test]
async fn a_refused_password_is_internal_and_never_shown() {
    let (logs, _guard) = Logs::capture();
    let cluster = Cluster::create(&["--password", "other-password"]);

    let wrong = with_password(&cluster.url, PASSWORD);
    let storage = lti_storage_lambda::storage(&config_at(&wrong, &[]).unwrap()).unwrap();
    let err = listed_clients(&storage).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal, "{err}");
    assert!(
        err.message.contains("refused the user or password"),
        "the message must say the login was refused: {err}"
    );
    assert_error_without(&err, &[PASSWORD, "other-password"]);

    // TLS asked of a server without it: refused before any password is sent.
    let storage =
        lti_storage_lambda::storage(&config_at(&format!("{wrong}?sslmode=require"), &[]).unwrap())
            .unwrap();
    let err = listed_clients(&storage).await.unwrap_err();
    assert!(err.message.contains("does not support TLS"), "{err}");
    assert_error_without(&err, &[PASSWORD]);

    // The same URL with the right password works: it was the password that was refused.
    let right = with_password(&cluster.url, "other-password");
    let db = TestDb::migrated_on(&right).await;
    assert_eq!(listed_clients(&db.storage()).await.unwrap(), vec![]);

    let lines = logs.assert_without(PASSWORD);
    assert!(lines.contains("database connected"), "{lines}");
    logs.assert_without("other-password");
}

#[tokio::test]
async fn database_errors_never_show_the_password_or_the_values() {
    let (logs, _guard) = Logs::capture();
    let cluster = Cluster::create(&["--password", PASSWORD]);
    let url = with_password(&cluster.url, PASSWORD);

    // A schema without the migrations: every operation that reads or writes a table fails.
    let empty = TestDb::empty_on(&url).await;
    assert!(empty.url.contains(PASSWORD));
    let storage = empty.storage();
    let id = uuid::Uuid::new_v4().to_string();
    let payloads = [
        json!({"op": "listClients"}),
        json!({"op": "getClientById", "clientId": id}),
        json!({"op": "addClient", "client": {"name": "n", "iss": "i", "clientId": "c",
            "authUrl": "a", "tokenUrl": "t", "jwksUrl": "j"}}),
        json!({"op": "storeNonce", "nonce": NONCE, "expiresAt": "2099-01-01T00:00:00Z"}),
        json!({"op": "validateNonce", "nonce": NONCE}),
        json!({"op": "addSession", "session": {"id": id, "secret": SESSION_SECRET}}),
        json!({"op": "getSession", "sessionId": id}),
        json!({"op": "getLaunchConfig", "iss": "i", "clientId": "c", "deploymentId": "d"}),
        json!({"op": "setRegistrationSession", "sessionId": id,
            "session": {"expiresAt": 4102444800000u64, "secret": SESSION_SECRET}}),
    ];
    for payload in payloads {
        let err = call(&storage, payload.clone()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal, "{payload}: {err}");
        assert!(
            err.message.contains("apply the migrations"),
            "{payload}: {err}"
        );
        assert_error_without(&err, &[PASSWORD, NONCE, SESSION_SECRET, "SELECT", "INSERT"]);
    }

    // A migrated schema: a duplicate, values refused before the database, and a database
    // error with no wording of its own (a check constraint a DBA added).
    let db = TestDb::migrated_on(&url).await;
    let storage = db.storage();
    let canvas = new_client("https://canvas.instructure.com", "10000000000001");
    storage.add_client(None, &canvas).await.unwrap();
    let err = storage.add_client(None, &canvas).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_error_without(
        &err,
        &[PASSWORD, "10000000000001", "canvas.instructure.com"],
    );

    let invalid = [
        json!({"op": "addClient", "client": {"name": "x".repeat(256), "iss": "i",
            "clientId": "c", "authUrl": "a", "tokenUrl": "t", "jwksUrl": "j"}}),
        json!({"op": "updateClient", "clientId": PASSWORD, "client": {"name": "n"}}),
        json!({"op": "deleteRegistrationSession", "sessionId": PASSWORD}),
        json!({"op": "storeNonce", "nonce": NONCE, "expiresAt": PASSWORD}),
        json!({"op": "storeNonce", "nonce": NONCE, "expiresAt": -1}),
    ];
    for payload in invalid {
        let err = call(&storage, payload.clone()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{payload}: {err}");
        assert_error_without(&err, &[PASSWORD, NONCE]);
    }

    db.sql()
        .await
        .batch_execute(
            "ALTER TABLE clients ADD CONSTRAINT no_reserved_name CHECK (name <> 'reserved-name')",
        )
        .await
        .unwrap();
    let err = storage
        .add_client(
            None,
            &NewClient {
                name: "reserved-name".into(),
                ..canvas
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal, "{err}");
    assert!(
        err.message.contains("23514"),
        "the SQLSTATE helps a DBA: {err}"
    );
    assert_error_without(&err, &[PASSWORD, "reserved-name", "no_reserved_name CHECK"]);

    let lines = logs.assert_without(PASSWORD);
    // The capture works: the database error was logged, with its SQLSTATE.
    assert!(
        lines.contains("database error") && lines.contains("23514"),
        "{lines}"
    );
    logs.assert_without(SESSION_SECRET);
}

#[tokio::test]
async fn a_dropped_connection_is_logged_and_replaced_without_showing_the_password() {
    let (logs, _guard) = Logs::capture();
    let cluster = Cluster::create(&["--password", PASSWORD]);
    let url = with_password(&cluster.url, PASSWORD);
    let db = TestDb::migrated_on(&url).await;
    let name = format!("secrets_{}", db.schema);
    let storage = db.storage_with(&[(
        "DATABASE_URL",
        &test_support::with_param(&db.url, &format!("application_name={name}")),
    )]);
    listed_clients(&storage).await.unwrap();

    assert_eq!(db.terminate(&name).await, 1);
    listed_clients(&storage).await.unwrap();

    let lines = logs.assert_without(PASSWORD);
    assert!(
        lines.matches("database connected").count() >= 3,
        "the migration's, the first and the replacement connection: {lines}"
    );
}

#[tokio::test]
async fn nonces_and_session_contents_never_appear_in_error_messages() {
    let (logs, _guard) = Logs::capture();
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let far = Timestamp::parse_rfc3339("2099-01-01T00:00:00Z").unwrap();

    storage.store_nonce(NONCE, far).await.unwrap();
    let err = storage.store_nonce(NONCE, far).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_error_without(&err, &[NONCE]);

    let id = uuid::Uuid::new_v4().to_string();
    storage
        .add_session(object(json!({"id": id, "secret": SESSION_SECRET})))
        .await
        .unwrap();
    let err = storage
        .add_session(object(json!({"id": id, "secret": OTHER_SESSION_SECRET})))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert_error_without(&err, &[SESSION_SECRET, OTHER_SESSION_SECRET, &id]);

    // Values refused before the database: the message names the field, not the value.
    let long_nonce = NONCE.repeat(20);
    let refused = [
        json!({"op": "storeNonce", "nonce": NONCE, "expiresAt": NONCE}),
        json!({"op": "storeNonce", "nonce": long_nonce, "expiresAt": "2099-01-01T00:00:00Z"}),
        json!({"op": "storeNonce", "nonce": format!("{NONCE}\u{0}"), "expiresAt": 4102444800000u64}),
        json!({"op": "validateNonce", "nonce": [NONCE]}),
        json!({"op": "addSession", "session": {"id": SESSION_SECRET}}),
        json!({"op": "addSession", "session": {"id": id, "secret": format!("{SESSION_SECRET}\u{0}")}}),
        json!({"op": "addSession", "session": SESSION_SECRET}),
        json!({"op": "getSession", "sessionId": {"secret": SESSION_SECRET}}),
        json!({"op": "setRegistrationSession", "sessionId": id,
            "session": {"expiresAt": SESSION_SECRET}}),
        json!({"op": "setRegistrationSession", "sessionId": SESSION_SECRET,
            "session": {"expiresAt": 4102444800000u64}}),
        json!({"op": "getLaunchConfig", "iss": SESSION_SECRET, "clientId": 1, "deploymentId": "d"}),
    ];
    for payload in refused {
        let err = call(&storage, payload.clone()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{payload}: {err}");
        assert_error_without(&err, &[NONCE, SESSION_SECRET]);
    }
    // The HTTP routes build the same requests.
    let body = json!({"nonce": NONCE, "expiresAt": NONCE});
    let Ok(Err(err)) = lti_storage_lambda::http::route("POST", "/nonces", &[], body) else {
        panic!("a bad expiresAt is an error of the call");
    };
    assert_error_without(&err, &[NONCE]);

    logs.assert_without(NONCE);
    logs.assert_without(SESSION_SECRET);
}

#[tokio::test]
async fn ignored_fields_are_logged_by_name_never_by_value() {
    let (logs, _guard) = Logs::capture();
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = json!({"name": "Canvas", "iss": "https://canvas.instructure.com",
        "clientId": "1", "authUrl": "https://a", "tokenUrl": "https://t", "jwksUrl": "https://j",
        "platformSecret": SESSION_SECRET});
    call(
        &storage,
        json!({"op": "addClient", "client": client, "callerNonce": NONCE}),
    )
    .await
    .expect("fields the storage does not keep are ignored");

    let text = logs.assert_without(SESSION_SECRET);
    logs.assert_without(NONCE);
    let line = text
        .lines()
        .find(|line| line.contains("were ignored"))
        .expect("a debug line names the ignored fields");
    assert!(
        line.contains("client.platformSecret") && line.contains("callerNonce"),
        "{line}"
    );
}
