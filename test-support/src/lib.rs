//! What the tests and the benchmarks share. Every test gets a schema of its own on the server
//! named by TEST_DATABASE_URL (scripts/test.sh starts a throwaway one), so tests run in
//! parallel without seeing each other's rows.

pub mod cluster;
pub mod emf;
mod managed;
pub mod moto;
pub mod pooler;
pub mod proxy;
pub mod response_endpoint;

use std::net::TcpListener;
use std::time::{SystemTime, UNIX_EPOCH};

use lti_storage::input::Timestamp;
use lti_storage::metrics::Tally;
use lti_storage::model::{Client, NewClient};
use lti_storage::{Error, Request};
use lti_storage_lambda::{Config, ConfigError, Storage};
use serde_json::{json, Value};
use tokio_postgres::NoTls;
use uuid::Uuid;

pub struct TestDb {
    /// The connection URL with `search_path` set to this test's schema.
    pub url: String,
    pub schema: String,
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL is not set: run the tests with scripts/test.sh")
}

impl TestDb {
    /// A new, empty schema.
    pub async fn empty() -> TestDb {
        TestDb::empty_on(&admin_url()).await
    }

    /// A new, empty schema on the server at `admin_url`.
    pub async fn empty_on(admin_url: &str) -> TestDb {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(admin_url).await;
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create the test schema");
        let url = with_param(admin_url, &format!("options=-c%20search_path%3D{schema}"));
        TestDb { url, schema }
    }

    /// A new schema with the migrations applied.
    pub async fn migrated() -> TestDb {
        TestDb::migrated_on(&admin_url()).await
    }

    /// A new schema with the migrations applied, on the server at `admin_url`.
    pub async fn migrated_on(admin_url: &str) -> TestDb {
        let db = TestDb::empty_on(admin_url).await;
        let storage = db.storage();
        lti_storage::migrate::migrate(
            storage.database(),
            lti_storage::migrate::INVOCATION_TIME_LIMIT,
        )
        .await
        .expect("migrations apply");
        db
    }

    /// Drops the schema and its rows: for the benchmarks, which may run on a server that is
    /// not thrown away afterwards.
    pub async fn remove(self) {
        connect(&self.url)
            .await
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await
            .expect("drop the schema");
    }

    pub fn config(&self) -> Config {
        self.config_with(&[])
    }

    /// The configuration with DATABASE_URL pointing at this schema and `vars` set.
    pub fn config_with(&self, vars: &[(&str, &str)]) -> Config {
        config_at(&self.url, vars).expect("test configuration is valid")
    }

    /// A storage instance of its own (its own connection and caches), like one container.
    pub fn storage(&self) -> Storage {
        self.storage_with(&[])
    }

    pub fn storage_with(&self, vars: &[(&str, &str)]) -> Storage {
        storage_at(&self.url, vars)
    }

    /// Terminates the backends of connections named `application_name` and waits until they
    /// are gone (pg_terminate_backend only signals); returns how many there were.
    pub async fn terminate(&self, application_name: &str) -> i64 {
        let admin = self.sql().await;
        let terminated: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1",
                &[&application_name],
            )
            .await
            .expect("terminate backends")
            .get(0);
        for _ in 0..100 {
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&application_name],
                )
                .await
                .expect("count backends")
                .get(0);
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        terminated
    }

    /// The number a counting query (`SELECT count(*) ...`) returns on this schema.
    pub async fn count(&self, query: &str) -> i64 {
        self.sql()
            .await
            .query_one(query, &[])
            .await
            .unwrap_or_else(|err| panic!("{query}: {err}"))
            .get(0)
    }

    /// A plain connection to this schema, to look at rows the way a user would with psql.
    pub async fn sql(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

/// The configuration from exactly `vars`, with DATABASE_URL `url` unless `vars` names one:
/// as from an environment holding only them.
pub fn config_at(url: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
            .or_else(|| (name == "DATABASE_URL").then(|| url.to_owned()))
    })
}

