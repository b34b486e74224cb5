//! Callers under load while every backend of theirs is terminated every 300 ms: no call fails,
//! nothing is lost or applied twice.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lti_storage_lambda::Storage;
use test_support::{new_client, TestDb, LMS_CLIENT};
use time::OffsetDateTime;
use tokio::task::LocalSet;
use tracing_subscriber::layer::SubscriberExt;

use super::{session, store_for_an_hour};

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
