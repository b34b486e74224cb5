//! The change counter's triggers count every writer of clients and deployments, whatever its
//! grants and search_path, and only statements that changed rows; a counter row deleted by
//! hand comes back. Concurrent writes the server resolves by rolling one back (deadlock,
//! serialization failure) are Unavailable, and sent again they go through.

use std::time::{Duration, Instant};

use lti_storage::ErrorKind;
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{call, ok, with_param, TestDb};

/// The counter as a container reads it; `None` when its row is missing.
async fn version(db: &TestDb) -> Option<i64> {
    db.sql()
        .await
        .query_opt("SELECT version FROM lti_storage_changes", &[])
        .await
        .expect("read the change counter")
        .map(|row| row.get(0))
}

/// A role of a test. Roles are server-wide: named after the test's schema.
struct Role {
    name: String,
}

impl Role {
    /// Role `{schema}_{suffix}` with USAGE on the schema and `grants` (SQL naming the role
    /// `{role}` and the schema `{schema}`).
    async fn create(db: &TestDb, suffix: &str, grants: &str) -> Role {
        let name = format!("{}_{suffix}", db.schema);
        db.sql()
            .await
            .batch_execute(&format!(
                "CREATE ROLE {name} NOLOGIN;
                 GRANT USAGE ON SCHEMA {schema} TO {name};
                 {grants}",
                schema = db.schema,
                grants = grants
                    .replace("{role}", &name)
                    .replace("{schema}", &db.schema),
            ))
            .await
            .expect("create the role");
        Role { name }
    }

    /// The grants `@lti-tool/postgresql` needs and no more: USAGE on the schema and reading
    /// and writing its five tables.
    async fn package(db: &TestDb) -> Role {
        Role::create(
            db,
            "package",
            "GRANT SELECT, INSERT, UPDATE, DELETE
                 ON clients, deployments, nonces, sessions, registration_sessions TO {role};",
        )
        .await
    }

    /// A connection acting as the role, as the package's own would.
    async fn connect(&self, db: &TestDb) -> tokio_postgres::Client {
        let sql = db.sql().await;
        sql.batch_execute(&format!("SET ROLE {}", self.name))
            .await
            .expect("act as the role");
        sql
    }

    async fn drop(self, db: &TestDb) {
        db.sql()
            .await
            .batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", self.name))
            .await
            .expect("drop the role");
    }
}

const CLIENT: &str = "00000000-0000-4000-8000-000000000001";
const DEPLOYMENT: &str = "00000000-0000-4000-8000-000000000002";

/// What `@lti-tool/postgresql` sends when a platform is registered, changed and removed,
/// schema-qualified or not (`{s}`), each changing one row.
fn package_writes(s: &str) -> Vec<String> {
    vec![
        format!(
            "INSERT INTO {s}clients (id, name, iss, client_id, auth_url, token_url, jwks_url)
             VALUES ('{CLIENT}', 'Canvas', 'https://canvas.instructure.com', '10000000000001',
                     'https://sso.example/auth', 'https://sso.example/token',
                     'https://sso.example/jwks')"
        ),
        format!(
            "INSERT INTO {s}deployments (id, deployment_id, client_id)
             VALUES ('{DEPLOYMENT}', '1:abc', '{CLIENT}')"
        ),
        format!("UPDATE {s}clients SET name = 'Canvas LMS' WHERE id = '{CLIENT}'"),
        format!("UPDATE {s}deployments SET name = 'Course' WHERE id = '{DEPLOYMENT}'"),
        format!("DELETE FROM {s}deployments WHERE id = '{DEPLOYMENT}'"),
        format!("DELETE FROM {s}clients WHERE id = '{CLIENT}'"),
    ]
}

