//! The deploy's `Migrations` custom resource, as the cleanup function handles it: each event
//! against a real PostgreSQL, answered to a response endpoint served on loopback (named by
//! CUSTOM_RESOURCE_TEST_ENDPOINT), as CloudFormation would read the answer. Events it must
//! refuse leave the endpoint, and the database, untouched.

use std::time::{Duration, Instant};

use lti_storage::migrate::{LOCK_KEY, MIGRATIONS};
use lti_storage::{Error, ErrorKind};
use lti_storage_lambda::config::ConfigError;
use lti_storage_lambda::custom_resource;
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::cluster::Cluster;
use test_support::response_endpoint::{response_url, ResponseEndpoint, RESPONSE_HOST, TARGET};
use test_support::{
    add_client, config_at, free_port, listed_clients, new_client, storage_at, with_param,
    with_password, TestDb,
};

/// The cleanup function as CloudFormation invokes it, in the stack's account and region.
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:test-cleanup";
const STACK_ID: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/test/1";
const PASSWORD: &str = "Zq8-deploy-SECRET-pw";

/// The cleanup function's handling of `event`, answering to `endpoint`.
async fn handle(
    storage: Result<&Storage, &ConfigError>,
    event: &Value,
    endpoint: &ResponseEndpoint,
    deadline: Instant,
) -> Result<custom_resource::Answer, Error> {
    let setting = endpoint.origin();
    let event = custom_resource::Event::of(event).expect("a custom-resource event");
    custom_resource::handle(storage, &event, FUNCTION_ARN, Some(&setting), deadline).await
}

fn versions() -> Vec<&'static str> {
    MIGRATIONS.iter().map(|(version, _)| *version).collect()
}

/// An event as CloudFormation sends it for the template's `Migrations` resource.
fn event(request_type: &str) -> Value {
    let mut event = json!({
        "RequestType": request_type,
        "ServiceToken": FUNCTION_ARN,
        "ResponseURL": response_url(),
        "StackId": STACK_ID,
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "LogicalResourceId": "Migrations",
        "ResourceType": "Custom::Migrations",
        "ResourceProperties": {
            "ServiceToken": FUNCTION_ARN,
            "ServiceTimeout": "600",
            "Versions": versions(),
        },
    });
    if request_type != "Create" {
        event["PhysicalResourceId"] = json!("lti-storage-migrations");
    }
    event
}

fn in_a_minute() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// The one answer the endpoint received, checked to be a complete response for `event`.
fn the_answer(endpoint: &ResponseEndpoint, event: &Value) -> Value {
    let received = endpoint.received();
    assert_eq!(received.len(), 1, "one answer: {received:?}");
    let answer = &received[0];
    assert_eq!(answer.method, "PUT");
    assert_eq!(
        answer.header("host"),
        Some(RESPONSE_HOST),
        "for the URL's host"
    );
    assert_eq!(answer.target, TARGET, "the URL's path and query as given");
    assert_eq!(
        answer.header("content-type"),
        None,
        "the URL was signed for no Content-Type"
    );
    let body = &answer.body;
    for field in ["StackId", "RequestId", "LogicalResourceId"] {
        assert_eq!(body[field], event[field], "{field}: {body}");
    }
    assert_eq!(
        body["PhysicalResourceId"], "lti-storage-migrations",
        "{body}"
    );
    body.clone()
}

/// The reason of a FAILED answer.
fn failed_reason(body: &Value) -> &str {
    assert_eq!(body["Status"], "FAILED", "{body}");
    body["Reason"]
        .as_str()
        .expect("a FAILED answer has a reason")
}

#[tokio::test]
async fn create_applies_the_migrations_and_the_storage_then_works() {
    let db = TestDb::empty().await;
    let storage = db.storage();
    let endpoint = ResponseEndpoint::start();
    let create = event("Create");

    let answer = handle(Ok(&storage), &create, &endpoint, in_a_minute())
        .await
        .expect("answered");

    assert_eq!(answer.applied, versions());
    let body = the_answer(&endpoint, &create);
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["SchemaVersion"], *versions().last().unwrap());
    assert_eq!(
        listed_clients(&storage).await.expect("the schema is there"),
        vec![]
    );
}

