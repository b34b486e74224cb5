//! Faults reproduced for real: a PostgreSQL that restarts or is down, a backend that is
//! terminated, a proxy that goes silent or loses an answer, a server out of connections.
//! Nothing is lost, nothing is applied twice, and no call waits past its time limits.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lti_storage::ErrorKind;
use lti_storage_lambda::Storage;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{json, Map, Value};
use test_support::cluster::Cluster;
use test_support::proxy::{Mode, Proxy};
use test_support::{far_future, new_client, storage_at, TestDb};
use time::OffsetDateTime;
use tokio::task::LocalSet;
use tracing_subscriber::layer::SubscriberExt;

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
        .add_client(None, &new_client("https://back", LMS_CLIENT))
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
        .add_client(None, &new_client("https://warm-up", LMS_CLIENT))
        .await
        .unwrap();

    proxy.set_mode(Mode::CutAfter("https://lost-answer".into()));
    let id = storage
        .add_client(None, &new_client("https://lost-answer", LMS_CLIENT))
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
    storage.add_session(warm_up).await.unwrap();

    let id = uuid::Uuid::new_v4().to_string();
    proxy.set_mode(Mode::CutAfter("Ada".into())); // in this session's data only
    assert_eq!(storage.add_session(session(&id)).await.unwrap(), id);

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
    let proxy = Proxy::start(&db.url).await;
    let storage = storage_via(&db, &proxy, &[]);
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
    let proxy = Proxy::start(&db.url).await;
    let storage = storage_via(&db, &proxy, &[]);
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
    let proxy = Proxy::start(&db.url).await;
    let storage = storage_via(&db, &proxy, &[]);
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
    let proxy = Proxy::start(&db.url).await;
    let storage = storage_via(&db, &proxy, &[]);
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

/// A container whose connection to the test's schema goes through a proxy of its own (so its
/// connection can be cut alone) under its own `application_name` (so its backends can be
/// watched), with time limits that a test holding row locks does not reach.
async fn consumer(db: &TestDb, name: &str) -> (Proxy, Rc<Storage>) {
    let proxy = Proxy::start(&db.url).await;
    let url = test_support::with_param(
        &proxy.redirect(&db.url),
        &format!("application_name={name}"),
    );
    let storage = db.storage_with(&[("DATABASE_URL", &url), ("QUERY_TIMEOUT_MS", "30000")]);
    // Connected, and the consuming statement prepared: a cut then loses the call itself.
    assert!(!storage.validate_nonce("warm-up").await.unwrap());
    (proxy, Rc::new(storage))
}

/// Waits until `count` backends whose `application_name` starts with `prefix` wait on a lock,
/// or one of `calls` has ended (while the row's lock is held, only by failing).
pub(super) async fn until_waiting_on_a_lock<T>(
    admin: &tokio_postgres::Client,
    prefix: &str,
    count: i64,
    calls: &[tokio::task::JoinHandle<T>],
) {
    let started = Instant::now();
    loop {
        if calls.iter().any(tokio::task::JoinHandle::is_finished) {
            return;
        }
        let waiting = waiting_on_a_lock(admin, prefix).await;
        if waiting == count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{waiting} backends of {prefix} wait on a lock, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many backends whose `application_name` starts with `prefix` wait on a lock now.
pub(super) async fn waiting_on_a_lock(admin: &tokio_postgres::Client, prefix: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE starts_with(application_name, $1) AND wait_event_type = 'Lock'",
            &[&prefix],
        )
        .await
        .unwrap()
        .get(0)
}

/// A transaction holding the lock of a nonce's row, so that calls consuming it queue up.
pub(super) async fn lock_nonce(db: &TestDb, nonce: &str) -> tokio_postgres::Client {
    let holder = db.sql().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM nonces WHERE nonce = $1 FOR UPDATE",
            &[&nonce],
        )
        .await
        .unwrap();
    holder
}

