//! The functions' output through the real runtime loop: one valid CloudWatch Embedded Metric
//! Format line per invocation, with the right op, counts and error, and no nonce, session
//! content or secret on any line. And the deploy's custom resource, which the cleanup function
//! refuses under the emulator.

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use test_support::emf;
use test_support::response_endpoint::ResponseEndpoint;
use test_support::table_after;
use uuid::Uuid;

use crate::e2e;
use crate::events::Events;
use crate::lambda::{workspace_root, Lambda};

/// The EMF lines written since `mark`, once there are `expected` of them, each checked and
/// parsed, with the names of the metrics each publishes.
fn emf_lines(
    lambda: &Lambda,
    mark: u64,
    expected: usize,
) -> Vec<(Map<String, Value>, Vec<String>)> {
    // cargo lambda passes the functions' output on as it comes: give it a moment.
    let started = Instant::now();
    let mut lines;
    loop {
        lines = lambda
            .log_since(mark)
            .into_iter()
            .filter(|line| line.contains("\"_aws\""))
            .collect::<Vec<_>>();
        if lines.len() >= expected || started.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(lines.len(), expected, "one line per invocation: {lines:#?}");
    lines
        .iter()
        .map(|line| {
            let (fields, published) = emf::check(line)
                .unwrap_or_else(|problem| panic!("not valid EMF ({problem}): {line}"));
            for metric in &published {
                assert_eq!(metric.namespace, "LtiStorage", "{line}");
            }
            (
                fields,
                published.into_iter().map(|metric| metric.name).collect(),
            )
        })
        .collect()
}

/// The metric names the README's metrics table documents.
fn documented_metrics() -> BTreeSet<String> {
    let readme = fs::read_to_string(workspace_root().join("README.md")).expect("the README");
    table_after(&readme, "### Metrics")
        .iter()
        .map(|row| row[0].to_owned())
        .collect()
}

#[test]
fn every_invocation_writes_one_valid_metrics_line_and_no_secret() {
    let e2e = e2e();
    let lambda = &e2e.lambda;
    let events = Events::new();
    let nonce = format!("e2e-nonce-SECRET-{}", Uuid::new_v4().simple());
    let secret = format!("session-SECRET-{}", Uuid::new_v4().simple());
    let session_id = Uuid::new_v4().to_string();
    let launch = json!({"op": "getLaunchConfig", "iss": format!("https://{}.example", Uuid::new_v4().simple()),
                        "clientId": "c", "deploymentId": "d"});
    let mark = lambda.log_mark();

    let store = json!({"op": "storeNonce", "nonce": nonce, "expiresAt": "2999-01-01T00:00:00Z"});
    lambda.ok("storage", "storeNonce", &store);
    lambda.ok(
        "storage",
        "validateNonce",
        &json!({"op": "validateNonce", "nonce": nonce}),
    );
    lambda.fails("storage", "storeNonce twice", &store, "Conflict");
    lambda.ok(
        "storage",
        "addSession",
        &json!({"op": "addSession", "session": {"id": session_id, "user": secret}}),
    );
    lambda.ok(
        "storage",
        "getSession",
        &json!({"op": "getSession", "sessionId": session_id}),
    );
    lambda.ok(
        "storage",
        "getSession unknown",
        &json!({"op": "getSession", "sessionId": Uuid::new_v4().to_string()}),
    );
    lambda.ok("storage", "getLaunchConfig", &launch);
    lambda.ok("storage", "getLaunchConfig again", &launch);
    lambda.fails(
        "storage",
        "unknown op",
        &json!({"op": "nope"}),
        "InvalidInput",
    );
    lambda.ok(
        "storage",
        "http-list-clients",
        &events.raw("http-list-clients.json"),
    );
    let mut unknown_path = events.raw("http-list-clients.json");
    unknown_path["rawPath"] = json!("/nope");
    lambda.ok("storage", "HTTP unknown path", &unknown_path);
    lambda.ok(
        "cleanup",
        "schedule-empty",
        &events.raw("schedule-empty.json"),
    );

    let lines = emf_lines(lambda, mark, 12);
    let field = |i: usize, name: &str| lines[i].0.get(name).cloned().unwrap_or(Value::Null);
    let ops: Vec<Value> = (0..lines.len()).map(|i| field(i, "Op")).collect();
    assert_eq!(
        ops,
        json!([
            "storeNonce",
            "validateNonce",
            "storeNonce",
            "addSession",
            "getSession",
            "getSession",
            "getLaunchConfig",
            "getLaunchConfig",
            "invalid",
            "listClients",
            "invalid",
            "cleanup"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
    for (i, (fields, metrics)) in lines.iter().enumerate() {
        let function = if i == 11 { "cleanup" } else { "storage" };
        assert_eq!(fields["Function"], function, "{fields:?}");
        assert!(
            fields["RequestId"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{fields:?}"
        );
        assert!(metrics.contains(&"Duration".to_owned()), "{fields:?}");
        if function == "storage" {
            assert_eq!(fields["Calls"], 1, "{fields:?}");
        }
    }
    // The cache: a stored session is in it, an unknown one is not (then it is: misses are
    // remembered); the same for launch configs.
    let cache_hits: Vec<Value> = (0..lines.len()).map(|i| field(i, "CacheHit")).collect();
    assert_eq!(
        cache_hits,
        json!([null, null, null, null, 1, 0, 0, 1, null, null, null, null])
            .as_array()
            .unwrap()
            .clone()
    );
    // Failures: the error type, one Errors, the message the caller got; HTTP: the status.
    let errors: Vec<(Value, Value)> = (0..lines.len())
        .map(|i| (field(i, "ErrorType"), field(i, "Errors")))
        .collect();
    for (i, (error_type, count)) in errors.iter().enumerate() {
        match i {
            2 => assert_eq!((error_type, count), (&json!("Conflict"), &json!(1))),
            8 => assert_eq!((error_type, count), (&json!("InvalidInput"), &json!(1))),
            10 => assert_eq!((error_type, count), (&json!("NotFound"), &json!(1))),
            _ => assert_eq!(
                (error_type, count),
                (&Value::Null, &Value::Null),
                "line {i}"
            ),
        }
    }
    assert_eq!(field(9, "HttpStatus"), 200);
    assert_eq!(field(10, "HttpStatus"), 404);
    assert!(field(2, "Message")
        .as_str()
        .is_some_and(|m| m.contains("nonce")));
    assert_eq!(field(11, "StoppedEarly"), 0);

    let all = lambda.log_since(mark).join("\n");
    for value in [&nonce, &secret] {
        assert!(
            !all.contains(value.as_str()),
            "{value} in the output:\n{all}"
        );
    }
    let documented = documented_metrics();
    for (fields, metrics) in &lines {
        for metric in metrics {
            assert!(
                documented.contains(metric),
                "{metric} is not in the README's table: {fields:?}"
            );
        }
    }
}

/// cargo lambda watch hands the function "function-arn" as its invoked ARN, which ties an event
/// to no account or region: the cleanup function refuses every custom-resource event there, and
/// this one, which names the loopback, gets no request sent to it.
#[test]
fn the_cleanup_function_refuses_a_custom_resource_event_it_cannot_tie_to_its_stack() {
    let e2e = e2e();
    let lambda = &e2e.lambda;
    let endpoint = ResponseEndpoint::start();
    let versions: Vec<&str> = lti_storage::migrate::MIGRATIONS
        .iter()
        .map(|(version, _)| *version)
        .collect();
    let create = json!({
        "RequestType": "Create",
        "ResponseURL": endpoint.url(),
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/e2e/1",
        "RequestId": Uuid::new_v4().to_string(),
        "LogicalResourceId": "Migrations",
        "ResourceType": "Custom::Migrations",
        "ResourceProperties": {"Versions": versions},
    });
    let mark = lambda.log_mark();

    let message = lambda.fails("cleanup", "custom resource Create", &create, "InvalidInput");

    assert!(
        message.contains("refused, nothing done") && message.contains("function's ARN"),
        "{message}"
    );
    assert_eq!(endpoint.connections(), 0, "no request");
    let lines = emf_lines(lambda, mark, 1);
    assert_eq!(lines[0].0["Op"], "deploy");
    assert_eq!(lines[0].0["ErrorType"], "InvalidInput");
    let log = lambda.log_since(mark).join("\n");
    assert!(log.contains("custom-resource event refused"), "{log}");
    assert!(
        !log.contains("SIGNATURE-SECRET"),
        "the URL is never logged: {log}"
    );
}