#[tokio::test]
async fn update_applies_what_is_new_and_nothing_when_the_schema_is_current() {
    let db = TestDb::migrated().await;
    let last = *versions().last().unwrap();
    // A database from before the last migration (re-running it is harmless).
    db.sql()
        .await
        .execute(
            "DELETE FROM lti_storage_migrations WHERE version = $1",
            &[&last],
        )
        .await
        .unwrap();
    let storage = db.storage();

    let endpoint = ResponseEndpoint::start();
    let update = event("Update");
    let answer = handle(Ok(&storage), &update, &endpoint, in_a_minute())
        .await
        .unwrap();
    assert_eq!(answer.applied, vec![last.to_string()]);
    let body = the_answer(&endpoint, &update);
    assert_eq!(body["Status"], "SUCCESS");
    // A SUCCESS has a reason too: what was applied (never null).
    assert_eq!(body["Reason"], format!("migrations applied: {last}"));

    let endpoint = ResponseEndpoint::start();
    let again = event("Update");
    let answer = handle(Ok(&storage), &again, &endpoint, in_a_minute())
        .await
        .unwrap();
    assert_eq!(answer.applied, Vec::<String>::new());
    let body = the_answer(&endpoint, &again);
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["Reason"], "migrations applied: none");
}

#[tokio::test]
async fn delete_leaves_the_data_and_needs_no_database() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    add_client(&storage, &new_client("https://delete.example", "kept")).await;
    let endpoint = ResponseEndpoint::start();
    let delete = event("Delete");

    let answer = handle(Ok(&storage), &delete, &endpoint, in_a_minute())
        .await
        .unwrap();
    assert_eq!(answer.error, None);
    assert_eq!(the_answer(&endpoint, &delete)["Status"], "SUCCESS");
    assert_eq!(db.count("SELECT count(*) FROM clients").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM lti_storage_migrations")
            .await,
        versions().len() as i64
    );

    // The rollback of a stack whose database never worked deletes the resource too.
    let unreachable = unreachable_storage();
    let endpoint = ResponseEndpoint::start();
    let delete = event("Delete");
    handle(Ok(&unreachable), &delete, &endpoint, in_a_minute())
        .await
        .unwrap();
    assert_eq!(the_answer(&endpoint, &delete)["Status"], "SUCCESS");
}

/// A storage whose database nothing listens for, giving up on connecting after 300 ms.
fn unreachable_storage() -> Storage {
    storage_at(
        &format!("postgres://postgres@127.0.0.1:{}/postgres", free_port()),
        &[("CONNECT_TIMEOUT_MS", "300")],
    )
}

