//! A migration held up (by a long transaction, another runner, a statement running too long)
//! gives up within its time limit and holds nothing; one run beside calls in flight shares no
//! transaction with them.

use std::time::{Duration, Instant};

use lti_storage::migrate::{LOCK_KEY, MIGRATIONS};
use lti_storage::ErrorKind;
use lti_storage_lambda::Storage;
use serde_json::json;
use test_support::{ok, TestDb};

use super::{migrate, recorded_versions, versions, MIGRATIONS_TABLE};

/// A storage whose connection is named after the test, for finding its backend.
fn named_storage(db: &TestDb) -> (Storage, String) {
    let name = format!("migrate_{}", db.schema);
    let url = test_support::with_param(&db.url, &format!("application_name={name}"));
    (db.storage_with(&[("DATABASE_URL", &url)]), name)
}

/// Empties the record: the next run applies every migration again.
async fn forget_applied(db: &TestDb) {
    db.sql()
        .await
        .batch_execute(&format!("DELETE FROM {MIGRATIONS_TABLE}"))
        .await
        .expect("empty the record");
}

/// Runs the migrations with a 2 s limit while something holds them up, and checks they gave
/// up within about that limit, as Unavailable naming `cause` and pointing to the command
/// line, and rolled back: nothing recorded, no lock left.
async fn assert_gives_up_in_time(db: &TestDb, storage: &Storage, name: &str, cause: &str) {
    let before = recorded_versions(db).await;
    let started = Instant::now();
    let err = lti_storage::migrate::migrate(storage.database(), Duration::from_secs(2))
        .await
        .expect_err("the migrations are blocked");
    let elapsed = started.elapsed();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(
        err.message
            .contains("cargo run --release -p storage -- migrate"),
        "{err}"
    );
    assert!(err.message.contains(cause), "{err}");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(3),
        "waited, then gave up before the limit: {elapsed:?}"
    );
    assert_eq!(recorded_versions(db).await, before, "nothing applied");
    let held = db
        .count(&format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE a.application_name = '{name}'"
        ))
        .await;
    assert_eq!(held, 0, "locks left by the migration's connection");
}

#[tokio::test]
async fn a_migration_blocked_by_a_long_transaction_gives_up_in_time_and_holds_nothing() {
    let db = TestDb::migrated().await;
    // Every migration runs again, and the first to alter clients waits.
    forget_applied(&db).await;
    // A transaction that read clients holds ACCESS SHARE on it until it ends, which blocks
    // the ACCESS EXCLUSIVE lock of DROP TRIGGER.
    let blocker = db.sql().await;
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM clients;")
        .await
        .unwrap();
    let (storage, name) = named_storage(&db);

    assert_gives_up_in_time(&db, &storage, &name, "a lock").await;

    blocker
        .batch_execute("SELECT count(*) FROM clients; COMMIT;")
        .await
        .expect("the blocking transaction goes on unharmed");
    assert_eq!(
        migrate(&storage).await.expect("then it applies"),
        versions()
    );
}

#[tokio::test]
async fn a_migration_waiting_for_another_runner_gives_up_in_time_and_holds_nothing() {
    let db = TestDb::migrated().await;
    forget_applied(&db).await;
    // Another runner, stuck.
    let runner = db.sql().await;
    runner
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let (storage, name) = named_storage(&db);

    assert_gives_up_in_time(&db, &storage, &name, "a lock").await;

    let unlocked: bool = runner
        .query_one("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .expect("the other runner goes on unharmed")
        .get(0);
    assert!(unlocked, "it still held its lock");
    assert_eq!(
        migrate(&storage).await.expect("then it applies"),
        versions()
    );
}

#[tokio::test]
async fn a_migration_statement_running_too_long_gives_up_in_time_and_holds_nothing() {
    let db = TestDb::migrated().await;
    forget_applied(&db).await;
    // Recording the first migration takes longer than the whole limit.
    db.sql()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_sleep(10); RETURN NEW; END $$;
             CREATE TRIGGER slow BEFORE INSERT ON {MIGRATIONS_TABLE}
                 FOR EACH ROW EXECUTE FUNCTION slow();"
        ))
        .await
        .unwrap();
    let (storage, name) = named_storage(&db);

    assert_gives_up_in_time(&db, &storage, &name, "a statement ran too long").await;

    db.sql()
        .await
        .batch_execute(&format!("DROP TRIGGER slow ON {MIGRATIONS_TABLE}"))
        .await
        .unwrap();
    assert_eq!(
        migrate(&storage).await.expect("then it applies"),
        versions()
    );
}