/// Runs each write as `writer`; each must succeed and move the counter.
async fn assert_each_write_is_counted(
    db: &TestDb,
    writer: &tokio_postgres::Client,
    writes: &[String],
) {
    for write in writes {
        let before = version(db).await;
        let changed = writer
            .execute(write.as_str(), &[])
            .await
            .unwrap_or_else(|err| panic!("{write}: {err}"));
        assert_eq!(changed, 1, "{write}");
        let after = version(db).await;
        assert!(
            after.is_some() && after != before,
            "{write}: {before:?} -> {after:?}"
        );
    }
}

#[tokio::test]
async fn a_role_with_grants_on_the_package_tables_only_writes_platforms_and_is_counted() {
    let db = TestDb::migrated().await;
    let role = Role::package(&db).await;
    let writer = role.connect(&db).await;
    let may_update_counter: bool = writer
        .query_one(
            "SELECT has_table_privilege('lti_storage_changes', 'UPDATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!may_update_counter, "the role has no grant on the counter");
    assert!(
        !may_execute_counting_function(&writer).await,
        "nor on the function that counts"
    );

    // Triggers fire whatever the writer may execute.
    assert_each_write_is_counted(&db, &writer, &package_writes("")).await;

    drop(writer);
    role.drop(&db).await;
}

async fn may_execute_counting_function(sql: &tokio_postgres::Client) -> bool {
    sql.query_one(
        "SELECT has_function_privilege('lti_storage_count_change()', 'EXECUTE')",
        &[],
    )
    .await
    .expect("check the privilege")
    .get(0)
}

#[tokio::test]
async fn a_role_cannot_attach_the_counting_function_which_runs_as_its_owner_to_a_table_of_its_own()
{
    let db = TestDb::migrated().await;
    let counter_before = version(&db).await;
    let role = Role::create(&db, "fresh", "GRANT CREATE ON SCHEMA {schema} TO {role};").await;
    let sql = role.connect(&db).await;
    assert!(!may_execute_counting_function(&sql).await);
    sql.batch_execute("CREATE TABLE of_its_own (id int)")
        .await
        .expect("the role may create a table");
    let err = sql
        .batch_execute(
            "CREATE TRIGGER as_the_owner AFTER INSERT ON of_its_own
             FOR EACH STATEMENT EXECUTE FUNCTION lti_storage_count_change()",
        )
        .await
        .expect_err("the role may not use the function");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );
    assert_eq!(version(&db).await, counter_before);

    drop(sql);
    role.drop(&db).await;
}

