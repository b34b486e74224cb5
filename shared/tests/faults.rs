//! Faults reproduced for real: a PostgreSQL that restarts or is down, a backend that is
//! terminated, a proxy that goes silent or loses an answer, a server out of connections.
//! Nothing is lost, nothing is applied twice, and no call waits past its time limits.

mod support;

use std::time::{Duration, Instant};

use lti_storage::model::NewClient;
use lti_storage::{ErrorKind, Storage};
use serde_json::{json, Map, Value};
use support::cluster::Cluster;
use support::proxy::{Mode, Proxy};
use support::TestDb;
use time::OffsetDateTime;

fn new_client(iss: &str) -> NewClient {
    NewClient {
        name: "Canvas".into(),
        iss: iss.into(),
        client_id: "10000000000001".into(),
        auth_url: "https://sso.canvaslms.com/api/lti/authorize_redirect".into(),
        token_url: "https://sso.canvaslms.com/login/oauth2/token".into(),
        jwks_url: "https://sso.canvaslms.com/api/lti/security/jwks".into(),
    }
}

fn far_future() -> lti_storage::input::Timestamp {
    lti_storage::input::Timestamp::parse_rfc3339("2099-01-01T00:00:00Z").unwrap()
}

fn session(id: &str) -> Map<String, Value> {
    let Value::Object(map) = json!({"id": id, "user": {"name": "Ada"}, "roles": ["Learner"]})
    else {
        unreachable!()
    };
    map
}

/// A storage whose connection goes through `proxy` to the test's schema.
fn storage_via(db: &TestDb, proxy: &Proxy, upstream_port: u16, vars: &[(&str, &str)]) -> Storage {
    let url = proxy.url(&db.url, upstream_port);
    let mut vars = vars.to_vec();
    vars.push(("DATABASE_URL", &url));
    db.storage_with(&vars)
}

fn port_of(url: &str) -> u16 {
    let after_host = url.rsplit_once(':').expect("port in URL").1;
    after_host
        .split('/')
        .next()
        .unwrap()
        .parse()
        .expect("port number")
}

