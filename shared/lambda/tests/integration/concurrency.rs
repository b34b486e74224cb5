//! Many invocations in flight at once in one container, as Lambda Managed Instances send them:
//! they share its one connection, pipelined, and what holds for one call at a time holds for
//! 64 at once: one connection (also across a reconnect), one reconnect when it breaks, nonces
//! consumed once, statements prepared without errors, caches within their bounds and never
//! serving what a write replaced, cleanup, each call's own time limit, and each call's own
//! metrics.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lti_storage::metrics::Tally;
use lti_storage::{Error, ErrorKind};
use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::proxy::Proxy;
use test_support::{
    call, call_tallied, client_json, new_client, ok, session_data, with_param, TestDb,
};

use super::faults::{lock_nonce, store_for_an_hour, until_waiting_on_a_lock, waiting_on_a_lock};

const IN_FLIGHT: usize = 64;
const ISS: &str = "https://canvas.example.edu";
const LMS_CLIENT: &str = "10000000000001";

/// A container whose connection goes through a proxy of its own (which counts the connections
/// opened through it) under `application_name` `name` (so its backends can be counted).
async fn container(db: &TestDb, name: &str, vars: &[(&str, &str)]) -> (Proxy, Arc<Storage>) {
    let proxy = Proxy::start(&db.url).await;
    let url = with_param(
        &proxy.redirect(&db.url),
        &format!("application_name={name}"),
    );
    let mut all = vec![("DATABASE_URL", url.as_str())];
    all.extend_from_slice(vars);
    (proxy, Arc::new(db.storage_with(&all)))
}

/// An `application_name` of this test's own.
fn name_for(db: &TestDb, what: &str) -> String {
    format!("{what}_{}", &db.schema[2..14])
}

/// Sends every payload at once, each as a task of its own with its own metrics' tally, as
/// the storage function runs concurrent invocations.
fn send_all(storage: &Arc<Storage>, payloads: &[Value]) -> Vec<Sent> {
    payloads
        .iter()
        .map(|payload| {
            let (storage, payload) = (storage.clone(), payload.clone());
            tokio::spawn(async move { call_tallied(&storage, payload).await })
        })
        .collect()
}

type Answer = Result<Value, Error>;
type Sent = tokio::task::JoinHandle<(Answer, Tally)>;

/// Each call's answer, and what it counted for its metrics.
async fn answers_and_tallies(calls: Vec<Sent>) -> Vec<(Answer, Tally)> {
    let mut answers = Vec::with_capacity(calls.len());
    for call in calls {
        answers.push(call.await.expect("no call panics"));
    }
    answers
}

async fn answers(calls: Vec<Sent>) -> Vec<Answer> {
    let answered = answers_and_tallies(calls).await;
    answered.into_iter().map(|(answer, _)| answer).collect()
}

async fn all_at_once(storage: &Arc<Storage>, payloads: &[Value]) -> Vec<Answer> {
    answers(send_all(storage, payloads)).await
}

/// Asserts that every call answered what it was expected to.
fn assert_answers(answers: &[Answer], calls: &[(Value, Value)]) {
    for (answer, (payload, expected)) in answers.iter().zip(calls) {
        match answer {
            Ok(value) => assert_eq!(value, expected, "{payload}"),
            Err(err) => panic!("{payload} failed: {err}"),
        }
    }
}

/// The most backends named `name` seen at once, sampled every millisecond until `most`.
struct Backends {
    stop: Arc<AtomicBool>,
    /// A backend being terminated: no longer counted. It stays listed until it has finished
    /// exiting, while its client, told so, may already have connected again.
    ending: Arc<AtomicI32>,
    most: tokio::task::JoinHandle<i64>,
}