#[tokio::test]
async fn an_unreachable_database_fails_the_deploy_saying_where_to_look() {
    let storage = unreachable_storage();
    let endpoint = ResponseEndpoint::start();
    let create = event("Create");
    let started = Instant::now();

    let answer = handle(Ok(&storage), &create, &endpoint, in_a_minute())
        .await
        .expect("answered");

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );
    assert_eq!(
        answer.error.as_ref().map(|err| err.kind),
        Some(ErrorKind::Unavailable)
    );
    let body = the_answer(&endpoint, &create);
    let reason = failed_reason(&body);
    assert!(
        reason.contains("unreachable from the cleanup function"),
        "{reason}"
    );
    assert!(
        reason.contains("SubnetIds") && reason.contains("security group"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_refused_password_fails_the_deploy_without_showing_it() {
    let cluster = Cluster::create(&["--password", "other-password"]);
    let storage = storage_at(&with_password(&cluster.url, PASSWORD), &[]);
    let endpoint = ResponseEndpoint::start();
    let create = event("Create");

    handle(Ok(&storage), &create, &endpoint, in_a_minute())
        .await
        .unwrap();

    let body = the_answer(&endpoint, &create);
    let reason = failed_reason(&body);
    assert!(reason.contains("refused the user or password"), "{reason}");
    let text = body.to_string();
    assert!(
        !text.contains(PASSWORD) && !text.contains("other-password"),
        "{text}"
    );
}

#[tokio::test]
async fn a_broken_configuration_fails_the_deploy_naming_the_variable_only() {
    let err = config_at(
        "postgres://lti:Zq8-config-SECRET@db.example:notaport/lti",
        &[],
    )
    .expect_err("a malformed URL");
    let endpoint = ResponseEndpoint::start();
    let create = event("Create");

    handle(Err(&err), &create, &endpoint, in_a_minute())
        .await
        .unwrap();

    let body = the_answer(&endpoint, &create);
    let reason = failed_reason(&body);
    assert!(reason.contains("DATABASE_URL"), "{reason}");
    assert!(!body.to_string().contains("Zq8-config-SECRET"), "{body}");
}

#[tokio::test]
async fn migrations_longer_than_the_time_left_fail_pointing_to_the_command_line() {
    let db = TestDb::migrated().await;
    db.sql()
        .await
        .batch_execute("DELETE FROM lti_storage_migrations")
        .await
        .unwrap();
    // Another runner holds the migrations' lock.
    let runner = db.sql().await;
    runner
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let storage = db.storage();
    let endpoint = ResponseEndpoint::start();
    let create = event("Create");
    // 10 s are kept for the answer: 3 s for the migrations.
    let deadline = Instant::now() + Duration::from_secs(13);

    let answer = handle(Ok(&storage), &create, &endpoint, deadline)
        .await
        .unwrap();

    assert!(Instant::now() < deadline, "answered before the deadline");
    assert_eq!(
        answer.error.as_ref().map(|err| err.kind),
        Some(ErrorKind::Unavailable)
    );
    let body = the_answer(&endpoint, &create);
    let reason = failed_reason(&body);
    assert!(reason.contains("did not finish within 3 s"), "{reason}");
    assert!(
        reason.contains("cargo run --release -p storage -- migrate"),
        "{reason}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM lti_storage_migrations")
            .await,
        0,
        "nothing applied"
    );
}

#[tokio::test]
async fn a_malformed_event_is_answered_failed_saying_what_is_wrong() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    type Change = fn(&mut Value);
    let cases: [(&str, Change, &str); 6] = [
        (
            "an unknown RequestType",
            |e| e["RequestType"] = json!("Upsert"),
            "RequestType must be Create, Update or Delete",
        ),
        (
            "no Versions",
            |e| e["ResourceProperties"] = json!({}),
            "ResourceProperties.Versions",
        ),
        (
            "Versions not a list",
            |e| e["ResourceProperties"]["Versions"] = json!("0001_schema"),
            "ResourceProperties.Versions",
        ),
        (
            "no RequestId",
            |e| e["RequestId"] = Value::Null,
            "RequestId must be a string",
        ),
        (
            "no LogicalResourceId",
            |e| drop(e.as_object_mut().unwrap().remove("LogicalResourceId")),
            "LogicalResourceId must be a string",
        ),
        (
            "a version this build lacks",
            |e| e["ResourceProperties"]["Versions"] = json!(["0001_schema", "9999_future"]),
            "sam build",
        ),
    ];
    for (what, change, expected) in cases {
        let endpoint = ResponseEndpoint::start();
        let mut malformed = event("Create");
        change(&mut malformed);
        let answer = handle(Ok(&storage), &malformed, &endpoint, in_a_minute())
            .await
            .unwrap_or_else(|err| panic!("{what}: not answered: {err}"));
        assert!(answer.error.is_some(), "{what}");
        let received = endpoint.received();
        assert_eq!(received.len(), 1, "{what}: one answer");
        let reason = failed_reason(&received[0].body);
        assert!(reason.contains(expected), "{what}: {reason}");
        assert!(!reason.contains("Upsert"), "no value quoted: {reason}");
    }
}

/// A storage on `db` whose connections carry a name of their own, and that name: whether it
/// connected shows in pg_stat_activity (it keeps its connection, as a container does).
fn named_storage(db: &TestDb) -> (Storage, String) {
    let name = format!("cr-{}", uuid::Uuid::new_v4().simple());
    let url = with_param(&db.url, &format!("application_name={name}"));
    (storage_at(&url, &[]), name)
}

async fn connections_named(db: &TestDb, name: &str) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'"
    ))
    .await
}

