//! Faults reproduced for real: a PostgreSQL that restarts or is down, a backend that is
//! terminated, a proxy that goes silent or loses an answer, a server out of connections.
//! Nothing is lost, nothing is applied twice, and no call waits past its time limits.

use std::time::{Duration, Instant};

use lti_storage::{ErrorKind, Storage};
use serde_json::{json, Map, Value};
use test_support::cluster::Cluster;
use test_support::proxy::{Mode, Proxy};
use test_support::{far_future, new_client, storage_at, TestDb};

const LMS_CLIENT: &str = "10000000000001";

fn session(id: &str) -> Map<String, Value> {
    let Value::Object(map) = json!({"id": id, "user": {"name": "Ada"}, "roles": ["Learner"]})
    else {
        unreachable!()
    };
    map
}

/// A storage whose connection goes through `proxy` to the test's schema.
fn storage_via(db: &TestDb, proxy: &Proxy, vars: &[(&str, &str)]) -> Storage {
    storage_at(&proxy.redirect(&db.url), vars)
}

#[tokio::test]
async fn a_restarted_database_is_reconnected_by_the_next_call() {
    let cluster = Cluster::create(&[]);
    let db = TestDb::migrated_on(&cluster.url).await;
    let storage = db.storage();
    storage
        .add_client(&new_client("https://before", LMS_CLIENT))
        .await
        .unwrap();

    cluster.restart();

    // A call that may not be repeated, first after the restart: it must not be sent into the
    // dead connection.
    storage
        .store_nonce("after-restart", far_future())
        .await
        .unwrap();
    assert!(storage.validate_nonce("after-restart").await.unwrap());
    assert_eq!(storage.list_clients().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_backend_terminated_while_idle_is_replaced_by_the_next_call() {
    let db = TestDb::migrated().await;
    let name = format!("terminate_{}", db.schema);
    let url = test_support::with_param(&db.url, &format!("application_name={name}"));
    let storage = db.storage_with(&[("DATABASE_URL", &url)]);
    storage.store_nonce("n1", far_future()).await.unwrap();

    assert_eq!(db.terminate(&name).await, 1);

    // validateNonce is never repeated, so it must find out before sending.
    assert!(storage.validate_nonce("n1").await.unwrap());
    assert!(!storage.validate_nonce("n1").await.unwrap());
}

#[tokio::test]
async fn an_idle_connection_gone_silent_is_replaced_within_the_query_time_limit() {
    let db = TestDb::migrated().await;
    let proxy = Proxy::start(&db.url).await;
    let storage = storage_via(
        &db,
        &proxy,
        &[
            ("CONNECTION_IDLE_CHECK_MS", "200"),
            ("QUERY_TIMEOUT_MS", "10000"),
        ],
    );
    storage.store_nonce("silent-1", far_future()).await.unwrap();
    let id = storage
        .add_session(&session(&uuid::Uuid::new_v4().to_string()))
        .await
        .unwrap();

    // The container is frozen; meanwhile a NAT forgets the connection.
    proxy.silence_open_connections();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    assert!(storage.validate_nonce("silent-1").await.unwrap());
    // Found out by the ping (1 s at most), not by waiting the 10 s query limit; the rest
    // of the margin is for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.accepted(), 2, "one new connection");
    // The session is cached: look it up from a fresh container through the new path.
    let fresh = storage_via(&db, &proxy, &[]);
    assert!(fresh.get_session(&id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_connection_gone_silent_mid_use_costs_one_time_limit_then_a_fresh_connection() {
    let db = TestDb::migrated().await;
    let proxy = Proxy::start(&db.url).await;
    // No idle check in play: the silence is met by the call itself.
    let storage = storage_via(&db, &proxy, &[("QUERY_TIMEOUT_MS", "1000")]);
    storage.store_nonce("mid-1", far_future()).await.unwrap();
    storage.store_nonce("mid-2", far_future()).await.unwrap();

    proxy.silence_open_connections();
    let started = Instant::now();
    // A read is safe to repeat: it is, on a fresh connection.
    assert_eq!(storage.list_clients().await.unwrap().len(), 0);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1000),
        "waited the limit: {elapsed:?}"
    );
    // Then answered (an Ok, above) on the fresh connection, far from hanging; the margin
    // is for a loaded machine.
    assert!(
        elapsed < Duration::from_secs(5),
        "then answered: {elapsed:?}"
    );

    proxy.silence_open_connections();
    let started = Instant::now();
    // Consuming a nonce is not safe to repeat: Unavailable within the limit, and the nonce
    // was not consumed (the silent proxy never delivered the statement).
    let err = storage.validate_nonce("mid-2").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(5), "never hangs");
    assert!(storage.validate_nonce("mid-2").await.unwrap());
}

#[tokio::test]
async fn a_database_down_at_cold_start_is_unavailable_then_used_once_back() {
    let cluster = Cluster::create(&[]);
    let db = TestDb::migrated_on(&cluster.url).await;
    cluster.stop();
    let storage = db.storage_with(&[("CONNECT_TIMEOUT_MS", "2000")]);

    let started = Instant::now();
    let err = storage.list_clients().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    // Refused at once, well inside the connect limit (margin for a loaded machine).
    assert!(started.elapsed() < Duration::from_secs(4));

    cluster.start();
    storage
        .add_client(&new_client("https://back", LMS_CLIENT))
        .await
        .unwrap();

    // Down during use: the same again.
    cluster.stop();
    let err = storage.list_clients().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    cluster.start();
    assert_eq!(storage.list_clients().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_within_the_connect_limit() {
    let db = TestDb::migrated().await;
    let proxy = Proxy::start(&db.url).await;
    proxy.set_mode(Mode::Silent); // accepts, never answers: a black hole
    let storage = storage_via(&db, &proxy, &[("CONNECT_TIMEOUT_MS", "700")]);

    let started = Instant::now();
    let err = storage
        .get_session(&uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("700 ms"), "{}", err.message);
    let elapsed = started.elapsed();
    // Waited the connect limit, and not much more (margin for a loaded machine).
    assert!(elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(4));

    proxy.set_mode(Mode::Forward);
    assert_eq!(storage.list_clients().await.unwrap().len(), 0);
}

#[tokio::test]
async fn too_many_connections_is_unavailable_and_says_so() {
    let cluster = Cluster::create(&[
        "-c",
        "max_connections=3",
        "-c",
        "superuser_reserved_connections=0",
    ]);
    let db = TestDb::migrated_on(&cluster.url).await;
    // Take every slot (the migrating connection above has gone).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(test_support::connect(&cluster.url).await);
    }
    let storage = db.storage();
    let err = storage.list_clients().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("too many connections"),
        "{}",
        err.message
    );

    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await; // the slot frees asynchronously
    assert_eq!(storage.list_clients().await.unwrap().len(), 0);
}

#[tokio::test]
async fn a_lost_answer_to_add_client_is_retried_without_a_second_row() {
    let db = TestDb::migrated().await;
    let proxy = Proxy::start(&db.url).await;
    let storage = storage_via(&db, &proxy, &[]);
    // Open the connection and prepare the statement on it: the call below then sends only
    // its values, and the cut loses the answer to the INSERT itself.
    storage
        .add_client(&new_client("https://warm-up", LMS_CLIENT))
        .await
        .unwrap();

    proxy.set_mode(Mode::CutAfter("https://lost-answer".into()));
    let id = storage
        .add_client(&new_client("https://lost-answer", LMS_CLIENT))
        .await
        .unwrap();

    assert_eq!(
        proxy.accepted(),
        2,
        "the retry went over a fresh connection"
    );
    let rows = db
        .sql()
        .await
        .query(
            "SELECT id FROM clients WHERE iss = 'https://lost-answer'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "exactly one row");
    assert_eq!(
        rows[0].get::<_, uuid::Uuid>(0),
        id,
        "the id returned is the row's"
    );
}

#[tokio::test]
async fn a_lost_answer_to_add_session_is_retried_without_a_second_row() {
    let db = TestDb::migrated().await;
    let proxy = Proxy::start(&db.url).await;
    let storage = storage_via(&db, &proxy, &[]);
    let mut warm_up = session(&uuid::Uuid::new_v4().to_string());
    warm_up.insert("user".into(), json!({"name": "warm-up"}));
    storage.add_session(&warm_up).await.unwrap();

    let id = uuid::Uuid::new_v4().to_string();
    proxy.set_mode(Mode::CutAfter("Ada".into())); // in this session's data only
    assert_eq!(storage.add_session(&session(&id)).await.unwrap(), id);

    assert_eq!(proxy.accepted(), 2);
    assert_eq!(db.count("SELECT count(*) FROM sessions").await, 2);
    let stored = db.storage().get_session(&id).await.unwrap().unwrap();
    assert_eq!(Value::Object(session(&id)), stored);
}

#[tokio::test]
async fn a_lost_answer_to_a_nonce_write_is_unavailable_and_never_applied_twice() {
    let db = TestDb::migrated().await;
    let proxy = Proxy::start(&db.url).await;
    let storage = storage_via(&db, &proxy, &[]);
    storage.store_nonce("warm-up", far_future()).await.unwrap();
    assert!(storage.validate_nonce("warm-up").await.unwrap());

    proxy.set_mode(Mode::CutAfter("lost-nonce".into()));
    let err = storage
        .store_nonce("lost-nonce", far_future())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(
        db.count("SELECT count(*) FROM nonces WHERE nonce = 'lost-nonce'")
            .await,
        1,
        "stored once"
    );

    proxy.set_mode(Mode::CutAfter("lost-nonce".into()));
    let err = storage.validate_nonce("lost-nonce").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    // The lost call consumed it; nothing repeated it and nothing else can use it.
    assert!(!storage.validate_nonce("lost-nonce").await.unwrap());
}

#[tokio::test]
async fn a_client_deleted_through_one_container_stops_launching_in_another_within_the_bound() {
    let db = TestDb::migrated().await;
    let bound = [("CHANGE_CHECK_INTERVAL_MS", "500")];
    let (a, b) = (db.storage_with(&bound), db.storage_with(&bound));
    let client = a
        .add_client(&new_client("https://revoked", LMS_CLIENT))
        .await
        .unwrap();
    let deployment = lti_storage::model::NewDeployment {
        deployment_id: "1:abc".into(),
        name: None,
        description: None,
    };
    a.add_deployment(&client.to_string(), &deployment)
        .await
        .unwrap();
    let launch = || b.get_launch_config("https://revoked", "10000000000001", "1:abc");
    assert!(launch().await.unwrap().is_some(), "cached in B");

    a.delete_client(&client.to_string()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(launch().await.unwrap(), None, "B no longer launches it");
}

#[tokio::test]
async fn a_change_made_by_other_software_is_seen_within_the_bound() {
    let db = TestDb::migrated().await;
    let b = db.storage_with(&[("CHANGE_CHECK_INTERVAL_MS", "500")]);
    let a = db.storage();
    let client = a
        .add_client(&new_client("https://moved", LMS_CLIENT))
        .await
        .unwrap();
    let deployment = lti_storage::model::NewDeployment {
        deployment_id: "default".into(),
        name: None,
        description: None,
    };
    a.add_deployment(&client.to_string(), &deployment)
        .await
        .unwrap();
    let before = b
        .get_launch_config("https://moved", "10000000000001", "x")
        .await
        .unwrap();
    assert_eq!(
        before.unwrap().jwks_url,
        "https://moved/api/lti/security/jwks"
    );

    // As @lti-tool/postgresql (or psql) would write it.
    db.sql()
        .await
        .execute(
            "UPDATE clients SET jwks_url = 'https://new/jwks' WHERE iss = 'https://moved'",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = b
        .get_launch_config("https://moved", "10000000000001", "x")
        .await
        .unwrap();
    assert_eq!(after.unwrap().jwks_url, "https://new/jwks");
}