impl Backends {
    async fn watch(db: &TestDb, name: &str) -> Backends {
        let admin = db.sql().await;
        let stop = Arc::new(AtomicBool::new(false));
        let ending = Arc::new(AtomicI32::new(0));
        let (name, stopped, ended) = (name.to_owned(), stop.clone(), ending.clone());
        let most = tokio::spawn(async move {
            let mut most = 0;
            while !stopped.load(Ordering::Relaxed) {
                let now: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE application_name = $1 AND pid <> $2",
                        &[&name, &ended.load(Ordering::Relaxed)],
                    )
                    .await
                    .expect("count backends")
                    .get(0);
                most = most.max(now);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            most
        });
        Backends { stop, ending, most }
    }

    /// Stops counting the one backend named `name` now: it is about to be terminated.
    async fn ending(&self, db: &TestDb, name: &str) {
        let pid: i32 = db
            .sql()
            .await
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .expect("one backend")
            .get(0);
        self.ending.store(pid, Ordering::Relaxed);
    }

    async fn most(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.most.await.expect("the watch ends")
    }
}

/// Registers the platform with deployments `d0`..`d{deployments-1}`; returns their launch
/// configs' expected answers.
async fn register(storage: &Storage, deployments: usize) -> Vec<Value> {
    let client = new_client(ISS, LMS_CLIENT);
    let id = ok(
        storage,
        json!({"op": "addClient", "client": client_json(&client)}),
    )
    .await;
    let mut configs = Vec::new();
    for d in 0..deployments {
        let deployment_id = format!("d{d}");
        ok(
            storage,
            json!({"op": "addDeployment", "clientId": id, "deployment": {"deploymentId": deployment_id}}),
        )
        .await;
        configs.push(test_support::launch_config_json(&client, &deployment_id));
    }
    configs
}

fn launch_config(deployment: usize) -> Value {
    json!({"op": "getLaunchConfig", "iss": ISS, "clientId": LMS_CLIENT, "deploymentId": format!("d{deployment}")})
}

fn store_nonce(nonce: &str) -> Value {
    json!({"op": "storeNonce", "nonce": nonce, "expiresAt": 4102444800000u64})
}

fn validate_nonce(nonce: &str) -> Value {
    json!({"op": "validateNonce", "nonce": nonce})
}

fn new_session() -> (String, Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let mut session = session_data();
    session["id"] = json!(id);
    (id, session)
}

/// 64 calls of LTI logins and launches, with what each must answer: launch configs, nonces
/// stored and consumed (`pre-{round}-{i}` must be stored beforehand), sessions stored and
/// read (`stored` beforehand).
fn launch_calls(round: usize, configs: &[Value], stored: &(String, Value)) -> Vec<(Value, Value)> {
    (0..IN_FLIGHT)
        .map(|i| match i % 5 {
            0 => (
                launch_config(i % configs.len()),
                configs[i % configs.len()].clone(),
            ),
            1 => (store_nonce(&format!("new-{round}-{i}")), Value::Null),
            2 => (validate_nonce(&format!("pre-{round}-{i}")), json!(true)),
            3 => {
                let (id, session) = new_session();
                (json!({"op": "addSession", "session": session}), json!(id))
            }
            _ => (
                json!({"op": "getSession", "sessionId": stored.0}),
                stored.1.clone(),
            ),
        })
        .collect()
}

