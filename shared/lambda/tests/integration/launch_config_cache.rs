//! The launch-config cache (the README's Design section): hits and misses kept for their time
//! limits and within the cache's capacity, writes through this container seen at once, writes
//! made elsewhere seen within the change-check interval.

use std::time::{Duration, Instant};

use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::{
    add_client, add_deployment, client_json, launch_config, launch_config_json, new_client, ok,
    uuid_of, TestDb, ISS, LMS_CLIENT,
};

/// Changes the client's auth_url behind the storage's back.
async fn change_auth_url_with_sql(db: &TestDb, client_id: &str, auth_url: &str) {
    let changed = db
        .sql()
        .await
        .execute(
            "UPDATE clients SET auth_url = $1 WHERE client_id = $2",
            &[&auth_url, &client_id],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
}

/// A container that never re-checks the database's change counter during a test, so what it
/// answers comes from its own cache rules alone.
fn caching_storage(db: &TestDb, vars: &[(&str, &str)]) -> Storage {
    let mut vars = vars.to_vec();
    vars.push(("CHANGE_CHECK_INTERVAL_MS", "600000"));
    db.storage_with(&vars)
}

#[tokio::test]
async fn a_launch_config_hit_is_served_from_the_cache() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    assert_eq!(
        cached,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );

    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        cached,
        "the same container answers from its cache"
    );
    // The change is real: a fresh container sees it.
    let fresh = db.storage();
    assert_eq!(
        launch_config(&fresh, ISS, LMS_CLIENT, "1:abc").await["authUrl"],
        json!("https://changed.example/auth")
    );
}

#[tokio::test]
async fn a_default_fallback_is_cached_under_the_key_it_was_asked_with() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "default").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    assert_eq!(
        cached,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
    assert_eq!(storage.cached_entries().0, 1);

    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        cached
    );
    let fresh = db.storage();
    assert_eq!(
        launch_config(&fresh, ISS, LMS_CLIENT, "1:abc").await["authUrl"],
        json!("https://changed.example/auth")
    );
}

#[tokio::test]
async fn a_launch_config_miss_is_cached() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[]);
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    // Registered behind this container's back (another container, or psql).
    let other = db.storage();
    let client = add_client(&other, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&other, &client, "1:abc").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null,
        "the miss is remembered for the miss TTL (30 s by default)"
    );
    assert_eq!(
        launch_config(&db.storage(), ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
}

#[tokio::test]
async fn update_client_iss_makes_the_old_launch_config_unavailable_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "default").await;
    // Cache an exact hit and a fallback hit.
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "1:abc")
        .await
        .is_null());
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "7:fallback")
        .await
        .is_null());

    let new_iss = "https://canvas.test.instructure.com";
    ok(
        &storage,
        json!({"op": "updateClient", "clientId": client, "client": {"iss": new_iss}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "7:fallback").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, new_iss, LMS_CLIENT, "1:abc").await["iss"],
        json!(new_iss)
    );
}

#[tokio::test]
async fn update_client_client_id_and_urls_are_seen_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    // A miss cached under the new clientId must not hide the renamed client.
    assert_eq!(
        launch_config(&storage, ISS, "renamed", "1:abc").await,
        Value::Null
    );
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "1:abc")
        .await
        .is_null());

    ok(
        &storage,
        json!({"op": "updateClient", "clientId": client,
               "client": {"authUrl": "https://new.example/auth"}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await["authUrl"],
        json!("https://new.example/auth")
    );

    ok(
        &storage,
        json!({"op": "updateClient", "clientId": client, "client": {"clientId": "renamed"}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, "renamed", "1:abc").await["clientId"],
        json!("renamed")
    );
}

#[tokio::test]
async fn delete_client_is_seen_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "default").await;
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "1:abc")
        .await
        .is_null());
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "2:other")
        .await
        .is_null());
    ok(&storage, json!({"op": "deleteClient", "clientId": client})).await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "2:other").await,
        Value::Null
    );
}

#[tokio::test]
async fn delete_deployment_is_seen_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let exact = add_deployment(&storage, &client, "1:abc").await;
    let default = add_deployment(&storage, &client, "default").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await["deploymentId"],
        json!("1:abc")
    );

    ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": client, "deploymentId": exact}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await["deploymentId"],
        json!("default"),
        "with the exact deployment gone, the lookup falls back to default"
    );

    ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": client, "deploymentId": default}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
}

#[tokio::test]
async fn update_deployment_is_seen_at_once() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let deployment = add_deployment(&storage, &client, "1:abc").await;
    assert!(!launch_config(&storage, ISS, LMS_CLIENT, "1:abc")
        .await
        .is_null());
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:xyz").await,
        Value::Null
    );

    ok(
        &storage,
        json!({"op": "updateDeployment", "clientId": client, "deploymentId": deployment,
               "deployment": {"deploymentId": "1:xyz"}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:xyz").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:xyz")
    );

    // Renamed to `default`: the old key now resolves through the fallback.
    ok(
        &storage,
        json!({"op": "updateDeployment", "clientId": client, "deploymentId": deployment,
               "deployment": {"deploymentId": "default"}}),
    )
    .await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
}