#[tokio::test]
async fn a_writers_search_path_and_temporary_tables_do_not_divert_the_count() {
    let db = TestDb::migrated().await;
    let role = Role::package(&db).await;
    let writer = role.connect(&db).await;
    // A counter of its own, where an unpinned search_path would look first.
    writer
        .batch_execute(
            "SET search_path = public;
             CREATE TEMPORARY TABLE lti_storage_changes (
                 singleton boolean PRIMARY KEY DEFAULT true, version bigint NOT NULL);
             INSERT INTO lti_storage_changes VALUES (true, 0);",
        )
        .await
        .expect("a temporary table named like the counter");

    assert_each_write_is_counted(&db, &writer, &package_writes(&format!("{}.", db.schema))).await;
    let own: i64 = writer
        .query_one("SELECT version FROM pg_temp.lti_storage_changes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(own, 0, "the writer's temporary table is left alone");

    drop(writer);
    role.drop(&db).await;
}

#[tokio::test]
async fn a_writers_operators_functions_and_tables_ahead_in_its_search_path_do_not_divert_the_count()
{
    let db = TestDb::migrated().await;
    let role = Role::create(
        &db,
        "diverter",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON clients, deployments TO {role};
         GRANT CREATE ON SCHEMA {schema} TO {role};",
    )
    .await;
    let writer = role.connect(&db).await;
    // What the counting function uses, defined again in a schema the writer's search_path puts
    // before pg_catalog, each failing the write it would be used in (run as the function's
    // owner); and a table named like the transition table, with a row in it.
    let s = &db.schema;
    let mut own = String::new();
    for (op, left, right, result) in [
        ("<>", "text", "text", "boolean"),
        ("+", "bigint", "integer", "bigint"),
        ("*", "numeric", "integer", "numeric"), // extract() gives numeric since PostgreSQL 14
        ("*", "float8", "integer", "float8"),   // and float8 before
    ] {
        own += &format!(
            "CREATE FUNCTION {s}.diverted({left}, {right}) RETURNS {result} LANGUAGE plpgsql
                 AS 'BEGIN RAISE EXCEPTION ''diverted {op}''; END';
             CREATE OPERATOR {s}.{op} (LEFTARG = {left}, RIGHTARG = {right},
                                       FUNCTION = {s}.diverted);"
        );
    }
    writer
        .batch_execute(&format!(
            "{own}
             CREATE FUNCTION {s}.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql
                 AS 'BEGIN RAISE EXCEPTION ''diverted clock_timestamp()''; END';
             CREATE TEMPORARY TABLE lti_storage_changed_rows (id int);
             INSERT INTO lti_storage_changed_rows VALUES (1);
             SET search_path = pg_temp, {s}, pg_catalog;"
        ))
        .await
        .expect("the writer's own operators, functions and table");
    let diverted: i64 = writer
        .query_one("SELECT 1::bigint + 1", &[])
        .await
        .map_or(-1, |row| row.get(0));
    assert_eq!(diverted, -1, "the writer's + is the one its queries get");

    assert_each_write_is_counted(&db, &writer, &package_writes("")).await;

    // The transition table, not the writer's table, says whether rows changed.
    let before = version(&db).await;
    writer
        .batch_execute(
            "DELETE FROM deployments WHERE false; UPDATE clients SET name = 'x' WHERE false;",
        )
        .await
        .unwrap();
    assert_eq!(version(&db).await, before);

    // A missing counter row is put back by the function's own clock and arithmetic.
    db.sql()
        .await
        .batch_execute("DELETE FROM lti_storage_changes")
        .await
        .unwrap();
    writer
        .batch_execute(&package_writes("")[0])
        .await
        .expect("the writer's write");
    let restored = version(&db).await.expect("the row is back");
    assert!(restored > before.expect("the counter"), "{restored}");

    drop(writer);
    role.drop(&db).await;
}

fn new_client(iss: &str) -> Value {
    json!({"op": "addClient", "client": {
        "name": "Canvas", "iss": iss, "clientId": "10000000000001",
        "authUrl": "https://sso.example/auth", "tokenUrl": "https://sso.example/token",
        "jwksUrl": "https://sso.example/jwks"}})
}

/// Registers a platform with one deployment; returns (client id, deployment id).
async fn add_platform(storage: &Storage) -> (String, String) {
    let client = ok(storage, new_client("https://canvas.instructure.com")).await;
    let deployment = ok(
        storage,
        json!({"op": "addDeployment", "clientId": client,
               "deployment": {"deploymentId": "1:abc"}}),
    )
    .await;
    let id = |value: Value| value.as_str().expect("an id").to_owned();
    (id(client), id(deployment))
}

#[tokio::test]
async fn a_statement_that_changes_no_rows_leaves_the_counter_alone() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let (client, deployment) = add_platform(&storage).await;
    let before = version(&db).await;

    let unknown = uuid::Uuid::new_v4().to_string();
    ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": client, "deploymentId": unknown}),
    )
    .await;
    let err = call(
        &storage,
        json!({"op": "updateClient", "clientId": unknown, "client": {"name": "x"}}),
    )
    .await
    .expect_err("no such client");
    assert_eq!(err.kind, ErrorKind::NotFound);
    db.sql()
        .await
        .batch_execute(
            "DELETE FROM clients WHERE false;
             UPDATE deployments SET name = 'x' WHERE false;
             INSERT INTO deployments SELECT * FROM deployments WHERE false;",
        )
        .await
        .unwrap();
    assert_eq!(version(&db).await, before);

    // A statement that does change a row still counts.
    ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": client, "deploymentId": deployment}),
    )
    .await;
    assert_ne!(version(&db).await, before);
}