pub(super) async fn store_for_an_hour(db: &TestDb, nonce: &str) {
    db.sql()
        .await
        .execute(
            "INSERT INTO nonces (nonce, expires_at) VALUES ($1, now() + interval '1 hour')",
            &[&nonce],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn of_many_consumers_whose_connections_are_cut_mid_call_exactly_one_wins() {
    const CONSUMERS: usize = 8;
    let db = TestDb::migrated().await;
    let admin = db.sql().await;
    let prefix = format!("race_{}", &db.schema[2..14]);
    let mut consumers = Vec::new();
    for i in 0..CONSUMERS {
        consumers.push(consumer(&db, &format!("{prefix}_{i}")).await);
    }
    LocalSet::new()
        .run_until(async {
            // Round 0 cuts every call; round 1 every other one, the first in line uncut; round
            // 2 every other one, the first in line cut.
            for round in 0..3 {
                let nonce = format!("raced-{round}");
                store_for_an_hour(&db, &nonce).await;
                let holder = lock_nonce(&db, &nonce).await;
                let mut calls = Vec::new();
                for (i, (_, storage)) in consumers.iter().enumerate() {
                    let (storage, nonce) = (storage.clone(), nonce.clone());
                    calls.push(tokio::task::spawn_local(async move {
                        storage.validate_nonce(&nonce).await
                    }));
                    // One at a time, so the queue for the row's lock is in this order.
                    until_waiting_on_a_lock(&admin, &prefix, i as i64 + 1, &calls).await;
                }
                let cut: Vec<bool> = (0..CONSUMERS)
                    .map(|i| round == 0 || (i + round) % 2 == 0)
                    .collect();
                for ((proxy, _), cut) in consumers.iter().zip(&cut) {
                    if *cut {
                        proxy.cut_all();
                    }
                }
                // Each cut call's statement still waits on the server, and its repeat
                // queues behind it.
                let cuts = cut.iter().filter(|cut| **cut).count();
                until_waiting_on_a_lock(&admin, &prefix, (CONSUMERS + cuts) as i64, &calls).await;
                holder.batch_execute("COMMIT").await.unwrap();

                let mut answers = Vec::new();
                for call in calls {
                    answers.push(call.await.unwrap().expect("no call fails"));
                }
                assert_eq!(
                    answers.iter().filter(|won| **won).count(),
                    1,
                    "round {round}: exactly one true of {answers:?}"
                );
                let (_, used_at) = nonce_row(&db, &nonce).await.unwrap();
                assert!(used_at.is_some(), "round {round}: consumed");
                assert!(!consumers[0].1.validate_nonce(&nonce).await.unwrap());
            }
        })
        .await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Consumer `i` calls validateNonce (it queues for the row's lock while that is held).
    Call(usize),
    /// Consumer `i`'s connection is cut, whatever its call is doing.
    Cut(usize),
    /// The transaction holding the row's lock ends.
    Release,
}

/// Two consumers, each cut or not, their calls and cuts in any order around the release of
/// the row's lock; the lock holder may have consumed the nonce itself, as @lti-tool/postgresql
/// does.
fn interleavings() -> impl Strategy<Value = (Vec<Step>, bool)> {
    (any::<[bool; 2]>(), any::<bool>())
        .prop_flat_map(|(cut, holder_consumes)| {
            let mut steps = vec![Step::Call(0), Step::Call(1), Step::Release];
            steps.extend((0..2).filter(|&i| cut[i]).map(Step::Cut));
            (Just(steps).prop_shuffle(), Just(holder_consumes))
        })
        .prop_filter("a cut comes after its call", |(steps, _)| {
            steps.iter().enumerate().all(|(at, step)| match step {
                Step::Cut(i) => steps[..at].contains(&Step::Call(*i)),
                _ => true,
            })
        })
}

#[test]
fn two_consumers_and_cut_connections_in_any_interleaving_give_one_true_at_most() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(TestDb::migrated());
    let admin = rt.block_on(db.sql());
    let case = std::cell::Cell::new(0);
    let mut runner = TestRunner::new(proptest::test_runner::Config {
        cases: 32,
        failure_persistence: None,
        ..Default::default()
    });
    runner
        .run(&interleavings(), |(steps, holder_consumes)| {
            case.set(case.get() + 1);
            rt.block_on(LocalSet::new().run_until(async {
                let nonce = format!("interleaved-{}", case.get());
                let names = [0, 1].map(|i| format!("p{}_{i}_{}", case.get(), &db.schema[2..14]));
                let a = consumer(&db, &names[0]).await;
                let b = consumer(&db, &names[1]).await;
                let consumers = [a, b];
                store_for_an_hour(&db, &nonce).await;
                let holder = lock_nonce(&db, &nonce).await;
                if holder_consumes {
                    holder
                        .execute(
                            "UPDATE nonces SET used_at = now() WHERE nonce = $1 AND used_at IS NULL",
                            &[&nonce],
                        )
                        .await
                        .unwrap();
                }
                let mut locked = true;
                let mut calls = Vec::new();
                for step in &steps {
                    match *step {
                        Step::Call(i) => {
                            let (storage, nonce) = (consumers[i].1.clone(), nonce.clone());
                            calls.push(tokio::task::spawn_local(async move {
                                storage.validate_nonce(&nonce).await
                            }));
                            if locked {
                                until_waiting_on_a_lock(&admin, &names[i], 1, &calls).await;
                            }
                        }
                        Step::Cut(i) => {
                            consumers[i].0.cut_all();
                            if locked {
                                // The cut statement waits on; the repeat queues behind it.
                                until_waiting_on_a_lock(&admin, &names[i], 2, &calls).await;
                            }
                        }
                        Step::Release => {
                            holder.batch_execute("COMMIT").await.unwrap();
                            locked = false;
                        }
                    }
                }
                let mut wins = 0;
                for call in calls {
                    let answer = call.await.unwrap();
                    prop_assert!(answer.is_ok(), "a call failed: {answer:?}");
                    wins += usize::from(answer == Ok(true));
                }
                prop_assert_eq!(wins, usize::from(!holder_consumes), "true answers");
                let (_, used_at) = nonce_row(&db, &nonce).await.unwrap();
                prop_assert!(used_at.is_some(), "consumed");
                prop_assert!(!db.storage().validate_nonce(&nonce).await.unwrap());
                Ok(())
            }))
        })
        .unwrap();
}

/// Counts the storage's repeats of calls on a fresh connection made on one thread, by the
/// subject of the call.
#[derive(Clone)]
struct Repeats {
    thread: std::thread::ThreadId,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Repeats {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            message: String,
            what: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "what" {
                    self.what = value.to_owned();
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                }
            }
        }
        if std::thread::current().id() != self.thread {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message == "retrying on a fresh database connection" {
            *self.counts.lock().unwrap().entry(fields.what).or_default() += 1;
        }
    }
}

/// What the callers of the load test were answered.
#[derive(Default)]
struct Answers {
    /// Per op: calls, failures.
    calls: BTreeMap<&'static str, (u64, u64)>,
    /// Nonces answered stored, with their expiry.
    stored: Vec<(String, OffsetDateTime)>,
    /// Per nonce of the shared pool: how many calls answered true.
    pool_wins: HashMap<String, u32>,
    /// Own nonces consumed once each: answered false.
    own_refused: u64,
    sessions: Vec<String>,
    clients: Vec<uuid::Uuid>,
}

impl Answers {
    fn record<T>(&mut self, op: &'static str, answer: &Result<T, lti_storage::Error>) {
        let entry = self.calls.entry(op).or_default();
        entry.0 += 1;
        if let Err(err) = answer {
            entry.1 += 1;
            eprintln!("{op} failed: {err}");
        }
    }
}

/// Loopback only, a few seconds: callers through `Storage` while every backend of theirs is
/// terminated every 300 ms (`--nocapture` prints the figures).
#[tokio::test]
async fn under_backends_terminated_every_300_ms_no_call_fails_and_nothing_is_lost_or_doubled() {
    const CALLERS: usize = 12;
    const LOAD: Duration = Duration::from_secs(8);
    const POOL: usize = 200;
    // On this test's thread, where its calls run (a current-thread runtime). Installed for the
    // whole process: a subscriber for one thread alone can miss events, when another thread
    // is the first to reach the event's call site (tracing caches whether it is wanted).
    let repeats = Repeats {
        thread: std::thread::current().id(),
        counts: Arc::default(),
    };
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(repeats.clone()))
        .expect("no other test of this file installs a subscriber");
    let db = TestDb::migrated().await;
    let admin = db.sql().await;
    let name = format!("load_{}", &db.schema[2..14]);
    let url = test_support::with_param(&db.url, &format!("application_name={name}"));
    let pool: Rc<Vec<String>> = Rc::new((0..POOL).map(|i| format!("pooled-{i}")).collect());
    for nonce in pool.iter() {
        store_for_an_hour(&db, nonce).await;
    }
    let answers = Rc::new(RefCell::new(Answers::default()));
    let started = Instant::now();
    let terminated = LocalSet::new()
        .run_until(async {
            let callers: Vec<_> = (0..CALLERS)
                .map(|caller| {
                    let storage = db.storage_with(&[("DATABASE_URL", &url)]);
                    let (answers, pool) = (answers.clone(), pool.clone());
                    tokio::task::spawn_local(async move {
                        let mut round = 0;
                        while started.elapsed() < LOAD {
                            round += 1;
                            load_round(&storage, caller, round, &pool, &answers).await;
                        }
                    })
                })
                .collect();
            let mut terminated = 0i64;
            while started.elapsed() < LOAD {
                tokio::time::sleep(Duration::from_millis(300)).await;
                terminated += admin
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                         WHERE application_name = $1",
                        &[&name],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0);
            }
            for caller in callers {
                caller.await.unwrap();
            }
            terminated
        })
        .await;
    let elapsed = started.elapsed();
    let answers = answers.take();

    let total: u64 = answers.calls.values().map(|(calls, _)| calls).sum();
    println!(
        "{CALLERS} callers, {:.1} s, {terminated} backends terminated, {total} calls",
        elapsed.as_secs_f64()
    );
    for (op, (calls, failed)) in &answers.calls {
        println!("  {op}: {calls} calls, {failed} failed");
    }
    println!(
        "  repeats on a fresh connection, by subject: {:?}",
        repeats.counts.lock().unwrap()
    );
    assert!(terminated > 0, "backends were terminated");
    let nonce_repeats = repeats.counts.lock().unwrap().get("nonce").copied();
    assert!(
        nonce_repeats > Some(0),
        "nonce calls met terminated backends"
    );
    for (op, (_, failed)) in &answers.calls {
        assert_eq!(*failed, 0, "{op}: no call fails");
    }

    // What answered stored is stored, once (the key), with its expiry.
    let stored: Vec<&str> = answers
        .stored
        .iter()
        .map(|(nonce, _)| nonce.as_str())
        .collect();
    let rows: HashMap<String, (OffsetDateTime, Option<OffsetDateTime>)> = admin
        .query(
            "SELECT nonce, expires_at, used_at FROM nonces WHERE nonce = ANY($1)",
            &[&stored],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect();
    assert_eq!(
        rows.len(),
        stored.len(),
        "every nonce answered stored is there"
    );
    for (nonce, expires_at) in &answers.stored {
        let (stored_expiry, used_at) = rows[nonce];
        assert_eq!(stored_expiry, *expires_at, "{nonce}: its expiry");
        // Each caller consumed its own nonces once, answered true (else counted below).
        assert!(used_at.is_some(), "{nonce}: consumed by its caller");
    }
    assert_eq!(
        answers.own_refused, 0,
        "every caller's own nonce validated true"
    );
    // No pooled nonce consumed twice, and a consumed one answered true to exactly one call.
    for (nonce, wins) in &answers.pool_wins {
        assert!(*wins <= 1, "{nonce} answered true {wins} times");
    }
    let consumed: i64 = admin
        .query_one(
            "SELECT count(*) FROM nonces WHERE starts_with(nonce, 'pooled-') AND used_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let won = answers
        .pool_wins
        .values()
        .filter(|wins| **wins == 1)
        .count();
    assert_eq!(consumed as usize, won, "consumed = answered true");
    // What answered added is there.
    let sessions: Vec<uuid::Uuid> = answers
        .sessions
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM sessions WHERE id IN ({})",
            sessions
                .iter()
                .map(|id| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await as usize,
        sessions.len()
    );
    let clients: i64 = admin
        .query_one(
            "SELECT count(*) FROM clients WHERE id = ANY($1)",
            &[&answers.clients],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        clients as usize,
        answers.clients.len(),
        "every client answered added is there"
    );
}

/// One caller's round of the load test: a login (store a nonce), its launch (consume it),
/// a replay attempt on a shared nonce, a session stored and read, and now and then a platform
/// registered.
async fn load_round(
    storage: &Storage,
    caller: usize,
    round: usize,
    pool: &[String],
    answers: &RefCell<Answers>,
) {
    let nonce = uuid::Uuid::new_v4().to_string();
    let expires_at =
        OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + Duration::from_secs(600);
    let stored = storage
        .store_nonce(&nonce, lti_storage::input::Timestamp(expires_at))
        .await;
    answers.borrow_mut().record("storeNonce", &stored);
    if stored.is_ok() {
        answers
            .borrow_mut()
            .stored
            .push((nonce.clone(), expires_at));
        let valid = storage.validate_nonce(&nonce).await;
        let mut answers = answers.borrow_mut();
        answers.record("validateNonce", &valid);
        answers.own_refused += u64::from(valid == Ok(false));
    }

    let pooled = &pool[(caller * 31 + round * 7) % pool.len()];
    let valid = storage.validate_nonce(pooled).await;
    {
        let mut answers = answers.borrow_mut();
        answers.record("validateNonce", &valid);
        let wins = answers.pool_wins.entry(pooled.clone()).or_default();
        *wins += u32::from(valid == Ok(true));
    }

    let id = uuid::Uuid::new_v4().to_string();
    let added = storage.add_session(session(&id)).await;
    answers.borrow_mut().record("addSession", &added);
    if added.is_ok() {
        answers.borrow_mut().sessions.push(id.clone());
        let found = storage.get_session(&id).await;
        answers.borrow_mut().record("getSession", &found);
        assert!(
            !matches!(found, Ok(None)),
            "a session answered added is found"
        );
    }

    if round % 8 == 0 {
        let added = storage
            .add_client(
                None,
                &new_client(&format!("https://load/{caller}/{round}"), LMS_CLIENT),
            )
            .await;
        answers.borrow_mut().record("addClient", &added);
        if let Ok(id) = added {
            answers.borrow_mut().clients.push(id);
        }
    }
}

#[tokio::test]
async fn a_client_deleted_through_one_container_stops_launching_in_another_within_the_bound() {
    let db = TestDb::migrated().await;
    let bound = [("CHANGE_CHECK_INTERVAL_MS", "500")];
    let (a, b) = (db.storage_with(&bound), db.storage_with(&bound));
    let client = a
        .add_client(None, &new_client("https://revoked", LMS_CLIENT))
        .await
        .unwrap();
    let deployment = lti_storage::model::NewDeployment {
        deployment_id: "1:abc".into(),
        name: None,
        description: None,
    };
    a.add_deployment(&client.to_string(), None, &deployment)
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
        .add_client(None, &new_client("https://moved", LMS_CLIENT))
        .await
        .unwrap();
    let deployment = lti_storage::model::NewDeployment {
        deployment_id: "default".into(),
        name: None,
        description: None,
    };
    a.add_deployment(&client.to_string(), None, &deployment)
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