#[tokio::test]
async fn a_restarted_database_is_reconnected_by_the_next_call() {
    let cluster = Cluster::create(&[]);
    let db = TestDb::migrated_on(&cluster.url).await;
    let storage = db.storage();
    storage
        .add_client(&new_client("https://before"))
        .await
        .unwrap();

    cluster.restart();

    // A write first after the restart: it finds the connection dead before it is sent.
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
    let url = support::with_param(&db.url, &format!("application_name={name}"));
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
    let upstream = port_of(&db.url);
    let proxy = Proxy::start(upstream).await;
    let storage = storage_via(
        &db,
        &proxy,
        upstream,
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
    let fresh = storage_via(&db, &proxy, upstream, &[]);
    assert!(fresh.get_session(&id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_connection_gone_silent_mid_use_costs_one_time_limit_then_a_fresh_connection() {
    let db = TestDb::migrated().await;
    let upstream = port_of(&db.url);
    let proxy = Proxy::start(upstream).await;
    // No idle check in play: the silence is met by the call itself.
    let storage = storage_via(&db, &proxy, upstream, &[("QUERY_TIMEOUT_MS", "1000")]);
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
    let err = storage.list_clients().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    // Refused at once, well inside the connect limit (margin for a loaded machine).
    assert!(started.elapsed() < Duration::from_secs(4));

    cluster.start();
    storage
        .add_client(&new_client("https://back"))
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
    let upstream = port_of(&db.url);
    let proxy = Proxy::start(upstream).await;
    proxy.set_mode(Mode::Silent); // accepts, never answers: a black hole
    let storage = storage_via(&db, &proxy, upstream, &[("CONNECT_TIMEOUT_MS", "700")]);

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
        held.push(support::connect(&cluster.url).await);
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
    let upstream = port_of(&db.url);
    let proxy = Proxy::start(upstream).await;
    let storage = storage_via(&db, &proxy, upstream, &[]);
    // Open the connection and prepare the statement on it: the call below then sends only
    // its values, and the cut loses the answer to the INSERT itself.
    storage
        .add_client(&new_client("https://warm-up"))
        .await
        .unwrap();

    proxy.set_mode(Mode::CutAfter("https://lost-answer".into()));
    let id = storage
        .add_client(&new_client("https://lost-answer"))
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
    let upstream = port_of(&db.url);
    let proxy = Proxy::start(upstream).await;
    let storage = storage_via(&db, &proxy, upstream, &[]);
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

/// The nonce's row as a user would look at it: (expires_at, used_at).
async fn nonce_row(db: &TestDb, nonce: &str) -> Option<(OffsetDateTime, Option<OffsetDateTime>)> {
    db.sql()
        .await
        .query_opt(
            "SELECT expires_at, used_at FROM nonces WHERE nonce = $1",
            &[&nonce],
        )
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get(1)))
}

#[tokio::test]
async fn a_lost_answer_to_store_nonce_is_repeated_and_the_nonce_stored_once() {
    let db = TestDb::migrated().await;
    let upstream = port_of(&db.url);
    let proxy = Proxy::start(upstream).await;
    let storage = storage_via(&db, &proxy, upstream, &[]);
    // Open the connection and prepare the statement on it: the call below then sends only
    // its values, and the cut loses the answer to the INSERT itself.
    storage.store_nonce("warm-up", far_future()).await.unwrap();

    proxy.set_mode(Mode::CutAfter("lost-store".into()));
    storage
        .store_nonce("lost-store", far_future())
        .await
        .unwrap();

    assert_eq!(proxy.accepted(), 2, "repeated over a fresh connection");
    // As a single call leaves it: one row, its expiry, unused.
    assert_eq!(
        nonce_row(&db, "lost-store").await,
        Some((far_future().0, None))
    );
    // A fresh call still finds it stored; and it validates once.
    let err = storage
        .store_nonce("lost-store", far_future())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    assert!(storage.validate_nonce("lost-store").await.unwrap());
    assert!(!storage.validate_nonce("lost-store").await.unwrap());
}

#[tokio::test]
async fn a_repeated_store_nonce_does_not_take_a_row_it_did_not_write_for_its_own() {
    let db = TestDb::migrated().await;
    let upstream = port_of(&db.url);
    let proxy = Proxy::start(upstream).await;
    let storage = storage_via(&db, &proxy, upstream, &[]);
    let other_expiry =
        lti_storage::input::Timestamp::parse_rfc3339("2098-01-01T00:00:00Z").unwrap();
    storage
        .store_nonce("n-other-expiry", other_expiry)
        .await
        .unwrap();
    storage
        .store_nonce("n-consumed", far_future())
        .await
        .unwrap();
    assert!(storage.validate_nonce("n-consumed").await.unwrap());
    let consumed = nonce_row(&db, "n-consumed").await;

    // The first attempt meets the existing row; its answer (the Conflict) is lost; the repeat
    // must not take that row for the one its first attempt wrote.
    for nonce in ["n-other-expiry", "n-consumed"] {
        proxy.set_mode(Mode::CutAfter(nonce.into()));
        let err = storage.store_nonce(nonce, far_future()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict, "{nonce}: {err}");
    }

    assert_eq!(proxy.accepted(), 3, "both were repeated");
    assert_eq!(
        nonce_row(&db, "n-other-expiry").await,
        Some((other_expiry.0, None)),
        "kept as it was"
    );
    assert_eq!(
        nonce_row(&db, "n-consumed").await,
        consumed,
        "kept as it was"
    );
}

#[tokio::test]
async fn a_lost_answer_to_validate_nonce_is_repeated_and_answers_true_once() {
    let db = TestDb::migrated().await;
    let upstream = port_of(&db.url);
    let proxy = Proxy::start(upstream).await;
    let storage = storage_via(&db, &proxy, upstream, &[]);
    storage.store_nonce("warm-up", far_future()).await.unwrap();
    assert!(storage.validate_nonce("warm-up").await.unwrap());
    storage
        .store_nonce("lost-validate", far_future())
        .await
        .unwrap();

    proxy.set_mode(Mode::CutAfter("lost-validate".into()));
    assert!(
        storage.validate_nonce("lost-validate").await.unwrap(),
        "the call that consumed it answers true"
    );

    assert_eq!(proxy.accepted(), 2, "repeated over a fresh connection");
    let (_, used_at) = nonce_row(&db, "lost-validate").await.unwrap();
    assert!(used_at.is_some(), "consumed");
    // Used up: false to a fresh call, from this container or another.
    assert!(!storage.validate_nonce("lost-validate").await.unwrap());
    assert!(!db.storage().validate_nonce("lost-validate").await.unwrap());
}

#[tokio::test]
async fn a_repeated_validate_nonce_does_not_take_another_consumption_for_its_own() {
    let db = TestDb::migrated().await;
    let upstream = port_of(&db.url);
    let proxy = Proxy::start(upstream).await;
    let storage = storage_via(&db, &proxy, upstream, &[]);
    // As @lti-tool/postgresql writes them: stored, stored and consumed by it (it sets used_at
    // itself), stored and expired.
    db.sql()
        .await
        .batch_execute(
            "INSERT INTO nonces (nonce, expires_at, used_at) VALUES
               ('n-package-stored', now() + interval '10 minutes', NULL),
               ('n-package-used', now() + interval '10 minutes', now()),
               ('n-expired', now() - interval '1 second', NULL)",
        )
        .await
        .unwrap();
    storage
        .store_nonce("n-used-here", far_future())
        .await
        .unwrap();
    assert!(storage.validate_nonce("n-used-here").await.unwrap());
    let before = [
        nonce_row(&db, "n-package-used").await,
        nonce_row(&db, "n-used-here").await,
        nonce_row(&db, "n-expired").await,
    ];

    // Each first attempt's answer is lost; the repeat decides.
    for (nonce, expected) in [
        ("n-package-used", false),
        ("n-used-here", false),
        ("n-expired", false),
        ("n-package-stored", true),
    ] {
        proxy.set_mode(Mode::CutAfter(nonce.into()));
        assert_eq!(
            storage.validate_nonce(nonce).await.unwrap(),
            expected,
            "{nonce}"
        );
    }

    assert_eq!(proxy.accepted(), 5, "every call was repeated");
    let after = [
        nonce_row(&db, "n-package-used").await,
        nonce_row(&db, "n-used-here").await,
        nonce_row(&db, "n-expired").await,
    ];
    assert_eq!(
        before, after,
        "rows not consumed by the call are left as they were"
    );
    assert!(!storage.validate_nonce("n-package-stored").await.unwrap());
}

#[tokio::test]
async fn a_client_deleted_through_one_container_stops_launching_in_another_within_the_bound() {
    let db = TestDb::migrated().await;
    let bound = [("CHANGE_CHECK_INTERVAL_MS", "500")];
    let (a, b) = (db.storage_with(&bound), db.storage_with(&bound));
    let client = a.add_client(&new_client("https://revoked")).await.unwrap();
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
    let client = a.add_client(&new_client("https://moved")).await.unwrap();
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
        "https://sso.canvaslms.com/api/lti/security/jwks"
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
