//! Property-based tests: arbitrary payloads and HTTP requests against a real, migrated schema.
//! Whatever a caller sends, the storage never panics, never answers with a database failure
//! (Internal or Unavailable) for a healthy database, answers each op with a result of the
//! documented shape, and gives back what it stored. One runtime and one storage instance
//! (one connection, one set of caches) per property, like one warm container.

use std::cell::Cell;

use lti_storage::input::Timestamp;
use lti_storage::request::OPS;
use lti_storage::{Error, ErrorKind, Request};
use lti_storage_lambda::http::{route, NoRoute, Response};
use lti_storage_lambda::Storage;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use test_support::TestDb;
use time::OffsetDateTime;
use tokio::runtime::Runtime;
use uuid::Uuid;

const CASES: u32 = 1000;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        // Failures are reported with the shrunk input; nothing is written to the tree.
        failure_persistence: None,
        ..Config::default()
    })
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A migrated schema with one client and one deployment whose ids the generators use, so
/// random calls also reach rows that exist.
struct World {
    storage: Storage,
    /// Reads from the database only (no session cache): checks what was really stored.
    reader: Storage,
    ids: Vec<String>,
}

impl World {
    fn new(rt: &Runtime) -> World {
        rt.block_on(async {
            let db = TestDb::migrated().await;
            // Generous time limits: these properties are about input, not a busy machine.
            let patient = [("QUERY_TIMEOUT_MS", "60000"), ("CONNECT_TIMEOUT_MS", "60000")];
            let storage = db.storage_with(&patient);
            let client = storage
                .handle(
                    Request::from_payload(json!({"op": "addClient", "client": {
                        "name": "Canvas", "iss": "https://canvas.instructure.com",
                        "clientId": "10000000000001", "authUrl": "https://a", "tokenUrl": "https://t",
                        "jwksUrl": "https://j"}}))
                    .unwrap(),
                )
                .await
                .unwrap();
            let client = client.as_str().unwrap().to_string();
            let deployment = storage
                .handle(
                    Request::from_payload(json!({"op": "addDeployment", "clientId": client,
                        "deployment": {"deploymentId": "default"}}))
                    .unwrap(),
                )
                .await
                .unwrap();
            let deployment = deployment.as_str().unwrap().to_string();
            let reader = db.storage_with(&[patient[0], patient[1], ("SESSION_CACHE_CAPACITY", "0")]);
            let mut ids = vec![client, deployment];
            ids.extend((0..4).map(|_| Uuid::new_v4().to_string()));
            World {
                storage,
                reader,
                ids,
            }
        })
    }
}

// ---- generators -------------------------------------------------------------------------

/// Text of every kind: arbitrary unicode (NUL included), id-like, empty, over the limits.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-zA-Z0-9:/._ -]{0,24}",
        1 => Just(String::new()),
        1 => Just("default".to_string()),
        1 => Just("a\u{0}b".to_string()),
        1 => (250usize..260).prop_map(|n| "é".repeat(n)),
        1 => "[\\PC]{0,8}",
    ]
    .boxed()
}

/// A UUID in some spelling: one of the world's ids, a random one, or another form.
fn uuid_text(ids: &[String]) -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(ids.to_vec()),
        2 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        1 => proptest::sample::select(ids.to_vec()).prop_map(|id| id.to_uppercase()),
        1 => proptest::sample::select(ids.to_vec()).prop_map(|id| format!("{{{id}}}")),
        1 => proptest::sample::select(ids.to_vec()).prop_map(|id| id.replace('-', "")),
        1 => text(),
    ]
    .boxed()
}

/// Arbitrary JSON: null, booleans, integers and floats of every size, strings of every
/// kind, nested arrays and objects.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop_oneof![Just(0.0), Just(-0.0), Just(1e308), Just(5e-324), Just(0.1)]
            .prop_map(|f: f64| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
    .boxed()
}