/// The connections named `name` once a closed one has left `pg_stat_activity`: a backend is
/// listed until it has finished exiting, a moment after its client dropped the connection.
async fn connections_settled(db: &TestDb, name: &str, expected: i64) -> i64 {
    for _ in 0..50 {
        let count = connections_named(db, name).await;
        if count == expected {
            return count;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    connections_named(db, name).await
}

#[tokio::test]
async fn a_genuine_event_of_the_functions_own_account_and_region_is_answered() {
    let db = TestDb::empty().await;
    let (storage, name) = named_storage(&db);
    let endpoint = ResponseEndpoint::start();
    // eu-west-1's URLs name S3 with a dash; the function is invoked through an alias.
    let function = "arn:aws:lambda:eu-west-1:123456789012:function:test-cleanup:live";
    let host = "cloudformation-custom-resource-response-euwest1.s3-eu-west-1.amazonaws.com";
    let mut create = event("Create");
    create["StackId"] = json!("arn:aws:cloudformation:eu-west-1:123456789012:stack/test/1f2e");
    create["ResponseURL"] = json!(format!("https://{host}:443{TARGET}"));

    let setting = endpoint.origin();
    let answer = custom_resource::handle(
        Ok(&storage),
        &custom_resource::Event::of(&create).expect("a custom-resource event"),
        function,
        Some(&setting),
        in_a_minute(),
    )
    .await
    .expect("answered");

    assert_eq!(answer.error, None);
    assert_eq!(answer.applied, versions());
    let received = endpoint.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].header("host"), Some(host));
    assert_eq!(received[0].target, TARGET);
    assert_eq!(received[0].body["Status"], "SUCCESS");
    assert_eq!(received[0].body["StackId"], create["StackId"]);
    // The shared connection stays; migrate's own has closed.
    assert_eq!(
        connections_settled(&db, &name, 1).await,
        1,
        "it used the database"
    );
}

#[tokio::test]
async fn a_forged_event_is_refused_with_nothing_done() {
    let db = TestDb::empty().await;
    let (storage, name) = named_storage(&db);
    // Answers to any URL that passed the checks would come here.
    let endpoint = ResponseEndpoint::start();
    let genuine = json!(response_url());
    let cases = [
        ("another host", json!(format!("https://lti.example{TARGET}")), STACK_ID, "response bucket"),
        ("another port", json!(format!("https://{RESPONSE_HOST}:8443{TARGET}")), STACK_ID, "port 443"),
        ("plain http to the loopback", json!(endpoint.url()), STACK_ID, "https"),
        ("an IP address", json!(format!("https://127.0.0.1{TARGET}")), STACK_ID, "IP address"),
        ("user info", json!(format!("https://lti@{RESPONSE_HOST}{TARGET}")), STACK_ID, "user info"),
        (
            "another region's bucket",
            json!(format!(
                "https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com{TARGET}"
            )),
            STACK_ID,
            "response bucket",
        ),
        ("no ResponseURL", Value::Null, STACK_ID, "https"),
        (
            "another account's stack",
            genuine.clone(),
            "arn:aws:cloudformation:us-east-1:210987654321:stack/test/1",
            "StackId",
        ),
        (
            "another region's stack",
            genuine.clone(),
            "arn:aws:cloudformation:eu-west-1:123456789012:stack/test/1",
            "StackId",
        ),
    ];
    for (what, url, stack, check) in cases {
        for request_type in ["Create", "Delete"] {
            let mut forged = event(request_type);
            forged["ResponseURL"] = url.clone();
            forged["StackId"] = json!(stack);

            let err = handle(Ok(&storage), &forged, &endpoint, in_a_minute())
                .await
                .expect_err(what);

            assert_eq!(err.kind, ErrorKind::InvalidInput, "{what}: {err}");
            assert!(
                err.message.contains("refused, nothing done"),
                "{what}: {err}"
            );
            assert!(err.message.contains(check), "{what}: {err}");
            assert!(!err.message.contains("SIGNATURE-SECRET"), "{what}: {err}");
        }
    }
    assert_eq!(endpoint.connections(), 0, "no request at all");
    assert_eq!(
        connections_named(&db, &name).await,
        0,
        "no database connection"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        .await,
        0,
        "no migration ran"
    );
}

#[tokio::test]
async fn an_answer_the_endpoint_refuses_is_an_error_without_the_url() {
    let storage = unreachable_storage();
    let endpoint = ResponseEndpoint::start();
    endpoint.answer_with(403);
    let delete = event("Delete");

    let err = handle(Ok(&storage), &delete, &endpoint, in_a_minute())
        .await
        .expect_err("the answer did not arrive");

    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("HTTP 403"), "{err}");
    assert!(err.message.contains("127.0.0.1"), "names the host: {err}");
    assert!(!err.message.contains("SIGNATURE-SECRET"), "{err}");
    assert_eq!(endpoint.received().len(), 1);
}
