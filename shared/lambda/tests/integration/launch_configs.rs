//! getLaunchConfig (the README's operations table): the exact deployment, or the client's
//! `default` one.

use serde_json::Value;
use test_support::{
    add_client, add_deployment, launch_config, launch_config_json, new_client, TestDb, ISS,
    LMS_CLIENT,
};

#[tokio::test]
async fn get_launch_config_exact_match() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "2:def").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "2:def").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "2:def")
    );
}

#[tokio::test]
async fn get_launch_config_needs_both_iss_and_client_id_to_match() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "default").await;
    let moodle = "https://moodle.example.edu";
    assert_eq!(
        launch_config(&storage, moodle, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    assert_eq!(
        launch_config(&storage, ISS, "other", "1:abc").await,
        Value::Null
    );
}

#[tokio::test]
async fn get_launch_config_falls_back_to_the_default_deployment() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    add_deployment(&storage, &client, "default").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:unregistered").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
}

#[tokio::test]
async fn get_launch_config_is_null_without_the_deployment_or_a_default() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        Value::Null
    );
    let client = add_client(&storage, &new_client(ISS, "registered")).await;
    add_deployment(&storage, &client, "2:def").await;
    assert_eq!(
        launch_config(&storage, ISS, "registered", "1:abc").await,
        Value::Null
    );
    // Another client's `default` is no fallback for this one.
    let other = add_client(&storage, &new_client(ISS, "other")).await;
    add_deployment(&storage, &other, "default").await;
    let fresh = db.storage();
    assert_eq!(
        launch_config(&fresh, ISS, "registered", "1:abc").await,
        Value::Null
    );
}

#[tokio::test]
async fn get_launch_config_prefers_the_exact_match_over_default() {
    let db = TestDb::migrated().await;
    let storage = db.storage();
    let client = add_client(&storage, &new_client(ISS, LMS_CLIENT)).await;
    // `default` first, so insertion order cannot explain the result.
    add_deployment(&storage, &client, "default").await;
    add_deployment(&storage, &client, "1:abc").await;
    add_deployment(&storage, &client, "0:aaa").await;
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "1:abc").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "1:abc")
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "0:aaa").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "0:aaa")
    );
    assert_eq!(
        launch_config(&storage, ISS, LMS_CLIENT, "9:zzz").await,
        launch_config_json(&new_client(ISS, LMS_CLIENT), "default")
    );
}