/// An `expiresAt`: RFC 3339 strings (valid or nearly), epoch milliseconds of any size, or
/// anything else.
fn expires_at() -> BoxedStrategy<Value> {
    let rfc3339 = (
        0u32..=10000,
        0u32..=13,
        0u32..=32,
        0u32..=24,
        0u32..=60,
        0u32..=61,
        prop::option::of(0u32..1_000_000_000),
        prop_oneof![
            Just("Z".to_string()),
            (-24i32..=24, 0u32..60).prop_map(|(h, m)| format!("{h:+03}:{m:02}")),
            Just(String::new()),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, offset)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{offset}")
        });
    let now_ms = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    prop_oneof![
        3 => rfc3339.prop_map(Value::String),
        2 => (now_ms - 86_400_000..now_ms + 86_400_000 * 365).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        1 => json_value(),
    ]
    .boxed()
}

/// An object with some of `fields` (each drawn from its strategy), maybe an unknown one.
fn object_of(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let present: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(name, value)| {
            prop::option::weighted(0.85, value)
                .prop_map(move |value| value.map(|value| (name.to_string(), value)))
                .boxed()
        })
        .collect();
    (present, prop::option::weighted(0.1, (text(), json_value())))
        .prop_map(|(present, extra)| {
            let mut map: Map<String, Value> = present.into_iter().flatten().collect();
            if let Some((key, value)) = extra {
                map.insert(key, value);
            }
            Value::Object(map)
        })
        .boxed()
}

fn string_or_any(strings: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    prop_oneof![8 => strings.prop_map(Value::String), 1 => json_value()].boxed()
}

/// The value of an argument named `field`, as a caller might (mis)send it.
fn argument(field: &'static str, ids: &[String]) -> BoxedStrategy<Value> {
    let nonce = prop_oneof![
        proptest::sample::select(vec!["n-1", "n-2", "n-3"]).prop_map(str::to_string),
        text()
    ]
    .boxed();
    match field {
        "clientId" | "deploymentId" | "sessionId" => string_or_any(uuid_text(ids)),
        "iss" => string_or_any(
            prop_oneof![Just("https://canvas.instructure.com".to_string()), text()].boxed(),
        ),
        "lmsClientId" => {
            string_or_any(prop_oneof![Just("10000000000001".to_string()), text()].boxed())
        }
        "nonce" => string_or_any(nonce),
        "expiresAt" => expires_at(),
        "client" => prop_oneof![
            8 => object_of(
                ["name", "iss", "clientId", "authUrl", "tokenUrl", "jwksUrl"]
                    .into_iter()
                    .map(|name| (name, string_or_any(text())))
                    .collect()
            ),
            1 => json_value(),
        ]
        .boxed(),
        "deployment" => prop_oneof![
            8 => object_of(vec![
                ("deploymentId", string_or_any(text())),
                ("name", string_or_any(text())),
                ("description", string_or_any(text())),
            ]),
            1 => json_value(),
        ]
        .boxed(),
        "session" => prop_oneof![
            8 => (
                object_of(vec![
                    ("id", string_or_any(uuid_text(ids))),
                    ("expiresAt", expires_at()),
                ]),
                prop::collection::btree_map(text(), json_value(), 0..5),
            )
                .prop_map(|(mut session, more)| {
                    let map = session.as_object_mut().unwrap();
                    for (key, value) in more {
                        map.entry(key).or_insert(value);
                    }
                    session
                }),
            1 => json_value(),
        ]
        .boxed(),
        _ => json_value(),
    }
}

/// The arguments each op takes (`lmsClientId` is getLaunchConfig's `clientId`).
fn arguments_of(op: &str) -> &'static [&'static str] {
    match op {
        "getClientById" | "deleteClient" | "listDeployments" => &["clientId"],
        "addClient" => &["client"],
        "updateClient" => &["clientId", "client"],
        "getDeployment" | "deleteDeployment" => &["clientId", "deploymentId"],
        "addDeployment" => &["clientId", "deployment"],
        "updateDeployment" => &["clientId", "deploymentId", "deployment"],
        "storeNonce" => &["nonce", "expiresAt"],
        "validateNonce" => &["nonce"],
        "addSession" => &["session"],
        "getSession" | "getRegistrationSession" | "deleteRegistrationSession" => &["sessionId"],
        "getLaunchConfig" => &["iss", "lmsClientId", "deploymentId"],
        "saveLaunchConfig" => &["launchConfig"],
        "setRegistrationSession" => &["sessionId", "session"],
        _ => &[],
    }
}

