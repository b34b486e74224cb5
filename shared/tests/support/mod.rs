//! Test support: every test gets a schema of its own on the server named by
//! TEST_DATABASE_URL (scripts/test.sh starts a throwaway one), so tests run in parallel
//! without seeing each other's rows.

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod cluster;
pub mod proxy;

use lti_storage::{Config, Error, Request, Storage};
use serde_json::Value;
use tokio_postgres::NoTls;

pub struct TestDb {
    /// The connection URL with `search_path` set to this test's schema.
    pub url: String,
    pub schema: String,
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL is not set: run the tests with scripts/test.sh")
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

    pub fn config(&self) -> Config {
        self.config_with(&[])
    }

    /// The configuration with DATABASE_URL pointing at this schema and `vars` set.
    pub fn config_with(&self, vars: &[(&str, &str)]) -> Config {
        let url = self.url.clone();
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| (name == "DATABASE_URL").then(|| url.clone()))
        })
        .expect("test configuration is valid")
    }

    /// A storage instance of its own (its own connection and caches), like one container.
    pub fn storage(&self) -> Storage {
        Storage::new(&self.config()).expect("storage builds")
    }

    pub fn storage_with(&self, vars: &[(&str, &str)]) -> Storage {
        Storage::new(&self.config_with(vars)).expect("storage builds")
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
        self.sql().await.query_one(query, &[]).await.unwrap().get(0)
    }

    /// A plain connection to this schema, to look at rows the way a user would with psql.
    pub async fn sql(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// A payload through the path the storage function takes: parse, then handle.
pub async fn call(storage: &Storage, payload: Value) -> Result<Value, Error> {
    let request = Request::from_payload(payload)?;
    storage.handle(request).await
}

/// The result of a payload that must succeed.
pub async fn ok(storage: &Storage, payload: Value) -> Value {
    let shown = payload.to_string();
    call(storage, payload)
        .await
        .unwrap_or_else(|err| panic!("{shown} failed: {err}"))
}

/// The error of a payload that must fail.
pub async fn fails(storage: &Storage, payload: Value) -> Error {
    let shown = payload.to_string();
    match call(storage, payload).await {
        Ok(value) => panic!("{shown} succeeded with {value}, expected an error"),
        Err(err) => err,
    }
}