#[tokio::test]
async fn statements_changing_several_rows_or_upserting_are_counted_when_they_change_rows() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let (client, _) = add_platform(&storage).await;
    ok(
        &storage,
        json!({"op": "addDeployment", "clientId": client,
               "deployment": {"deploymentId": "2:def"}}),
    )
    .await;
    let sql = db.sql().await;
    let upsert = |conflict: &str| {
        format!(
            "INSERT INTO clients (id, name, iss, client_id, auth_url, token_url, jwks_url)
             SELECT id, 'Canvas LMS', iss, client_id, auth_url, token_url, jwks_url
             FROM clients WHERE id = '{client}'
             ON CONFLICT {conflict}"
        )
    };
    // (statement, rows it reports changed: none only where it changes none)
    let statements = [
        ("UPDATE deployments SET name = 'Course'".to_owned(), 2),
        (upsert("(id) DO UPDATE SET name = excluded.name"), 1),
        (upsert("DO NOTHING"), 0),
        (
            "WITH renamed AS (UPDATE deployments SET description = 'x' WHERE false)
             UPDATE clients SET name = 'Canvas' WHERE false"
                .to_owned(),
            0,
        ),
        (
            format!(
                "WITH gone AS (DELETE FROM deployments WHERE client_id = '{client}')
                 DELETE FROM clients WHERE id = '{client}'"
            ),
            1,
        ),
    ];
    for (statement, rows) in statements {
        let before = version(&db).await;
        let changed = sql.execute(statement.as_str(), &[]).await.unwrap();
        assert_eq!(changed, rows, "{statement}");
        let after = version(&db).await;
        if rows == 0 {
            assert_eq!(after, before, "{statement}");
        } else {
            assert_ne!(after, before, "{statement}");
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 0);
}

#[tokio::test]
async fn truncate_is_counted() {
    let db = TestDb::migrated().await;
    add_platform(&db.storage()).await;
    let before = version(&db).await;
    db.sql()
        .await
        .batch_execute("TRUNCATE deployments, clients")
        .await
        .unwrap();
    assert_ne!(version(&db).await, before);
}

#[tokio::test]
async fn a_write_puts_back_a_deleted_counter_row_at_a_value_not_seen_before() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let (client, _) = add_platform(&storage).await;
    let mut seen = vec![version(&db).await.expect("the counter")];
    let role = Role::package(&db).await;
    let writer = role.connect(&db).await;
    let sql = db.sql().await;

    // By hand, then by a write of the package's role.
    sql.batch_execute("DELETE FROM lti_storage_changes")
        .await
        .unwrap();
    writer
        .execute(
            &format!("UPDATE clients SET name = 'Canvas LMS' WHERE id = '{client}'"),
            &[],
        )
        .await
        .expect("the package's write");
    let restored = version(&db).await.expect("the row is back");
    assert!(!seen.contains(&restored), "{restored} in {seen:?}");
    seen.push(restored);

    // Truncated, then a write through the storage.
    sql.batch_execute("TRUNCATE lti_storage_changes")
        .await
        .unwrap();
    ok(
        &storage,
        json!({"op": "addDeployment", "clientId": client,
               "deployment": {"deploymentId": "2:def"}}),
    )
    .await;
    let restored = version(&db).await.expect("the row is back");
    assert!(!seen.contains(&restored), "{restored} in {seen:?}");

    drop(writer);
    role.drop(&db).await;
}