async fn calls_share_one_connection() {
    let db = TestDb::migrated().await;
    let name = name_for(&db, "shared");
    let (proxy, storage) = container(&db, &name, &[]).await;
    let configs = register(&storage, 4).await;
    let backends = Backends::watch(&db, &name).await;
    for round in 0..8 {
        let stored = new_session();
        ok(&storage, json!({"op": "addSession", "session": stored.1})).await;
        let calls = launch_calls(round, &configs, &stored);
        for (payload, _) in &calls {
            if payload["op"] == "validateNonce" {
                let nonce = payload["nonce"].as_str().unwrap();
                store_for_an_hour(&db, nonce).await;
            }
        }
        let payloads: Vec<Value> = calls.iter().map(|(payload, _)| payload.clone()).collect();
        assert_answers(&all_at_once(&storage, &payloads).await, &calls);
    }
    assert_eq!(
        backends.most().await,
        1,
        "backends of the container at once"
    );
    assert_eq!(proxy.accepted(), 1, "connections the container opened");
    // 13 of each 64 store a nonce, 13 consume one stored before, 13 add a session.
    assert_eq!(db.count("SELECT count(*) FROM nonces").await, 8 * 26);
    assert_eq!(
        db.count("SELECT count(*) FROM nonces WHERE used_at IS NOT NULL")
            .await,
        8 * 13
    );
    assert_eq!(db.count("SELECT count(*) FROM sessions").await, 8 * 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_calls_in_flight_on_threads_share_one_connection() {
    calls_share_one_connection().await;
}

#[tokio::test]
async fn sixty_four_calls_in_flight_on_one_thread_share_one_connection() {
    calls_share_one_connection().await;
}

/// Waits until the proxy has seen `count` round trips, for 20 s at most.
async fn until_round_trips(proxy: &Proxy, count: u64) {
    let started = Instant::now();
    while proxy.round_trips() < count {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} of {count} round trips sent",
            proxy.round_trips()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_broken_under_64_calls_is_opened_again_once_and_no_call_fails() {
    let db = TestDb::migrated().await;
    let name = name_for(&db, "broken");
    let (proxy, storage) = container(&db, &name, &[("QUERY_TIMEOUT_MS", "30000")]).await;
    let admin = db.sql().await;
    store_for_an_hour(&db, "held").await;
    // Every statement the calls send is prepared, so each call is one round trip.
    let warm_up = [
        (validate_nonce("warm-up"), json!(false)),
        (store_nonce("warm-up"), Value::Null),
        (json!({"op": "listClients"}), json!([])),
    ];
    for (payload, expected) in warm_up {
        assert_eq!(ok(&storage, payload).await, expected);
    }
    let calls: Vec<(Value, Value)> = (1..IN_FLIGHT)
        .map(|i| match i % 3 {
            0 => (validate_nonce(&format!("pre-{i}")), json!(true)),
            1 => (store_nonce(&format!("new-{i}")), Value::Null),
            _ => (json!({"op": "listClients"}), json!([])),
        })
        .collect();
    for (payload, _) in &calls {
        if payload["op"] == "validateNonce" {
            store_for_an_hour(&db, payload["nonce"].as_str().unwrap()).await;
        }
    }
    let backends = Backends::watch(&db, &name).await;

    // The first call waits for a row lock on the server, and the others queue behind it on
    // the connection: all 64 are in flight when its backend is terminated.
    let holder = lock_nonce(&db, "held").await;
    let held = send_all(&storage, &[validate_nonce("held")]);
    until_waiting_on_a_lock(&admin, &name, 1, &held).await;
    let sent = proxy.round_trips();
    let payloads: Vec<Value> = calls.iter().map(|(payload, _)| payload.clone()).collect();
    let others = send_all(&storage, &payloads);
    until_round_trips(&proxy, sent + calls.len() as u64).await;
    backends.ending(&db, &name).await;
    assert_eq!(db.terminate(&name).await, 1);

    // Repeated on the new connection, the first call waits for the lock again.
    until_waiting_on_a_lock(&admin, &name, 1, &held).await;
    holder.batch_execute("COMMIT").await.unwrap();

    let (held, held_tally) = answers_and_tallies(held).await.remove(0);
    assert_eq!(held.expect("the first call succeeds"), json!(true));
    let (others, tallies): (Vec<Answer>, Vec<Tally>) =
        answers_and_tallies(others).await.into_iter().unzip();
    assert_answers(&others, &calls);
    assert_eq!(proxy.accepted(), 2, "opened again once");
    let reconnects: Vec<u64> = tallies.iter().map(|tally| tally.reconnects).collect();
    assert_eq!(
        held_tally.reconnects + reconnects.iter().sum::<u64>(),
        1,
        "one call's metrics count the reconnect: {} {reconnects:?}",
        held_tally.reconnects
    );
    assert_eq!(
        backends.most().await,
        1,
        "backends of the container at once"
    );
    // Each nonce stored once, each consumed once.
    assert_eq!(
        db.count("SELECT count(*) FROM nonces WHERE nonce LIKE 'new-%'")
            .await,
        21
    );
    assert_eq!(
        db.count("SELECT count(*) FROM nonces WHERE used_at IS NULL AND nonce <> 'warm-up'")
            .await,
        21,
        "only the nonces just stored are unused"
    );
    for (payload, _) in calls.iter().filter(|(p, _)| p["op"] == "storeNonce") {
        let err = call(&storage, payload.clone()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict, "{payload} stored already");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_64_consumers_of_a_nonce_in_one_container_and_16_in_another_one_gets_true() {
    let db = TestDb::migrated().await;
    let one = Arc::new(db.storage());
    let another = Arc::new(db.storage());
    for round in 0..20 {
        let nonce = format!("raced-{round}");
        ok(&one, store_nonce(&nonce)).await;
        let mut calls = send_all(&one, &vec![validate_nonce(&nonce); IN_FLIGHT]);
        calls.extend(send_all(&another, &vec![validate_nonce(&nonce); 16]));
        let answers: Vec<Value> = answers(calls)
            .await
            .into_iter()
            .map(|answer| answer.expect("no call fails"))
            .collect();
        assert_eq!(
            answers.iter().filter(|won| **won == json!(true)).count(),
            1,
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statements_are_prepared_without_errors_by_64_first_uses_and_after_a_schema_change() {
    let db = TestDb::migrated().await;
    let storage = Arc::new(db.storage());
    let configs = register(&db.storage(), 2).await;
    let list = ok(&db.storage(), json!({"op": "listClients"})).await;

    // Nothing is prepared on the new connection yet: every call's statement is a first use.
    let calls: Vec<(Value, Value)> = (0..IN_FLIGHT)
        .map(|i| match i % 3 {
            0 => (json!({"op": "listClients"}), list.clone()),
            1 => (launch_config(i % 2), configs[i % 2].clone()),
            _ => (validate_nonce(&format!("unknown-{i}")), json!(false)),
        })
        .collect();
    let payloads: Vec<Value> = calls.iter().map(|(payload, _)| payload.clone()).collect();
    assert_answers(&all_at_once(&storage, &payloads).await, &calls);

    // The result type of the prepared listClients changes under 64 calls of it.
    db.sql()
        .await
        .batch_execute("ALTER TABLE clients ALTER COLUMN name TYPE varchar(300)")
        .await
        .unwrap();
    let calls = vec![(json!({"op": "listClients"}), list); IN_FLIGHT];
    let payloads: Vec<Value> = calls.iter().map(|(payload, _)| payload.clone()).collect();
    assert_answers(&all_at_once(&storage, &payloads).await, &calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caches_stay_within_their_capacity_and_never_keep_what_a_concurrent_write_replaced() {
    let db = TestDb::migrated().await;
    // Only writes through this container tell it of changes (the counter is read hourly).
    let storage = Arc::new(db.storage_with(&[
        ("LAUNCH_CONFIG_CACHE_CAPACITY", "8"),
        ("SESSION_CACHE_CAPACITY", "8"),
        ("CHANGE_CHECK_INTERVAL_MS", "900000"),
    ]));
    let configs = register(&storage, 32).await;

    let calls: Vec<(Value, Value)> = (0..IN_FLIGHT)
        .map(|i| (launch_config(i % 32), configs[i % 32].clone()))
        .collect();
    let payloads: Vec<Value> = calls.iter().map(|(payload, _)| payload.clone()).collect();
    assert_answers(&all_at_once(&storage, &payloads).await, &calls);
    let sessions: Vec<Value> = (0..IN_FLIGHT)
        .map(|_| json!({"op": "addSession", "session": new_session().1}))
        .collect();
    for answer in all_at_once(&storage, &sessions).await {
        answer.expect("addSession succeeds");
    }
    let (launch_configs, sessions) = storage.cached_entries();
    assert!(
        launch_configs <= 8,
        "{launch_configs} launch configs cached"
    );
    assert!(sessions <= 8, "{sessions} sessions cached");

    // Reads of a launch config not cached (each round asks for another deployment's) in
    // flight while the platform's authUrl changes: whichever answer each read gets, once the
    // write has answered every later read sees it.
    let client_id = ok(&storage, json!({"op": "listClients"})).await[0]["id"].clone();
    for round in 0..32 {
        let auth_url = format!("{ISS}/auth/{round}");
        let mut payloads = vec![launch_config(round); IN_FLIGHT - 1];
        payloads.insert(
            IN_FLIGHT / 2,
            json!({"op": "updateClient", "clientId": client_id, "client": {"authUrl": auth_url}}),
        );
        for answer in all_at_once(&storage, &payloads).await {
            answer.expect("no call fails");
        }
        let config = ok(&storage, launch_config(round)).await;
        assert_eq!(config["authUrl"], auth_url, "round {round}");
    }
}

/// The storage function writes `CacheHit` for each invocation from its own tally: a call
/// answered from the cache says hit, one that went to the database says miss, whatever the
/// 63 others in flight beside it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_of_64_calls_in_flight_counts_its_own_cache_lookups() {
    let db = TestDb::migrated().await;
    let storage = Arc::new(db.storage_with(&[("CHANGE_CHECK_INTERVAL_MS", "900000")]));
    let configs = register(&storage, 1).await;
    ok(&storage, launch_config(0)).await;
    for round in 0..8 {
        // Cached launch configs, sessions nobody stored (each a miss, then remembered), and
        // calls no cache answers.
        let calls: Vec<(Value, Value, Option<bool>)> = (0..IN_FLIGHT)
            .map(|i| match i % 3 {
                0 => (launch_config(0), configs[0].clone(), Some(true)),
                1 => (
                    json!({"op": "getSession", "sessionId": uuid::Uuid::new_v4().to_string()}),
                    Value::Null,
                    Some(false),
                ),
                _ => (
                    store_nonce(&format!("tally-{round}-{i}")),
                    Value::Null,
                    None,
                ),
            })
            .collect();
        let payloads: Vec<Value> = calls.iter().map(|(payload, ..)| payload.clone()).collect();
        let sent = answers_and_tallies(send_all(&storage, &payloads)).await;
        for ((answer, tally), (payload, expected, hit)) in sent.iter().zip(&calls) {
            assert_eq!(answer.as_ref().ok(), Some(expected), "{payload}");
            assert_eq!(tally.cache_hit(), *hit, "round {round}: {payload}");
            assert_eq!(tally.reconnects, 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cleanup_under_64_calls_deletes_the_expired_rows_only() {
    let db = TestDb::migrated().await;
    let storage = Arc::new(db.storage());
    let sql = db.sql().await;
    sql.batch_execute(
        "INSERT INTO nonces (nonce, expires_at)
             SELECT 'old-' || n, now() - interval '1 hour' FROM generate_series(1, 5000) n;
         INSERT INTO sessions (id, data, expires_at)
             SELECT gen_random_uuid(), '{}', now() - interval '1 hour'
             FROM generate_series(1, 5000);",
    )
    .await
    .unwrap();
    let calls: Vec<(Value, Value)> = (0..IN_FLIGHT)
        .map(|i| match i % 2 {
            0 => (store_nonce(&format!("new-{i}")), Value::Null),
            _ => {
                let (id, session) = new_session();
                (json!({"op": "addSession", "session": session}), json!(id))
            }
        })
        .collect();
    let payloads: Vec<Value> = calls.iter().map(|(payload, _)| payload.clone()).collect();
    let in_flight = send_all(&storage, &payloads);
    let deadline = Instant::now() + Duration::from_secs(60);
    let cleaned = lti_storage::cleanup::cleanup(&storage, deadline)
        .await
        .expect("cleanup succeeds");
    assert_answers(&answers(in_flight).await, &calls);
    assert!(cleaned.finished);
    assert_eq!(cleaned.counts.nonces_deleted, 5000);
    assert_eq!(cleaned.counts.sessions_deleted, 5000);
    assert_eq!(db.count("SELECT count(*) FROM nonces").await, 32);
    assert_eq!(db.count("SELECT count(*) FROM sessions").await, 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_stuck_on_a_row_lock_is_cancelled_at_its_limit_and_holds_up_no_other_for_longer() {
    let db = TestDb::migrated().await;
    let name = name_for(&db, "stuck");
    let (_proxy, storage) = container(&db, &name, &[("QUERY_TIMEOUT_MS", "1000")]).await;
    let admin = db.sql().await;
    for nonce in ["held", "held-alone"] {
        store_for_an_hour(&db, nonce).await;
    }
    assert_eq!(ok(&storage, validate_nonce("warm-up")).await, json!(false));
    let backend = || async {
        admin
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .expect("one backend")
            .get::<_, i32>(0)
    };
    let pid = backend().await;
    let backends = Backends::watch(&db, &name).await;

    // One call waits for a row lock that a transaction holds past the call's 1 s limit;
    // 63 others, on other rows, queue behind it on the connection.
    let holder = lock_nonce(&db, "held").await;
    let started = Instant::now();
    let held = send_all(&storage, &[validate_nonce("held")]);
    until_waiting_on_a_lock(&admin, &name, 1, &held).await;
    let calls: Vec<(Value, Value)> = (1..IN_FLIGHT)
        .map(|i| match i % 2 {
            0 => (store_nonce(&format!("new-{i}")), Value::Null),
            _ => (json!({"op": "listClients"}), json!([])),
        })
        .collect();
    let payloads: Vec<Value> = calls.iter().map(|(payload, _)| payload.clone()).collect();
    // Sent half-way through the stuck call's limit, so that theirs end well after it: what
    // frees them is its cancel (a connection the server forks a backend for, slow on a loaded
    // machine), not their own limits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let others = send_all(&storage, &payloads);

    let err = answers(held).await.remove(0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message.contains("did not answer within 1000 ms"),
        "{}",
        err.message
    );
    assert_answers(&answers(others).await, &calls);
    // Held up by the stuck call until its limit, then answered: not left waiting for the
    // lock, nor sent again after a limit of their own. The margin is for a loaded machine.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    // The stuck statement was cancelled on the server, and the connection kept.
    assert_eq!(waiting_on_a_lock(&admin, &name).await, 0);
    assert_eq!(backend().await, pid, "the same connection");

    // One call at a time, the same.
    let holder_alone = lock_nonce(&db, "held-alone").await;
    let err = call(&storage, validate_nonce("held-alone"))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("did not answer within 1000 ms"),
        "{}",
        err.message
    );
    assert_eq!(waiting_on_a_lock(&admin, &name).await, 0);
    assert_eq!(backend().await, pid, "the same connection");
    assert_eq!(
        backends.most().await,
        1,
        "backends of the container at once"
    );

    // The cancelled consumptions did not happen.
    holder.batch_execute("ROLLBACK").await.unwrap();
    holder_alone.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(ok(&storage, validate_nonce("held")).await, json!(true));
    assert_eq!(
        ok(&storage, validate_nonce("held-alone")).await,
        json!(true)
    );
}
