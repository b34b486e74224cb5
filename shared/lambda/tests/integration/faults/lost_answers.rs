//! An answer lost on its way back: the call is repeated on a fresh connection and applied once
//! (a client or a session added, a nonce stored or consumed), and a repeat never takes a row
//! it did not write for its own.

use lti_storage::ErrorKind;
use serde_json::{json, Value};
use test_support::proxy::{Mode, Proxy};
use test_support::{far_future, json_of, new_client, TestDb, LMS_CLIENT};

use super::{nonce_row, session, storage_via};

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
    let stored = json_of(&db.storage().get_session(&id).await.unwrap().unwrap());
    assert_eq!(Value::Object(session(&id)), stored);
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
