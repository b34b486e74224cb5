//! Through PgBouncer in transaction pooling with `PREPARED_STATEMENTS=false`, as classic Lambda
//! is run behind a pooler: every operation, many containers on a small pool, the nonce race
//! between containers, and the pooler or the server restarting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lti_storage_lambda::Storage;
use serde_json::{json, Value};
use test_support::cluster::Cluster;
use test_support::pooler::Pooler;
use test_support::{call, client_json, new_client, ok, session_data, storage_at, TestDb};

/// A container behind the pooler, as classic Lambda runs it: one connection, statements
/// unprepared.
fn container(pooler: &Pooler) -> Storage {
    storage_at(&pooler.url, &[("PREPARED_STATEMENTS", "false")])
}

#[tokio::test]
async fn every_operation_works_through_pgbouncer_in_transaction_mode() {
    let db = TestDb::migrated().await;
    let Some(pooler) = Pooler::in_front_of(&db, &[]) else {
        return;
    };
    let storage = container(&pooler);
    let client = new_client("https://canvas.example.edu", "10000000000001");

    assert_eq!(
        ok(&storage, json!({"op": "migrate"})).await,
        json!({"applied": []})
    );
    let client_id = ok(
        &storage,
        json!({"op": "addClient", "client": client_json(&client)}),
    )
    .await;
    ok(
        &storage,
        json!({"op": "updateClient", "clientId": client_id, "client": {"name": "Canvas"}}),
    )
    .await;
    let listed = ok(&storage, json!({"op": "listClients"})).await;
    assert_eq!(listed[0]["name"], "Canvas");
    let deployment_id = ok(
        &storage,
        json!({"op": "addDeployment", "clientId": client_id, "deployment": {"deploymentId": "1:abc"}}),
    )
    .await;
    ok(
        &storage,
        json!({"op": "updateDeployment", "clientId": client_id, "deploymentId": deployment_id,
               "deployment": {"name": "Production"}}),
    )
    .await;
    let deployment = ok(
        &storage,
        json!({"op": "getDeployment", "clientId": client_id, "deploymentId": deployment_id}),
    )
    .await;
    assert_eq!(deployment["name"], "Production");
    let found = ok(
        &storage,
        json!({"op": "getClientById", "clientId": client_id}),
    )
    .await;
    assert_eq!(found["deployments"].as_array().unwrap().len(), 1);
    let deployments = ok(
        &storage,
        json!({"op": "listDeployments", "clientId": client_id}),
    )
    .await;
    assert_eq!(deployments.as_array().unwrap().len(), 1);
    let launch = json!({"op": "getLaunchConfig", "iss": client.iss, "clientId": client.client_id,
                        "deploymentId": "1:abc"});
    assert_eq!(
        ok(&storage, launch.clone()).await,
        test_support::launch_config_json(&client, "1:abc")
    );
    let saved = test_support::launch_config_json(&client, "1:abc");
    ok(
        &storage,
        json!({"op": "saveLaunchConfig", "launchConfig": saved}),
    )
    .await;

    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "n-1", "expiresAt": 4102444800000u64}),
    )
    .await;
    let validate = json!({"op": "validateNonce", "nonce": "n-1"});
    assert_eq!(ok(&storage, validate.clone()).await, true);
    assert_eq!(ok(&storage, validate).await, false);
    let session_id = uuid::Uuid::new_v4().to_string();
    let mut session = session_data();
    session["id"] = json!(session_id);
    ok(&storage, json!({"op": "addSession", "session": session})).await;
    // Read back by another container: not from a cache.
    let session_back = ok(
        &container(&pooler),
        json!({"op": "getSession", "sessionId": session_id}),
    )
    .await;
    assert_eq!(session_back, session);

    let registration_id = uuid::Uuid::new_v4().to_string();
    let registration = json!({"registrationToken": "t", "expiresAt": 4102444800000u64});
    ok(
        &storage,
        json!({"op": "setRegistrationSession", "sessionId": registration_id, "session": registration}),
    )
    .await;
    let get_registration = json!({"op": "getRegistrationSession", "sessionId": registration_id});
    assert_eq!(ok(&storage, get_registration.clone()).await, registration);
    ok(
        &storage,
        json!({"op": "deleteRegistrationSession", "sessionId": registration_id}),
    )
    .await;
    assert_eq!(ok(&storage, get_registration).await, Value::Null);

    ok(
        &storage,
        json!({"op": "deleteDeployment", "clientId": client_id, "deploymentId": deployment_id}),
    )
    .await;
    ok(
        &storage,
        json!({"op": "deleteClient", "clientId": client_id}),
    )
    .await;
    assert_eq!(ok(&storage, json!({"op": "listClients"})).await, json!([]));
    assert_eq!(ok(&container(&pooler), launch).await, Value::Null);

    db.sql()
        .await
        .batch_execute(
            "INSERT INTO nonces (nonce, expires_at) VALUES ('old', now() - interval '1 hour')",
        )
        .await
        .unwrap();
    let cleaned = lti_storage::cleanup::cleanup(&storage, Instant::now() + Duration::from_secs(60))
        .await
        .expect("cleanup succeeds");
    assert_eq!(cleaned.counts.nonces_deleted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_containers_on_a_pool_of_8_get_no_errors_where_12_connections_are_allowed() {
    const CONTAINERS: usize = 32;
    const CALLS: usize = 25;
    let cluster = Cluster::create(&["-c", "max_connections=12"]);
    let db = TestDb::migrated_on(&cluster.url).await;
    let Some(pooler) = Pooler::in_front_of(&db, &["default_pool_size=8", "max_db_connections=8"])
    else {
        return;
    };
    let client = new_client("https://canvas.example.edu", "10000000000001");
    let client_id = ok(
        &container(&pooler),
        json!({"op": "addClient", "client": client_json(&client)}),
    )
    .await;
    ok(
        &container(&pooler),
        json!({"op": "addDeployment", "clientId": client_id, "deployment": {"deploymentId": "1:abc"}}),
    )
    .await;

    let mut containers = Vec::new();
    for c in 0..CONTAINERS {
        let storage = Arc::new(container(&pooler));
        let client = client.clone();
        containers.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            // One call at a time, as a classic Lambda container: a login and launch each 5.
            for i in 0..CALLS {
                let nonce = format!("n-{c}-{}", i / 5);
                let payload = match i % 5 {
                    0 => json!({"op": "getLaunchConfig", "iss": client.iss,
                                "clientId": client.client_id, "deploymentId": "1:abc"}),
                    1 => json!({"op": "storeNonce", "nonce": nonce, "expiresAt": 4102444800000u64}),
                    2 => json!({"op": "validateNonce", "nonce": nonce}),
                    3 => {
                        let mut session = session_data();
                        session["id"] = json!(uuid::Uuid::new_v4());
                        json!({"op": "addSession", "session": session})
                    }
                    _ => json!({"op": "getSession", "sessionId": uuid::Uuid::new_v4()}),
                };
                if let Err(err) = call(&storage, payload.clone()).await {
                    errors.push(format!("{payload}: {err}"));
                }
            }
            errors
        }));
    }
    let mut errors = Vec::new();
    for container in containers {
        errors.extend(container.await.expect("no container panics"));
    }
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
    // Every write landed once.
    assert_eq!(
        db.count("SELECT count(*) FROM nonces WHERE used_at IS NOT NULL")
            .await,
        (CONTAINERS * CALLS / 5) as i64
    );
    assert_eq!(
        db.count("SELECT count(*) FROM sessions").await,
        (CONTAINERS * CALLS / 5) as i64
    );
    let servers: i64 = db
        .sql()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(servers <= 8, "{servers} server connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_consumers_of_a_nonce_in_16_containers_behind_the_pooler_one_gets_true() {
    let db = TestDb::migrated().await;
    let Some(pooler) = Pooler::in_front_of(&db, &["default_pool_size=4"]) else {
        return;
    };
    let containers: Vec<Arc<Storage>> = (0..16).map(|_| Arc::new(container(&pooler))).collect();
    for round in 0..10 {
        let nonce = format!("raced-{round}");
        ok(
            &containers[0],
            json!({"op": "storeNonce", "nonce": nonce, "expiresAt": 4102444800000u64}),
        )
        .await;
        let calls: Vec<_> = containers
            .iter()
            .map(|storage| {
                let (storage, nonce) = (storage.clone(), nonce.clone());
                tokio::spawn(async move {
                    call(&storage, json!({"op": "validateNonce", "nonce": nonce})).await
                })
            })
            .collect();
        let mut wins = 0;
        for call in calls {
            if call.await.unwrap().expect("no call fails") == json!(true) {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

#[tokio::test]
async fn a_restart_of_the_pooler_or_of_the_server_behind_it_costs_no_call() {
    let cluster = Cluster::create(&[]);
    let db = TestDb::migrated_on(&cluster.url).await;
    let Some(pooler) = Pooler::in_front_of(&db, &[]) else {
        return;
    };
    let storage = container(&pooler);
    let list = json!({"op": "listClients"});
    ok(&storage, list.clone()).await;

    pooler.restart();
    ok(&storage, list.clone()).await;
    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "after-pooler", "expiresAt": 4102444800000u64}),
    )
    .await;

    cluster.restart();
    ok(&storage, list.clone()).await;
    assert_eq!(
        ok(
            &storage,
            json!({"op": "validateNonce", "nonce": "after-pooler"})
        )
        .await,
        true
    );

    // The pooler's server connection is terminated: the client's connection to the pooler
    // stays, and the next call gets another server connection.
    db.sql()
        .await
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    ok(&storage, list.clone()).await;
    ok(
        &storage,
        json!({"op": "storeNonce", "nonce": "after-terminate", "expiresAt": 4102444800000u64}),
    )
    .await;
    assert_eq!(
        ok(
            &storage,
            json!({"op": "validateNonce", "nonce": "after-terminate"})
        )
        .await,
        true
    );
}