#[tokio::test]
async fn the_migrations_put_back_a_missing_counter_row() {
    let db = TestDb::migrated().await;
    let sql = db.sql().await;
    // A database whose counter row went missing before this migration came.
    sql.batch_execute(
        "DELETE FROM lti_storage_changes;
         DELETE FROM lti_storage_migrations WHERE version = '0004_change_counter_any_writer';",
    )
    .await
    .unwrap();
    let applied = lti_storage::migrate::migrate(
        db.storage().database(),
        lti_storage::migrate::INVOCATION_TIME_LIMIT,
    )
    .await
    .expect("migrations apply");
    assert_eq!(applied, ["0004_change_counter_any_writer"]);
    assert!(version(&db).await.is_some(), "the row is back");
}

// ---- conflicts between concurrent writes -------------------------------------------------

/// A storage whose connection is named `name`, with `options` (already %-encoded, each
/// `-c%20setting%3Dvalue`) on top of the test's search_path.
fn named_storage(db: &TestDb, name: &str, options: &str) -> Storage {
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
    let url = with_param(
        &admin,
        &format!(
            "application_name={name}&options=-c%20search_path%3D{}{options}",
            db.schema
        ),
    );
    db.storage_with(&[("DATABASE_URL", &url)])
}

/// Waits until the connection named `name` waits for a lock.
async fn until_waiting_for_a_lock(db: &TestDb, name: &str) {
    let sql = db.sql().await;
    let started = Instant::now();
    loop {
        let waiting: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_retryable_conflict(err: &lti_storage::Error) {
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("retry"), "{err}");
}

#[tokio::test]
async fn a_serialization_failure_is_unavailable_and_goes_through_when_sent_again() {
    let db = TestDb::migrated().await;
    let name = format!("serializable_{}", db.schema);
    // A database whose operators made every transaction serializable.
    let storage = named_storage(
        &db,
        &name,
        "%20-c%20default_transaction_isolation%3Dserializable",
    );
    // Another writer registers a platform; until it commits it holds the counter's row.
    let other = db.sql().await;
    other
        .batch_execute(
            "BEGIN;
             INSERT INTO clients (name, iss, client_id, auth_url, token_url, jwks_url)
             VALUES ('Moodle', 'https://moodle.example', 'm1', 'https://a', 'https://t',
                     'https://j');",
        )
        .await
        .unwrap();

    let payload = new_client("https://canvas.instructure.com");
    let (result, ()) = tokio::join!(call(&storage, payload.clone()), async {
        until_waiting_for_a_lock(&db, &name).await;
        other.batch_execute("COMMIT").await.unwrap();
    });
    assert_retryable_conflict(&result.expect_err("the counter changed under the snapshot"));

    ok(&storage, payload).await;
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 2);
}

#[tokio::test]
async fn a_deadlock_is_unavailable_and_goes_through_when_sent_again() {
    let db = TestDb::migrated().await;
    let name = format!("deadlock_{}", db.schema);
    let storage = named_storage(&db, &name, "");
    let (client, deployment) = add_platform(&storage).await;

    // Another transaction holds the counter's row, then wants the deployment the storage is
    // deleting. It waits long before looking for a deadlock, so the storage finds it first.
    let other = db.sql().await;
    other
        .batch_execute(
            "SET deadlock_timeout = '1min';
             BEGIN;
             UPDATE lti_storage_changes SET version = version + 1;",
        )
        .await
        .unwrap();
    let delete = json!({"op": "deleteDeployment", "clientId": client, "deploymentId": deployment});
    let (result, ()) = tokio::join!(call(&storage, delete.clone()), async {
        until_waiting_for_a_lock(&db, &name).await;
        let deleted = other
            .execute(
                &format!("DELETE FROM deployments WHERE id = '{deployment}'"),
                &[],
            )
            .await
            .expect("the other transaction goes on");
        assert_eq!(deleted, 1);
        other.batch_execute("ROLLBACK").await.unwrap();
    });
    assert_retryable_conflict(&result.expect_err("a deadlock"));

    ok(&storage, delete).await;
    assert_eq!(db.count("SELECT count(*) FROM deployments").await, 0);
}