/// A storage instance connecting to `url`, with `vars` set.
pub fn storage_at(url: &str, vars: &[(&str, &str)]) -> Storage {
    let config = config_at(url, vars).expect("test configuration is valid");
    lti_storage_lambda::storage(&config).expect("storage builds")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// `url` with `extra` (already %-encoded) added to its query string.
pub fn with_param(url: &str, extra: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{extra}")
}

/// `url` (`postgres://postgres@...`) with the password added.
pub fn with_password(url: &str, password: &str) -> String {
    url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{password}@"),
        1,
    )
}

/// The host and port of a PostgreSQL URL.
pub fn host_and_port(url: &str) -> (String, u16) {
    let config: tokio_postgres::Config = url.parse().expect("a valid PostgreSQL URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => panic!("{url} names no TCP host"),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// The cells of each row of the first Markdown table after the line `heading` of `text`,
/// header and separator left out.
pub fn table_after<'a>(text: &'a str, heading: &str) -> Vec<Vec<&'a str>> {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    text[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| line.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect()
}

/// A local port nothing listens on (just now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free local port")
}

/// A payload through the path the storage function takes: parse, then handle; the answer's
/// JSON text read back.
pub async fn call(storage: &Storage, payload: Value) -> Result<Value, Error> {
    let request = Request::from_payload(payload)?;
    storage.handle(request).await.map(|answer| json_of(&answer))
}

/// The JSON text of an answer, read back.
pub fn json_of(answer: &serde_json::value::RawValue) -> Value {
    serde_json::from_str(answer.get()).expect("an answer is JSON")
}

/// `storage.list_clients()`, read from its answer's JSON.
pub async fn listed_clients(storage: &Storage) -> Result<Vec<Client<'static>>, Error> {
    let answer = storage.list_clients().await?;
    Ok(serde_json::from_str(answer.get()).expect("listClients answers clients"))
}

/// `storage.get_client_by_id(id)`, read from its answer's JSON.
pub async fn client_by_id(storage: &Storage, id: &str) -> Result<Option<Client<'static>>, Error> {
    let answer = storage.get_client_by_id(id).await?;
    Ok(answer.map(|answer| serde_json::from_str(answer.get()).expect("a client")))
}

/// `call` with a metrics tally of its own, as the storage function keeps one per invocation:
/// its result, and what it counted.
pub async fn call_tallied(storage: &Storage, payload: Value) -> (Result<Value, Error>, Tally) {
    Tally::kept_for(async { (call(storage, payload).await, Tally::of_this_call()) }).await
}

/// The result of a payload that must succeed.
pub async fn ok(storage: &Storage, payload: Value) -> Value {
    let shown = shown(&payload);
    call(storage, payload)
        .await
        .unwrap_or_else(|err| panic!("{shown} failed: {err}"))
}

/// The error of a payload that must fail.
pub async fn fails(storage: &Storage, payload: Value) -> Error {
    let shown = shown(&payload);
    match call(storage, payload).await {
        Ok(value) => panic!("{shown} succeeded with {value}, expected an error"),
        Err(err) => err,
    }
}

/// A payload for a failure message: the start of it (some tests send megabytes).
fn shown(payload: &Value) -> String {
    payload.to_string().chars().take(300).collect()
}

/// The issuer of the platform most tests register (Canvas's).
pub const ISS: &str = "https://canvas.instructure.com";
/// The LMS's client id of that platform's registration.
pub const LMS_CLIENT: &str = "10000000000001";

/// A platform registration, with endpoints on `iss` as Canvas has them.
pub fn new_client(iss: &str, client_id: &str) -> NewClient {
    NewClient {
        name: format!("Platform {client_id}"),
        iss: iss.to_owned(),
        client_id: client_id.to_owned(),
        auth_url: format!("{iss}/api/lti/authorize_redirect"),
        token_url: format!("{iss}/login/oauth2/token"),
        jwks_url: format!("{iss}/api/lti/security/jwks"),
    }
}

