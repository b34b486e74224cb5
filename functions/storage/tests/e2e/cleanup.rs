//! The cleanup function: every schedule payload, each deleting what expired since the last
//! run, and nothing else.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::e2e;
use crate::events::Events;

fn counts(nonces: u64, sessions: u64, registration_sessions: u64) -> Value {
    json!({
        "noncesDeleted": nonces,
        "sessionsDeleted": sessions,
        "registrationSessionsDeleted": registration_sessions,
    })
}

#[test]
fn every_schedule_payload_deletes_what_expired_and_only_that() {
    let e2e = e2e();
    let lambda = &e2e.lambda;
    let events = Events::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let execute = |statements: &str| {
        runtime.block_on(async {
            e2e.db
                .sql()
                .await
                .batch_execute(statements)
                .await
                .expect("insert expired rows");
        })
    };
    let rows = || {
        runtime.block_on(async {
            let row = e2e
                .db
                .sql()
                .await
                .query_one(
                    "SELECT (SELECT count(*) FROM nonces), (SELECT count(*) FROM sessions)",
                    &[],
                )
                .await
                .expect("count rows");
            (row.get::<_, i64>(0), row.get::<_, i64>(1))
        })
    };

    // Rows that have not expired, among them a nonce and a session of this test's own.
    let mut store = events.raw("store-nonce.json");
    store["nonce"] = json!(Uuid::new_v4().simple().to_string());
    lambda.ok("storage", "store a nonce that has not expired", &store);
    let mut add_session = events.raw("add-session.json");
    let session_id = Uuid::new_v4().to_string();
    add_session["session"]["id"] = json!(session_id);
    lambda.ok("storage", "add a session", &add_session);
    let unexpired = rows();

    execute(
        "INSERT INTO nonces (nonce, expires_at) VALUES ('expired-unused', now() - interval '1 hour');
         INSERT INTO nonces (nonce, expires_at, used_at)
             VALUES ('expired-used', now() - interval '1 minute', now() - interval '2 minutes');
         INSERT INTO sessions (id, data, expires_at)
             VALUES ('55555555-5555-4555-8555-555555555555', '{}', now() - interval '1 second');
         INSERT INTO registration_sessions (id, data, expires_at)
             VALUES ('66666666-6666-4666-8666-666666666666', '{\"expiresAt\": 0}',
                     now() - interval '1 day');",
    );
    let rule = lambda.ok(
        "cleanup",
        "schedule-events-rule",
        &events.raw("schedule-events-rule.json"),
    );
    assert_eq!(
        rule,
        counts(2, 1, 1),
        "the expired rows are counted (if all are 0: cargo lambda watch sends \
         Lambda-Runtime-Deadline-Ms: 600000, a constant, not an epoch time; a deadline already \
         past must not stop the run before it starts)"
    );
    execute(
        "INSERT INTO nonces (nonce, expires_at) VALUES ('expired-3', now() - interval '1 hour')",
    );
    let scheduler = lambda.ok(
        "cleanup",
        "schedule-scheduler",
        &events.raw("schedule-scheduler.json"),
    );
    assert_eq!(scheduler, counts(1, 0, 0));
    // The storage function's `cleanup` op, what a tool's own `cleanup()` calls, does the same.
    execute(
        "INSERT INTO nonces (nonce, expires_at) VALUES ('expired-4', now() - interval '1 hour')",
    );
    let op = lambda.ok("storage", "the cleanup op", &events.raw("cleanup.json"));
    assert_eq!(op, counts(1, 0, 0));
    let empty = lambda.ok(
        "cleanup",
        "schedule-empty",
        &events.raw("schedule-empty.json"),
    );
    assert_eq!(empty, counts(0, 0, 0), "nothing expired since the last run");

    assert_eq!(rows(), unexpired, "cleanup deletes only expired rows");
    let session = lambda.ok(
        "storage",
        "get-session after cleanup",
        &json!({"op": "getSession", "sessionId": session_id}),
    );
    assert_eq!(session, add_session["session"]);
}