#[tokio::test]
async fn a_cached_miss_is_answered_at_once_by_a_client_added_here() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
}

#[tokio::test]
async fn a_cached_miss_is_answered_at_once_by_a_default_deployment_added_here() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "2:def").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    add_deployment(&storage, &client, "default").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
}

#[tokio::test]
async fn a_miss_cached_in_one_container_expires_after_the_miss_ttl() {
    let db = TestDb::migrated().await;
    let a = db.storage_with(&[("MISS_CACHE_TTL_SECS", "1")]);
    let b = db.storage();
    assert_eq!(
        launch_config(&a, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    let missed_at = Instant::now();

    let client = add_client(&b, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&b, &client, "1:abc").await;
    let still_cached = launch_config(&a, ISS, LMS_CLIENT, "1:abc").await;
    if missed_at.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            still_cached,
            Value::Null,
            "within the miss TTL container A still answers from its cache"
        );
    }

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        launch_config(&a, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
}

#[tokio::test]
async fn hits_outlive_the_miss_ttl() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[("MISS_CACHE_TTL_SECS", "1")]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        cached,
        "a hit is kept for the launch-config TTL (15 min), not the miss TTL"
    );
}

#[tokio::test]
async fn two_instances_on_two_schemas_never_share_entries() {
    let db1 = TestDb::migrated().await;
    let db2 = TestDb::migrated().await;
    let s1 = db1.storage();
    let s2 = db2.storage();
    let client = add_client(&s1, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&s1, &client, "1:abc").await;

    // A miss cached by instance 2 must not answer instance 1 ...
    assert_eq!(
        launch_config(&s2, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&s1, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
    // ... nor a hit cached by instance 1 answer instance 2.
    assert_eq!(
        launch_config(&s2, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );

    // The same platform on both databases with different URLs: each sees its own.
    let mut different = client_json(&new_client(ISS, LMS_CLIENT));
    different["authUrl"] = json!("https://db2.example/auth");
    let writer = db2.storage();
    let id2 = ok(&writer, json!({"op": "addClient", "client": different})).await;
    add_deployment(&writer, id2.as_str().unwrap(), "2:def").await;
    let fresh2 = db2.storage();
    assert_eq!(
        launch_config(&fresh2, ISS, LMS_CLIENT, "2:def").await["authUrl"],
        json!("https://db2.example/auth")
    );
    assert_eq!(
        launch_config(&s1, ISS, LMS_CLIENT, "2:def").await,
        Value::Null
    );
}

#[tokio::test]
async fn the_launch_config_cache_never_exceeds_its_capacity() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("LAUNCH_CONFIG_CACHE_CAPACITY", "10")]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    let client = uuid_of(&client);
    // 100 registered deployments (hits) and 100 unknown ones (misses).
    db.sql()
        .await
        .execute(
            "INSERT INTO deployments (deployment_id, client_id)
             SELECT 'd' || n, $1 FROM generate_series(0, 99) n",
            &[&client],
        )
        .await
        .unwrap();
    let mut hits = 0;
    for n in 0..200 {
        let deployment = format!("d{n}");
        let found = launch_config(&storage, ISS, LMS_CLIENT, &deployment).await;
        if !found.is_null() {
            hits += 1;
            assert_eq!(found["deploymentId"], json!(deployment));
        }
        let (entries, _) = storage.cached_entries();
        assert!(
            entries <= 10,
            "{entries} launch configs cached after {} lookups, capacity 10",
            n + 1
        );
    }
    assert_eq!(hits, 100);
    assert!(storage.cached_entries().0 > 0, "the cache is in use");
}

#[tokio::test]
async fn a_change_made_elsewhere_is_seen_within_the_change_check_interval() {
    let db = TestDb::migrated().await;
    let storage = db.storage_with(&[("CHANGE_CHECK_INTERVAL_MS", "300")]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    assert_eq!(
        cached,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );

    // Another container (or psql, or @lti-tool/postgresql) changes the platform.
    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await["authUrl"],
        json!("https://changed.example/auth")
    );
    // And a deletion made elsewhere too.
    db.sql()
        .await
        .batch_execute("DELETE FROM deployments; DELETE FROM clients;")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
}

#[tokio::test]
async fn a_hit_expires_after_the_launch_config_ttl() {
    let db = TestDb::migrated().await;
    let storage = caching_storage(&db, &[("LAUNCH_CONFIG_CACHE_TTL_SECS", "1")]);
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    let cached = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    change_auth_url_with_sql(&db, LMS_CLIENT, "https://changed.example/auth").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let fresh = launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await;
    assert_ne!(fresh, cached);
    assert_eq!(fresh["authUrl"], json!("https://changed.example/auth"));
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
