//! A PostgreSQL that restarts or is down, a backend terminated while idle, a connection gone
//! silent, a server out of connections: the next call gets a fresh connection, and no call
//! waits past its time limits.

use std::time::{Duration, Instant};

use lti_storage::ErrorKind;
use test_support::cluster::Cluster;
use test_support::proxy::{Mode, Proxy};
use test_support::{far_future, listed_clients, new_client, TestDb, LMS_CLIENT};

use super::{session, storage_via};

#[tokio::test]
async fn a_restarted_database_is_reconnected_by_the_next_call() {
    let cluster = Cluster::create(&[]);
    let db = TestDb::migrated_on(&cluster.url).await;
    let storage = db.storage();
    storage
        .add_client(None, &new_client("https://before", LMS_CLIENT))
        .await
        .unwrap();

    cluster.restart();

    // A write first after the restart: it finds the connection dead before it is sent.
    storage
        .store_nonce("after-restart", far_future())
        .await
        .unwrap();
    assert!(storage.validate_nonce("after-restart").await.unwrap());
    assert_eq!(listed_clients(&storage).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_backend_terminated_while_idle_is_replaced_by_the_next_call() {
    let db = TestDb::migrated().await;
    let name = format!("terminate_{}", db.schema);
    let url = test_support::with_param(&db.url, &format!("application_name={name}"));
    let storage = db.storage_with(&[("DATABASE_URL", &url)]);
    storage.store_nonce("n1", far_future()).await.unwrap();

    assert_eq!(db.terminate(&name).await, 1);

    // Found dead before the call is sent.
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
        .add_session(session(&uuid::Uuid::new_v4().to_string()))
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
    assert_eq!(listed_clients(&storage).await.unwrap().len(), 0);
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
    // Consuming a nonce is repeated too, its repeat recognising its own attempt: the silent
    // proxy never delivered the first, so the repeat consumes it, once.
    assert!(storage.validate_nonce("mid-2").await.unwrap());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_secs(5),
        "one time limit, then answered: {elapsed:?}"
    );
    assert!(!storage.validate_nonce("mid-2").await.unwrap());
}

#[tokio::test]
async fn a_database_down_at_cold_start_is_unavailable_then_used_once_back() {
    let cluster = Cluster::create(&[]);
    let db = TestDb::migrated_on(&cluster.url).await;
    cluster.stop();
    let storage = db.storage_with(&[("CONNECT_TIMEOUT_MS", "2000")]);

    let started = Instant::now();
    let err = listed_clients(&storage).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    // Refused at once, well inside the connect limit (margin for a loaded machine).
    assert!(started.elapsed() < Duration::from_secs(4));

    cluster.start();
    storage
        .add_client(None, &new_client("https://back", LMS_CLIENT))
        .await
        .unwrap();

    // Down during use: the same again.
    cluster.stop();
    let err = listed_clients(&storage).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    cluster.start();
    assert_eq!(listed_clients(&storage).await.unwrap().len(), 1);
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
    assert_eq!(listed_clients(&storage).await.unwrap().len(), 0);
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
    let err = listed_clients(&storage).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("too many connections"),
        "{}",
        err.message
    );

    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await; // the slot frees asynchronously
    assert_eq!(listed_clients(&storage).await.unwrap().len(), 0);
}
