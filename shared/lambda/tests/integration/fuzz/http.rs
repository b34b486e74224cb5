//! Arbitrary HTTP requests through the function URL's routes: a documented status and body for
//! each.

use std::cell::Cell;

use lti_storage_lambda::http::{route, NoRoute, Response};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use test_support::json_of;

use super::generators::{argument, expires_at, json_value, object_of, text, uuid_text};
use super::{check_error, is_uuid, runner, runtime, World, CASES};

/// One percent-encoded path segment: a resource name, an id, or anything.
fn segment(ids: Vec<String>) -> BoxedStrategy<String> {
    let encode = |text: String| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    prop_oneof![
        4 => proptest::sample::select(vec![
            "clients", "deployments", "nonces", "validate", "sessions", "launch-config",
            "registration-sessions", "migrate",
        ])
        .prop_map(str::to_string),
        3 => uuid_text(&ids).prop_map(encode),
        1 => text().prop_map(encode),
        1 => "[a-z%0-9]{0,6}", // raw, possibly malformed %-escapes
    ]
    .boxed()
}

fn http_request(
    ids: Vec<String>,
) -> impl Strategy<Value = (String, String, Vec<(String, String)>, Value)> {
    let method = prop_oneof![
        8 => proptest::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]).prop_map(str::to_string),
        1 => proptest::sample::select(vec!["HEAD", "OPTIONS", "get"]).prop_map(str::to_string),
        1 => "[A-Z]{1,8}",
    ];
    // The routes' own paths with ids of every kind filled in, or any segments at all.
    let templates = vec![
        "clients",
        "clients/{}",
        "clients/{}/deployments",
        "clients/{}/deployments/{}",
        "nonces",
        "nonces/{}/validate",
        "sessions",
        "sessions/{}",
        "launch-config",
        "registration-sessions/{}",
        "migrate",
    ];
    let segments = prop_oneof![
        6 => (
            proptest::sample::select(templates),
            prop::collection::vec(segment(ids.clone()), 2),
        )
            .prop_map(|(template, fill)| {
                template
                    .split('/')
                    .scan(fill.into_iter(), |fill, part| {
                        Some(if part == "{}" { fill.next().unwrap() } else { part.to_string() })
                    })
                    .collect::<Vec<_>>()
            }),
        1 => prop::collection::vec(segment(ids.clone()), 0..5),
    ];
    let path = (segments, any::<bool>()).prop_map(|(segments, trailing)| {
        let mut path = format!("/{}", segments.join("/"));
        if trailing {
            path.push('/');
        }
        path
    });
    let query = prop::collection::vec(
        (
            prop_oneof![
                3 => proptest::sample::select(vec!["iss", "clientId", "deploymentId"]).prop_map(str::to_string),
                1 => text(),
            ],
            prop_oneof![
                Just("https://canvas.instructure.com".to_string()),
                Just("10000000000001".to_string()),
                Just("default".to_string()),
                text(),
            ],
        ),
        0..4,
    );
    let body = prop_oneof![
        2 => Just(Value::Null),
        2 => argument("client", &ids),
        2 => argument("session", &ids),
        1 => argument("deployment", &ids),
        1 => object_of(vec![("nonce", argument("nonce", &ids)), ("expiresAt", expires_at())]),
        1 => json_value(),
    ];
    (method, path, query, body)
}

#[test]
fn arbitrary_http_requests_get_a_documented_status_and_body() {
    let rt = runtime();
    let world = World::new(&rt);
    let routed = Cell::new(0usize);
    runner()
        .run(
            &http_request(world.ids.clone()),
            |(method, path, query, body)| {
                let shown = format!("{method} {path} {query:?} {body}");
                let response = match route(&method, &path, &query, body) {
                    Err(NoRoute(response)) => {
                        prop_assert!(
                            matches!(response.status, 404 | 405),
                            "{}: no route gave {}",
                            shown,
                            response.status
                        );
                        response
                    }
                    Ok(Err(err)) => {
                        check_error(&shown, &err)?;
                        Response::error(&err)
                    }
                    Ok(Ok((request, reply))) => {
                        routed.set(routed.get() + 1);
                        let result = rt.block_on(world.storage.handle(request));
                        if let Err(err) = &result {
                            check_error(&shown, err)?;
                        }
                        Response::from_result(reply, result)
                    }
                };
                check_response(&shown, &response)
            },
        )
        .unwrap();
    let routed = routed.get();
    assert!(
        routed > CASES as usize / 10,
        "only {routed} requests reached the storage"
    );
}

fn check_response(shown: &str, response: &Response) -> Result<(), TestCaseError> {
    let status = response.status;
    let body = response.body.as_deref().map(json_of);
    prop_assert!(
        [200, 201, 204, 400, 404, 405, 409, 500, 503].contains(&status),
        "{}: status {}",
        shown,
        status
    );
    prop_assert!(
        !matches!(status, 500 | 503),
        "{}: a caller's request gave {} {:?}",
        shown,
        status,
        response.body
    );
    match status {
        200 => prop_assert!(body.is_some(), "{}: 200 without a body", shown),
        201 => prop_assert!(
            body.as_ref().is_none_or(|body| is_uuid(&body["id"])),
            "{}: 201 with {:?}",
            shown,
            body
        ),
        204 => prop_assert!(body.is_none(), "{}: 204 with a body", shown),
        _ => {
            let body = body.as_ref();
            let kind = body.and_then(|body| body["errorType"].as_str());
            let message = body.and_then(|body| body["errorMessage"].as_str());
            prop_assert!(
                message.is_some_and(|message| !message.is_empty()),
                "{}: error body {:?}",
                shown,
                body
            );
            let expected: &[&str] = match status {
                400 | 405 => &["InvalidInput"],
                404 => &["NotFound", "InvalidInput"],
                409 => &["Conflict"],
                _ => &[],
            };
            prop_assert!(
                kind.is_some_and(|kind| expected.contains(&kind)),
                "{}: status {} with errorType {:?}",
                shown,
                status,
                kind
            );
            prop_assert_eq!(body.unwrap().as_object().unwrap().len(), 2);
        }
    }
    Ok(())
}
