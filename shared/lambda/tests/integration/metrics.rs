//! The metrics line: every shape of it is valid Embedded Metric Format, and each call's tally
//! it is made from tells a cache hit from a miss and counts reconnects, on a real PostgreSQL.
//! (The lines the functions write through the runtime loop: the e2e tests.)

use std::time::Duration;

use lti_storage::metrics::Tally;
use lti_storage::{Error, ErrorKind};
use lti_storage_lambda::emf::{Dimensions, Emitter, Line, Metric};
use serde_json::json;
use test_support::emf;
use test_support::{call_tallied, with_param, TestDb};

const NOW_MS: u64 = 1_767_225_600_000;

/// The line as written, checked to be valid EMF: its members and the metrics it publishes as
/// (name, value, dimension sets).
fn written(
    line: &Line<'_>,
) -> (
    serde_json::Map<String, serde_json::Value>,
    Vec<emf::Published>,
) {
    let mut text = Vec::new();
    Emitter::named("stack-storage").format(line, NOW_MS, &mut text);
    let text = String::from_utf8(text).expect("UTF-8");
    assert!(
        text.ends_with("}\n") && text.matches('\n').count() == 1,
        "{text}"
    );
    emf::check(&text).unwrap_or_else(|problem| panic!("not valid EMF ({problem}): {text}"))
}

fn names(published: &[emf::Published]) -> Vec<(&str, f64)> {
    published
        .iter()
        .map(|metric| (metric.name.as_str(), metric.value))
        .collect()
}

#[test]
fn a_storage_line_publishes_its_metrics_per_op_and_per_function() {
    let metrics = [
        Metric::count("Calls", 1),
        Metric::micros("Duration", Duration::from_micros(38)),
        Metric::count("CacheHit", 1),
    ];
    let (fields, published) = written(&Line {
        op: "getLaunchConfig",
        request_id: "8f5c0000-0000-4000-8000-000000000000",
        dimensions: Dimensions::OpAndFunction,
        metrics: &metrics,
        properties: &[],
        error: None,
    });
    assert_eq!(
        names(&published),
        [("Calls", 1.0), ("Duration", 38.0), ("CacheHit", 1.0)]
    );
    let dimensions = |name: &str, value: &str| (name.to_owned(), value.to_owned());
    for metric in &published {
        assert_eq!(
            metric.dimensions,
            [
                vec![
                    dimensions("Function", "stack-storage"),
                    dimensions("Op", "getLaunchConfig")
                ],
                vec![dimensions("Function", "stack-storage")],
            ]
        );
    }
    assert_eq!(published[1].unit.as_deref(), Some("Microseconds"));
    assert_eq!(fields["_aws"]["Timestamp"], NOW_MS);
    assert_eq!(fields["RequestId"], "8f5c0000-0000-4000-8000-000000000000");
    assert!(fields.get("ErrorType").is_none() && fields.get("Errors").is_none());
}

#[test]
fn a_failure_adds_errors_by_type_and_the_message_as_json() {
    let err = Error::new(
        ErrorKind::InvalidInput,
        "unknown op \"x\"\nexpected one of: \\ \u{1}",
    );
    let metrics = [
        Metric::count("Calls", 1),
        Metric::micros("Duration", Duration::from_micros(7)),
    ];
    let (fields, published) = written(&Line {
        op: "invalid",
        request_id: "r",
        dimensions: Dimensions::OpAndFunction,
        metrics: &metrics,
        properties: &[("HttpStatus", 400)],
        error: Some(&err),
    });
    assert_eq!(fields["Message"], err.message.as_str());
    assert_eq!(fields["ErrorType"], "InvalidInput");
    assert_eq!(fields["HttpStatus"], 400);
    let errors: Vec<_> = published
        .iter()
        .filter(|metric| metric.name == "Errors")
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].value, 1.0);
    let sets: Vec<Vec<&str>> = errors[0]
        .dimensions
        .iter()
        .map(|set| set.iter().map(|(name, _)| name.as_str()).collect())
        .collect();
    assert_eq!(
        sets,
        [
            vec!["Function", "ErrorType"],
            vec!["Function", "Op", "ErrorType"]
        ]
    );
}

#[test]
fn a_cleanup_line_publishes_per_op_only() {
    let metrics = [
        Metric::micros("Duration", Duration::from_millis(1500)),
        Metric::count("NoncesDeleted", 12),
        Metric::count("StoppedEarly", 1),
    ];
    let (_, published) = written(&Line {
        op: "cleanup",
        request_id: "r",
        dimensions: Dimensions::Op,
        metrics: &metrics,
        properties: &[],
        error: None,
    });
    assert_eq!(
        names(&published),
        [
            ("Duration", 1_500_000.0),
            ("NoncesDeleted", 12.0),
            ("StoppedEarly", 1.0)
        ]
    );
    for metric in &published {
        assert_eq!(metric.dimensions.len(), 1, "{metric:?}");
    }
}

/// What `call` counted for its metrics.
async fn tally_of(storage: &lti_storage_lambda::Storage, payload: serde_json::Value) -> Tally {
    let (answer, tally) = call_tallied(storage, payload).await;
    answer.expect("the call succeeds");
    tally
}

#[tokio::test]
async fn a_call_counts_its_cache_hit_or_miss_and_its_reconnects() {
    let db = TestDb::migrated().await;
    let name = format!("metrics_{}", db.schema);
    let storage = db.storage_with(&[(
        "DATABASE_URL",
        &with_param(&db.url, &format!("application_name={name}")),
    )]);
    let launch = json!({"op": "getLaunchConfig", "iss": "https://metrics.example",
                        "clientId": "c", "deploymentId": "d"});

    let first = tally_of(&storage, launch.clone()).await;
    assert_eq!(
        first.cache_hit(),
        Some(false),
        "a miss: the database answered"
    );
    assert_eq!(first.reconnects, 0, "the first connection is no reconnect");

    let again = tally_of(&storage, launch).await;
    assert_eq!(again.cache_hit(), Some(true), "the remembered miss");

    let list = tally_of(&storage, json!({"op": "listClients"})).await;
    assert_eq!(list.cache_hit(), None, "no cache consulted");
    assert_eq!(list.reconnects, 0);

    assert_eq!(db.terminate(&name).await, 1);
    let after_terminate = tally_of(&storage, json!({"op": "listClients"})).await;
    assert_eq!(after_terminate.reconnects, 1);
}