const ALL_ARGUMENTS: &[&str] = &[
    "clientId",
    "deploymentId",
    "client",
    "deployment",
    "nonce",
    "expiresAt",
    "session",
    "sessionId",
    "iss",
    "launchConfig",
];

/// A direct-invocation payload: mostly `{"op": <known op>, ...its arguments}` with each
/// argument usually present and of the right kind, sometimes missing, mistyped or extra;
/// sometimes an unknown op or not an object at all. `migrate` is included: on a migrated
/// schema it applies nothing.
fn payload(ids: Vec<String>) -> BoxedStrategy<Value> {
    let op = prop_oneof![
        9 => proptest::sample::select(OPS.to_vec()).prop_map(str::to_string),
        1 => text(),
    ];
    let object = op
        .prop_flat_map(move |op| {
            let takes = arguments_of(&op);
            let wanted: Vec<BoxedStrategy<Option<(String, Value)>>> = takes
                .iter()
                .map(|field| {
                    let name = if *field == "lmsClientId" {
                        "clientId"
                    } else {
                        field
                    };
                    prop::option::weighted(0.9, argument(field, &ids))
                        .prop_map(move |value| value.map(|value| (name.to_string(), value)))
                        .boxed()
                })
                .collect();
            let unwanted: Vec<BoxedStrategy<Option<(String, Value)>>> = ALL_ARGUMENTS
                .iter()
                .filter(|field| !takes.contains(field))
                .map(|field| {
                    prop::option::weighted(0.02, argument(field, &ids))
                        .prop_map(move |value| value.map(|value| (field.to_string(), value)))
                        .boxed()
                })
                .collect();
            (
                Just(op),
                wanted,
                unwanted,
                prop::option::weighted(0.05, json_value()),
            )
        })
        .prop_map(|(op, wanted, unwanted, op_value)| {
            let mut map: Map<String, Value> =
                wanted.into_iter().chain(unwanted).flatten().collect();
            map.insert("op".into(), op_value.unwrap_or(Value::String(op)));
            Value::Object(map)
        });
    prop_oneof![19 => object, 1 => json_value()].boxed()
}

// ---- checks -----------------------------------------------------------------------------

fn is_uuid(value: &Value) -> bool {
    value.as_str().is_some_and(|s| Uuid::parse_str(s).is_ok())
}

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

/// An error a healthy database must never give for a caller's input.
fn check_error(context: &str, err: &Error) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(
            err.kind,
            ErrorKind::InvalidInput | ErrorKind::NotFound | ErrorKind::Conflict
        ),
        "{context}: a caller's input gave {err}"
    );
    prop_assert!(!err.message.is_empty(), "{context}: empty error message");
    for sql in ["SELECT ", "INSERT ", "UPDATE ", "DELETE FROM"] {
        prop_assert!(!err.message.contains(sql), "{context}: SQL in {err}");
    }
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
            let got = world.reader.get_client_by_id(id).await.unwrap().unwrap();
            let want = &add.client;
            prop_assert_eq!(
                (&got.name, &got.iss, &got.client_id),
                (&want.name, &want.iss, &want.client_id)
            );
            prop_assert_eq!(
                (&got.auth_url, &got.token_url, &got.jwks_url),
                (&want.auth_url, &want.token_url, &want.jwks_url)
            );
        }
        Request::AddSession(add) => {
            let mut want = add.session.clone();
            want.insert("id".into(), result.clone());
            let got = world.reader.get_session(result.as_str().unwrap()).await;
            let got = got.unwrap().unwrap_or_default();
            let want = Value::Object(want);
            prop_assert!(same_json(&got, &want), "stored {}, read {}", want, got);
        }
        Request::SetRegistrationSession(set) => {
            let expires = Timestamp::deserialize_value(&set.session["expiresAt"]).unwrap();
            let got = world
                .reader
                .get_registration_session(&set.session_id)
                .await
                .unwrap();
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
                    Ok(value) => {
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
        200 => prop_assert!(response.body.is_some(), "{}: 200 without a body", shown),
        201 => prop_assert!(
            response
                .body
                .as_ref()
                .is_none_or(|body| is_uuid(&body["id"])),
            "{}: 201 with {:?}",
            shown,
            response.body
        ),
        204 => prop_assert!(response.body.is_none(), "{}: 204 with a body", shown),
        _ => {
            let body = response.body.as_ref();
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
