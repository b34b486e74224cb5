//! Arbitrary payloads: never a panic or a database failure, each op's answer of its documented
//! shape, and what was stored read back the same.

use std::cell::Cell;

use lti_storage::input::Timestamp;
use lti_storage::{ErrorKind, Request};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use test_support::{client_by_id, json_of};
use time::OffsetDateTime;

use super::generators::payload;
use super::{check_error, is_uuid, runner, runtime, World, CASES};

/// The result of `op` has the shape the README documents.
fn check_shape(op: &str, value: &Value) -> Result<(), TestCaseError> {
    let ok = match op {
        "listClients" => value.as_array().is_some_and(|clients| {
            clients
                .iter()
                .all(|c| c.is_object() && c.get("deployments").is_none() && is_uuid(&c["id"]))
        }),
        "getClientById" => {
            value.is_null() || (value["deployments"].is_array() && is_uuid(&value["id"]))
        }
        "addClient" | "addDeployment" | "addSession" => is_uuid(value),
        "listDeployments" => value.is_array(),
        "getDeployment" | "getSession" | "getRegistrationSession" => {
            value.is_null() || value.is_object()
        }
        "getLaunchConfig" => {
            value.is_null()
                || [
                    "iss",
                    "clientId",
                    "deploymentId",
                    "authUrl",
                    "tokenUrl",
                    "jwksUrl",
                ]
                .iter()
                .all(|field| value[field].is_string())
        }
        "validateNonce" => value.is_boolean(),
        "migrate" => value["applied"].as_array().is_some_and(Vec::is_empty),
        "cleanup" => [
            "noncesDeleted",
            "sessionsDeleted",
            "registrationSessionsDeleted",
        ]
        .iter()
        .all(|count| value[count].is_u64()),
        _ => value.is_null(),
    };
    prop_assert!(ok, "{op} answered {value}");
    Ok(())
}

/// The same JSON: equal strings, keys and structure, and numbers of equal value. jsonb keeps
/// a number's value, not serde_json's integer/float distinction: 1.2e17 (a float) comes back
/// as 120000000000000000 (an integer), as JSON itself does not tell them apart.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || ((x.is_f64() || y.is_f64()) && x.as_f64() == y.as_f64())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

/// What was stored is what comes back, read from the database.
async fn check_stored(
    world: &World,
    request: &Request,
    result: &Value,
) -> Result<(), TestCaseError> {
    match request {
        Request::AddClient(add) => {
            let id = result.as_str().unwrap();
            let got = client_by_id(&world.reader, id).await.unwrap().unwrap();
            let want = &add.client;
            prop_assert_eq!(
                (&*got.name, &*got.iss, &*got.client_id),
                (&*want.name, &*want.iss, &*want.client_id)
            );
            prop_assert_eq!(
                (&*got.auth_url, &*got.token_url, &*got.jwks_url),
                (&*want.auth_url, &*want.token_url, &*want.jwks_url)
            );
        }
        Request::AddSession(add) => {
            let mut want = add.session.clone();
            want.insert("id".into(), result.clone());
            let got = world.reader.get_session(result.as_str().unwrap()).await;
            let got = got.unwrap().map_or(Value::Null, |got| json_of(&got));
            let want = Value::Object(want);
            prop_assert!(same_json(&got, &want), "stored {}, read {}", want, got);
        }
        Request::SetRegistrationSession(set) => {
            let expires = Timestamp::deserialize_value(&set.session["expiresAt"]).unwrap();
            let got = world
                .reader
                .get_registration_session(&set.session_id)
                .await
                .unwrap()
                .map(|got| json_of(&got));
            if expires.0 > OffsetDateTime::now_utc() + time::Duration::seconds(5) {
                let got = got.unwrap_or_default();
                let want = Value::Object(set.session.clone());
                prop_assert!(same_json(&got, &want), "stored {}, read {}", want, got);
            } else if expires.0 < OffsetDateTime::now_utc() {
                prop_assert_eq!(got, None, "an expired registration session was returned");
            }
        }
        _ => {}
    }
    Ok(())
}

#[test]
fn arbitrary_payloads_never_panic_and_get_a_documented_answer() {
    let rt = runtime();
    let world = World::new(&rt);
    // Refused at parsing, error from the storage, ok.
    let outcomes = [Cell::new(0usize), Cell::new(0), Cell::new(0)];
    let count = |i: usize| outcomes[i].set(outcomes[i].get() + 1);
    runner()
        .run(&payload(world.ids.clone()), |payload| {
            let shown: String = payload.to_string().chars().take(500).collect();
            let request = match Request::from_payload(payload) {
                Ok(request) => request,
                Err(err) => {
                    count(0);
                    prop_assert_eq!(err.kind, ErrorKind::InvalidInput, "{}: {}", shown, err);
                    return check_error(&shown, &err);
                }
            };
            let op = request.op();
            rt.block_on(async {
                match world.storage.handle(request.clone()).await {
                    Ok(answer) => {
                        let value = json_of(&answer);
                        count(2);
                        check_shape(op, &value)?;
                        check_stored(&world, &request, &value).await
                    }
                    Err(err) => {
                        count(1);
                        check_error(&shown, &err)
                    }
                }
            })
        })
        .unwrap();
    // The generators reach every stage, not just the parser.
    let outcomes = outcomes.map(Cell::into_inner);
    assert!(
        outcomes.iter().all(|n| *n > CASES as usize / 20),
        "parse errors, storage errors, successes: {outcomes:?}"
    );
}
