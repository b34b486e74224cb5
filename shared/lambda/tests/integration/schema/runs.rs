//! Runs after the first: a second run applies nothing, a lost record is re-applied without
//! harm, two runners at once apply each migration once, and the migrate op.

use lti_storage::request::NoArgs;
use lti_storage::Request;
use serde_json::json;
use test_support::{ok, TestDb};

use super::spec::assert_spec_schema;
use super::{all_rows, migrate, recorded_versions, validate_nonce, versions, MIGRATIONS_TABLE};

#[tokio::test]
async fn a_second_run_applies_nothing_and_changes_nothing() {
    let db = TestDb::empty().await;
    let storage = db.storage();
    migrate(&storage).await.expect("first run");
    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "n-1", "expiresAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    // A second run in the same container, and one from a fresh container.
    let again = migrate(&storage).await.expect("second run");
    assert_eq!(again, Vec::<String>::new());
    let fresh = migrate(&db.storage()).await.expect("third run");
    assert_eq!(fresh, Vec::<String>::new());
    assert_spec_schema(&db).await;
    assert_eq!(recorded_versions(&db).await, versions());
    assert!(
        validate_nonce(&storage, "n-1").await,
        "the nonce stays unused"
    );
}

#[tokio::test]
async fn the_migration_files_are_idempotent_when_the_record_is_lost() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "n-kept", "expiresAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let sql = db.sql().await;
    let before = all_rows(&sql, false).await;
    sql.batch_execute(&format!("DROP TABLE {MIGRATIONS_TABLE}"))
        .await
        .expect("drop the record");
    let applied = migrate(&storage).await.expect("re-run");
    assert_eq!(applied, versions());
    assert_eq!(all_rows(&sql, false).await, before);
    assert_spec_schema(&db).await;
    assert!(validate_nonce(&storage, "n-kept").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_at_once_both_succeed_and_record_each_migration_once() {
    for _ in 0..3 {
        let db = TestDb::empty().await;
        let (a, b) = (db.storage(), db.storage());
        let (ra, rb) = tokio::join!(migrate(&a), migrate(&b));
        let mut ra = ra.expect("first runner succeeds");
        let rb = rb.expect("second runner succeeds");
        // Between them, every migration was applied exactly once.
        ra.extend(rb);
        ra.sort();
        assert_eq!(ra, versions());
        let counts: Vec<(String, i64)> = db
            .sql()
            .await
            .query(
                &format!(
                    "SELECT version, count(*) FROM {MIGRATIONS_TABLE}
                     GROUP BY version ORDER BY version"
                ),
                &[],
            )
            .await
            .expect("read the record")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let expected: Vec<(String, i64)> = versions().into_iter().map(|v| (v, 1)).collect();
        assert_eq!(counts, expected);
        assert_spec_schema(&db).await;
    }
}

#[tokio::test]
async fn the_migrate_op_reports_what_it_applied() {
    let db = TestDb::empty().await;
    let storage = db.storage();
    let first = ok(&storage, json!({"op": "migrate"})).await;
    assert_eq!(first, json!({"applied": versions()}));
    assert_eq!(first["applied"][0], "0001_schema");
    assert_eq!(first["applied"][1], "0002_nonces_used_at");
    let second = ok(&storage, json!({"op": "migrate"})).await;
    assert_eq!(second, json!({"applied": []}));
    assert_spec_schema(&db).await;
}

#[test]
fn the_migrate_op_ignores_arguments_it_does_not_take() {
    let request = Request::from_payload(json!({"op": "migrate", "force": true}))
        .expect("an argument migrate does not take is ignored");
    assert_eq!(request, Request::Migrate(NoArgs {}));
    let err = Request::from_args("migrate", json!([])).expect_err("arguments are an object");
    assert_eq!(err.kind, lti_storage::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("migrate"), "{err}");
}