/// `client` as the `client` argument of addClient and updateClient.
pub fn client_json(client: &NewClient) -> Value {
    json!({
        "name": client.name, "iss": client.iss, "clientId": client.client_id,
        "authUrl": client.auth_url, "tokenUrl": client.token_url, "jwksUrl": client.jwks_url,
    })
}

/// What getLaunchConfig answers for a deployment `deployment_id` of `client`.
pub fn launch_config_json(client: &NewClient, deployment_id: &str) -> Value {
    json!({
        "iss": client.iss, "clientId": client.client_id, "deploymentId": deployment_id,
        "authUrl": client.auth_url, "tokenUrl": client.token_url, "jwksUrl": client.jwks_url,
    })
}

/// Registers `client` through addClient; returns its internal id.
pub async fn add_client(storage: &Storage, client: &NewClient) -> String {
    let id = ok(
        storage,
        json!({"op": "addClient", "client": client_json(client)}),
    )
    .await;
    id.as_str()
        .unwrap_or_else(|| panic!("addClient returned {id}, not a string"))
        .to_owned()
}

/// Adds a deployment (LMS id `deployment_id`) to `client` through addDeployment; returns its
/// internal id.
pub async fn add_deployment(storage: &Storage, client: &str, deployment_id: &str) -> String {
    let id = ok(
        storage,
        json!({"op": "addDeployment", "clientId": client,
               "deployment": {"deploymentId": deployment_id}}),
    )
    .await;
    id.as_str()
        .unwrap_or_else(|| panic!("addDeployment returned {id}, not a string"))
        .to_owned()
}

/// What getLaunchConfig answers for (iss, clientId, deploymentId).
pub async fn launch_config(
    storage: &Storage,
    iss: &str,
    client_id: &str,
    deployment: &str,
) -> Value {
    ok(
        storage,
        json!({"op": "getLaunchConfig", "iss": iss, "clientId": client_id,
               "deploymentId": deployment}),
    )
    .await
}

/// `id` as a UUID: an id the storage answered must be one.
pub fn uuid_of(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap_or_else(|_| panic!("{id:?} is not a UUID"))
}

/// An expiry no test outlives.
pub fn far_future() -> Timestamp {
    Timestamp::parse_rfc3339("2099-01-01T00:00:00Z").expect("a valid date-time")
}

/// Epoch milliseconds of the whole second `seconds` from now (before now when negative): a
/// test can compare it with a stored time's seconds.
pub fn epoch_ms_in(seconds: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970");
    (now.as_secs() as i64 + seconds) * 1000
}

/// A session as an LTI tool stores it after a launch (without its `id`).
pub fn session_data() -> Value {
    json!({
        "user": {"id": "user-1234", "name": "Ada Lovelace", "email": "ada@example.edu",
                 "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"]},
        "context": {"id": "course-42", "label": "MATH 101", "title": "Calculus I"},
        "platform": {"issuer": "https://canvas.instructure.com", "clientId": "10000000000001",
                     "deploymentId": "1:abc"},
        "launch": {"target": "https://tool.example.com/launch", "locale": "en"},
    })
}

/// A payload every op accepts, with fresh ids (most name nothing that exists).
pub fn payload_for(op: &str) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    let client = json!({"name": "Canvas", "iss": "https://canvas.example.edu",
        "clientId": format!("c-{id}"), "authUrl": "https://a", "tokenUrl": "https://t",
        "jwksUrl": "https://j"});
    json!({"op": op, "clientId": id, "deploymentId": id, "sessionId": id, "nonce": id,
        "expiresAt": 4102444800000u64, "client": client, "deployment": {"deploymentId": "d"},
        "session": {"id": id, "expiresAt": 4102444800000u64}, "iss": "https://canvas.example.edu",
        "launchConfig": {}})
}
