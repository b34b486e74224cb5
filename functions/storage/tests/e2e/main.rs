//! End to end: both functions under `cargo lambda watch` (the real Lambda runtime loop, the
//! Runtime API emulated), called through the Lambda Invoke API with every example payload in
//! `events/`, on a database schema of this binary's own.
//!
//! Needs cargo-lambda (`pip install cargo-lambda`; scripts/ensure-tools.sh installs it) and a
//! PostgreSQL server in TEST_DATABASE_URL:
//!
//!     scripts/with-postgres.sh cargo test -p storage --test e2e -- --nocapture
//!
//! The first test to run starts one `cargo lambda watch` for all of them, stopped when the
//! binary exits; its first invocations compile the functions (in target/lambda-watch, because
//! `cargo test` holds the lock of the main target dir), which takes minutes on a cold cache.
//! The tests share its schema, so they take turns, and each leaves behind nothing that
//! another looks for. Every file in `events/` must be sent by a test (events.rs checks).

mod cleanup;
mod clients;
mod errors;
mod events;
mod lambda;
mod metrics;
mod nonces_sessions;
mod surfaces;

use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use serde_json::json;
use test_support::TestDb;

use events::Events;
use lambda::Lambda;

/// What the tests share: the functions, and the schema they work on.
pub struct E2e {
    pub lambda: Lambda,
    pub db: TestDb,
}

/// Started by the first test; taken and stopped at exit. `Err`: why it did not start.
static SHARED: OnceLock<Result<Mutex<Option<E2e>>, String>> = OnceLock::new();

/// The shared functions, for one test at a time.
pub struct Turn(MutexGuard<'static, Option<E2e>>);

impl Deref for Turn {
    type Target = E2e;

    fn deref(&self) -> &E2e {
        self.0.as_ref().expect("stopped only at exit")
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.lambda.show_log();
        }
    }
}

/// Waits for the turn of the calling test, starting the functions if none has yet.
pub fn e2e() -> Turn {
    let shared = SHARED.get_or_init(|| {
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let db = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(TestDb::migrated());
            E2e {
                // As scripts/run-local.sh: `cargo lambda watch` names no alias, so only this
                // opens the admin ops the tests call.
                lambda: Lambda::start(&db.url, &[("ADMIN_ON_ANY_QUALIFIER", "true")]),
                db,
            }
        }));
        match started {
            Ok(e2e) => {
                stop_at_exit();
                Ok(Mutex::new(Some(e2e)))
            }
            Err(panic) => Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_default()),
        }
    });
    match shared {
        // A test that failed holding its turn leaves nothing the next one needs.
        Ok(mutex) => Turn(mutex.lock().unwrap_or_else(PoisonError::into_inner)),
        Err(problem) => panic!("the functions did not start: {problem}"),
    }
}

/// Statics are never dropped, and the harness ends the process when the last test is done:
/// stop `cargo lambda watch` and everything it started from an exit handler then.
fn stop_at_exit() {
    extern "C" fn stop() {
        if let Some(Ok(mutex)) = SHARED.get() {
            let e2e = mutex.lock().unwrap_or_else(PoisonError::into_inner).take();
            drop(e2e);
        }
    }
    // SAFETY: `stop` is a plain function for the process's lifetime; atexit only records it.
    let registered = unsafe { libc::atexit(stop) };
    assert_eq!(registered, 0, "atexit");
}

#[test]
fn migrate_on_a_migrated_schema_applies_nothing() {
    let e2e = e2e();
    let applied = e2e
        .lambda
        .ok("storage", "migrate", &Events::new().raw("migrate.json"));
    assert_eq!(
        applied,
        json!({"applied": []}),
        "the schema was migrated already"
    );
}