/// A migration run while calls are in flight in the same container (Lambda Managed
/// Instances): it waits for another runner's lock, then applies one migration. The calls, sent
/// while it waits, share none of its transaction: none waits for its lock, none gets its
/// errors, and none is undone with it; a duplicate nonce among them (a Conflict) does not
/// abort the migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_shares_no_transaction_with_the_calls_in_flight_beside_it() {
    let db = TestDb::migrated().await;
    let (last, _) = MIGRATIONS.last().expect("there are migrations");
    db.sql()
        .await
        .execute(
            &format!("DELETE FROM {MIGRATIONS_TABLE} WHERE version = $1"),
            &[last],
        )
        .await
        .expect("forget the last migration");
    let (storage, name) = named_storage(&db);
    let storage = std::sync::Arc::new(storage);
    // Connected before the migration starts, as a warm container is.
    ok(&storage, json!({"op": "validateNonce", "nonce": "warm-up"})).await;
    let runner = db.sql().await;
    runner
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let migration = tokio::spawn({
        let storage = storage.clone();
        async move { test_support::call(&storage, json!({"op": "migrate"})).await }
    });
    let admin = db.sql().await;
    while crate::faults::waiting_on_a_lock(&admin, &name).await == 0 {
        assert!(!migration.is_finished(), "the migration waits for the lock");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 64 calls: 16 nonces stored twice (the second a Conflict), 16 consumed, 16 sessions.
    let consumed: Vec<String> = (0..16).map(|i| format!("consumed-{i}")).collect();
    for nonce in &consumed {
        crate::faults::store_for_an_hour(&db, nonce).await;
    }
    let in_an_hour = test_support::epoch_ms_in(3600);
    let mut payloads = Vec::new();
    for (i, nonce) in consumed.iter().enumerate() {
        let store =
            json!({"op": "storeNonce", "nonce": format!("stored-{i}"), "expiresAt": in_an_hour});
        payloads.push(store.clone());
        payloads.push(store);
        payloads.push(json!({"op": "validateNonce", "nonce": nonce}));
        let mut session = test_support::session_data();
        session["id"] = json!(uuid::Uuid::new_v4().to_string());
        payloads.push(json!({"op": "addSession", "session": session}));
    }
    let calls: Vec<_> = payloads
        .iter()
        .map(|payload| {
            let (storage, payload) = (storage.clone(), payload.clone());
            tokio::spawn(async move { test_support::call(&storage, payload).await })
        })
        .collect();
    let answers = tokio::time::timeout(Duration::from_secs(30), async {
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.expect("no call panics"));
        }
        answers
    })
    .await
    .expect("the calls are not held up by the migration waiting for its lock");

    runner
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let applied = migration
        .await
        .expect("no panic")
        .expect("the migration succeeds");
    assert_eq!(applied, json!({"applied": [last]}));

    let mut conflicts = 0;
    for (payload, answer) in payloads.iter().zip(&answers) {
        match (payload["op"].as_str(), answer) {
            (_, Err(err)) if err.kind == ErrorKind::Conflict && payload["op"] == "storeNonce" => {
                conflicts += 1
            }
            (Some("validateNonce"), Ok(valid)) => assert_eq!(valid, &json!(true), "{payload}"),
            (_, Ok(_)) => {}
            (_, Err(err)) => panic!("{payload} failed: {err}"),
        }
    }
    assert_eq!(conflicts, 16, "each nonce stored twice is a Conflict once");
    // Every answered write is there, every consumed nonce stays used.
    for (i, nonce) in consumed.iter().enumerate() {
        let stored = format!("stored-{i}");
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM nonces WHERE nonce = '{stored}' AND used_at IS NULL"
            ))
            .await,
            1,
            "{stored} is stored"
        );
        assert_eq!(
            ok(&storage, json!({"op": "validateNonce", "nonce": nonce})).await,
            json!(false),
            "{nonce} stays used"
        );
    }
    for (payload, answer) in payloads.iter().zip(&answers) {
        if payload["op"] == "addSession" {
            let id = answer.as_ref().expect("stored");
            let id = id.as_str().expect("an id");
            assert_eq!(
                db.count(&format!("SELECT count(*) FROM sessions WHERE id = '{id}'"))
                    .await,
                1,
                "the session answered for is there"
            );
        }
    }
}
